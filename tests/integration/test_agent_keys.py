"""Agent keys and budgets against real PostgreSQL (and anvil with the real market for refunds):
which key a payment goes with and each refusal, the limits a reservation is held to (per
purchase, per rolling 24 hours, categories, publishers), the ledger's states and idempotency,
20 racing reservations against one cap, revocation and expiry at once, and refund shares read
by the indexer from a real DisputeResolved or DisputeExpired, once, and gone with a reorg."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
import threading

from django.db import connection
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address
import pytest
from web3.logs import DISCARD

from marketplace.accounts import agent_keys
from marketplace.accounts.agent_keys import AgentKeyRefused
from marketplace.accounts.models import AgentKey, AgentRefund, AgentSpend
from marketplace.accounts.services import wallet_user
from marketplace.chain import indexer
from marketplace.chain.services import forget_chain
from tests.integration.test_indexer import PRICE, buyer, create_listing, purchase, seller  # noqa: F401

OWNER = Account.from_key("0x" + "11" * 32).address
OTHER_OWNER = Account.from_key("0x" + "12" * 32).address
AGENT_KEY = "0x" + "21" * 32
AGENT = Account.from_key(AGENT_KEY).address
PUBLISHER = Account.from_key("0x" + "31" * 32).address
USDC = 10**6


def sign(message: str, key=AGENT_KEY) -> str:
    """An EIP-191 personal_sign signature, 0x and hex."""
    return "0x" + bytes(Account.sign_message(encode_defunct(text=message), key).signature).hex()


def wallet_proof(owner, wallet=AGENT, key=AGENT_KEY) -> dict:
    """The wallet's agreement as create takes it: a challenge issued to `owner`, signed with `key`."""
    challenge = agent_keys.issue_challenge(owner, wallet, site="testserver")
    return {"nonce": challenge.nonce, "wallet_signature": sign(challenge.message, key)}


def make_key(owner=None, *, signer=AGENT_KEY, **terms):
    """A key made by `owner`, with the proof `signer` (the wallet's key) signs; a wallet that is
    not an address gets none (create refuses it first)."""
    owner = owner or wallet_user(OWNER)
    terms = {"name": "Research bot", "wallet": AGENT, "max_per_purchase": 10 * USDC, "daily_cap": 30 * USDC,
             "expires_at": timezone.now() + timedelta(days=30), **terms}
    proof = wallet_proof(owner, terms["wallet"], signer) if is_address(terms["wallet"]) else {}
    return agent_keys.create(owner, **proof, **terms)


def reserve(key, ref, amount=5 * USDC, *, publisher=PUBLISHER, category="economics", listing_id=7):
    agent_keys.reserve(key, payment_ref=ref, amount=amount, listing_id=listing_id, publisher=publisher,
                       category=category)


def refused(call, *args, **kwargs) -> AgentKeyRefused:
    with pytest.raises(AgentKeyRefused) as caught:
        call(*args, **kwargs)
    return caught.value


def used(key):
    return agent_keys.used(key)


# Which key a payment goes with ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_payer_without_a_key_and_without_a_registered_wallet_is_an_ordinary_payer():
    make_key()
    assert agent_keys.key_for_payment(None, PUBLISHER) is None
    assert agent_keys.key_for_payment("", PUBLISHER) is None


@pytest.mark.django_db
def test_the_secret_is_shown_once_and_only_its_hash_is_stored():
    created = make_key()
    key = AgentKey.objects.get()
    assert created.secret.startswith("dmk_") and key.prefix == created.secret[:12]
    assert created.secret not in str(AgentKey.objects.values().get())
    assert key.secret_hash == agent_keys.secret_hash(created.secret)
    assert agent_keys.key_for_payment(created.secret, AGENT) == key
    assert agent_keys.key_for_payment(created.secret, AGENT.lower()) == key  # the payer is checksummed first


