// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @title IERC3009
 * @dev The parts of https://eips.ethereum.org/EIPS/eip-3009[ERC-3009] (transfer with authorization) that
 * {DataMarket} calls, in both flavours a token may offer: the original `(v, r, s)` one and the `bytes signature` one
 * of Circle's FiatToken v2.2, which also accepts ERC-1271 signatures of any length from contract wallets.
 */
interface IERC3009 {
    /**
     * @dev Moves `value` tokens from `from` to `to` with a `TransferWithAuthorization` signed by `from` as
     * (`v`, `r`, `s`). Reverts unless `validAfter < block.timestamp < validBefore` and `nonce` is unused.
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
    ) external;

    /**
     * @dev Same as the `(v, r, s)` flavour, with the signature as bytes (65-byte ECDSA `r || s || v` for an EOA, any
     * length for an ERC-1271 wallet).
     */
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;

    /**
     * @dev Returns whether the authorization `nonce` of `authorizer` has been used or canceled.
     */
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
}
