"""The epoch close against the real database: windows by server time, points from heartbeats and
verified work, held amounts (cleared: paid next epoch; confirmed: back to the pool), community
revenue shared by rows, a close killed midway or run twice storing one root, and, over random
epochs, no epoch paying more than its pool, cumulative amounts never decreasing and the leaves
summing to the total."""

from datetime import datetime, timedelta, timezone as dt_timezone
import itertools

from django.conf import settings
from django.db import connection, transaction
from eth_account import Account
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
import pytest

from marketplace.rewards import epochs, selectors
from marketplace.rewards.merkle import MerkleTree, verify
from marketplace.rewards.models import (
    CommunityRevenue,
    CommunityShare,
    Contributor,
    Device,
    Epoch,
    EpochAmount,
    EpochLeaf,
    Flag,
    HeldAmount,
    WorkCredit,
)

pytestmark = pytest.mark.django_db

HOUR = 3600
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _epoch_settings(settings):
    settings.REWARD_EPOCH_SECONDS = HOUR
    settings.REWARD_EMISSION_PER_EPOCH = 1_000_000
    settings.REWARD_UPTIME_WEIGHT, settings.REWARD_JOB_WEIGHT = 1, 10
    settings.REWARD_NETWORK_POINT_CAP = 0
    settings.REWARD_TRUSTED_NETWORKS = []


def wallet():
    return Account.create().address


def device(owner, quality=10_000, ip="198.51.100.7"):
    contributor, _ = Contributor.objects.get_or_create(wallet=owner)
    return Device.objects.create(
        address=Account.create().address, contributor=contributor, quality_bps=quality, last_ip=ip
    )


def heartbeats(dev, start, slots, ip="198.51.100.7", probe_ok=True):
    """One heartbeat per minute slot from `start` (two per slot: only one counts)."""
    with connection.cursor() as cursor:
        for i in range(slots):
            at = start + timedelta(seconds=60 * i)
            for extra in (0, 10):
                received = at + timedelta(seconds=extra)
                cursor.execute(
                    "INSERT INTO rewards_heartbeat "
                    "(device_id, seq, received_at, slot, probe_ok, ip, sent_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        dev.pk,
                        next(_seq),
                        received,
                        int(at.timestamp()) // 60,
                        probe_ok,
                        ip,
                        received,
                    ],
                )


def credit(dev, points, at, owner=None):
    """A credit as the job settlement writes it: at the device's quality now."""
    return WorkCredit.objects.create(
        device=dev,
        wallet=owner or dev.contributor.wallet,
        points=points,
        quality_bps=Device.objects.values_list("quality_bps", flat=True).get(pk=dev.pk),
        ref=f"job-{next(_seq)}",
        earned_at=at,
    )


def first_window(hours_ago=5):
    """Open epochs from `hours_ago` hours back; returns epoch 1 (already ended, and past
    REWARD_SCORE_GRACE: in the first seconds of a window, the window of `hours_ago` hours back
    ended less than the grace ago, so the one before it is epoch 1)."""
    now = datetime.now(dt_timezone.utc)
    into_window = int(now.timestamp()) % epochs.epoch_seconds()
    late = timedelta(seconds=into_window + 1) if into_window <= settings.REWARD_SCORE_GRACE + 5 else timedelta(0)
    epochs.open_epochs(now - timedelta(hours=hours_ago) - late)
    return Epoch.objects.get(number=1)


def score_through(number):
    """Open the windows up to the one after `number` and score through `number`; each scored
    root counts as matured before the next epoch is scored (the chain's part is in
    test_reward_payouts)."""
    epoch = Epoch.objects.get(number=1)
    epochs.open_epochs(epoch.starts_at + timedelta(seconds=HOUR * number))
    while Epoch.objects.filter(number__lte=number, state=Epoch.State.OPEN).exists():
        Epoch.objects.filter(state=Epoch.State.SCORED).update(state=Epoch.State.MATURED)
        assert epochs.score_next() is not None
    return Epoch.objects.get(number=number)


def leaves(epoch):
    return dict(
        (w, int(c))
        for w, c in EpochLeaf.objects.filter(epoch=epoch).values_list("wallet", "cumulative")
    )


def test_epochs_have_fixed_windows_by_server_time():
    first = first_window(hours_ago=3)
    assert Epoch.objects.count() == 1  # the window that held that time
    assert len(epochs.open_epochs()) >= 3  # and every window begun since
    numbers = list(Epoch.objects.order_by("number").values_list("number", "starts_at", "ends_at"))
    assert [n for n, _, _ in numbers] == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    assert first.starts_at.timestamp() % HOUR == 0
    for (_, _, end), (_, start, _) in zip(numbers, numbers[1:]):
        assert end == start
    assert (
        epochs.open_epochs(first.ends_at - timedelta(seconds=1)) == []
    )  # nothing new for an earlier time


