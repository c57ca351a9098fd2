"""Reward payouts against anvil with the real contracts: an epoch closed, its root proposed by the
operator sender, matured by the chain's time and claimed with the proof the API serves; a close
run twice gives one root; a root transaction that fails is queued again and proposed once; a stale
proof reverts; a suspended root pauses claims; an unfunded root waits, then goes once funded; and
community revenue is counted when an order is released, never at purchase."""

from datetime import timedelta
import subprocess

from eth_account import Account
import pytest
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.middleware import Web3Middleware

from marketplace.chain import indexer, sender
from marketplace.chain.client import WrongChain, operator_web3
from marketplace.chain.models import ChainEvent, OperatorAction
from marketplace.rewards import epochs, selectors
from marketplace.rewards.models import CommunityRevenue, Device, Epoch, EpochLeaf, RewardClaim
from tests.conftest import DEV_KEYS, dead_broker_url
from tests.integration.test_epochs import credit, device, first_window
from tests.integration.test_indexer import PRICE, WINDOW, buyer, purchase, seller  # noqa: F401
from tests.integration.test_operator_sender import manual_mining
from tests.integration.test_token_signatures import reverted_with

pytestmark = [pytest.mark.chain, pytest.mark.django_db(transaction=True)]

TREASURY = Account.from_key(DEV_KEYS[3])


@pytest.fixture(autouse=True)
def _settings(settings, point_broker_at):
    """Hour-long epochs, an emission of 1,000 USDC, and no Celery worker racing the test's own
    sender runs (their tasks go to a dead broker)."""
    point_broker_at(dead_broker_url())
    settings.REWARD_EPOCH_SECONDS = 3600
    settings.REWARD_EMISSION_PER_EPOCH = 1_000 * 10**6
    settings.REWARD_NETWORK_POINT_CAP = 0
    settings.REWARD_TREASURY_KEY = ""


@pytest.fixture
def treasury(chain, settings):
    chain.token.mint(TREASURY.address, 100_000 * 10**6)
    settings.REWARD_TREASURY_KEY = DEV_KEYS[3]
    return TREASURY


def earners(epoch, *points):
    """Wallets with a device each that earned these job points early in `epoch`."""
    wallets = []
    for p in points:
        wallet = Account.create().address
        credit(device(wallet), p, epoch.starts_at + timedelta(minutes=1))
        wallets.append(wallet)
    return wallets


def send(timeout=15):
    return sender.send_operator_actions(timeout=timeout)


def mature(chain):
    """Past the root delay, indexed (an epoch matures by the indexed chain's time), closed."""
    chain.advance(chain.distributor.root_delay() + 1)
    indexer.index_chain(chain.w3)
    return epochs.close_epochs(chain.w3)


def root_events(name="RootProposed"):
    return list(ChainEvent.objects.filter(name=name).order_by("block_number", "log_index"))


def test_an_epoch_is_closed_proposed_matured_and_claimed_with_the_served_proof(
    chain, treasury, client
):
    epoch = first_window(hours_ago=1)
    alice, bob = earners(epoch, 3, 1)
    report = epochs.close_epochs(chain.w3)
    assert report.scored == [1] and report.queued == [1]
    one = Epoch.objects.get(number=1)
    assert one.state == Epoch.State.QUEUED and one.funding_tx
    assert (
        chain.token.balance_of(chain.distributor.address) == 1_000 * 10**6
    )  # the treasury's transfer
    assert send().confirmed == 1
    one.refresh_from_db()
    assert one.state == Epoch.State.PROPOSED and one.root_status == Epoch.RootStatus.PROPOSED
    assert chain.distributor.pending_root().root == bytes.fromhex(one.root[2:])
    assert client.get(f"/api/v1/rewards/proof/{alice}").json()["epoch"] is None  # not claimable yet

    assert mature(chain).matured == [1]
    answer = client.get(f"/api/v1/rewards/proof/{alice.lower()}").json()
    assert (
        answer["epoch"] == 1 and answer["cumulative"] == str(750 * 10**6) and not answer["paused"]
    )
    assert answer["distributor"] == chain.distributor.address
    receipt = chain.send(
        chain.distributor.contract.functions.claim(
            alice, int(answer["cumulative"]), answer["proof"]
        ),
        chain.operator.address,
    )
    assert receipt["status"] == 1
    assert chain.token.balance_of(alice) == 750 * 10**6
    indexer.index_chain(chain.w3)
    assert RewardClaim.objects.get(account=alice).amount == 750 * 10**6
    after = client.get(f"/api/v1/rewards/proof/{alice}").json()
    assert after["claimed"] == str(750 * 10**6) and after["claimable"] == "0"
    assert client.get(f"/api/v1/rewards/proof/{bob}").json()["claimable"] == str(250 * 10**6)
    body = client.get("/api/v1/rewards/epochs/1").json()
    assert (
        body["state"] == "matured"
        and body["pool"]["paid"] == str(10**9)
        and body["total"] == str(10**9)
    )
    assert (
        client.get("/api/v1/rewards/proof/not-a-wallet").json()["error"]["code"] == "invalid_wallet"
    )