@pytest.mark.django_db
def test_a_registered_wallet_paying_without_its_key_is_refused():
    make_key()
    error = refused(agent_keys.key_for_payment, None, AGENT)
    assert (error.code, error.status) == ("key_required", 403) and agent_keys.HEADER in error.message


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["dmk_" + "A" * 43, "not a key", "dmk_short", "x" * 5000])
def test_an_unknown_key_is_refused(raw):
    make_key()
    error = refused(agent_keys.key_for_payment, raw, AGENT)
    assert (error.code, error.status) == ("unknown_key", 401)


@pytest.mark.django_db
def test_a_key_sent_from_another_wallet_is_refused():
    created = make_key()
    error = refused(agent_keys.key_for_payment, created.secret, PUBLISHER)
    assert (error.code, error.status) == ("wrong_wallet", 403) and AGENT in error.message


@pytest.mark.django_db
def test_a_revoked_key_is_refused_at_once_and_its_wallet_too_until_it_is_released():
    created = make_key()
    reserve(created.key, "before")
    agent_keys.revoke(created.key)
    error = refused(agent_keys.key_for_payment, created.secret, AGENT)
    assert (error.code, error.status) == ("key_revoked", 401)
    # A payment that got its key before the revocation is refused when it reserves.
    assert refused(reserve, created.key, "after").code == "key_revoked"
    # The agent holds the wallet's key: leaving the header out does not make it an ordinary payer.
    error = refused(agent_keys.key_for_payment, None, AGENT)
    assert (error.code, error.status) == ("key_revoked", 403)
    first = AgentKey.objects.get().revoked_at
    agent_keys.revoke(created.key)  # twice: no change
    assert AgentKey.objects.get().revoked_at == first
    # Released by its owner, the wallet pays as anyone (the key itself stays refused).
    agent_keys.release_wallet(created.key)
    assert agent_keys.key_for_payment(None, AGENT) is None
    assert refused(agent_keys.key_for_payment, created.secret, AGENT).code == "key_revoked"
    released = AgentKey.objects.get().wallet_released_at
    agent_keys.release_wallet(created.key)  # twice: no change
    assert released is not None and AgentKey.objects.get().wallet_released_at == released


@pytest.mark.django_db
def test_an_expired_key_is_refused_and_binds_its_wallet_until_it_is_released():
    created = make_key()
    AgentKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    error = refused(agent_keys.key_for_payment, created.secret, AGENT)
    assert (error.code, error.status) == ("key_expired", 401)
    assert refused(reserve, created.key, "late").code == "key_expired"
    error = refused(agent_keys.key_for_payment, None, AGENT)
    assert (error.code, error.status) == ("key_expired", 403)
    agent_keys.release_wallet(created.key)
    assert agent_keys.key_for_payment(None, AGENT) is None


@pytest.mark.django_db
def test_a_live_key_s_wallet_cannot_be_released():
    created = make_key()
    error = refused(agent_keys.release_wallet, created.key)
    assert (error.code, error.status) == ("key_live", 409)
    assert AgentKey.objects.get().wallet_released_at is None
    assert refused(agent_keys.key_for_payment, None, AGENT).code == "key_required"


@pytest.mark.django_db
def test_a_new_key_of_the_owner_takes_over_an_ended_key_s_wallet():
    created = make_key()
    agent_keys.revoke(created.key)
    second = make_key(owner=created.key.owner)
    assert AgentKey.objects.get(pk=created.key.pk).wallet_released_at is not None
    assert agent_keys.key_for_payment(second.secret, AGENT) == second.key
    assert refused(agent_keys.key_for_payment, None, AGENT).code == "key_required"