def test_points_and_amounts_of_a_scored_epoch():
    epoch = first_window()
    a, b = wallet(), wallet()
    da, db_ = device(a), device(b, quality=5_000)
    heartbeats(da, epoch.starts_at, 30)
    heartbeats(db_, epoch.starts_at, 20)
    heartbeats(db_, epoch.starts_at - timedelta(minutes=30), 10)  # before the window: not counted
    credit(da, 2, epoch.starts_at + timedelta(minutes=5))
    credit(db_, 4, epoch.ends_at)  # at the end: the next window's
    scored = score_through(1)
    rows = {r.wallet: r for r in EpochAmount.objects.filter(epoch=scored)}
    assert rows[a].uptime_slots == 30 and rows[a].job_points == 2
    assert rows[b].uptime_slots == 20 and rows[b].job_points == 0
    assert int(rows[a].points) == (30 + 20) * 10_000 and int(rows[b].points) == 20 * 5_000
    # 1,000,000 in the ratio 50 : 10.
    assert int(rows[a].amount) == 833_333 and int(rows[b].amount) == 166_666
    assert int(scored.carried_out) == 1 and int(scored.pool) == 1_000_000
    assert leaves(scored) == {a: 833_333, b: 166_666} and int(scored.total) == 999_999
    assert scored.state == Epoch.State.SCORED and scored.root.startswith("0x")


def test_a_proof_from_the_stored_tree_verifies_against_the_root():
    epoch = first_window()
    owners = [wallet() for _ in range(9)]
    for i, owner in enumerate(owners):
        credit(device(owner), i + 1, epoch.starts_at + timedelta(minutes=1))
    scored = score_through(1)
    Epoch.objects.filter(pk=scored.pk).update(
        state=Epoch.State.MATURED, root_status=Epoch.RootStatus.PROPOSED
    )
    for owner in owners:
        answer = selectors.proof(owner)
        assert answer["epoch"] == 1 and answer["root"] == scored.root
        assert verify(scored.root, owner, int(answer["cumulative"]), answer["proof"])
        assert answer["claimable"] == answer["cumulative"]
    tree = MerkleTree.of(leaves(scored).items())
    assert tree.root_hex == scored.root


def test_clearing_one_flag_releases_nothing_while_another_flag_of_the_wallet_is_open():
    """A benign flag cleared while a canary catch is still open: what the wallet earned stays
    held (the attack review's sequence: clearing the first flag paid everything held under it)."""
    epoch = first_window()
    owner = wallet()
    dev = device(owner)
    credit(dev, 10, epoch.starts_at + timedelta(minutes=1))
    benign = Flag.objects.create(kind=Flag.Kind.WALLETS_PER_ADDRESS, wallet=owner, evidence={"ip": "x"})
    caught = Flag.objects.create(kind=Flag.Kind.CANARY, wallet=owner, device=dev, evidence={"job": 2})
    score_through(1)
    (held,) = HeldAmount.objects.filter(wallet=owner)
    Flag.objects.filter(pk=benign.pk).update(status=Flag.Status.CLEARED)
    two = score_through(2)
    held.refresh_from_db()
    assert held.status == HeldAmount.Status.HELD and owner not in leaves(two)
    Flag.objects.filter(pk=caught.pk).update(status=Flag.Status.CONFIRMED)
    three = score_through(3)
    held.refresh_from_db()
    assert held.status == HeldAmount.Status.RETURNED and int(three.returned_in) == int(held.amount)


def test_a_credit_written_after_its_window_was_scored_is_paid_by_the_next_epoch_once():
    """A job settled inside epoch 1's window whose credit was written after epoch 1 was scored
    (the settling transaction committed late) used to be counted by no epoch."""
    epoch = first_window()
    a, late = wallet(), wallet()
    credit(device(a), 1, epoch.starts_at + timedelta(minutes=1))
    one = score_through(1)
    assert late not in leaves(one)
    written_late = credit(device(late), 3, epoch.ends_at - timedelta(seconds=1))
    two = score_through(2)
    row = EpochAmount.objects.get(epoch=two, wallet=late)
    assert row.job_points == 3 and int(row.amount) == 1_000_000 and leaves(two)[late] == 1_000_000
    written_late.refresh_from_db()
    assert written_late.epoch == two
    credit(device(a), 1, two.ends_at + timedelta(minutes=1))
    three = score_through(3)
    assert not EpochAmount.objects.filter(epoch=three, wallet=late).exists()  # counted once
    assert leaves(three)[late] == 1_000_000 and leaves(three)[a] == 1_000_000 + 1_000_000


