"""Attack review of the x402 paid download (issue 21, task R): reproductions against the real
anvil, contracts, PostgreSQL and operator sender, with the fixtures of test_x402_pay.

The tests named after a finding (test_<finding>_...) reproduce what the review found and assert
the safe behaviour: each failed before its fix. The other tests pin down attacks that were tried
and found refused."""
import base64
from datetime import timedelta
import json
import secrets
import time

from django.core.files.storage import storages
from django.test import Client
from eth_account import Account
import pytest

from marketplace.accounts.models import SignInNonce
from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer, sender
from marketplace.chain.models import Deployment, OperatorAction, OperatorTransaction
from marketplace.chain.services import forget_chain
from marketplace.orders.models import Order, StrayTransfer
from marketplace.payments import siwx
from marketplace.payments.models import X402Payment
from tests.integration.test_downloads import list_version
from tests.integration.test_listing import PRICE
from tests.integration.test_relay import signed as signed_relay
from tests.integration import test_x402_pay
from tests.integration.test_x402_pay import (
    CONTENT, STRANGER_KEY, SenderHeld, Untouched, body, cancel_authorization, decoded, get, refused, requirement,
    v1, v2,
)
from tests.integration.test_x402_verify import authorization, b64, now, sign, v1_header, v2_header

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

listed, payer = test_x402_pay.listed, test_x402_pay.payer  # the paid download's fixtures
OTHER_CONTENT = b"city,mm\n" + b"".join(b"York,%d\n" % i for i in range(20_000))


@pytest.fixture
def second(chain, client, listed):
    """A second version listed at the same price: (version, listing id)."""
    version, listing_id = list_version(chain, client, OTHER_CONTENT, slug=f"other-{secrets.token_hex(3)}")
    yield version, listing_id
    storages["private"].delete(version.file)


def fresh_payer(chain, amount):
    account = Account.create()
    chain.token.mint(account.address, amount)
    return account


def pushed(chain, header):
    """What anyone who saw the header (or the relayer's transaction in a mempool) can do: the
    authorization sent straight to the token's transferWithAuthorization (the call)."""
    auth = decoded(header)["payload"]["authorization"]
    signature = bytes.fromhex(decoded(header)["payload"]["signature"][2:])
    function = chain.token.contract.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")
    return function(auth["from"], auth["to"], int(auth["value"]), int(auth["validAfter"]),
                    int(auth["validBefore"]), bytes.fromhex(auth["nonce"][2:]), signature)


def push_to_token(chain, header, sender_address):
    chain.send(pushed(chain, header), sender_address)


