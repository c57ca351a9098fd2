// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/**
 * @dev ERC-1271 wallet that only accepts 97-byte signatures: a 65-byte ECDSA signature by its owner followed by a
 * 32-byte `tag` fixed at deployment (standing in for e.g. a validator or module id). 65-byte signatures are
 * rejected, which proves the token forwards longer signatures untouched.
 */
contract ERC1271WalletMock is IERC1271 {
    address public immutable owner;
    bytes32 public immutable tag;

    constructor(address owner_, bytes32 tag_) {
        owner = owner_;
        tag = tag_;
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 97 || bytes32(signature[65:]) != tag) return bytes4(0xffffffff);
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(hash, signature[:65]);
        return
            err == ECDSA.RecoverError.NoError && recovered == owner
                ? this.isValidSignature.selector
                : bytes4(0xffffffff);
    }
}