def lower_quality(dev, penalty, at):
    """What a canary catch does to a device (`jobs._penalise`), at time `at`: quality down, a flag
    recording what it took."""
    Device.objects.filter(pk=dev.pk).update(quality_bps=dev.quality_bps - penalty)
    dev.refresh_from_db()
    flag = Flag.objects.create(kind=Flag.Kind.CANARY, wallet=dev.contributor.wallet, device=dev,
                               quality_penalty_bps=penalty)
    Flag.objects.filter(pk=flag.pk).update(created_at=at)
    return flag


def test_quality_weighs_work_as_it_was_when_earned_not_when_scored():
    """Points fairly earned before a flag keep their quality (scoring used the device's quality at
    the close for everything: a flag after the work took points earned before it)."""
    epoch = first_window()
    owner = wallet()
    dev = device(owner)
    heartbeats(dev, epoch.starts_at, 10)
    credit(dev, 2, epoch.starts_at + timedelta(minutes=1))  # at quality 10,000
    lower_quality(dev, 5_000, epoch.starts_at + timedelta(minutes=30))
    credit(dev, 2, epoch.starts_at + timedelta(minutes=40))  # at quality 5,000
    # Raised after the window ended, before the close: the window's uptime keeps full quality.
    lower_quality(dev, 2_500, epoch.ends_at + timedelta(seconds=5))
    one = score_through(1)
    row = EpochAmount.objects.get(epoch=one, wallet=owner)
    # uptime 10 slots at the window end's quality (5,000); jobs 2 x 10 at 10,000 and 2 x 10 at 5,000
    assert int(row.points) == 10 * 5_000 + 20 * 10_000 + 20 * 5_000
    assert list(WorkCredit.objects.order_by("earned_at").values_list("quality_bps", flat=True)) == [10_000, 5_000]


def test_a_revoked_root_is_never_built_on_even_once_its_revocation_is_forgotten():
    """Epoch 2's root is revoked: epoch 3 counts b's credit again and takes epoch 2's emission back;
    a chain reset then wipes the root statuses (the revocation with them): epoch 4 never builds on
    epoch 2's leaves and does not take epoch 2's amount back a second time."""
    epoch = first_window()
    a, b, c = wallet(), wallet(), wallet()
    credit(device(a), 1, epoch.starts_at + timedelta(minutes=1))
    score_through(1)
    credit(device(b), 1, epoch.ends_at + timedelta(minutes=1))
    two = score_through(2)
    Epoch.objects.filter(pk=two.pk).update(root_status=Epoch.RootStatus.REVOKED)
    three = score_through(3)
    # b's credit is counted again by epoch 3, with epoch 2's emission back in the pool.
    assert int(three.revoked_in) == 1_000_000 and int(three.pool) == 2_000_000
    assert leaves(three) == {a: 1_000_000, b: 2_000_000}
    Epoch.objects.filter(pk=two.pk).update(state=Epoch.State.PROPOSED)
    from marketplace.rewards.handlers import on_chain_reset

    on_chain_reset(None, 31337)  # the root statuses go, the revocation with them
    two.refresh_from_db()
    assert two.root_status == Epoch.RootStatus.NONE
    assert two.state == Epoch.State.PROPOSED  # not scored again to be proposed on the new chain
    credit(device(c), 1, three.ends_at + timedelta(minutes=1))
    four = score_through(4)
    assert int(four.revoked_in) == 0 and int(four.pool) == 1_000_000
    assert leaves(four) == {a: 1_000_000, b: 2_000_000, c: 1_000_000}  # b's epoch-2 amount is in no tree