def around_the_settlement(chain, ahead=(), behind=()):
    """Calls (call, sender address) mined in the block the queued settlement goes into: `ahead`
    of it (a higher tip: how a mempool watcher front-runs the relayer), `behind` it (no tip); the
    settlement sent by the operator sender, and reverting. Returns the settlement's transaction."""
    chain.rpc("evm_setAutomine", [False])
    try:
        for call, address in ahead:
            call.transact({"from": address, "gas": 200_000, "maxPriorityFeePerGas": 100 * 10**9,
                           "maxFeePerGas": 200 * 10**9})
        base_fee = int(chain.w3.eth.get_block("latest")["baseFeePerGas"])
        for call, address in behind:
            # No estimate: it would run on a state without the calls ahead (and revert).
            call.transact({"from": address, "gas": 200_000, "maxPriorityFeePerGas": 0,
                           "maxFeePerGas": base_fee * 9 // 8 + 1})
        chain.rpc("evm_setIntervalMining", [1])
        sender.send_operator_actions(timeout=15)
    finally:
        chain.rpc("evm_setIntervalMining", [0])
        chain.rpc("evm_setAutomine", [True])
    sender.send_operator_actions()
    tx = OperatorTransaction.objects.filter(kind="purchase_with_auth").latest("pk")
    assert tx.reverted and X402Payment.objects.get(action__transaction=tx).status == "failed"
    return tx


# Findings (fail today) ---------------------------------------------------------------------------

def test_r1_a_pushed_authorization_never_leaves_the_payer_charged_and_told_nothing_was_taken(
        chain, client, listed, payer, settings):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    before = chain.token.balance_of(payer.address)
    with SenderHeld():
        refused(get(client, listing_id, header), 504, "settlement_pending")  # queued, not yet sent
    # A front-runner (a mempool watcher, a proxy that logged the header) pushes it to the token.
    push_to_token(chain, header, Account.from_key(STRANGER_KEY).address)
    sender.send_operator_actions()
    response = get(client, listing_id, header)
    document = refused(response, 402, "settlement_failed")
    charged = chain.token.balance_of(payer.address) == before - PRICE
    assert charged and not Order.objects.filter(buyer=payer.address).exists()  # the damage
    # Safe: the payer is never told "nothing was taken" while the price sits in the market.
    assert "Nothing was taken" not in document["error"]
    assert "/api/v1/me/returns" in document["error"] and "/me/library" in document["error"]
    assert "PAYMENT-RESPONSE" in response and decoded(response["PAYMENT-RESPONSE"])["success"] is False
    # ... and the money comes back: the indexer attributes the pushed authorization to the payer,
    # the operator sender returns it, the payer's returns list shows it.
    indexer.index_chain(chain.w3)
    (stray,) = StrayTransfer.objects.filter(payer=payer.address)
    assert (stray.kind, stray.status, int(stray.amount)) == ("authorization", "returning", PRICE)
    assert sender.send_operator_actions().confirmed == 1
    indexer.index_chain(chain.w3)
    stray.refresh_from_db()
    assert stray.status == "returned" and chain.token.balance_of(payer.address) == before
    mine = Client()
    mine.force_login(wallet_user(payer.address))
    (listed_return,) = mine.get("/api/v1/me/returns").json()
    assert listed_return["status"] == "returned" and listed_return["amount"] == str(PRICE)
    again = get(client, listing_id, header)  # the same header again: the same answer, read from the row
    assert refused(again, 402, "settlement_failed")["error"] == document["error"]
    assert X402Payment.objects.get().error_code == "paid_without_order"


def test_r2_one_balance_never_makes_the_relayer_send_a_reverting_settlement(chain, client, listed, second,
                                                                             settings):
    (_, first_id), (_, second_id) = listed, second
    attacker = fresh_payer(chain, PRICE)  # enough for ONE purchase, holds no ETH
    headers = [v2(chain, first_id, attacker), v2(chain, second_id, attacker)]
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(get(client, first_id, headers[0]), 504, "settlement_pending")  # verified and queued
        # The fix refuses the second at the claim: the first, in flight, takes all the balance.
        in_flight = get(client, second_id, headers[1])
        refused(in_flight, 409, "payment_in_flight")
        assert int(in_flight["Retry-After"]) > 0
    assert OperatorAction.objects.filter(kind="purchase_with_auth", status="pending").count() == 1
    operator_nonce = chain.w3.eth.get_transaction_count(chain.operator.address)
    operator_eth = chain.w3.eth.get_balance(chain.operator.address)
    # A chain with block times (every real one): what the sender sends is mined a block later.
    chain.rpc("evm_setAutomine", [False])
    chain.rpc("evm_setIntervalMining", [1])
    try:
        sender.send_operator_actions(timeout=15)
    finally:
        chain.rpc("evm_setIntervalMining", [0])
        chain.rpc("evm_setAutomine", [True])
    sent = list(OperatorTransaction.objects.order_by("nonce"))
    reverted = [tx for tx in sent if tx.reverted]
    print(f"operator transactions: {[(tx.nonce, tx.status, tx.reverted) for tx in sent]}; operator nonce "
          f"{operator_nonce} -> {chain.w3.eth.get_transaction_count(chain.operator.address)}; gas burnt "
          f"{operator_eth - chain.w3.eth.get_balance(chain.operator.address)} wei")
    assert Order.objects.filter(buyer=attacker.address).count() == 1
    # Safe: the attacker's second authorization is never broadcast (it could not be paid).
    assert not reverted and chain.w3.eth.get_transaction_count(chain.operator.address) == operator_nonce + 1
    refused(get(client, second_id, headers[1]), 402, "insufficient_balance")  # sent again: now it is told


def test_r2_a_payer_whose_settlement_reverted_on_chain_is_suspended(chain, client, listed, second, payer, settings):
    """The balance moved away between the verification and the mined settlement (what an
    EIP-1271 wallet that passes simulation can do too): the relayer's transaction reverts, and the
    payer's payments are refused for 24 hours (403 payer_suspended), before anything is sent."""
    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(get(client, first_id, v2(chain, first_id, payer)), 504, "settlement_pending")
    stranger = Account.from_key(STRANGER_KEY).address
    # The payer empties its wallet in the block the settlement goes into, ahead of it.
    around_the_settlement(chain, ahead=[
        (chain.token.contract.functions.transfer(stranger, chain.token.balance_of(payer.address)), payer.address)])
    chain.token.mint(payer.address, PRICE)
    untouched = Untouched(chain, payer)
    document = refused(get(client, second_id, v2(chain, second_id, payer)), 403, "payer_suspended")
    assert "24 hours" in document["error"]
    untouched.check()


def test_a_payer_front_run_in_the_mempool_is_told_where_the_money_is_and_not_suspended(
        chain, client, listed, second, payer, settings):
    """A mempool watcher copies the authorization out of the relayer's pending settlement and
    gets it mined first: the settlement reverts, at the relayer's cost, but through no act of
    the payer's. The payer is told its money reached the market and comes back, and its next
    payment is taken (it used to be suspended for 24 hours: a denial of service for the price of
    one transfer per victim)."""
    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    header = v2(chain, first_id, payer)
    with SenderHeld():
        refused(get(client, first_id, header), 504, "settlement_pending")
    around_the_settlement(chain, ahead=[(pushed(chain, header), Account.from_key(STRANGER_KEY).address)])
    document = refused(get(client, first_id, header), 402, "settlement_failed")
    assert "Nothing was taken" not in document["error"] and "/api/v1/me/returns" in document["error"]
    assert X402Payment.objects.get().error_code == "paid_without_order"
    served = get(client, second_id, v2(chain, second_id, payer))
    assert served.status_code == 200 and body(served) == OTHER_CONTENT
    assert Order.objects.filter(buyer=payer.address, listing_id=second_id).exists()


def test_a_second_front_run_within_a_day_suspends_the_payer(chain, client, listed, second, payer, settings):
    """One front-run a day is forgiven; a payer whose settlements keep being front-run (or who
    keeps pushing its own authorizations from a second wallet, each revert and return costing
    the relayer about twice its transfer) is suspended like any other."""
    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    stranger = Account.from_key(STRANGER_KEY).address
    for listing_id in (first_id, second_id):
        header = v2(chain, listing_id, payer)
        with SenderHeld():
            refused(get(client, listing_id, header), 504, "settlement_pending")
        around_the_settlement(chain, ahead=[(pushed(chain, header), stranger)])
    chain.token.mint(payer.address, PRICE)
    untouched = Untouched(chain, payer)
    document = refused(get(client, first_id, v2(chain, first_id, payer)), 403, "payer_suspended")
    assert "2 settlements" in document["error"] and "front-run" in document["error"]
    untouched.check()


def test_a_push_behind_a_settlement_the_payer_made_revert_is_no_front_run(chain, client, listed, second, payer,
                                                                             settings):
    """The payer empties its wallet ahead of the settlement (a revert the suspension is for) and,
    in the same block, behind the reverted settlement, gets its money back and its authorization
    sent to the token: an AuthorizationUsed and a Transfer to the market of the price, in the
    settlement's own block, that did not make it revert. Still suspended."""
    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    header = v2(chain, first_id, payer)
    with SenderHeld():
        refused(get(client, first_id, header), 504, "settlement_pending")
    stranger = Account.from_key(STRANGER_KEY).address
    balance = chain.token.balance_of(payer.address)
    tx = around_the_settlement(
        chain, ahead=[(chain.token.contract.functions.transfer(stranger, balance), payer.address)],
        behind=[(chain.token.contract.functions.transfer(payer.address, balance), stranger),
                (pushed(chain, header), stranger)])
    pushes = chain.token.contract.events.AuthorizationUsed().get_logs(from_block=tx.block_number,
                                                                      to_block=tx.block_number)
    settled = chain.w3.eth.get_transaction_receipt(tx.mined_hash)
    assert len(pushes) == 1 and pushes[0]["transactionIndex"] > settled["transactionIndex"]  # behind it
    chain.token.mint(payer.address, PRICE)
    refused(get(client, second_id, v2(chain, second_id, payer)), 403, "payer_suspended")


@pytest.mark.parametrize("how", ["cancel", "same_nonce_elsewhere"])
def test_a_payer_who_spends_its_nonce_itself_under_the_settlement_is_suspended(
        chain, client, listed, second, payer, settings, how):
    """Mined ahead of the settlement: the payer's own cancelAuthorization, or a second
    authorization of the same nonce paying the payer's other wallet (the token's AuthorizationUsed
    names the payer and nonce, but no money reached the market). Nothing is to be returned and
    the revert was the payer's doing: told nothing was taken (no return is promised), and
    suspended as for any revert it caused."""
    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    header = v2(chain, first_id, payer)
    with SenderHeld():
        refused(get(client, first_id, header), 504, "settlement_pending")
    nonce = decoded(header)["payload"]["authorization"]["nonce"]
    own = Account.from_key(STRANGER_KEY).address
    before = chain.token.balance_of(own)
    if how == "cancel":
        around_the_settlement(chain, ahead=[(cancel_authorization(chain, payer, nonce), payer.address)])
    else:
        values = authorization(chain, requirement(first_id), payer, to=own, nonce=nonce)
        signature = sign(requirement(first_id), payer.key, values)
        around_the_settlement(chain, ahead=[(pushed(chain, v2_header(requirement(first_id), values, signature)), own)])
        assert chain.token.balance_of(own) == before + PRICE  # the nonce paid the payer's other wallet
    document = refused(get(client, first_id, header), 402, "settlement_failed")
    assert "Nothing was taken" in document["error"]
    assert X402Payment.objects.get().error_code != "paid_without_order"
    untouched = Untouched(chain, payer)
    refused(get(client, second_id, v2(chain, second_id, payer)), 403, "payer_suspended")
    untouched.check()


def test_r2_a_fresh_authorization_while_the_first_settles_or_settled_points_to_the_first(chain, client, listed,
                                                                                         payer, settings):
    _, listing_id = listed
    settings.X402_SETTLEMENT_SECONDS = 1
    first = v2(chain, listing_id, payer)
    with SenderHeld():
        refused(get(client, listing_id, first), 504, "settlement_pending")
    untouched = Untouched(chain, payer)
    document = refused(get(client, listing_id, v2(chain, listing_id, payer)), 409, "payment_in_flight")
    assert "send that payment's header again" in document["error"]
    untouched.check()
    settings.X402_SETTLEMENT_SECONDS = 60
    assert get(client, listing_id, first).status_code == 200  # the first header, sent again
    document = refused(get(client, listing_id, v2(chain, listing_id, payer)), 402, "would_revert")
    assert "the version is yours" in document["error"] and "sign-in-with-x" in document["error"]
    assert OperatorAction.objects.count() == 1


def test_r3_a_paid_header_from_before_a_market_redeploy_buys_nothing_after_it(chain, client, payer):
    snapshot = chain.rpc("evm_snapshot")
    first, listing_id = list_version(chain, client, CONTENT, slug=f"old-{secrets.token_hex(3)}")
    header = v2(chain, listing_id, payer)
    paid = get(client, listing_id, header)
    assert paid.status_code == 200 and body(paid) == CONTENT
    # The market is deployed afresh (`deploy_contracts --forget-chain`, or the local chain wiped):
    # listing ids start over; the token keeps its address (USDC does, anvil's deterministic one too).
    forget_chain(chain.w3.eth.chain_id)
    chain.rpc("evm_revert", [snapshot])
    for result in chain.contracts.values():
        Deployment.objects.update_or_create(chain_id=chain.w3.eth.chain_id, contract=result.contract,
                                            defaults=dict(result.__dict__))
    other, same_id = list_version(chain, client, OTHER_CONTENT, slug=f"new-{secrets.token_hex(3)}")
    try:
        assert same_id == listing_id  # another publisher's version under the same listing id
        balance = chain.token.balance_of(payer.address)
        response = get(client, listing_id, header)
        served = response.status_code == 200 and body(response) == OTHER_CONTENT
        print(f"after the redeploy: {response.status_code}, served the new version: {served}; payer's balance "
              f"unchanged: {chain.token.balance_of(payer.address) == balance}; orders on this market: "
              f"{Order.objects.filter(buyer=payer.address).count()}")
        # Safe: nothing is served without a payment on the current market.
        assert response.status_code != 200
    finally:
        storages["private"].delete(first.file)
        storages["private"].delete(other.file)


def test_r3_a_settled_payment_is_served_only_for_its_version_and_market(chain, client, listed, second, payer):
    """The row names the version it bought and the market it was presented to: a listing id now
    linked to another version serves nothing for it, and a row of another market is no retry here
    (the same header is checked afresh, and the token says its nonce is used)."""
    (_, listing_id), (other_version, _) = listed, second
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    row = X402Payment.objects.get()
    assert row.market == chain.market.address
    X402Payment.objects.filter(pk=row.pk).update(version=other_version)  # the listing read as another version
    refused(get(client, listing_id, header), 410, "order_gone")
    X402Payment.objects.filter(pk=row.pk).update(version=row.version_id, market=Account.create().address)
    refused(get(client, listing_id, header), 409, "nonce_used")
    assert OperatorAction.objects.count() == 1 and Order.objects.filter(buyer=payer.address).count() == 1


def test_r4_a_valid_before_years_ahead_is_refused(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer, valid_before=now(chain) + 10 * 365 * 86400)
    response = get(client, listing_id, header)
    if response.status_code == 200:  # the damage: anyone with the header downloads, no session, no signature
        assert body(get(Client(), listing_id, header)) == CONTENT
    assert response.status_code in (400, 402), response.status_code


def test_r4_a_settled_header_is_served_again_for_a_download_links_life_and_counted(chain, client, listed, payer,
                                                                                    settings):
    """Re-serving a settled payment ends at min(validBefore, settled + DOWNLOAD_TOKEN_SECONDS), and
    each retry counts against the payer's `download` rate."""
    _, listing_id = listed
    settings.LIMITS = {**settings.LIMITS, "download": {"wallet": "2/hour"}}
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200  # the payment itself: not a retry
    assert get(client, listing_id, header).status_code == 200
    assert get(client, listing_id, header).status_code == 200
    throttled = get(client, listing_id, header)
    refused(throttled, 429, "throttled")
    assert 0 < int(throttled["Retry-After"]) <= 3600
    settings.LIMITS = {**settings.LIMITS, "download": {}}
    row = X402Payment.objects.get()
    X402Payment.objects.filter(pk=row.pk).update(
        settled_at=row.settled_at - timedelta(seconds=settings.DOWNLOAD_TOKEN_SECONDS + 1))
    assert int(row.valid_before) > time.time()  # still valid on the token, no longer served
    refused(get(client, listing_id, header), 410, "payment_expired")


@pytest.mark.parametrize("name", ["PAYMENT-SIGNATURE", "X-PAYMENT"])
def test_r5_a_deeply_nested_payment_header_is_a_400(chain, listed, payer, name):
    _, listing_id = listed
    nested = base64.b64encode(b"[" * 3000 + b"]" * 3000).decode()  # 8 KB: under every proxy's header limit
    response = Client(raise_request_exception=False).get(f"/pay/{listing_id}", headers={name: nested})
    assert response.status_code == 400, response.status_code


def test_r5_a_deeply_nested_sign_in_header_is_refused_as_malformed():
    nested = base64.b64encode(b"[" * 3000 + b"]" * 3000).decode()
    with pytest.raises(siwx.PaymentRefused):
        siwx.parse(nested)


def test_r6_unpaid_requests_cannot_fill_the_nonce_table(chain, listed):
    _, listing_id = listed
    before = SignInNonce.objects.count()
    statuses = [Client().get(f"/pay/{listing_id}").status_code for _ in range(150)]
    print(f"statuses: {sorted(set(statuses))}; nonce rows stored: {SignInNonce.objects.count() - before}")
    assert 429 in statuses


def test_r6_refused_payments_cannot_fill_the_payment_table(chain, listed):
    _, listing_id = listed
    wanted = requirement(listing_id)
    statuses = []
    for _ in range(40):
        stranger = Account.create()  # a signed authorization from an empty wallet: refused after the chain reads
        values = authorization(chain, wanted, stranger)
        statuses.append(Client().get(f"/pay/{listing_id}", headers={
            "PAYMENT-SIGNATURE": v2_header(wanted, values, sign(wanted, stranger.key, values))}).status_code)
    print(f"statuses: {sorted(set(statuses))}; payment rows: {X402Payment.objects.count()}")
    assert 429 in statuses


def test_r6_new_payments_are_counted_per_client_address_and_per_payer_before_the_chain(chain, listed, payer,
                                                                                       settings):
    """Over either rate, 429 `throttled` with Retry-After in x402's JSON, and no row stored; a
    retry of a payment already claimed is not a new payment."""
    _, listing_id = listed
    settings.LIMITS = {**settings.LIMITS, "payment": {"ip": "3/minute", "wallet": "2/minute"}}
    untouched = Untouched(chain, payer)

    def forged(address):  # the payer's `from`, a stranger's signature: refused once the chain is asked
        return Client(REMOTE_ADDR=address).get(f"/pay/{listing_id}", headers={
            "PAYMENT-SIGNATURE": v2(chain, listing_id, payer, key=STRANGER_KEY)})

    refused(forged("10.0.0.1"), 402, "bad_signature")
    refused(forged("10.0.0.2"), 402, "bad_signature")
    over = forged("10.0.0.3")  # a third address, the same claimed payer
    document = refused(over, 429, "throttled")
    assert document["x402Version"] == 2 and 0 < int(over["Retry-After"]) <= 60
    assert X402Payment.objects.count() == 2
    statuses = [Client(REMOTE_ADDR="10.0.0.9").get(f"/pay/{listing_id}", headers={
        "PAYMENT-SIGNATURE": v2(chain, listing_id, stranger, key=stranger.key)}).status_code
        for stranger in (Account.create() for _ in range(4))]  # empty wallets, one address
    assert statuses == [402, 402, 402, 429]
    assert X402Payment.objects.count() == 5
    untouched.check()
    # A payment already claimed is served again without counting as new.
    settings.LIMITS = {**settings.LIMITS, "payment": {"ip": "1/minute"}}
    header = v2(chain, listing_id, payer)
    assert Client(REMOTE_ADDR="10.0.0.20").get(f"/pay/{listing_id}", headers={"PAYMENT-SIGNATURE": header}) \
        .status_code == 200
    assert Client(REMOTE_ADDR="10.0.0.20").get(f"/pay/{listing_id}", headers={"PAYMENT-SIGNATURE": header}) \
        .status_code == 200


# Tried and found sound ---------------------------------------------------------------------------

def test_one_authorization_cannot_buy_a_second_listing_at_the_same_price(chain, client, listed, second, payer):
    (_, first_id), (_, second_id) = listed, second
    header = v2(chain, first_id, payer)
    assert get(client, first_id, header).status_code == 200
    untouched = Untouched(chain, payer)
    refused(get(client, second_id, header), 409, "nonce_used")  # the same bytes at another listing
    untouched.check()
    assert not Order.objects.filter(buyer=payer.address, listing_id=second_id).exists()


def test_one_authorization_racing_at_two_listings_settles_one(chain, client, listed, second, payer, settings):
    (_, first_id), (_, second_id) = listed, second
    header = v2(chain, first_id, payer)
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        refused(get(client, first_id, header), 504, "settlement_pending")
        refused(get(client, second_id, header), 409, "nonce_used")  # while the first is still settling
    sender.send_operator_actions()
    assert get(client, first_id, header).status_code == 200
    assert OperatorAction.objects.count() == 1
    assert Order.objects.filter(buyer=payer.address).count() == 1


def test_a_retry_after_a_full_refund_is_not_served(chain, client, listed, payer):
    _, listing_id = listed
    header = v2(chain, listing_id, payer)
    assert get(client, listing_id, header).status_code == 200
    order = Order.objects.get(buyer=payer.address)
    queued = client.post(f"/api/v1/orders/{order.order_id}/relay",
                         signed_relay(chain, payer, "dispute", int(order.order_id)), content_type="application/json")
    assert queued.status_code == 202, queued.json()
    assert sender.send_operator_actions().confirmed == 1
    chain.send(chain.market.contract.functions.resolve(int(order.order_id), 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    order.refresh_from_db()
    assert order.status == "refunded"
    refused(get(client, listing_id, header), 403, "not_bought")


def test_a_forged_payment_cannot_hold_a_payers_payment_identifier(chain, client, listed, payer):
    """A stranger sends the victim's `from` with the victim's identifier first (forged signature);
    another payer uses the same identifier string: neither blocks the victim's payment."""
    _, listing_id = listed
    identifier = "victim-run-" + secrets.token_hex(8)
    forged = v2(chain, listing_id, payer, key=STRANGER_KEY, identifier=identifier)
    refused(get(client, listing_id, forged), 402, "bad_signature")
    other = fresh_payer(chain, PRICE)
    assert get(client, listing_id, v2(chain, listing_id, other, identifier=identifier)).status_code == 200
    assert get(client, listing_id, v2(chain, listing_id, payer, identifier=identifier)).status_code == 200
    assert Order.objects.filter(listing_id=listing_id).count() == 2


def test_the_same_authorization_as_v1_is_a_retry_not_a_second_payment(chain, client, listed, payer):
    _, listing_id = listed
    wanted = requirement(listing_id)
    values = authorization(chain, wanted, payer)
    signature = sign(wanted, payer.key, values)
    assert get(client, listing_id, v2_header(wanted, values, signature)).status_code == 200
    again = get(client, listing_id, v1_header(values, signature), name="X-PAYMENT")
    assert again.status_code == 200 and "X-PAYMENT-RESPONSE" in again
    assert OperatorAction.objects.count() == 1 and Order.objects.filter(buyer=payer.address).count() == 1


def test_header_edge_cases_are_400s_and_v2_wins_over_v1(chain, listed, payer):
    _, listing_id = listed
    quiet = Client(raise_request_exception=False)
    untouched = Untouched(chain, payer)
    for value in ("é" * 40, "  ", "A" * (17 * 1024), v2(chain, listing_id, payer) + "," + v2(chain, listing_id, payer)):
        response = quiet.get(f"/pay/{listing_id}", headers={"PAYMENT-SIGNATURE": value})
        assert response.status_code == 400, (value[:20], response.status_code)
    # Both versions present: the v2 header is the payment; a broken v1 beside it is ignored.
    response = quiet.get(f"/pay/{listing_id}", headers={"PAYMENT-SIGNATURE": "x", "X-PAYMENT": v1(
        chain, listing_id, payer)})
    assert response.status_code == 400 and response.json()["code"] == "bad_encoding"
    untouched.check()


def test_a_sign_in_nonce_cannot_be_used_at_another_resource(chain, client, listed, second):
    (_, first_id), (_, second_id) = listed, second
    required = decoded(get(client, first_id)["PAYMENT-REQUIRED"])
    nonce = required["extensions"]["sign-in-with-x"]["info"]["nonce"]
    stored = SignInNonce.objects.get(nonce=nonce)
    assert stored.resource.endswith(f"/pay/{first_id}")
    refusal = siwx._nonce_refusal(stored, f"http://testserver/pay/{second_id}", stored.created_at)
    assert refusal is not None and refusal.code == "siwx_wrong_resource"


def test_the_canonical_form_separates_listings_identifiers_and_signatures(chain, listed, payer):
    from marketplace.payments.settlement import canonical
    from marketplace.payments.x402 import parse_payment_signature

    _, listing_id = listed
    wanted = requirement(listing_id)
    values = authorization(chain, wanted, payer)
    signature = sign(wanted, payer.key, values)
    payment = parse_payment_signature(v2_header(wanted, values, signature))
    reencoded = json.loads(base64.b64decode(v2_header(wanted, values, signature)))
    reencoded["payload"]["authorization"]["value"] = int(values["value"])  # a number, not a string
    reencoded["payload"]["signature"] = signature.upper().replace("0X", "0x")
    same = parse_payment_signature(b64(reencoded))
    assert canonical(payment, listing_id) == canonical(same, listing_id)
    assert canonical(payment, listing_id) != canonical(payment, listing_id + 1)
    flipped = bytearray(payment.signature)
    flipped[-1] ^= 1  # another v: another payload, however the token would read it
    other = parse_payment_signature(v2_header(wanted, values, "0x" + bytes(flipped).hex()))
    assert canonical(other, listing_id) != canonical(payment, listing_id)
    reencoded["extensions"] = {"payment-identifier": {"info": {"required": False, "id": "id-" + secrets.token_hex(8)}}}
    identified = parse_payment_signature(b64(reencoded))  # the same authorization under an identifier
    assert canonical(identified, listing_id) != canonical(payment, listing_id)


def test_r7_a_failing_spend_hook_neither_wedges_the_sender_nor_500s_a_charged_payer(
        chain, client, listed, second, payer, settings, monkeypatch):
    from marketplace.accounts import agent_keys

    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    header = v2(chain, first_id, payer)
    before = chain.token.balance_of(payer.address)
    with SenderHeld():
        refused(get(client, first_id, header), 504, "settlement_pending")

    def spend(payment_ref, **settled):  # e.g. the agent keys' ledger refusing or failing at the wrong moment
        raise RuntimeError("ledger unavailable")

    # The budget hooks were replaced by direct agent_keys calls (settlement._move_ledger).
    monkeypatch.setattr(agent_keys, "spend", spend)
    failures = []
    for _ in range(2):
        try:
            sender.send_operator_actions()
        except RuntimeError as exc:
            failures.append(str(exc))
    charged = chain.token.balance_of(payer.address) == before - PRICE
    retry = Client(raise_request_exception=False).get(f"/pay/{first_id}", headers={"PAYMENT-SIGNATURE": header})
    # Other work queued behind it: a second buyer's payment, queued while the sender is elsewhere.
    other = fresh_payer(chain, PRICE)
    with SenderHeld():
        refused(get(client, second_id, v2(chain, second_id, other)), 504, "settlement_pending")
    try:
        sender.send_operator_actions()
    except RuntimeError as exc:
        failures.append(str(exc))
    print(f"sender runs that raised: {len(failures)}; payer charged: {charged}; retry: {retry.status_code}; "
          f"second payment's action: {OperatorAction.objects.order_by('id').last().status}")
    assert charged
    # Safe: the charged payer is served, and the sender's other work goes on.
    assert retry.status_code == 200 and not failures
    assert OperatorAction.objects.order_by("id").last().status == "confirmed"


def test_r7_a_callback_that_raises_in_the_sender_undoes_no_settlement(chain, client, listed, second, payer,
                                                                      settings, monkeypatch):
    """Each on_done runs in its own savepoint: one that raises leaves its action confirmed and the
    other actions' callbacks done; the repair runs it again."""
    from marketplace.payments import settlement

    (_, first_id), (_, second_id) = listed, second
    settings.X402_SETTLEMENT_SECONDS = 1
    other = fresh_payer(chain, PRICE)
    with SenderHeld():
        refused(get(client, first_id, v2(chain, first_id, payer)), 504, "settlement_pending")
        refused(get(client, second_id, v2(chain, second_id, other)), 504, "settlement_pending")
    first_action = X402Payment.objects.get(payer=payer.address).action_id
    real_on_done = settlement.on_done

    def on_done(action):
        if action.pk == first_action:
            raise RuntimeError("a callback's bug")
        real_on_done(action)

    monkeypatch.setattr(settlement, "on_done", on_done)
    report = sender.send_operator_actions()
    assert report.confirmed == 2 and not report.skipped
    assert set(OperatorAction.objects.values_list("status", flat=True)) == {"confirmed"}
    assert X402Payment.objects.get(payer=other.address).status == "settled"
    assert X402Payment.objects.get(payer=payer.address).status == "timed_out"  # its callback failed
    monkeypatch.setattr(settlement, "on_done", real_on_done)
    settlement.repair_ledgers()
    assert X402Payment.objects.get(payer=payer.address).status == "settled"


def test_r2_relayed_buyer_actions_go_first_and_one_pass_sends_a_bounded_number_of_purchases(
        chain, client, listed, second, payer, settings, monkeypatch):
    (_, first_id), (_, second_id) = listed, second
    assert get(client, first_id, v2(chain, first_id, payer)).status_code == 200
    order = Order.objects.get(buyer=payer.address)
    settings.X402_SETTLEMENT_SECONDS = 1
    with SenderHeld():
        for listing_id in (first_id, second_id):
            other = fresh_payer(chain, PRICE)
            refused(get(client, listing_id, v2(chain, listing_id, other)), 504, "settlement_pending")
        queued = client.post(f"/api/v1/orders/{order.order_id}/relay",
                             signed_relay(chain, payer, "confirm", int(order.order_id)), content_type="application/json")
        assert queued.status_code == 202, queued.json()
    monkeypatch.setattr(sender, "PURCHASES_PER_PASS", 1)
    sender.send_operator_actions()
    sent = [tx.kind for tx in OperatorTransaction.objects.order_by("nonce")][1:]  # after the first payment's
    assert sent == ["confirm_by_sig", "purchase_with_auth"]  # the relayed action first, one purchase a pass
    assert OperatorAction.objects.filter(kind="purchase_with_auth", status="pending").count() == 1
    sender.send_operator_actions()
    assert set(OperatorAction.objects.values_list("status", flat=True)) == {"confirmed"}