# Creating keys ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("terms, code, field", [
    ({"wallet": "0x1234"}, "invalid_address", "wallet"),
    ({"wallet": AGENT[:2] + AGENT[2:].swapcase()}, "invalid_address", "wallet"),  # a wrong checksum
    ({"max_per_purchase": 31 * USDC}, "max_over_cap", "max_per_purchase"),
    ({"max_per_purchase": 0}, "invalid_amount", "max_per_purchase"),
    ({"expires_at": timezone.now() - timedelta(minutes=1)}, "expiry_in_past", "expires_at"),
    ({"expires_at": timezone.now() + timedelta(days=400)}, "expiry_too_far", "expires_at"),
    ({"allowed_categories": ["economics", "astrology"]}, "unknown_category", "allowed_categories"),
    ({"allowed_publishers": ["0xnope"]}, "invalid_address", "allowed_publishers"),
    ({"name": "  "}, "invalid_name", "name"),
])
def test_bad_terms_are_refused_with_the_field(terms, code, field):
    error = refused(make_key, **terms)
    assert (error.code, error.status, error.field) == (code, 400, field)
    assert not AgentKey.objects.exists()


@pytest.mark.django_db
def test_a_wallet_has_one_live_key_and_another_user_cannot_register_it():
    first = make_key()
    mine = refused(make_key)
    assert (mine.code, mine.status) == ("wallet_has_key", 409) and first.key.prefix in mine.message
    theirs = refused(make_key, owner=wallet_user(OTHER_OWNER))
    assert (theirs.code, theirs.status) == ("wallet_registered", 409)

    # Revoked, the key still binds its wallet until its owner releases it.
    agent_keys.revoke(first.key)
    theirs = refused(make_key, owner=wallet_user(OTHER_OWNER))
    assert (theirs.code, theirs.status) == ("wallet_registered", 409)
    agent_keys.release_wallet(first.key)
    second = make_key(owner=wallet_user(OTHER_OWNER))
    assert agent_keys.key_for_payment(second.secret, AGENT) == second.key


@pytest.mark.django_db
def test_keys_store_checksummed_wallets_and_publishers():
    created = make_key(wallet=AGENT.lower(), allowed_publishers=[PUBLISHER.lower(), PUBLISHER])
    assert created.key.wallet == AGENT and created.key.allowed_publishers == [PUBLISHER]


# Reservations -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_purchase_over_the_per_purchase_maximum_is_refused():
    key = make_key().key
    error = refused(reserve, key, "big", 10 * USDC + 1)
    assert (error.code, error.status) == ("over_purchase_max", 402) and "10000000" in error.message
    reserve(key, "exact", 10 * USDC)
    assert used(key) == 10 * USDC and not AgentSpend.objects.filter(payment_ref="big").exists()


@pytest.mark.django_db
def test_the_cap_counts_reserved_held_and_spent_but_not_released():
    key = make_key().key
    for ref in ("a", "b", "c", "d"):
        reserve(key, ref, 7 * USDC)
    agent_keys.hold("b")
    agent_keys.spend("c", chain_id=31337, order_id=1, tx_hash="0x" + "AB" * 32)
    agent_keys.release("d")
    assert used(key) == 21 * USDC
    error = refused(reserve, key, "e", 10 * USDC)
    assert (error.code, error.status) == ("over_daily_cap", 402)
    assert "30000000" in error.message and "9000000 base units is left" in error.message
    reserve(key, "f", 9 * USDC)
    assert used(key) == 30 * USDC
    assert AgentSpend.objects.get(payment_ref="c").tx_hash == "0x" + "ab" * 32


@pytest.mark.django_db
def test_the_window_rolls_and_the_refusal_says_when_room_frees_up():
    key = make_key().key
    now = timezone.now()
    for ref, hours_ago, amount in (("old", 25, 10), ("older_in", 23, 10), ("newer_in", 2, 10)):
        reserve(key, ref, amount * USDC)
        AgentSpend.objects.filter(payment_ref=ref).update(created_at=now - timedelta(hours=hours_ago))
    assert used(key) == 20 * USDC  # the 25-hour-old one no longer counts

    reserve(key, "fits", 10 * USDC)
    error = refused(reserve, key, "next", 5 * USDC)
    assert error.code == "over_daily_cap" and "0 base units is left" in error.message
    frees = AgentSpend.objects.get(payment_ref="older_in").created_at + timedelta(hours=24)
    assert frees.isoformat(timespec="seconds") in error.message

    AgentSpend.objects.filter(payment_ref="older_in").update(created_at=now - timedelta(hours=24, seconds=1))
    reserve(key, "next", 5 * USDC)


