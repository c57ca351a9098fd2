"""Checking a payment against a listing's requirement and the chain, before anything is sent.

`requirement_for` reads what a listing asks (price and token from the market, the token's EIP-712
name and version); `verify` checks a parsed `Payment` against it and answers the payer, or raises
PaymentRefused with a code of its own for each reason. Nothing is broadcast and nothing is written:
the last check is an `eth_call` of the market's `purchaseWithAuthorization` from the relayer."""
from __future__ import annotations

import threading
import time

from django.conf import settings
from eth_account.messages import encode_typed_data
from web3.exceptions import ContractLogicError

from marketplace.accounts.services import ChainUnreachable, signed_by
from marketplace.chain import reverts
from marketplace.chain.client import OperatorKeyMissing, operator_account, read_web3
from marketplace.chain.contracts import DataMarket, TestUSDC
from marketplace.chain.services import deployed_address

from .x402 import Payment, PaymentInFlight, PaymentRefused, Requirement, caip2_network

#: Seconds of clock skew allowed on top of maxTimeoutSeconds for a payment's validBefore (the
#: official client signs now + maxTimeoutSeconds).
VALID_BEFORE_MARGIN = 120

TYPES = {
    "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                     {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
    ],
}


def _unreachable() -> PaymentRefused:
    return PaymentRefused("chain_unavailable", "The chain cannot be reached to check the payment; try again soon.",
                          status=503)


def market() -> DataMarket:
    address = deployed_address(settings.CHAIN_ID, "DataMarket")
    if address is None:
        raise PaymentRefused("chain_unavailable", "The market is not deployed on this chain yet.", status=503)
    return DataMarket.shared(read_web3(), address)


TOKEN_DOMAIN_SECONDS = 600  # a token's EIP-712 name and version, read from the chain once in this long
_domains: dict[tuple, tuple[float, dict]] = {}
_domains_lock = threading.Lock()


def token_domain(token: str) -> dict:
    """The token's EIP-712 name and version (what a 402's `accepts[].extra` names and what the
    payer signs against), read from the chain once per TOKEN_DOMAIN_SECONDS per process: a
    deployed token's domain never changes, and a paid download and each discovery item need it.
    Raises PaymentRefused (503) when it cannot be read."""
    key = (settings.CHAIN_RPC_URL, settings.CHAIN_ID, token)
    now = time.monotonic()
    with _domains_lock:
        kept = _domains.get(key)
    if kept and now - kept[0] < TOKEN_DOMAIN_SECONDS:
        return kept[1]
    try:
        domain = TestUSDC.shared(read_web3(), token).eip712_domain()
    except Exception:
        raise PaymentRefused("chain_unavailable", "The chain cannot be reached to read the payment token; try "
                             "again soon.", status=503) from None
    with _domains_lock:
        _domains[key] = (now, domain)
    return domain


def transfer_typed_data(*, token: str, token_name: str, token_version: str, payer: str, to: str, value: int,
                        valid_after: int, valid_before: int, nonce: str) -> dict:
    """What the payer signs: the token's EIP-3009 TransferWithAuthorization in its own domain."""
    return {
        "types": TYPES, "primaryType": "TransferWithAuthorization",
        "domain": {"name": token_name, "version": token_version, "chainId": settings.CHAIN_ID,
                   "verifyingContract": token},
        "message": {"from": payer, "to": to, "value": value, "validAfter": valid_after,
                    "validBefore": valid_before, "nonce": nonce},
    }


def _listing(dm: DataMarket, listing_id: int, read: dict | None = None) -> dict:
    """The listing (as `read` already has it, or read now), refused unless it is for sale."""
    try:
        listing = read if read is not None else dm.get_listing(listing_id)
    except ContractLogicError:
        listing = None
    except Exception:
        raise _unreachable() from None
    if listing is None or listing["owner"] == "0x" + "0" * 40:
        raise PaymentRefused("unknown_listing", f"Listing {listing_id} is not a listing of this market.", status=404)
    if not (listing["active"] and listing["approved"]):
        raise PaymentRefused("not_for_sale", f"Listing {listing_id} is not for sale now.", status=410)
    return listing