def test_a_close_run_twice_queues_and_proposes_one_root(chain, treasury):
    epoch = first_window(hours_ago=1)
    earners(epoch, 1, 2)
    epochs.close_epochs(chain.w3)
    epochs.close_epochs(chain.w3)
    assert OperatorAction.objects.filter(kind="propose_root").count() == 1
    funding = Epoch.objects.get(number=1).funding_tx
    send()
    epochs.close_epochs(chain.w3)
    send()
    assert OperatorAction.objects.filter(kind="propose_root").count() == 1
    assert [e.args["epoch"] for e in root_events()] == ["1"]
    assert Epoch.objects.get(number=1).funding_tx == funding
    assert chain.token.balance_of(chain.distributor.address) == int(
        Epoch.objects.get(number=1).total
    )  # once


def test_a_failing_root_transaction_is_queued_again_and_proposed_once(chain, treasury, monkeypatch):
    epoch = first_window(hours_ago=1)
    earners(epoch, 5)
    operator = chain.operator.address
    chain.distributor._transact(
        chain.distributor.contract.functions.revokeRole(
            chain.distributor.role("PUBLISHER_ROLE"), operator
        ),
        operator,
    )
    epochs.close_epochs(chain.w3)
    assert send().failed == 1
    first = OperatorAction.objects.get(kind="propose_root")
    assert first.status == "failed" and "proposeRoot would revert" in first.error

    chain.distributor.grant_role("PUBLISHER_ROLE", operator)
    monkeypatch.setattr(epochs, "RETRY_AFTER", timedelta(0))
    epochs.close_epochs(chain.w3)
    one = Epoch.objects.get(number=1)
    assert one.proposals == 2 and one.action_id != first.pk
    assert send().confirmed == 1
    epochs.close_epochs(chain.w3)
    assert [(e.args["epoch"], e.args["root"]) for e in root_events()] == [("1", one.root)]
    assert Epoch.objects.get(number=1).state == Epoch.State.PROPOSED


def test_an_unfunded_root_waits_and_is_proposed_once_funded(chain, client, admin_client):
    epoch = first_window(hours_ago=1)
    earners(epoch, 1)
    epochs.close_epochs(chain.w3)  # no treasury key: nobody funds it
    report = send(timeout=2)
    action = OperatorAction.objects.get(kind="propose_root")
    assert action.status == "pending" and report.failed == 0 and not report.transactions
    assert action.error.startswith(f"waiting for funding: {1_000 * 10**6} more needed")
    epochs.close_epochs(chain.w3)
    assert Epoch.objects.get(number=1).waiting.startswith("waiting for funding")
    assert (
        client.get("/api/v1/rewards/epochs")
        .json()["results"][-1]["waiting"]
        .startswith("waiting for funding")
    )

    page = admin_client.get("/admin/rewards/epoch/")
    assert (
        page.status_code == 200 and b"waiting for funding: 1000000000 more needed" in page.content
    )
    assert (
        admin_client.get(
            f"/admin/rewards/epoch/{Epoch.objects.get(number=1).pk}/change/"
        ).status_code
        == 200
    )

    chain.token.mint(chain.distributor.address, 999 * 10**6)  # not quite
    send(timeout=2)
    assert OperatorAction.objects.get(pk=action.pk).error.startswith(
        f"waiting for funding: {10**6} more"
    )
    chain.token.mint(chain.distributor.address, 10**6)
    assert send().confirmed == 1
    assert Epoch.objects.get(number=1).state == Epoch.State.PROPOSED