@pytest.mark.django_db
def test_a_held_payment_counts_until_it_is_resolved_whatever_its_age():
    """A held payment (its settlement timed out, unresolved) may still make an order: it keeps
    counting after its 24 hours, and the refusal does not promise room from it."""
    key = make_key(max_per_purchase=25 * USDC).key
    reserve(key, "held", 25 * USDC)
    agent_keys.hold("held")
    AgentSpend.objects.filter(payment_ref="held").update(created_at=timezone.now() - timedelta(days=3))
    assert used(key) == 25 * USDC
    assert agent_keys.spending([key])[key.pk]["used"] == 25 * USDC
    error = refused(reserve, key, "next", 10 * USDC)
    assert error.code == "over_daily_cap" and "5000000 base units is left" in error.message
    assert "frees up" not in error.message
    agent_keys.release("held")  # resolved: not settled
    assert used(key) == 0
    reserve(key, "next", 10 * USDC)


@pytest.mark.django_db
def test_categories_and_publishers_outside_the_key_s_lists_are_refused():
    key = make_key(allowed_categories=["economics", "health"], allowed_publishers=[PUBLISHER]).key
    error = refused(reserve, key, "sport", category="sports")
    assert (error.code, error.status) == ("category_not_allowed", 403)
    error = refused(reserve, key, "stranger", publisher=OTHER_OWNER)
    assert (error.code, error.status) == ("publisher_not_allowed", 403)
    reserve(key, "ok", category="health", publisher=PUBLISHER.lower())
    assert list(AgentSpend.objects.values_list("payment_ref", flat=True)) == ["ok"]


@pytest.mark.django_db
def test_a_key_without_lists_buys_any_category_from_anyone():
    key = make_key().key
    reserve(key, "one", category="sports", publisher=OTHER_OWNER)
    assert AgentSpend.objects.get().state == "reserved"


@pytest.mark.django_db
def test_reserving_the_same_payment_twice_counts_it_once_and_other_terms_are_refused():
    key = make_key().key
    reserve(key, "ref", 8 * USDC)
    reserve(key, "ref", 8 * USDC)
    assert AgentSpend.objects.count() == 1 and used(key) == 8 * USDC
    error = refused(reserve, key, "ref", 9 * USDC)
    assert (error.code, error.status) == ("payment_ref_conflict", 409)
    assert refused(reserve, key, "ref", 8 * USDC, listing_id=8).code == "payment_ref_conflict"

    agent_keys.spend("ref", chain_id=1, order_id=3, tx_hash="0x" + "01" * 32)
    reserve(key, "ref", 8 * USDC)  # a retry after the settlement: still spent, counted once
    assert AgentSpend.objects.get().state == "spent" and used(key) == 8 * USDC


@pytest.mark.django_db
def test_a_released_payment_reserved_again_counts_again_if_it_fits():
    key = make_key(max_per_purchase=10 * USDC, daily_cap=10 * USDC).key
    reserve(key, "ref", 10 * USDC)
    agent_keys.release("ref")
    assert used(key) == 0
    reserve(key, "other", 5 * USDC)
    assert refused(reserve, key, "ref", 10 * USDC).code == "over_daily_cap"
    assert AgentSpend.objects.get(payment_ref="ref").state == "released"
    agent_keys.release("other")
    reserve(key, "ref", 10 * USDC)
    assert AgentSpend.objects.get(payment_ref="ref").state == "reserved" and used(key) == 10 * USDC


