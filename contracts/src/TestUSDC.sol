// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/**
 * @title TestUSDC
 * @dev USDC-like ERC-20 token FOR LOCAL CHAINS AND TESTS ONLY. Never deploy it to a public network: the owner can
 * mint without limit.
 *
 * Mirrors the parts of Circle's FiatToken v2.2 that the marketplace relies on:
 *
 * * 6 decimals, name "Test USD Coin", symbol "USDC" and EIP-712 domain version "2".
 * * https://eips.ethereum.org/EIPS/eip-2612[ERC-2612] {permit} (sequential nonces, see {nonces}).
 * * https://eips.ethereum.org/EIPS/eip-3009[ERC-3009] {transferWithAuthorization}, {receiveWithAuthorization} and
 *   {cancelAuthorization} (random `bytes32` nonces, see {authorizationState}). Each comes in a `(v, r, s)` flavour and
 *   a `bytes signature` flavour; both are checked with {SignatureChecker-isValidSignatureNow}, so smart contract
 *   wallets (https://eips.ethereum.org/EIPS/eip-1271[ERC-1271]) can authorize with signatures of any length.
 *
 * NOTE: {ERC20Permit} is not inherited because it hard-codes EIP-712 version "1"; {permit} below is the same
 * implementation with version "2", and reverts with the same errors.
 */
contract TestUSDC is ERC20, IERC20Permit, EIP712, Nonces, Ownable {
    /// @dev ERC-2612 `Permit` struct type hash.
    bytes32 public constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    /// @dev ERC-3009 `TransferWithAuthorization` struct type hash.
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @dev ERC-3009 `ReceiveWithAuthorization` struct type hash.
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    /// @dev ERC-3009 `CancelAuthorization` struct type hash.
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    mapping(address authorizer => mapping(bytes32 nonce => bool)) private _authorizationStates;

    /// @dev Emitted when the authorization `nonce` of `authorizer` is used to move tokens.
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    /// @dev Emitted when the authorization `nonce` of `authorizer` is canceled.
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    /// @dev Permit deadline has expired (same error as {ERC20Permit}).
    error ERC2612ExpiredSignature(uint256 deadline);

    /// @dev Mismatched permit signature (same error as {ERC20Permit}).
    error ERC2612InvalidSigner(address signer, address owner);

    /// @dev The authorization cannot be used before `validAfter` has passed.
    error TestUSDCAuthorizationNotYetValid(uint256 validAfter);

    /// @dev The authorization could only be used before `validBefore`.
    error TestUSDCAuthorizationExpired(uint256 validBefore);

    /// @dev The authorization `nonce` of `authorizer` was already used or canceled.
    error TestUSDCAuthorizationUsedOrCanceled(address authorizer, bytes32 nonce);

    /// @dev The signature is not valid for the authorizer (ECDSA for EOAs, ERC-1271 for contracts).
    error TestUSDCInvalidSignature();

    /// @dev `receiveWithAuthorization` was called by `caller` instead of the payee `payee`.
    error TestUSDCCallerMustBePayee(address caller, address payee);

    /**
     * @dev Sets `initialOwner` as the account allowed to {mint}.
     */
    constructor(address initialOwner)
        ERC20("Test USD Coin", "USDC")
        EIP712("Test USD Coin", "2")
        Ownable(initialOwner)
    {}

    /**
     * @dev Returns 6, as USDC.
     */
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /**
     * @dev Creates `amount` tokens and assigns them to `to`.
     *
     * Requirements:
     *
     * - the caller must be the owner.
     * - `to` cannot be the zero address.
     */
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /// @inheritdoc IERC20Permit
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        if (block.timestamp > deadline) {
            revert ERC2612ExpiredSignature(deadline);
        }

        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, value, _useNonce(owner), deadline));

        address signer = ECDSA.recover(_hashTypedDataV4(structHash), v, r, s);
        if (signer != owner) {
            revert ERC2612InvalidSigner(signer, owner);
        }

        _approve(owner, spender, value);
    }

    /// @inheritdoc IERC20Permit
    function nonces(address owner) public view override(IERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }

    /// @inheritdoc IERC20Permit
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /**
     * @dev Returns whether the authorization `nonce` of `authorizer` has been used or canceled.
     */
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    /**
     * @dev Moves `value` tokens from `from` to `to` with a `TransferWithAuthorization` signed by `from` as (`v`, `r`,
     * `s`). Anyone may submit it. Emits {AuthorizationUsed} and {IERC20-Transfer}.
     *
     * Requirements:
     *
     * - `validAfter < block.timestamp < validBefore`.
     * - `nonce` has not been used or canceled by `from`.
     * - the signature is valid for `from` (ECDSA, or ERC-1271 with the packed 65-byte `r || s || v`).
     */
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _transferWithAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
            from,
            to,
            value,
            validAfter,
            validBefore,
            nonce,
            abi.encodePacked(r, s, v)
        );
    }

    /**
     * @dev Same as {transferWithAuthorization} but takes the signature as bytes: a 65-byte ECDSA signature for an
     * EOA, or any signature the ERC-1271 wallet `from` accepts.
     */
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        _transferWithAuthorization(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature
        );
    }

    /**
     * @dev Like {transferWithAuthorization} but with a `ReceiveWithAuthorization` signature, which can only be
     * submitted by the payee `to`. Protects against front-running when a contract pulls the payment.
     *
     * Requirements:
     *
     * - the caller must be `to`.
     * - same requirements as {transferWithAuthorization}.
     */
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        _receiveWithAuthorization(from, to, value, validAfter, validBefore, nonce, abi.encodePacked(r, s, v));
    }

    /**
     * @dev Same as {receiveWithAuthorization} but takes the signature as bytes: a 65-byte ECDSA signature for an
     * EOA, or any signature the ERC-1271 wallet `from` accepts.
     */
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        _receiveWithAuthorization(from, to, value, validAfter, validBefore, nonce, signature);
    }

    /**
     * @dev Cancels the authorization `nonce` of `authorizer` with a `CancelAuthorization` signed by `authorizer` as
     * (`v`, `r`, `s`). Anyone may submit it. Emits {AuthorizationCanceled}.
     *
     * Requirements:
     *
     * - `nonce` has not been used or canceled by `authorizer`.
     * - the signature is valid for `authorizer`.
     */
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        _cancelAuthorization(authorizer, nonce, abi.encodePacked(r, s, v));
    }

    /**
     * @dev Same as {cancelAuthorization} but takes the signature as bytes: a 65-byte ECDSA signature for an EOA, or
     * any signature the ERC-1271 wallet `authorizer` accepts.
     */
    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature) external {
        _cancelAuthorization(authorizer, nonce, signature);
    }

    /**
     * @dev Checks the caller is the payee, then runs a `ReceiveWithAuthorization`.
     */
    function _receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) private {
        if (to != _msgSender()) {
            revert TestUSDCCallerMustBePayee(_msgSender(), to);
        }
        _transferWithAuthorization(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature
        );
    }

    /**
     * @dev Checks the validity window, consumes the authorization of struct type `typeHash` and moves the tokens.
     */
    function _transferWithAuthorization(
        bytes32 typeHash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) private {
        if (block.timestamp <= validAfter) {
            revert TestUSDCAuthorizationNotYetValid(validAfter);
        }
        if (block.timestamp >= validBefore) {
            revert TestUSDCAuthorizationExpired(validBefore);
        }

        bytes32 structHash = keccak256(abi.encode(typeHash, from, to, value, validAfter, validBefore, nonce));
        _useAuthorization(from, nonce, structHash, signature);
        emit AuthorizationUsed(from, nonce);

        _transfer(from, to, value);
    }

    /**
     * @dev Consumes the authorization `nonce` of `authorizer` with a `CancelAuthorization`.
     */
    function _cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) private {
        _useAuthorization(
            authorizer, nonce, keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce)), signature
        );
        emit AuthorizationCanceled(authorizer, nonce);
    }

    /**
     * @dev Marks the authorization `nonce` of `authorizer` as used, after checking that it was not used or canceled
     * yet and that `signature` is valid for `authorizer` over the EIP-712 digest of `structHash`.
     */
    function _useAuthorization(address authorizer, bytes32 nonce, bytes32 structHash, bytes memory signature)
        internal
        virtual
    {
        if (_authorizationStates[authorizer][nonce]) {
            revert TestUSDCAuthorizationUsedOrCanceled(authorizer, nonce);
        }
        if (!SignatureChecker.isValidSignatureNow(authorizer, _hashTypedDataV4(structHash), signature)) {
            revert TestUSDCInvalidSignature();
        }
        _authorizationStates[authorizer][nonce] = true;
    }
}