def test_two_epochs_a_stale_proof_reverts_and_a_suspended_root_pauses_claims(
    chain, treasury, client
):
    first = first_window(hours_ago=2)
    (alice,) = earners(first, 1)
    epochs.open_epochs(first.ends_at)
    second = Epoch.objects.get(number=2)
    credit(device(Account.create().address), 1, second.starts_at + timedelta(minutes=1))
    credit(
        Device.objects.get(contributor__wallet=alice), 2, second.starts_at + timedelta(minutes=2)
    )

    epochs.close_epochs(chain.w3)
    send()
    mature(chain)  # epoch 1 matures, epoch 2 is queued
    stale = client.get(f"/api/v1/rewards/proof/{alice}").json()
    assert stale["epoch"] == 1 and stale["cumulative"] == str(1_000 * 10**6)
    send()
    mature(chain)
    fresh = client.get(f"/api/v1/rewards/proof/{alice}").json()
    assert fresh["epoch"] == 2 and int(fresh["cumulative"]) == 1_000 * 10**6 + 666_666_666

    claim = chain.distributor.contract.functions.claim
    with pytest.raises(ContractCustomError) as error:
        claim(alice, int(stale["cumulative"]), stale["proof"]).transact(
            {"from": chain.operator.address}
        )
    assert reverted_with(error.value, "RewardDistributorInvalidProof(address,uint256)")

    chain.distributor.suspend_current_root(chain.operator.address)
    indexer.index_chain(chain.w3)
    assert Epoch.objects.get(number=2).root_status == Epoch.RootStatus.SUSPENDED
    paused = client.get(f"/api/v1/rewards/proof/{alice}").json()
    assert paused["paused"] is True and paused["claimable"] == "0" and paused["epoch"] == 2
    with pytest.raises(ContractCustomError) as error:
        claim(alice, int(fresh["cumulative"]), fresh["proof"]).transact(
            {"from": chain.operator.address}
        )
    assert reverted_with(error.value, "RewardDistributorRootSuspended(uint256)")


def test_community_revenue_is_counted_at_release_not_at_purchase(chain, treasury, seller, buyer):  # noqa: F811
    epoch = first_window(hours_ago=1)
    receipt = chain.send(
        chain.market.contract.functions.createListing(
            chain.token.address,
            PRICE,
            chain.distributor.address,
            Web3.keccak(text="community v1"),
            WINDOW,
        ),
        seller.address,
    )
    (created,) = chain.market.contract.events.ListingCreated().process_receipt(
        receipt, errors=DISCARD
    )
    listing_id = created["args"]["listingId"]
    chain.send(
        chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address
    )
    bought = purchase(chain, buyer, listing_id)
    (order,) = chain.market.contract.events.OrderCreated().process_receipt(bought, errors=DISCARD)
    indexer.index_chain(chain.w3)
    assert not CommunityRevenue.objects.exists()  # a purchase is not revenue: it can be refunded

    chain.advance(WINDOW + 1)
    released = chain.send(
        chain.market.contract.functions.release([order["args"]["orderId"]]), buyer.address
    )
    (event,) = chain.market.contract.events.OrderReleased().process_receipt(
        released, errors=DISCARD
    )
    indexer.index_chain(chain.w3)
    (revenue,) = CommunityRevenue.objects.all()
    assert revenue.amount == event["args"]["ownerAmount"] == PRICE - PRICE * 250 // 10_000
    assert chain.token.balance_of(chain.distributor.address) == revenue.amount
    CommunityRevenue.objects.update(created_at=epoch.starts_at + timedelta(minutes=5))
    earners(epoch, 1)
    epochs.close_epochs(chain.w3)
    one = Epoch.objects.get(number=1)
    assert int(one.revenue_in) == revenue.amount and int(one.pool) == 1_000 * 10**6 + revenue.amount
    # The treasury tops up only what the sale did not already bring.
    assert chain.token.balance_of(chain.distributor.address) == int(one.total)