def test_a_revoked_epoch_s_credits_revenue_and_released_amounts_are_counted_again_by_the_next_once():
    """Epoch 2 counted c's credit, a held one of flagged e, d's community revenue share, b's held
    amount released, and f's uptime; its root is revoked. Epoch 3 counts the credits, the revenue
    and the release again (e's is held again, its epoch-2 held amount never settles), and only
    what the pool itself paid (the emission spent on points, f's uptime among them) goes back to
    the pool: every contributor gets what it earned once, and no money is made or lost."""
    emission = 1_000_000
    epoch = first_window()
    a, b, c, d, e, f, g, buyer = (wallet() for _ in range(8))
    credit(device(a), 1, epoch.starts_at + timedelta(minutes=1))
    dev_b = device(b)
    credit(dev_b, 1, epoch.starts_at + timedelta(minutes=1))
    flag_b = Flag.objects.create(kind=Flag.Kind.CANARY, wallet=b, device=dev_b)
    one = score_through(1)
    assert int(one.held) == 500_000
    Flag.objects.filter(pk=flag_b.pk).update(status=Flag.Status.CLEARED)

    credit(device(c), 1, one.ends_at + timedelta(minutes=1))
    dev_e = device(e)
    credit(dev_e, 1, one.ends_at + timedelta(minutes=1))
    Flag.objects.create(kind=Flag.Kind.CANARY, wallet=e, device=dev_e)
    heartbeats(device(f), one.ends_at + timedelta(minutes=1), 10)
    version = community_version(wallet())
    CommunityShare.objects.create(version=version, wallet=d, rows=1)
    sale = CommunityRevenue.objects.create(chain_id=31337, tx_hash="0x" + "cd" * 32, log_index=0, block_number=9,
                                           order_id=1, listing_id=1, buyer=buyer, amount=8_000, version=version)
    CommunityRevenue.objects.filter(pk=sale.pk).update(created_at=one.ends_at + timedelta(minutes=3))
    two = score_through(2)
    assert {w: int(v) for w, v in EpochAmount.objects.filter(epoch=two).values_list("wallet", "amount")} == {
        b: 0, c: 333_333, d: 0, e: 333_333, f: 333_333}
    assert int(two.revenue_in) == 8_000 and int(two.released_in) == 500_000 and int(two.held) == 333_333
    Epoch.objects.filter(pk=two.pk).update(root_status=Epoch.RootStatus.REVOKED)

    credit(device(g), 1, two.ends_at + timedelta(minutes=1))
    three = score_through(3)
    two.refresh_from_db()
    assert two.revoked_back_in == three
    # Only the pool's own money goes back: what epoch 2 paid and held, less revenue and releases.
    assert int(three.revoked_in) == int(two.paid) + int(two.held) - 8_000 - 500_000 == 999_999
    assert int(three.revenue_in) == 8_000 and int(three.released_in) == 500_000
    assert set(WorkCredit.objects.filter(epoch=three).values_list("wallet", flat=True)) == {c, e, g}
    assert CommunityRevenue.objects.get().counted_in == three
    released = HeldAmount.objects.get(wallet=b)
    assert released.status == HeldAmount.Status.RELEASED and released.settled_in == three
    old_e, new_e = HeldAmount.objects.filter(wallet=e).order_by("epoch__number")
    assert old_e.status == HeldAmount.Status.RETURNED and old_e.settled_in == three
    assert new_e.epoch == three and new_e.status == HeldAmount.Status.HELD and int(new_e.amount) == 666_666
    assert leaves(three) == {a: 500_000, b: 500_000, c: 666_666, d: 8_000, g: 666_666}  # f's uptime: pool
    assert int(three.paid) + int(three.held) + int(three.carried_out) == int(three.pool)
    # Nothing made or lost: three emissions and the sale are in the leaves, held, or carried.
    outstanding = sum(int(h.amount) for h in HeldAmount.objects.filter(status=HeldAmount.Status.HELD))
    assert sum(leaves(three).values()) + outstanding + int(three.carried_out) == 3 * emission + 8_000

    four = score_through(4)  # nothing is counted a second time
    assert int(four.revoked_in) == 0 and int(four.revenue_in) == 0 and int(four.released_in) == 0
    assert not WorkCredit.objects.filter(epoch=four).exists()


def test_held_amounts_are_paid_in_the_next_epoch_once_the_flag_is_cleared(client):
    epoch = first_window()
    a, b = wallet(), wallet()
    credit(device(a), 10, epoch.starts_at + timedelta(minutes=1))
    dev_b = device(b)
    credit(dev_b, 10, epoch.starts_at + timedelta(minutes=1))
    flag = Flag.objects.create(kind=Flag.Kind.CANARY, wallet=b, device=dev_b, evidence={"job": 1})
    one = score_through(1)
    (held,) = HeldAmount.objects.filter(wallet=b)
    assert int(held.amount) == 500_000 and held.flag == flag and "canary" in held.reason.lower()
    assert b not in leaves(one) and int(one.held) == 500_000
    assert int(one.paid) + int(one.held) + int(one.carried_out) == int(one.pool)

    Flag.objects.filter(pk=flag.pk).update(status=Flag.Status.CLEARED)
    credit(dev_b, 10, one.ends_at + timedelta(minutes=1))
    two = score_through(2)
    held.refresh_from_db()
    assert held.status == HeldAmount.Status.RELEASED and held.settled_in == two
    row = EpochAmount.objects.get(epoch=two, wallet=b)
    assert int(row.released) == 500_000 and int(row.amount) == 1_000_000 and int(row.held) == 0
    assert leaves(two)[b] == 1_500_000 and leaves(two)[a] == 500_000  # a keeps its leaf
    assert int(two.released_in) == 500_000 and int(two.pool) == 1_500_000
    body = client.get(f"/api/v1/rewards/wallets/{b.lower()}/epochs").json()
    assert body["wallet"] == b and body["held"] == "0"
    latest, first = body["results"]
    assert (
        latest["epoch"] == 2
        and latest["released"] == "500000"
        and latest["cumulative"] == "1500000"
    )
    assert first["held"] == "500000" and first["cumulative"] is None
    assert first["held_amounts"] == [
        {"amount": "500000", "reason": held.reason, "status": "released", "flag": flag.pk}
    ]


