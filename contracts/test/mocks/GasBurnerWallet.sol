// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// A hostile buyer's contract wallet (EIP-1271), for the operator sender's tests: while simulated
/// (gas price 0, as eth_call and a plain eth_estimateGas run) it accepts any signature, once it has
/// been given at least `threshold` gas, so estimates come out that high; in a transaction priced
/// above 0 it burns all the gas it is given and the market reverts InvalidSignature.
contract GasBurnerWallet {
    address public immutable owner;
    uint256 public immutable threshold;

    constructor(uint256 threshold_) {
        owner = msg.sender;
        threshold = threshold_;
    }

    function execute(address target, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "owner");
        (bool ok, bytes memory ret) = target.call(data);
        require(ok, "call failed");
        return ret;
    }

    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        if (tx.gasprice == 0) {
            return gasleft() >= threshold ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
        }
        uint256 x;
        while (gasleft() > 0) {
            x++;
        }
        return bytes4(uint32(x));
    }
}