def test_a_revoked_root_s_credits_are_counted_again_by_the_next_epoch_and_its_emission_goes_back_to_the_pool(
        chain, treasury, client):
    """The admin revokes epoch 2's pending root: epoch 3's tree builds on epoch 1's (the last root
    not revoked), so epoch 2's amounts are in no later tree; epoch 3 counts bob's epoch-2 credit
    again (once), and what epoch 2's pool paid (its emission) goes back into epoch 3's pool, which
    pays no more than it holds; alice's leaf never drops below what she claimed from epoch 1."""
    first = first_window(hours_ago=3)
    epochs.open_epochs()  # epochs 1-3 have ended
    (alice,) = earners(first, 1)
    second, third = Epoch.objects.get(number=2), Epoch.objects.get(number=3)
    bob, carol = Account.create().address, Account.create().address
    credit(device(bob), 1, second.starts_at + timedelta(minutes=1))
    credit(Device.objects.get(contributor__wallet=alice), 1, third.starts_at + timedelta(minutes=1))
    credit(device(carol), 1, third.starts_at + timedelta(minutes=1))
    emission = 1_000 * 10**6

    report = epochs.close_epochs(chain.w3)
    assert report.scored == [1]  # epoch 2 waits until epoch 1's root is final
    assert Epoch.objects.get(number=2).waiting == "scored once epoch 1's root has matured or was revoked"
    send()
    assert mature(chain).scored == [2]
    answer = client.get(f"/api/v1/rewards/proof/{alice}").json()
    chain.send(chain.distributor.contract.functions.claim(alice, int(answer["cumulative"]), answer["proof"]),
               chain.operator.address)
    assert send().confirmed == 1  # epoch 2's root: pending, revocable
    chain.send(chain.distributor.contract.functions.revokePendingRoot(), chain.operator.address)
    indexer.index_chain(chain.w3)
    two = Epoch.objects.get(number=2)
    assert two.root_status == Epoch.RootStatus.REVOKED and int(two.paid) == emission
    assert epochs.close_epochs(chain.w3).scored == [3]  # epoch 2's root is final: revoked

    three = Epoch.objects.get(number=3)
    assert int(three.revoked_in) == emission and int(three.pool) == 2 * emission
    assert int(three.paid) + int(three.carried_out) == int(three.pool)  # never more than its pool
    leaves = dict(EpochLeaf.objects.filter(epoch=three).values_list("wallet", "cumulative"))
    share = 2 * emission // 3  # alice, bob (his epoch-2 credit) and carol: one job point each
    assert {w: int(c) for w, c in leaves.items()} == {alice: emission + share, bob: share, carol: share}
    assert int(three.carried_out) == 2 * emission - 3 * share
    assert int(three.total) == emission + 3 * share and int(leaves[alice]) >= int(answer["cumulative"])
    two.refresh_from_db()
    assert two.revoked_back_in == three  # returned once: no later epoch takes it again
    assert send().confirmed == 1
    mature(chain)
    fresh = client.get(f"/api/v1/rewards/proof/{alice}").json()
    assert fresh["epoch"] == 3 and fresh["claimable"] == str(share)
    bobs_proof = client.get(f"/api/v1/rewards/proof/{bob}").json()
    assert bobs_proof["epoch"] == 3 and bobs_proof["cumulative"] == str(share)  # once, not twice
    later, revoked = client.get(f"/api/v1/rewards/wallets/{bob}/epochs").json()["results"]
    assert revoked["epoch"] == 2 and revoked["root_status"] == "revoked"
    assert later["epoch"] == 3 and later["job_points"] == 1 and later["cumulative"] == str(share)


def _revoked_then_reorganised(chain):
    """Epoch 2's root is revoked and epoch 3 takes its amounts back into its pool; then a
    reorganisation deeper than the confirmations takes the RootRevoked, which is not mined again:
    epoch 2's root is pending on the chain again. Returns bob (epoch 2's only earner)."""
    first = first_window(hours_ago=3)
    epochs.open_epochs()
    earners(first, 1)
    second, third = Epoch.objects.get(number=2), Epoch.objects.get(number=3)
    bob, carol = Account.create().address, Account.create().address
    credit(device(bob), 1, second.starts_at + timedelta(minutes=1))
    credit(device(carol), 1, third.starts_at + timedelta(minutes=1))
    epochs.close_epochs(chain.w3)
    send()
    assert mature(chain).scored == [2]
    assert send().confirmed == 1  # epoch 2's root is pending
    before_revoke = chain.rpc("evm_snapshot")
    chain.send(chain.distributor.contract.functions.revokePendingRoot(), chain.operator.address)
    indexer.index_chain(chain.w3)
    assert epochs.close_epochs(chain.w3).scored == [3]
    three = Epoch.objects.get(number=3)
    assert int(three.revoked_in) > 0 and Epoch.objects.get(number=2).revoked_back_in == three
    assert chain.rpc("evm_revert", [before_revoke]) is True
    for _ in range(6):  # a longer fork without the revocation
        chain.token.mint(TREASURY.address, 1)
    assert indexer.index_chain(chain.w3).reorgs == 1
    two = Epoch.objects.get(number=2)
    assert two.root_status == Epoch.RootStatus.PROPOSED and two.revoked_back_in == three
    assert chain.distributor.pending_root().epoch == 2
    return bob