def test_held_amounts_go_back_to_the_pool_once_the_flag_is_confirmed():
    epoch = first_window()
    a, b = wallet(), wallet()
    credit(device(a), 10, epoch.starts_at + timedelta(minutes=1))
    dev_b = device(b)
    credit(dev_b, 30, epoch.starts_at + timedelta(minutes=1))
    flag = Flag.objects.create(kind=Flag.Kind.SERVER, wallet=b, device=dev_b)
    score_through(1)
    Flag.objects.filter(pk=flag.pk).update(status=Flag.Status.CONFIRMED)
    two = score_through(2)  # nobody works in epoch 2: the whole pool carries
    assert int(two.returned_in) == 750_000 and int(two.pool) == 1_000_000 + 750_000
    assert int(two.carried_out) == int(two.pool) and int(two.paid) == 0
    assert HeldAmount.objects.get(wallet=b).status == HeldAmount.Status.RETURNED
    assert (
        two.root == "" and two.state == Epoch.State.MATURED
    )  # nothing new: the previous root stands
    credit(device(wallet()), 1, two.ends_at + timedelta(minutes=1))
    three = score_through(3)
    assert int(three.carried_in) == 1_750_000 and int(three.pool) == 2_750_000


def community_version(owner):
    from marketplace.accounts.services import wallet_user
    from marketplace.catalog.models import Dataset, DatasetVersion

    dataset = Dataset.objects.create(
        owner=wallet_user(owner),
        slug=f"community-{next(_seq)}",
        title="Community",
        license="CC0-1.0",
        payout_address=owner,
    )
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=1,
        file="x",
        original_name="x.csv",
        format="csv",
        size=1,
        content_hash="0x" + "11" * 32,
        price=1,
        token=owner,
    )


def test_community_revenue_is_shared_by_rows_without_the_buyer_and_the_rest_goes_to_the_pool():
    epoch = first_window()
    a, b, buyer = wallet(), wallet(), wallet()
    version = community_version(wallet())
    for owner, rows in ((a, 1), (b, 3), (buyer, 4)):
        CommunityShare.objects.create(version=version, wallet=owner, rows=rows)
    sale = CommunityRevenue.objects.create(
        chain_id=31337,
        tx_hash="0x" + "ab" * 32,
        log_index=3,
        block_number=9,
        order_id=1,
        listing_id=1,
        buyer=buyer,
        amount=8_000,
        version=version,
    )
    # Indexed (released) during epoch 1.
    CommunityRevenue.objects.filter(pk=sale.pk).update(
        created_at=epoch.starts_at + timedelta(minutes=3)
    )
    Flag.objects.create(kind=Flag.Kind.CANARY, wallet=b)
    one = score_through(1)
    assert int(one.revenue_in) == 8_000 and int(one.pool) == 1_008_000
    assert EpochAmount.objects.get(epoch=one, wallet=a).revenue == 1_000
    assert (
        EpochAmount.objects.get(epoch=one, wallet=b).held == 3_000
    )  # flagged: held like its other amounts
    assert not EpochAmount.objects.filter(epoch=one, wallet=buyer).exists()
    assert (
        int(one.carried_out) == 1_000_000 + 4_000
    )  # nobody had points; the buyer's part joined the pool
    assert leaves(one) == {a: 1_000}
    assert CommunityRevenue.objects.get().counted_in == one