@pytest.mark.django_db
def test_release_hold_and_spend_are_idempotent_and_ignore_unknown_references():
    key = make_key().key
    for call in (agent_keys.release, agent_keys.hold):
        call("nobody")
    agent_keys.spend("nobody", chain_id=1, order_id=1, tx_hash="0x" + "00" * 32)
    assert not AgentSpend.objects.exists()

    reserve(key, "ref")
    agent_keys.hold("ref")
    agent_keys.hold("ref")
    assert AgentSpend.objects.get().state == "held"
    agent_keys.spend("ref", chain_id=1, order_id=4, tx_hash="0x" + "0a" * 32)
    agent_keys.spend("ref", chain_id=1, order_id=4, tx_hash="0x" + "0a" * 32)
    agent_keys.release("ref")  # an order exists: a late release does not undo it
    agent_keys.hold("ref")
    row = AgentSpend.objects.get()
    assert (row.state, row.chain_id, int(row.order_id)) == ("spent", 1, 4) and used(key) == 5 * USDC


@pytest.mark.django_db
def test_reserving_records_when_the_key_was_last_used():
    key = make_key().key
    assert AgentKey.objects.get().last_used_at is None
    reserve(key, "ref")
    assert AgentKey.objects.get().last_used_at is not None


@pytest.mark.django_db(transaction=True)
def test_twenty_racing_reservations_never_pass_the_cap():
    key = make_key(max_per_purchase=7 * USDC, daily_cap=50 * USDC).key
    start = threading.Barrier(20)

    def attempt(i):
        try:
            start.wait()
            reserve(key, f"race-{i}", 7 * USDC)
            return "ok"
        except AgentKeyRefused as exc:
            return exc.code
        finally:
            connection.close()

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("ok") == 7 and outcomes.count("over_daily_cap") == 13
    assert used(key) == 49 * USDC and AgentSpend.objects.count() == 7


@pytest.mark.django_db(transaction=True)
def test_racing_creations_leave_one_live_key_per_wallet():
    owner = wallet_user(OWNER)
    start = threading.Barrier(8)

    def attempt(i):
        try:
            start.wait()
            make_key(owner=owner, name=f"bot {i}")
            return "ok"
        except AgentKeyRefused as exc:
            return exc.code
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("ok") == 1 and outcomes.count("wallet_has_key") == 7
    assert AgentKey.objects.filter(wallet=AGENT).count() == 1


# Refund shares from the chain -------------------------------------------------------------------


def bought(chain, account, listing_id):
    """Buy on the market from `account`: (order id, transaction hash)."""
    receipt = purchase(chain, account, listing_id)
    (event,) = chain.market.contract.events.OrderCreated().process_receipt(receipt, errors=DISCARD)
    return event["args"]["orderId"], "0x" + bytes(receipt["transactionHash"]).hex()


@pytest.fixture
def agent_order(chain, no_worker, seller, buyer):
    """An order bought on the market by the agent's wallet (BUYER) and recorded as spent with a
    key capped at two purchases; returns (key, order id)."""
    key = make_key(wallet=buyer.address, signer=buyer.key, max_per_purchase=PRICE, daily_cap=2 * PRICE).key
    listing_id = create_listing(chain, seller)
    reserve(key, "paid", PRICE, listing_id=listing_id)
    order_id, tx_hash = bought(chain, buyer, listing_id)
    agent_keys.spend("paid", chain_id=chain.w3.eth.chain_id, order_id=order_id,
                     tx_hash=tx_hash)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    indexer.index_chain(chain.w3)
    return key, order_id