def test_a_revoked_root_whose_revocation_a_reorganisation_took_is_revoked_again(chain, treasury, client):
    """The operator holds DEFAULT_ADMIN_ROLE: the close queues revokePendingRoot for epoch 2 once
    (the sender checks the root is still the pending one and confirms it from RootRevoked); the
    root never matures, the proof API never serves it, and bob cannot claim epoch 2's amount that
    epoch 3 paid to others."""
    bob = _revoked_then_reorganised(chain)
    epochs.close_epochs(chain.w3)
    epochs.close_epochs(chain.w3)
    (action,) = OperatorAction.objects.filter(kind="revoke_root")
    assert action.payload == {"epoch": 2, "root": Epoch.objects.get(number=2).root}
    assert "revokePendingRoot queued again" in Epoch.objects.get(number=2).waiting
    send()  # the revocation (epoch 3's root waits for the funding the reorganisation took)
    indexer.index_chain(chain.w3)
    action.refresh_from_db()
    two = Epoch.objects.get(number=2)
    assert action.status == "confirmed" and two.root_status == Epoch.RootStatus.REVOKED
    assert [e.args["epoch"] for e in root_events("RootRevoked")] == ["2"]
    mature(chain)
    epochs.close_epochs(chain.w3)
    two.refresh_from_db()
    assert two.state != Epoch.State.MATURED and two.waiting == ""
    assert chain.distributor.current_root().epoch == 1
    answer = client.get(f"/api/v1/rewards/proof/{bob}").json()
    assert answer["epoch"] == 1 and answer["cumulative"] == "0"
    leaf = EpochLeaf.objects.get(epoch=two, wallet=bob)
    with pytest.raises(Exception):  # epoch 2's own proof is worth nothing on the chain
        chain.distributor.contract.functions.claim(
            bob, int(leaf.cumulative), selectors.sibling_nodes(two.pk, leaf.node)).call()
    assert chain.token.balance_of(bob) == 0


def test_a_revoked_root_back_after_a_reorganisation_is_never_served_nor_matured(chain, treasury, client,
                                                                                 monkeypatch, caplog):
    """The operator does not hold DEFAULT_ADMIN_ROLE: nothing is sent, the epoch says what the
    admin must do (logged as an error); once the root has matured on the chain, the close still
    never marks epoch 2 matured and the proof API never serves its tree."""
    from marketplace.chain.contracts import RewardDistributor

    bob = _revoked_then_reorganised(chain)
    monkeypatch.setattr(RewardDistributor, "has_role", lambda self, role, account: False)
    with caplog.at_level("ERROR", logger="marketplace.rewards.epochs"):
        epochs.close_epochs(chain.w3)
    assert not OperatorAction.objects.filter(kind="revoke_root").exists()
    two = Epoch.objects.get(number=2)
    assert "the admin (DEFAULT_ADMIN_ROLE" in two.waiting and "revokePendingRoot()" in two.waiting
    assert any("RootRevoked left the chain" in r.getMessage() for r in caplog.records)
    mature(chain)  # the root matures on the chain
    epochs.close_epochs(chain.w3)
    two.refresh_from_db()
    assert two.state != Epoch.State.MATURED and "suspendCurrentRoot" in two.waiting
    assert "suspendCurrentRoot" in client.get("/api/v1/rewards/epochs/2").json()["waiting"]
    answer = client.get(f"/api/v1/rewards/proof/{bob}").json()
    assert answer["epoch"] != 2 and answer["cumulative"] == "0"


def community_order(chain, seller, buyer):
    """A listing paying the distributor, approved and bought (indexed): the order's id."""
    receipt = chain.send(
        chain.market.contract.functions.createListing(
            chain.token.address, PRICE, chain.distributor.address, Web3.keccak(text="community v1"), WINDOW
        ),
        seller.address,
    )
    (created,) = chain.market.contract.events.ListingCreated().process_receipt(receipt, errors=DISCARD)
    listing_id = created["args"]["listingId"]
    chain.send(chain.market.contract.functions.setApproval([listing_id], True), chain.operator.address)
    (order,) = chain.market.contract.events.OrderCreated().process_receipt(
        purchase(chain, buyer, listing_id), errors=DISCARD
    )
    indexer.index_chain(chain.w3)
    return order["args"]["orderId"]