def requirement_for(listing_id: int, *, resource: str, description: str = "",
                    mime_type: str = "application/octet-stream") -> Requirement:
    """What listing `listing_id` asks of a payment now: its price and token read from the chain
    (one eth_call), the token's EIP-712 name and version from `token_domain`. Raises
    PaymentRefused when it is not for sale or the chain cannot be reached."""
    dm = market()
    listing = _listing(dm, listing_id)
    domain = token_domain(listing["token"])
    return Requirement(listing_id=listing_id, amount=listing["price"], asset=listing["token"], pay_to=dm.address,
                       network=caip2_network(), resource=resource, token_name=domain["name"],
                       token_version=domain["version"], description=description, mime_type=mime_type)


def verify(payment: Payment, requirement: Requirement, *, now: int | None = None, in_flight: int = 0) -> str:
    """The checksummed payer once `payment` pays `requirement` exactly and would settle now.
    The checks, in order, each refused with its own code (docs/agent-payments.md). `in_flight` is
    what the payer's other settlements not yet resolved will take of the same balance."""
    now = int(time.time()) if now is None else now
    if payment.network != requirement.network:
        raise PaymentRefused("wrong_network", f"The payment is for network {payment.network!r}; this market takes "
                             f"{requirement.network!r}.")
    if payment.asset is not None and payment.asset != requirement.asset:
        raise PaymentRefused("wrong_asset", f"The payment is in {payment.asset}; the listing is paid in "
                             f"{requirement.asset}.")
    for name, address in (("payTo", payment.pay_to), ("authorization.to", payment.to)):
        if address is not None and address != requirement.pay_to:
            raise PaymentRefused("wrong_pay_to", f"The payment's {name} is {address}; it must be the market "
                                 f"{requirement.pay_to}.")
    for name, amount in (("amount", payment.amount), ("authorization.value", payment.value)):
        if amount is not None and amount != requirement.amount:
            raise PaymentRefused("wrong_amount", f"The payment's {name} is {amount} base units; the price is "
                                 f"exactly {requirement.amount}.")
    if payment.valid_after > now:
        raise PaymentRefused("not_yet_valid", f"The authorization is valid only after {payment.valid_after} "
                             f"(now is {now}).")
    if payment.valid_before <= now:
        raise PaymentRefused("expired", f"The authorization expired at {payment.valid_before} (now is {now}).")
    if payment.valid_before <= now + settings.X402_SETTLEMENT_SECONDS:
        raise PaymentRefused("expires_too_soon", f"The authorization must stay valid more than "
                             f"{settings.X402_SETTLEMENT_SECONDS} seconds from now, for the settlement.")
    longest = settings.X402_TIMEOUT_SECONDS + VALID_BEFORE_MARGIN
    if payment.valid_before > now + longest:
        # A settled payment is served again to whoever presents its header until validBefore: a
        # far one would make the header a long-lived bearer pass.
        raise PaymentRefused("valid_too_long", f"The authorization's validBefore is {payment.valid_before}: it "
                             f"may be at most {longest} seconds from now ({now + longest}); sign it for "
                             f"maxTimeoutSeconds ({settings.X402_TIMEOUT_SECONDS}) from now, as x402 clients do.")
    dm = market()
    if dm.address != requirement.pay_to:
        raise PaymentRefused("wrong_pay_to", f"The market is {dm.address} now; ask for the resource again.")
    token = TestUSDC.shared(dm.w3, requirement.asset)
    nonce = bytes.fromhex(payment.nonce[2:])
    read = _read_at_once(dm, token, requirement.listing_id, payment, nonce)
    listing = _listing(dm, requirement.listing_id, read and read["listing"])
    if listing["token"] != requirement.asset:
        raise PaymentRefused("wrong_asset", f"Listing {requirement.listing_id} is paid in {listing['token']} now; "
                             "ask for the resource again.")
    if listing["price"] != requirement.amount:
        raise PaymentRefused("price_changed", f"The price of listing {requirement.listing_id} is "
                             f"{listing['price']} base units now, not {requirement.amount}: ask for the "
                             "resource again and sign the new price.", status=409)
    signable = encode_typed_data(full_message=transfer_typed_data(
        token=requirement.asset, token_name=requirement.token_name, token_version=requirement.token_version,
        payer=payment.payer, to=payment.to, value=payment.value, valid_after=payment.valid_after,
        valid_before=payment.valid_before, nonce=payment.nonce))
    try:
        if not signed_by(payment.payer, signable, payment.signature):
            raise PaymentRefused("bad_signature", f"The authorization is not signed by its `from` {payment.payer} "
                                 "for this token and chain.")
    except ChainUnreachable:
        raise _unreachable() from None
    try:
        if read is not None:
            balance, used = read["balance"], read["used"]
        else:
            balance = token.balance_of(payment.payer)
            used = token.authorization_state(payment.payer, nonce)
    except Exception:
        raise _unreachable() from None
    if balance < payment.value:
        raise PaymentRefused("insufficient_balance", f"{payment.payer} holds {balance} base units of the token; "
                             f"the price is {payment.value}.")
    if used:
        raise PaymentRefused("nonce_used", "This authorization's nonce is used or cancelled on the token: sign a new "
                             "one with a fresh nonce.", status=409)
    if balance < payment.value + in_flight:
        # Each settlement in flight was verified against this same balance: sent together, all
        # but what it covers would revert, at the relayer's cost.
        raise PaymentInFlight("payment_in_flight", f"{payment.payer} holds {balance} base units of the token, and "
                              f"payments of {in_flight} base units from it are being settled: this one "
                              f"({payment.value}) would not be covered. Send it again once they are settled.")
    if read is None or not read["simulated"]:
        _simulate(dm, requirement.listing_id, payment)
    return payment.payer