def test_a_close_killed_midway_stores_nothing_and_its_rerun_the_same_root(monkeypatch):
    epoch = first_window(hours_ago=1)  # epoch 2 is the current window
    for i in range(5):
        credit(device(wallet()), i + 1, epoch.starts_at + timedelta(minutes=i))
    epochs.open_epochs(epoch.ends_at)

    def killed(*args, **kwargs):
        raise SystemExit("worker killed")  # after the amounts and leaves were written

    monkeypatch.setattr(epochs.EpochTree.objects, "create", killed)
    with pytest.raises(SystemExit):
        epochs.score_next()
    assert Epoch.objects.get(number=1).state == Epoch.State.OPEN
    assert not EpochAmount.objects.exists() and not EpochLeaf.objects.exists()
    monkeypatch.undo()
    assert epochs.score_next() == 1
    first = Epoch.objects.get(number=1)
    assert epochs.score_next() is None  # run again: nothing more to score
    assert EpochLeaf.objects.filter(epoch=first).count() == 5
    # The same inputs scored again from scratch give the same root.
    with transaction.atomic():
        sid = transaction.savepoint()
        EpochLeaf.objects.all().delete()
        EpochAmount.objects.all().delete()
        epochs.EpochTree.objects.all().delete()
        again = Epoch.objects.get(number=1)
        again.state = Epoch.State.OPEN
        epochs.score(again)
        assert again.root == first.root and again.total == first.total
        transaction.savepoint_rollback(sid)


@pytest.mark.django_db(transaction=True)
def test_a_step_whose_lock_another_session_holds_is_left_for_the_next_run():
    epoch = first_window(hours_ago=1)
    credit(device(wallet()), 1, epoch.starts_at)
    from django.db import connections

    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [epochs.LOCK_NAME])
            assert cursor.fetchone()[0]
            assert epochs.score_next() is None
            assert Epoch.objects.get(number=1).state == Epoch.State.OPEN
        other.rollback()
    finally:
        other.close()
    assert epochs.score_next() == 1


epoch_plans = st.lists(
    st.fixed_dictionaries(
        {
            "credits": st.lists(st.tuples(st.integers(0, 5), st.integers(1, 50)), max_size=8),
            "flag": st.sampled_from([None, 0, 1]),
            "decide": st.sampled_from([Flag.Status.CLEARED, Flag.Status.CONFIRMED, None]),
            "revenue": st.integers(0, 5_000),
            "emission": st.integers(0, 10**9),
            "revoke": st.booleans(),  # its root is revoked before the next epoch is scored
        }
    ),
    min_size=1,
    max_size=4,
)


@hypothesis_settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=epoch_plans)
def test_over_random_epochs_no_epoch_pays_more_than_its_pool_and_cumulative_never_decreases(
    plans, settings
):
    with transaction.atomic():
        sid = transaction.savepoint()
        try:
            owners = [wallet() for _ in range(6)]
            devices = [device(o) for o in owners]
            version = community_version(owners[0])
            for i, owner in enumerate(owners):
                CommunityShare.objects.create(version=version, wallet=owner, rows=i + 1)
            start = first_window(hours_ago=len(plans) + 2).starts_at
            flags = []
            previous = {}  # the leaves of the latest root that was not revoked
            money_in = 0
            for number, plan in enumerate(plans, start=1):
                begins = start + timedelta(seconds=HOUR * (number - 1))
                settings.REWARD_EMISSION_PER_EPOCH = plan["emission"]
                for index, points in plan["credits"]:
                    credit(devices[index], points, begins + timedelta(minutes=index))
                if plan["flag"] is not None:
                    flags.append(
                        Flag.objects.create(kind=Flag.Kind.CANARY, wallet=owners[plan["flag"]])
                    )
                if plan["revenue"]:
                    sale = CommunityRevenue.objects.create(
                        chain_id=31337,
                        tx_hash="0x" + f"{next(_seq):064x}",
                        log_index=0,
                        block_number=number,
                        order_id=number,
                        listing_id=1,
                        buyer=owners[5],
                        amount=plan["revenue"],
                        version=version,
                    )
                    CommunityRevenue.objects.filter(pk=sale.pk).update(
                        created_at=begins + timedelta(seconds=1)
                    )
                if plan["decide"] and flags:
                    Flag.objects.filter(pk=flags[0].pk).update(status=plan["decide"])
                epoch = score_through(number)
                assert int(epoch.paid) + int(epoch.held) + int(epoch.carried_out) == int(epoch.pool)
                assert int(epoch.paid) + int(epoch.held) <= int(epoch.pool)
                current = leaves(epoch) if epoch.root else previous
                assert all(current.get(w, 0) >= amount for w, amount in previous.items())
                if epoch.root:
                    assert sum(current.values()) == int(epoch.total)
                    assert MerkleTree.of(current.items()).root_hex == epoch.root
                    assert sum(current.values()) - sum(previous.values()) == int(epoch.paid)
                # Nothing made, lost or paid twice (revoked epochs' earnings counted again
                # included): every emission and sale is in the leaves, held, or carried.
                money_in += plan["emission"] + plan["revenue"]
                outstanding = sum(int(h.amount) for h in HeldAmount.objects.filter(status=HeldAmount.Status.HELD))
                assert sum(current.values()) + outstanding + int(epoch.carried_out) == money_in
                # What a revoked epoch counted was counted again by a later one.
                assert not WorkCredit.objects.filter(epoch__revoked_back_in__isnull=False).exists()
                assert not CommunityRevenue.objects.filter(counted_in__revoked_back_in__isnull=False).exists()
                assert not HeldAmount.objects.filter(status=HeldAmount.Status.RELEASED,
                                                     settled_in__revoked_back_in__isnull=False).exists()
                if plan["revoke"] and epoch.root:
                    Epoch.objects.filter(pk=epoch.pk).update(root_status=Epoch.RootStatus.REVOKED)
                    current = previous  # never built on
                previous = current
        finally:
            transaction.savepoint_rollback(sid)