def test_a_counted_payout_re_mined_by_a_deep_reorganisation_is_not_counted_again(
    chain, seller, buyer  # noqa: F811
):
    """A reorganisation deeper than the confirmations orphans a release an epoch already counted
    (the row stays: its amount is in a stored tree); the new chain mines the same order's release
    in another transaction. It is the same payout: one row per order, never counted twice."""
    epoch = first_window(hours_ago=1)
    order_id = community_order(chain, seller, buyer)
    before_release = chain.rpc("evm_snapshot")
    chain.advance(WINDOW + 1)
    chain.send(chain.market.contract.functions.release([order_id]), buyer.address)
    indexer.index_chain(chain.w3)
    (counted,) = CommunityRevenue.objects.all()
    assert counted.order_id == order_id and counted.market == chain.market.address
    CommunityRevenue.objects.update(created_at=epoch.starts_at + timedelta(minutes=5))
    epochs.close_epochs(chain.w3)
    one = Epoch.objects.get(number=1)
    assert int(one.revenue_in) == int(counted.amount) > 0

    assert chain.rpc("evm_revert", [before_release]) is True
    chain.send(chain.token.contract.functions.approve(chain.operator.address, 1), buyer.address)  # another nonce
    chain.advance(WINDOW + 1)
    again = chain.send(chain.market.contract.functions.release([order_id]), buyer.address)
    for _ in range(4):  # longer than the orphaned fork
        chain.rpc("evm_mine")
    assert indexer.index_chain(chain.w3).reorgs == 1
    (re_mined,) = ChainEvent.objects.filter(name="OrderReleased")
    assert re_mined.tx_hash == "0x" + bytes(again["transactionHash"]).hex() != counted.tx_hash
    (row,) = CommunityRevenue.objects.all()  # the counted row, and no second one
    assert row.pk == counted.pk and row.counted_in == one  # nothing is left for a later epoch


def test_a_reorganisation_rolls_back_root_events_and_claims_and_the_root_is_sent_again(
    chain, treasury
):
    epoch = first_window(hours_ago=1)
    (alice,) = earners(epoch, 1)
    epochs.close_epochs(chain.w3)
    indexer.index_chain(chain.w3)
    before_proposal = chain.rpc("evm_snapshot")
    assert send().confirmed == 1
    mature(chain)
    answer = epochs_proof(alice)
    chain.send(
        chain.distributor.contract.functions.claim(
            alice, int(answer["cumulative"]), answer["proof"]
        ),
        chain.operator.address,
    )
    indexer.index_chain(chain.w3)
    assert (
        RewardClaim.objects.count() == 1
        and Epoch.objects.get(number=1).state == Epoch.State.MATURED
    )

    assert chain.rpc("evm_revert", [before_proposal]) is True
    for _ in range(4):  # another fork, longer than the orphaned one
        chain.token.mint(TREASURY.address, 1)
    report = indexer.index_chain(chain.w3)
    assert report.reorgs == 1
    one = Epoch.objects.get(number=1)
    assert (
        not RewardClaim.objects.exists()
        and not ChainEvent.objects.filter(name="RootProposed").exists()
    )
    assert one.state == Epoch.State.QUEUED and one.root_status == Epoch.RootStatus.NONE

    epochs.close_epochs(chain.w3)  # its action was confirmed: queued again
    send()  # the chain lost the operator's transaction: the same bytes are broadcast again first
    one.refresh_from_db()
    assert one.state == Epoch.State.PROPOSED
    assert [e.args["root"] for e in root_events()] == [one.root]
    assert not OperatorAction.objects.filter(
        kind="propose_root", status__in=("pending", "sent")
    ).exists()
    assert chain.distributor.last_proposed_epoch() == 1


def epochs_proof(wallet):
    from marketplace.rewards import selectors

    return selectors.proof(wallet)


def test_a_treasury_short_of_the_token_sends_nothing_and_funds_once_it_holds_enough(chain, settings):
    """A transfer that would revert is never signed (one that reverted used to stall every later
    epoch: its hash stayed recorded): the close says what the treasury lacks, then funds."""
    settings.REWARD_TREASURY_KEY = DEV_KEYS[3]
    before = chain.token.balance_of(TREASURY.address)
    if before:
        chain.send(chain.token.contract.functions.transfer(chain.operator.address, before), TREASURY.address)
    epoch = first_window(hours_ago=1)
    earners(epoch, 1)
    epochs.close_epochs(chain.w3)
    one = Epoch.objects.get(number=1)
    assert one.state == Epoch.State.SCORED and not one.funding_tx  # funded before it is queued
    assert one.waiting.startswith(f"waiting for funding: the treasury {TREASURY.address} holds 0")
    chain.token.mint(TREASURY.address, 1_000 * 10**6)
    epochs.close_epochs(chain.w3)
    one.refresh_from_db()
    assert one.funding_tx and chain.token.balance_of(chain.distributor.address) == 1_000 * 10**6
    assert send().confirmed == 1