@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_refund_share_of_a_resolved_dispute_returns_to_the_budget_once(chain, agent_order):
    key, order_id = agent_order
    assert used(key) == PRICE
    chain.send(chain.market.contract.functions.resolve(order_id, 4_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    (refund,) = AgentRefund.objects.all()
    assert int(refund.amount) == PRICE * 4 // 10 and refund.spend.payment_ref == "paid"
    assert used(key) == PRICE - PRICE * 4 // 10
    assert agent_keys.spending([key])[key.pk]["refunded"] == PRICE * 4 // 10

    # The same event again (a handler called twice, an indexer run again) adds nothing.
    from marketplace.chain.models import ChainEvent

    stored = ChainEvent.objects.get(name="DisputeResolved")
    event = indexer.Event(**ChainEvent.objects.values(*indexer.EVENT_FIELDS).get(pk=stored.pk))
    agent_keys.on_refund_events([event])
    indexer.index_chain(chain.w3)
    assert AgentRefund.objects.count() == 1 and used(key) == PRICE - PRICE * 4 // 10


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_an_expired_dispute_returns_the_whole_price(chain, agent_order, seller):
    key, order_id = agent_order
    chain.advance(chain.market.dispute_period() + 1)
    chain.send(chain.market.contract.functions.settleExpiredDispute(order_id), seller.address)
    indexer.index_chain(chain.w3)
    assert int(AgentRefund.objects.get().amount) == PRICE and used(key) == 0


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_refund_of_an_order_no_key_paid_for_returns_nothing(chain, no_worker, seller, buyer):
    key = make_key(wallet=buyer.address, signer=buyer.key, max_per_purchase=PRICE, daily_cap=2 * PRICE).key
    listing_id = create_listing(chain, seller)
    order_id, tx_hash = bought(chain, buyer, listing_id)
    # A spend naming the same order id but another settlement (an order of an earlier market).
    reserve(key, "elsewhere", PRICE, listing_id=listing_id)
    agent_keys.spend("elsewhere", chain_id=chain.w3.eth.chain_id, order_id=order_id, tx_hash="0x" + "77" * 32)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    chain.send(chain.market.contract.functions.resolve(order_id, 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert not AgentRefund.objects.exists() and used(key) == PRICE


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_refund_indexed_before_a_held_payment_is_spent_is_taken_when_it_is(chain, no_worker, seller, buyer):
    key = make_key(wallet=buyer.address, signer=buyer.key, max_per_purchase=PRICE, daily_cap=2 * PRICE).key
    listing_id = create_listing(chain, seller)
    reserve(key, "slow", PRICE, listing_id=listing_id)
    agent_keys.hold("slow")
    order_id, tx_hash = bought(chain, buyer, listing_id)
    chain.send(chain.market.contract.functions.dispute(order_id), buyer.address)
    chain.send(chain.market.contract.functions.resolve(order_id, 5_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert not AgentRefund.objects.exists()
    agent_keys.spend("slow", chain_id=chain.w3.eth.chain_id, order_id=order_id,
                     tx_hash=tx_hash)
    assert int(AgentRefund.objects.get().amount) == PRICE // 2 and used(key) == PRICE // 2


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_reorganisation_that_orphans_the_refund_takes_it_back(chain, agent_order):
    key, order_id = agent_order
    snapshot = chain.rpc("evm_snapshot")
    chain.send(chain.market.contract.functions.resolve(order_id, 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert AgentRefund.objects.count() == 1 and used(key) == 0

    chain.rpc("evm_revert", [snapshot])
    chain.rpc("evm_mine")
    chain.rpc("evm_mine")
    assert indexer.index_chain(chain.w3).reorgs == 1
    assert not AgentRefund.objects.exists() and used(key) == PRICE
    assert AgentSpend.objects.get().state == "spent"  # the payment itself is the server's record


@pytest.mark.chain
@pytest.mark.django_db(transaction=True)
def test_a_forgotten_chain_takes_its_refunds_but_not_the_payments(chain, agent_order):
    key, order_id = agent_order
    chain.send(chain.market.contract.functions.resolve(order_id, 10_000), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert AgentRefund.objects.count() == 1
    forget_chain(chain.w3.eth.chain_id)
    assert not AgentRefund.objects.exists() and AgentSpend.objects.count() == 1