def test_the_scoring_rules_are_served_for_the_dashboard(client, settings):
    settings.REWARD_TRUSTED_NETWORKS = ["127.0.0.0/8"]
    body = client.get("/api/v1/rewards/scoring").json()
    assert body["uptime_weight"] == 1 and body["job_weight"] == 10
    assert body["referral_tiers_bps"] == list(settings.REWARD_REFERRAL_BPS)
    assert body["trusted_networks"] == ["127.0.0.0/8"] and body["epoch_seconds"] == HOUR
    assert "quality_bps" in body["formula"] and body["emission_per_epoch"] == "1000000"


def test_the_close_scores_while_the_chain_is_down_and_says_so(settings):
    from tests.conftest import free_port

    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    epoch = first_window(hours_ago=1)
    credit(device(wallet()), 1, epoch.starts_at + timedelta(minutes=1))
    from marketplace.chain.models import Deployment

    Deployment.objects.create(
        chain_id=31337,
        contract="RewardDistributor",
        address=wallet(),
        tx_hash="0x" + "00" * 32,
        block_number=1,
        block_hash="0x" + "00" * 32,
    )
    report = epochs.close_epochs()
    assert report.scored == [1] and not report.skipped  # nothing needed the chain yet
    # Queued for the sender (no treasury to call): it sends the root once the node answers.
    one = Epoch.objects.get(number=1)
    assert one.state == Epoch.State.QUEUED and one.action.status == "pending"
    # Proposed, and past its validAt: maturing reads the indexed block's time from the chain.
    from marketplace.chain.models import IndexerCursor

    IndexerCursor.objects.create(chain_id=31337, block_number=5, block_hash="0x" + "00" * 32)
    Epoch.objects.filter(pk=one.pk).update(state=Epoch.State.PROPOSED, valid_at=one.ends_at)
    report = epochs.close_epochs()
    assert report.skipped.startswith("the chain did not answer") and not report.matured
    assert Epoch.objects.get(number=1).state == Epoch.State.PROPOSED


def test_uptime_counts_for_the_wallet_the_device_was_bound_to_when_each_heartbeat_came():
    """A device moved from one wallet to another mid-epoch splits its uptime; while unbound it
    earns nobody anything (it used to count the whole epoch for the wallet holding it at the
    close: a flagged wallet could move its devices to a fresh one and escape the hold)."""
    from marketplace.rewards.models import BindingEvent

    epoch = first_window()
    first, second = wallet(), wallet()
    dev = device(second)  # bound to the second wallet at the close
    start = epoch.starts_at
    for action, owner, minutes in (("bound", first, 0), ("rebound", second, 20), ("unbound", second, 40),
                                   ("bound", second, 50)):
        event = BindingEvent.objects.create(device=dev, wallet=owner, action=action, via="signatures")
        BindingEvent.objects.filter(pk=event.pk).update(created_at=start + timedelta(minutes=minutes))
    heartbeats(dev, start, 60)  # one slot a minute for the whole hour
    scored = score_through(1)
    rows = {r.wallet: r.uptime_slots for r in EpochAmount.objects.filter(epoch=scored)}
    assert rows == {first: 20, second: 20 + 10}  # 0-20 first; 20-40 second; 40-50 nobody; 50-60 second


def test_a_device_moved_mid_slot_earns_that_slot_once():
    """Rebinding inside a slot (a heartbeat before the move, one after) must not count the slot
    for both wallets: moving a device every minute would multiply its uptime."""
    from marketplace.rewards.models import BindingEvent

    epoch = first_window()
    first, second = wallet(), wallet()
    dev = device(second)
    start = epoch.starts_at
    for action, owner, seconds in (("bound", first, 0), ("rebound", second, 20 * 60 + 5)):
        event = BindingEvent.objects.create(device=dev, wallet=owner, action=action, via="signatures")
        BindingEvent.objects.filter(pk=event.pk).update(created_at=start + timedelta(seconds=seconds))
    heartbeats(dev, start, 60)  # two heartbeats a slot, ten seconds apart: slot 20 straddles the move
    scored = score_through(1)
    rows = {r.wallet: r.uptime_slots for r in EpochAmount.objects.filter(epoch=scored)}
    assert rows == {first: 21, second: 39} and sum(rows.values()) == 60