def treasury_nonce(chain):
    return chain.w3.eth.get_transaction_count(TREASURY.address)


def lagging_node(chain, hashes):
    """A Web3 on the test's anvil through a node that knows no receipt of `hashes` (one behind a
    load balancer that has not got their block yet)."""

    class Lagging(Web3Middleware):
        def wrap_make_request(self, make_request):
            def middleware(method, params):
                if method == "eth_getTransactionReceipt" and str(params[0]).lower() in hashes:
                    return {"jsonrpc": "2.0", "id": 0, "result": None}
                return make_request(method, params)
            return middleware

    w3 = Web3(Web3.HTTPProvider(chain.url))
    w3.middleware_onion.add(Lagging, name="lagging")
    return w3


def test_a_transfer_a_lagging_node_does_not_report_is_never_signed_twice(chain, treasury, settings, monkeypatch):
    """A node behind a load balancer that has not got the transfer's receipt yet (while another
    says its nonce is used) used to make the close forget the transfer and sign a second one at
    the next nonce: the epoch was funded twice. Only a nonce used in a block with the
    confirmations, with none of the transfers signed for it mined, is given up."""
    settings.CHAIN_CONFIRMATIONS = 2
    monkeypatch.setattr(epochs, "FUNDING_WAIT", 0.5)
    epoch = first_window(hours_ago=1)
    earners(epoch, 1)
    nonce = treasury_nonce(chain)
    with manual_mining(chain):
        epochs.close_epochs(chain.w3)  # signed and broadcast, not mined yet
        one = Epoch.objects.get(number=1)
        assert one.state == Epoch.State.SCORED and one.funding_nonce == nonce and one.funding_hashes == [one.funding_tx]
        chain.rpc("evm_mine")
    assert treasury_nonce(chain) == nonce + 1  # mined

    lagging = lagging_node(chain, one.funding_hashes)  # it has not got the transfer's block yet
    epochs.close_epochs(lagging)
    epochs.close_epochs(lagging)
    signed = one.funding_tx
    one.refresh_from_db()
    assert one.state == Epoch.State.SCORED and one.funding_hashes == [signed] and one.funding_tx == signed
    assert f"treasury's transfer {signed}" in one.waiting

    epochs.close_epochs(chain.w3)
    one.refresh_from_db()
    assert one.state == Epoch.State.QUEUED
    assert treasury_nonce(chain) == nonce + 1, "one transfer was signed and mined"
    assert chain.token.balance_of(chain.distributor.address) == int(one.total)  # funded once


def test_an_underpriced_transfer_is_replaced_at_its_nonce_with_higher_fees(chain, treasury, settings, monkeypatch):
    """A transfer whose fees fell below what the chain asks is signed again at the same nonce with
    fees raised by at least a quarter (within OPERATOR_MAX_FEE_PER_GAS) once it waited
    OPERATOR_REPLACE_AFTER: only one of them can be mined."""
    monkeypatch.setattr(epochs, "FUNDING_WAIT", 0.5)
    epoch = first_window(hours_ago=1)
    earners(epoch, 1)
    nonce = treasury_nonce(chain)
    base = chain.w3.eth.get_block("latest")["baseFeePerGas"]
    try:
        with manual_mining(chain):
            epochs.close_epochs(chain.w3)
            one = Epoch.objects.get(number=1)
            first = chain.w3.eth.get_transaction(one.funding_tx)
            settings.OPERATOR_REPLACE_AFTER = 0
            assert first["nonce"] == nonce
            chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(2 * first["maxFeePerGas"] + 2)])
            chain.rpc("evm_mine")  # the transfer's max fee is now below the base fee: it cannot be mined
            assert treasury_nonce(chain) == nonce

            settings.OPERATOR_MAX_FEE_PER_GAS = first["maxFeePerGas"]  # no room to raise the fee
            epochs.close_epochs(chain.w3)
            one.refresh_from_db()
            assert one.funding_hashes == [one.funding_tx] and "OPERATOR_MAX_FEE_PER_GAS" in one.waiting

            settings.OPERATOR_MAX_FEE_PER_GAS = 10**12
            epochs.close_epochs(chain.w3)
            one.refresh_from_db()
            assert len(one.funding_hashes) == 2 and one.funding_hashes[0] == first["hash"].to_0x_hex()
            replacement = chain.w3.eth.get_transaction(one.funding_tx)
            assert replacement["nonce"] == nonce and replacement["input"] == first["input"]
            assert replacement["maxFeePerGas"] >= first["maxFeePerGas"] * 5 // 4
            assert replacement["maxPriorityFeePerGas"] >= first["maxPriorityFeePerGas"] * 5 // 4
            chain.rpc("evm_mine")
    finally:
        chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(base)])  # the session's anvil goes on as before
    epochs.close_epochs(chain.w3)
    one.refresh_from_db()
    assert one.state == Epoch.State.QUEUED and treasury_nonce(chain) == nonce + 1
    assert chain.w3.eth.get_transaction_receipt(one.funding_tx)["status"] == 1
    assert chain.token.balance_of(chain.distributor.address) == int(one.total)
    assert send().confirmed == 1


