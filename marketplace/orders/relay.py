"""Relayed buyer actions: a buyer with no ETH for gas signs the market's own EIP-712
`ConfirmOrder` or `DisputeOrder` (orderId, nonce, deadline) and the single operator sender sends
`confirmBySig` or `disputeBySig` for them (an `OperatorAction` of its own kind).

Before anything is queued: the order must be the market's and in a state the action applies to,
the signature must be the order's buyer's (ECDSA, or EIP-1271 for a contract wallet), the deadline
far enough ahead for the sender to work, the nonce unused on-chain and here, and the call must
succeed when simulated with `eth_call` from the operator. Posting the same signed action again
returns the action already queued."""
from dataclasses import dataclass
from datetime import timedelta
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_account.messages import encode_typed_data
from web3.exceptions import ContractLogicError

from marketplace.accounts.services import ChainUnreachable, signed_by
from marketplace.chain import reverts
from marketplace.chain.client import OperatorKeyMissing, get_web3, operator_account
from marketplace.chain.contracts import DataMarket
from marketplace.chain.models import OperatorAction
from marketplace.chain.services import deployed_address
from marketplace.limits.services import consume
from marketplace.outbox.services import enqueue

from .models import Order

Kind = OperatorAction.Kind
ACTIONS = {"confirm": (Kind.CONFIRM_BY_SIG, "ConfirmOrder"), "dispute": (Kind.DISPUTE_BY_SIG, "DisputeOrder")}
MIN_VALIDITY = 300  # seconds a signature must still be valid when it is posted
DISPUTE_MARGIN = 600  # seconds a relayed dispute needs before its window ends, to be sent in time
SUSPENSION = 24 * 3600  # seconds a wallet may not relay after one of its relayed calls reverted
DOMAIN_TYPE = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
               {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}]


@dataclass
class RelayError(Exception):
    code: str
    message: str
    status: int = 400


def typed_data(*, market: str, action: str, order_id: int, nonce: str, deadline: int) -> dict:
    """What the buyer signs (eth_signTypedData_v4's argument): the market's own domain
    ("DataMarket", "1", this chain, the market), as its confirmBySig and disputeBySig check."""
    _kind, primary = ACTIONS[action]
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, primary: DataMarket.ORDER_SIGNATURE_TYPES[primary]},
        "primaryType": primary,
        "domain": {"name": "DataMarket", "version": "1", "chainId": settings.CHAIN_ID, "verifyingContract": market},
        "message": {"orderId": order_id, "nonce": nonce, "deadline": deadline},
    }


def relay(*, action: str, order_id: int, nonce: str, deadline: int, signature: str) -> tuple[OperatorAction, bool]:
    """Queue the buyer's signed `action` ("confirm" or "dispute") of `order_id` for the operator
    sender; returns (the action, whether it is new). Raises RelayError."""
    kind, _primary = ACTIONS[action]
    chain_id = settings.CHAIN_ID
    market = deployed_address(chain_id, "DataMarket")
    if market is None:
        raise RelayError("chain_unavailable", "The market is not deployed on this chain yet.", 503)
    nonce = nonce.lower()
    payload = {"nonce": nonce, "deadline": deadline, "signature": signature.lower()}
    with transaction.atomic():
        order = (Order.objects.select_for_update()
                 .filter(chain_id=chain_id, market=market, order_id=order_id).first())
        if order is None:
            raise RelayError("unknown_order", f"Order {order_id} is not an order of this market (or the server "
                             "has not read it from the chain yet).", 404)
        relayed = OperatorAction.objects.filter(chain_id=chain_id, kind__in=[k for k, _ in ACTIONS.values()],
                                                created_by=order.buyer)
        same = relayed.filter(payload__nonce=nonce).first()  # a buyer's nonce is good for one action
        if same is not None:
            if same.kind == kind and same.order_id == order.order_id and same.payload == payload:
                return same, False
            raise RelayError("nonce_used", "This nonce was used for another signed action: sign again with a "
                             "fresh nonce.", 409)
        if relayed.filter(status=OperatorAction.Status.FAILED, transaction__reverted=True,
                          updated_at__gt=timezone.now() - timedelta(seconds=SUSPENSION)).exists():
            raise RelayError("relay_suspended", f"A relayed action of {order.buyer} failed on-chain in the last "
                             f"{SUSPENSION // 3600} hours, at the marketplace's cost: send this one from the "
                             "wallet.", 403)
        _check_order(order, action)
        if deadline < time.time() + MIN_VALIDITY:
            raise RelayError("deadline_too_soon", f"The signature's deadline must be at least {MIN_VALIDITY} "
                             "seconds ahead, so that the transaction can be sent before it ends.")
        signable = encode_typed_data(full_message=typed_data(market=market, action=action, order_id=order_id,
                                                             nonce=nonce, deadline=deadline))
        try:
            if not signed_by(order.buyer, signable, bytes.fromhex(signature.removeprefix("0x"))):
                raise RelayError("bad_signature", f"The {action} is not signed by the order's buyer {order.buyer} "
                                 "for this market and chain.", 401)
            consume("relay", wallet=order.buyer.lower())  # LimitExceeded: the view's 429
            _simulate(market, kind, order_id, payload)
        except ChainUnreachable:
            raise RelayError("chain_unavailable", "The chain cannot be reached; try again soon.", 503) from None
        queued = OperatorAction.objects.create(kind=kind, chain_id=chain_id, market=market, order_id=order_id,
                                               payload=payload, created_by=order.buyer)
        enqueue("chain.send_operator_actions")
    return queued, True


def _check_order(order: Order, action: str) -> None:
    if order.status != Order.Status.OPEN:
        raise RelayError("order_not_open", f"Order {order.order_id} is {order.get_status_display().lower()}: "
                         f"only an open order can be {'confirmed' if action == 'confirm' else 'disputed'}.", 409)
    if action == "dispute" and order.release_at.timestamp() <= time.time():
        raise RelayError("window_closed", f"The dispute window of order {order.order_id} ended at "
                         f"{order.release_at.isoformat()}.", 409)
    if action == "dispute" and order.release_at.timestamp() <= time.time() + DISPUTE_MARGIN:
        raise RelayError("window_closing", f"The dispute window of order {order.order_id} ends at "
                         f"{order.release_at.isoformat()}, too soon for the marketplace to send a dispute "
                         "in time: send it from the wallet now.", 409)


def _simulate(market: str, kind: str, order_id: int, payload: dict) -> None:
    """eth_call the relayed function from the operator; a revert is the buyer's error to see."""
    try:
        operator = operator_account()
    except OperatorKeyMissing:
        raise RelayError("relay_unavailable", "This server has no operator key to send transactions with.",
                         503) from None
    contract = DataMarket(get_web3(), market).contract
    function = contract.functions.confirmBySig if kind == Kind.CONFIRM_BY_SIG else contract.functions.disputeBySig
    call = function(order_id, bytes.fromhex(payload["nonce"][2:]), payload["deadline"],
                    bytes.fromhex(payload["signature"][2:]))
    try:
        call.call({"from": operator.address})
    except ContractLogicError as exc:
        raise RelayError("would_revert", f"The market would refuse it: {reverts.describe(exc, contract.abi)}.",
                         409) from None
    except Exception:
        raise ChainUnreachable from None