def binding_events(dev, *changes):
    """Write (action, wallet, previous wallet, minutes into epoch 1 as the writing server's clock
    stamped it) in this order: the database's order, whatever the stamps say."""
    from marketplace.rewards.models import BindingEvent

    start = Epoch.objects.get(number=1).starts_at
    for action, owner, previous, minutes in changes:
        event = BindingEvent.objects.create(device=dev, wallet=owner, previous_wallet=previous, action=action,
                                            via="signatures")
        BindingEvent.objects.filter(pk=event.pk).update(created_at=start + timedelta(minutes=minutes))


def test_uptime_follows_the_order_the_database_wrote_the_bindings_in_not_their_clocks():
    """A server whose clock ran fast stamped the move to `second` at 30 minutes; the move to
    `third`, written after it by a server with the right clock, at 20. By the stamps `second`
    held the device last and kept earning; in the database's order `third` holds it from the
    latest stamp on, and `second` (moved away) earns nothing after."""
    epoch = first_window()
    first, second, third = wallet(), wallet(), wallet()
    dev = device(third)
    binding_events(dev, ("bound", first, "", 0), ("rebound", second, first, 30), ("rebound", third, second, 20))
    heartbeats(dev, epoch.starts_at, 60)
    scored = score_through(1)
    rows = {r.wallet: r.uptime_slots for r in EpochAmount.objects.filter(epoch=scored)}
    assert rows == {first: 30, third: 30}


def test_a_device_made_by_hand_earns_for_its_wallet_until_its_first_recorded_change():
    """A device given a wallet by hand (no binding event) and later moved or unbound: before the
    change it counts for the wallet the change took it from (it used to earn nothing then)."""
    epoch = first_window()
    first, second, third = wallet(), wallet(), wallet()
    moved, unbound = device(first), device(third)
    binding_events(moved, ("rebound", second, first, 25))
    binding_events(unbound, ("unbound", third, "", 40))
    Device.objects.filter(pk=moved.pk).update(contributor=Contributor.objects.get_or_create(wallet=second)[0])
    Device.objects.filter(pk=unbound.pk).update(contributor=None)
    heartbeats(moved, epoch.starts_at, 60)
    heartbeats(unbound, epoch.starts_at, 60)
    scored = score_through(1)
    rows = {r.wallet: r.uptime_slots for r in EpochAmount.objects.filter(epoch=scored)}
    assert rows == {first: 25, second: 35, third: 40}


def test_a_root_revoked_after_a_later_tree_built_on_it_is_not_counted_again(caplog):
    """A deep reorganisation can bring in a RootRevoked for an epoch whose amounts later trees
    already carry: counting it again would owe more than was ever emitted."""
    one = first_window(hours_ago=6)
    a, b = wallet(), wallet()
    device_a, device_b = device(a), device(b)
    credit(device_a, 10, one.starts_at + timedelta(minutes=1))
    epochs.open_epochs(one.starts_at + timedelta(seconds=HOUR * 4))
    for number in (1, 2, 3):
        if number > 1:
            credit(device_b, 10, Epoch.objects.get(number=number).starts_at + timedelta(minutes=1))
        assert epochs.score_next() == number
        Epoch.objects.filter(number=number).update(state=Epoch.State.MATURED,
                                                    root_status=Epoch.RootStatus.PROPOSED)
    emission = int(Epoch.objects.get(number=1).emission)
    three = {w: int(c) for w, c in EpochLeaf.objects.filter(epoch__number=3).values_list("wallet", "cumulative")}
    Epoch.objects.filter(number=1).update(root_status=Epoch.RootStatus.REVOKED)  # the reorganisation's event
    credit(device_b, 10, Epoch.objects.get(number=4).starts_at + timedelta(minutes=1))
    with caplog.at_level("ERROR", logger="marketplace.rewards.epochs"):
        assert epochs.score_next() == 4
    four = Epoch.objects.get(number=4)
    assert int(four.revoked_in) == 0 and four.revoked_back_in_id is None
    assert int(four.total) <= 4 * emission, "the tree owes more than was ever emitted"
    leaves = {w: int(c) for w, c in EpochLeaf.objects.filter(epoch=four).values_list("wallet", "cumulative")}
    assert leaves.get(a, 0) == three[a]  # a's epoch-1 credit is not paid again
    assert Epoch.objects.get(number=1).revoked_back_in_id is None
    assert any("already built on it" in r.getMessage() for r in caplog.records)