def test_a_transfer_whose_nonce_another_transaction_took_is_given_up_once_that_is_confirmed(
        chain, treasury, settings, monkeypatch):
    """Someone used the treasury's key elsewhere: its transfer can never be mined. It is forgotten
    (and a new one signed) only once the nonce is used in a block with the confirmations."""
    settings.CHAIN_CONFIRMATIONS = 2
    monkeypatch.setattr(epochs, "FUNDING_WAIT", 0.5)
    epoch = first_window(hours_ago=1)
    earners(epoch, 1)
    nonce = treasury_nonce(chain)
    with manual_mining(chain):
        epochs.close_epochs(chain.w3)
        one = Epoch.objects.get(number=1)
        lost = one.funding_tx
        chain.rpc("anvil_dropTransaction", [lost])
    chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(
        {"from": TREASURY.address, "to": TREASURY.address, "value": 0}))  # takes the nonce
    assert treasury_nonce(chain) == nonce + 1

    epochs.close_epochs(chain.w3)  # not confirmed yet: kept
    one.refresh_from_db()
    assert one.funding_tx == lost and one.state == Epoch.State.SCORED
    chain.rpc("anvil_mine", [hex(2)])
    epochs.close_epochs(chain.w3)
    one.refresh_from_db()
    assert not one.funding_tx and one.waiting.startswith(f"the treasury's nonce {nonce} went to another transaction")
    epochs.close_epochs(chain.w3)
    one.refresh_from_db()
    assert one.state == Epoch.State.QUEUED and one.funding_nonce == nonce + 1
    assert chain.token.balance_of(chain.distributor.address) == int(one.total)


@pytest.fixture
def other_chain():
    """An anvil that runs chain 8453 (Base's id), as a real chain's node would say."""
    from marketplace.devstack import ANVIL, wait_for_rpc
    from tests.conftest import free_port

    port = free_port()
    process = subprocess.Popen([str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--chain-id", "8453",
                                "--silent"], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for_rpc(url, process), "anvil did not start"
        yield Web3(Web3.HTTPProvider(url))
    finally:
        process.terminate()
        process.wait(10)


def test_a_dev_key_signs_nothing_on_a_node_that_is_not_anvil_s_chain(chain, treasury, other_chain, settings):
    """CHAIN_ID is not trusted for the dev-key rule: at signing time the node's own eth_chainId
    must be anvil's 31337 for a dev key (here the setting says 8453 too, as if the start-up check
    had been bypassed)."""
    epoch = first_window(hours_ago=1)
    earners(epoch, 1)
    settings.CHAIN_ID = 8453
    waiting = epochs.fund(epoch, other_chain, chain.distributor)
    assert waiting.startswith("waiting for funding: REWARD_TREASURY_KEY is one of anvil's public dev keys")
    assert "runs chain id 8453" in waiting
    assert not Epoch.objects.get(pk=epoch.pk).funding_tx and other_chain.eth.get_transaction_count(TREASURY.address) == 0

    settings.CHAIN_ID = 31337  # the setting says anvil, the node does not
    waiting = epochs.fund(epoch, other_chain, chain.distributor)
    assert "runs chain id 8453, but CHAIN_ID is 31337" in waiting and not Epoch.objects.get(pk=epoch.pk).funding_tx

    settings.CHAIN_ID, settings.CHAIN_RPC_URL = 8453, other_chain.provider.endpoint_uri
    with pytest.raises(WrongChain, match="CHAIN_OPERATOR_KEY is one of anvil's public dev keys"):
        operator_web3()