def _authorization(payment: Payment) -> tuple:
    return (payment.payer, payment.value, payment.valid_after, payment.valid_before,
            bytes.fromhex(payment.nonce[2:]), payment.signature)


def _read_at_once(dm: DataMarket, token: TestUSDC, listing_id: int, payment: Payment, nonce: bytes) -> dict | None:
    """What the checks read from the chain, asked in one JSON-RPC batch (one round trip instead of
    five): the listing, the payer's balance, the nonce's authorizationState and, when the server
    has its key, the relayer's RELAYER_ROLE and the eth_call of purchaseWithAuthorization from it
    (`simulated`: both passed). Nothing is decided here: verify applies every check to these
    answers in its own order. None when the batch fails in any way (a call that reverts, as the
    simulation of a payment to refuse does, a node that takes no batches, no node): the checks
    then read one by one, which gives each refusal its own code."""
    try:
        relayer = operator_account().address
    except OperatorKeyMissing:
        relayer = None
    try:
        with dm.w3.batch_requests() as batch:
            batch.add(dm.contract.functions.getListing(listing_id))
            batch.add(token.contract.functions.balanceOf(payment.payer))
            batch.add(token.contract.functions.authorizationState(payment.payer, nonce))
            if relayer is not None:
                batch.add(dm.contract.functions.hasRole(dm.role("RELAYER_ROLE"), relayer))
                batch.add(dm.contract.functions.purchaseWithAuthorization(
                    listing_id, _authorization(payment)).call({"from": relayer}))
            answers = batch.execute()
    except Exception:
        return None
    listing, balance, used = answers[:3]
    return {"listing": DataMarket.listing_terms(listing), "balance": balance, "used": used,
            "simulated": relayer is not None and answers[3] is True}


def _simulate(dm: DataMarket, listing_id: int, payment: Payment) -> None:
    """eth_call purchaseWithAuthorization from the relayer (the operator key)."""
    try:
        relayer = operator_account().address
    except OperatorKeyMissing:
        raise PaymentRefused("relay_unavailable", "This server has no key to settle payments with.",
                             status=503) from None
    auth = _authorization(payment)
    try:
        if not dm.has_role("RELAYER_ROLE", relayer):
            raise PaymentRefused("relay_unavailable", f"This server's key {relayer} may not settle payments on the "
                                 "market (it lacks RELAYER_ROLE).", status=503)
        dm.contract.functions.purchaseWithAuthorization(listing_id, auth).call({"from": relayer})
    except PaymentRefused:
        raise
    except ContractLogicError as exc:
        reason = reverts.describe(exc, dm.contract.abi)
        if reason.startswith("DataMarketAlreadyPurchased"):
            raise PaymentRefused("would_revert", f"{payment.payer} already holds a live order of listing {listing_id} "
                                 f"(the market would refuse this payment: {reason}): the version is yours, and "
                                 "nothing was taken for this payment. If an earlier "
                                 "payment of yours timed out, send that payment's header again (it is served once "
                                 "settled); otherwise download the version again with sign-in-with-x (ask for the "
                                 "resource and sign its challenge).", status=402) from None
        raise PaymentRefused("would_revert", f"The market would refuse this payment: {reason}.",
                             status=402) from None
    except Exception:
        raise _unreachable() from None
