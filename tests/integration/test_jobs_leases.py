"""Who gets which job, and what a lease that ends without a result costs, against the real
PostgreSQL and the demo site: jobs drawn at random (a node cannot steer its job to a partner's),
open leases capped per device and per wallet, strikes for leases that expired uncommitted or were
committed and never revealed, and canaries a node cannot tell from other jobs."""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
import pytest

from marketplace.rewards import extracting, jobs
from marketplace.rewards.jobs_api import job_body
from marketplace.rewards.models import FetchJob, JobAssignment

from .jobs_fixtures import bound_device, dataset, job_settings, make_target, site

FIXTURES = (dataset, job_settings, site)
IP = "127.0.0.1"


def open_jobs(dataset, site, n, **kwargs):
    target = make_target(dataset, site)
    return [jobs.create_job(target=target, **kwargs) for _ in range(n)]


def leased_ids(node, want=1, ip=IP, now=None):
    return [a.job_id for a in jobs.lease(device=node.device, ip=ip, want=want, now=now)]


def commit(node, job_id, rows=(), salt="ab" * 16, now=None):
    jobs.commit(
        device=node.device,
        job_id=job_id,
        commit_hash=extracting.commitment(
            job_id=job_id, device=node.address, rows=list(rows), salt=salt
        ),
        now=now,
    )


def expire(node):
    """The node's open leases run out, a full lease later (as if it never committed), and the
    sweep ends them."""
    now = timezone.now()
    JobAssignment.objects.filter(device=node.device, state=JobAssignment.State.LEASED).update(
        leased_at=now - timedelta(seconds=settings.REWARD_JOB_LEASE_SECONDS + 1),
        lease_expires_at=now - timedelta(seconds=1),
    )
    jobs.expire_leases()


# Finding 2: a node cannot choose its job ----------------------------------------------------------


@pytest.mark.django_db
def test_two_colluding_nodes_asking_in_a_row_mostly_get_different_jobs(job_settings, dataset, site):
    """With first come, first served, the second of two colluding nodes (other wallets, other
    networks) always got the job the first had just taken, and the pair held both replicas."""
    job_settings.REWARD_TRUSTED_NETWORKS = []
    open_jobs(dataset, site, 20)
    same, firsts = 0, set()
    for _ in range(30):
        a, b = bound_device(), bound_device()
        [first] = leased_ids(a, ip="203.0.113.7")
        [second] = leased_ids(b, ip="198.51.100.7")
        same += first == second
        firsts.add(first)
        JobAssignment.objects.all().delete()
    # Uniform among 20 open jobs: the same job 1 time in 20 (1.5 of 30 expected; 8 or more has a
    # chance of about 1 in 10,000), and the first node's jobs spread over most of the 20.
    assert same <= 7, same
    assert len(firsts) >= 8, firsts


@pytest.mark.django_db
def test_random_draws_keep_the_wallet_and_network_rules_and_fill_every_replica(
    job_settings, dataset, site
):
    job_settings.REWARD_TRUSTED_NETWORKS = []
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 10
    made = open_jobs(dataset, site, 5)
    a = bound_device()
    same_wallet = bound_device(wallet=a.device.contributor.wallet)
    same_network, other = bound_device(), bound_device()
    assert len(leased_ids(a, want=4, ip="203.0.113.1")) == 4
    assert len(leased_ids(a, want=4, ip="203.0.113.1")) == 1  # the fifth: every job once
    assert leased_ids(same_wallet, want=4, ip="192.0.2.1") == []
    assert leased_ids(same_network, want=4, ip="203.0.113.99") == []
    assert len(leased_ids(other, want=4, ip="192.0.2.1")) == 4
    assert len(leased_ids(other, want=4, ip="192.0.2.1")) == 1
    assert leased_ids(bound_device(), want=4, ip="198.51.100.1") == []  # every replica taken
    for job in made:
        held = JobAssignment.objects.filter(job=job)
        assert held.count() == 2
        assert len({x.wallet for x in held}) == 2 and len({x.network for x in held}) == 2


# Finding 3: open leases are capped; leases ending without a result are strikes -------------------


@pytest.mark.django_db
def test_a_device_holds_at_most_its_open_leases(job_settings, dataset, site):
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 2
    job_settings.REWARD_JOB_LEASES_PER_REQUEST = 4
    open_jobs(dataset, site, 6)
    node = bound_device()
    held = leased_ids(node, want=4)
    assert len(held) == 2
    assert leased_ids(node, want=4) == []  # still two uncommitted
    commit(node, held[0])
    assert leased_ids(node, want=4) == []  # committed, not yet revealed: still open
    job = FetchJob.objects.get(pk=held[0])
    jobs.reveal(device=node.device, job_id=job.pk, rows=[], salt="ab" * 16,
                now=job.reveal_at + timedelta(seconds=1))
    assert len(leased_ids(node, want=4)) == 1  # a revealed one no longer counts
    jobs.decline(device=node.device, job_id=held[1], reason="robots_txt")
    assert len(leased_ids(node, want=4)) == 1  # nor a declined one
    assert JobAssignment.objects.filter(device=node.device).count() == 4


@pytest.mark.django_db
def test_a_wallets_devices_hold_at_most_the_wallets_open_leases(job_settings, dataset, site):
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 2
    job_settings.REWARD_JOB_OPEN_LEASES_PER_WALLET = 3
    open_jobs(dataset, site, 8)
    first = bound_device()
    wallet = first.device.contributor.wallet
    second, third = bound_device(wallet=wallet), bound_device(wallet=wallet)
    assert len(leased_ids(first, want=2)) == 2
    assert len(leased_ids(second, want=2)) == 1
    assert leased_ids(third, want=2) == []
    assert len(leased_ids(bound_device(), want=2)) == 2  # another wallet is not held back


@pytest.mark.django_db
def test_committing_at_once_does_not_free_a_place_to_redraw(job_settings, dataset, site):
    """The reviewer's sequence: a node leased 2 jobs, committed dummy hashes at once, leased 2
    more, and so on, redrawing until it held its partner's job (each dummy commitment also took a
    replica from honest nodes). A commitment keeps its place until it is revealed."""
    job_settings.REWARD_TRUSTED_NETWORKS = []
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 2
    job_settings.REWARD_JOB_LEASES_PER_REQUEST = 4
    open_jobs(dataset, site, 30)
    a, b = bound_device(), bound_device()
    [partner_job] = leased_ids(a, ip="203.0.113.7")
    draws = 0
    while draws < 200:
        ids = leased_ids(b, want=2, ip="198.51.100.7")
        if not ids:
            break
        draws += len(ids)
        if partner_job in ids:
            break
        for job_id in ids:
            commit(b, job_id)  # a dummy commitment, never revealed
    assert draws == 2  # one draw of the cap's size, no more (the partner's job: 2 in 29)
    held = JobAssignment.objects.filter(device=b.device)
    assert held.count() == 2
    for x in held.filter(state=JobAssignment.State.LEASED):  # drawn with the partner's job
        commit(b, x.job_id)
    assert {x.state for x in held} == {JobAssignment.State.COMMITTED}
    # The wallet's cap counts commitments too: another device of b's wallet gets what is left.
    job_settings.REWARD_JOB_OPEN_LEASES_PER_WALLET = 3
    same_wallet = bound_device(wallet=b.device.contributor.wallet)
    assert len(leased_ids(same_wallet, want=2, ip="192.0.2.7")) == 1
    assert leased_ids(bound_device(wallet=b.device.contributor.wallet), ip="192.0.2.8") == []


@pytest.mark.django_db
def test_a_device_leases_at_most_its_hourly_draws(job_settings, dataset, site):
    """Revealing at once (a made-up result once the other replica committed) frees the place, so
    redrawing is bounded by the leases a device may take in an hour."""
    open_jobs(dataset, site, 8)
    node, other = bound_device(), bound_device()
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 8
    job_settings.REWARD_JOB_LEASES_PER_REQUEST = 8
    assert len(leased_ids(other, want=8)) == 8  # the other replica of every job
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 2
    job_settings.REWARD_JOB_LEASES_PER_HOUR = 4
    first_lease = timezone.now()
    drawn = []
    for _ in range(2):
        ids = leased_ids(node, want=2)
        assert len(ids) == 2
        drawn += ids
        for job_id in ids:
            commit(other, job_id)
            commit(node, job_id, salt="cd" * 16)  # every replica committed: reveals open
            jobs.reveal(device=node.device, job_id=job_id, rows=[], salt="cd" * 16)
    assert leased_ids(node, want=2) == []  # four draws this hour
    until = jobs.suspended_until(node.device)
    assert until is not None and first_lease + timedelta(minutes=59) < until
    assert until <= timezone.now() + timedelta(hours=1)
    job_settings.REWARD_JOB_LEASES_PER_HOUR = 5
    assert len(leased_ids(node, want=2)) == 1  # what is left of the hour's draws


@pytest.mark.django_db
def test_a_fresh_device_of_a_suspended_wallet_gets_no_lease(job_settings, dataset, site):
    """Device keys are free: a suspended device unbound and a fresh key bound to its wallet
    escaped its strikes. A wallet's strikes count over all its devices."""
    job_settings.REWARD_JOB_STRIKES = 3
    job_settings.REWARD_JOB_WALLET_STRIKES = 6
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 1
    open_jobs(dataset, site, 12)
    first = bound_device()
    wallet = first.device.contributor.wallet
    for _ in range(3):
        assert len(leased_ids(first)) == 1
        expire(first)
    assert jobs.suspended_until(first.device) is not None and leased_ids(first) == []
    # Unbound, and a fresh key bound to the same wallet: the wallet has 3 strikes of 6.
    first.device.contributor = None
    first.device.save(update_fields=["contributor"])
    second = bound_device(wallet=wallet)
    assert jobs.suspended_until(second.device) is None
    for _ in range(3):
        assert len(leased_ids(second)) == 1
        expire(second)
    # 6 strikes over the wallet's devices: every device of the wallet waits, a fresh one too.
    third = bound_device(wallet=wallet)
    until = jobs.suspended_until(third.device)
    assert until is not None and until > timezone.now() + timedelta(minutes=59)
    assert leased_ids(third) == []
    assert len(leased_ids(bound_device())) == 1  # another wallet is not held back
    # Once the strikes age out, the wallet's devices lease again.
    later = until + timedelta(seconds=1)
    JobAssignment.objects.filter(state=JobAssignment.State.LEASED).delete()
    FetchJob.objects.update(reveal_at=later + timedelta(minutes=10))
    assert len(leased_ids(third, now=later)) == 1


@pytest.mark.django_db
def test_a_wallets_declines_count_over_its_devices(job_settings, dataset, site):
    job_settings.REWARD_JOB_DECLINES = 2
    job_settings.REWARD_JOB_WALLET_DECLINES = 3
    open_jobs(dataset, site, 6)
    first = bound_device()
    wallet = first.device.contributor.wallet
    for _ in range(2):
        [job_id] = leased_ids(first)
        jobs.decline(device=first.device, job_id=job_id, reason="robots_txt")
    second = bound_device(wallet=wallet)
    [job_id] = leased_ids(second)
    jobs.decline(device=second.device, job_id=job_id, reason="robots_txt")
    fresh = bound_device(wallet=wallet)
    assert jobs.suspended_until(fresh.device) is not None
    assert leased_ids(fresh) == []


@pytest.mark.django_db
def test_expired_leases_are_strikes_that_suspend_the_device_and_free_the_replica(
    job_settings, dataset, site
):
    job_settings.REWARD_JOB_STRIKES = 3
    job_settings.REWARD_JOB_STRIKE_WINDOW = 3600
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 1
    open_jobs(dataset, site, 6)
    hoarder = bound_device()
    taken = []
    for _ in range(3):
        [job_id] = leased_ids(hoarder)
        taken.append(job_id)
        assert jobs.suspended_until(hoarder.device) is None
        expire(hoarder)
    ended = JobAssignment.objects.filter(device=hoarder.device)
    assert {x.state for x in ended} == {JobAssignment.State.EXPIRED}
    assert all(x.ended_at == x.lease_expires_at for x in ended)
    until = jobs.suspended_until(hoarder.device)
    assert until is not None and until > timezone.now() + timedelta(minutes=59)
    assert leased_ids(hoarder) == []  # suspended
    # Each replica it let expire goes to other nodes: both places of every job it held.
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 10
    job_settings.REWARD_JOB_LEASES_PER_REQUEST = 10
    x, y = bound_device(), bound_device()
    assert set(taken) <= set(leased_ids(x, want=10)) and set(taken) <= set(leased_ids(y, want=10))
    # Once the oldest strike leaves the window, it leases again.
    JobAssignment.objects.exclude(device=hoarder.device).delete()
    later = until + timedelta(seconds=1)
    FetchJob.objects.update(reveal_at=later + timedelta(minutes=10))
    assert len(leased_ids(hoarder, now=later)) == 1


@pytest.mark.django_db
def test_a_commitment_never_revealed_is_a_strike(job_settings, dataset, site):
    job_settings.REWARD_JOB_STRIKES = 2
    target = make_target(dataset, site)
    silent, honest = bound_device(), bound_device()
    rows = [{"a": 1}]
    for _ in range(2):
        job_id = jobs.create_job(target=target).pk  # the only open job
        assert leased_ids(silent) == [job_id] and leased_ids(honest) == [job_id]
        commit(silent, job_id, rows, salt="aa" * 16)
        commit(honest, job_id, rows, salt="bb" * 16)
        jobs.reveal(device=honest.device, job_id=job_id, rows=rows, salt="bb" * 16)
        assert jobs.suspended_until(silent.device) is None
        later = timezone.now() + timedelta(seconds=job_settings.REWARD_JOB_COMMIT_SECONDS + 1000)
        jobs.settle_due(later)
        assert FetchJob.objects.get(pk=job_id).outcome == FetchJob.Outcome.UNVERIFIED
        assert JobAssignment.objects.get(job_id=job_id, device=silent.device).state == (
            JobAssignment.State.UNREVEALED
        )
    jobs.create_job(target=target)
    assert jobs.suspended_until(silent.device) is not None
    assert leased_ids(silent) == []
    assert jobs.suspended_until(honest.device) is None and len(leased_ids(honest)) == 1


@pytest.mark.django_db
def test_declining_to_redraw_a_job_is_capped(job_settings, dataset, site):
    """Declining every job but the partner's would let a node choose its job after all."""
    job_settings.REWARD_JOB_DECLINES = 3
    open_jobs(dataset, site, 6)
    node = bound_device()
    for _ in range(3):
        [job_id] = leased_ids(node)
        jobs.decline(device=node.device, job_id=job_id, reason="robots_txt")
    assert jobs.suspended_until(node.device) is not None
    assert leased_ids(node) == []


# Finding 4: a canary looks like any other job ------------------------------------------------------


@pytest.mark.django_db
def test_a_canary_and_an_ordinary_job_show_a_node_the_same_thing(job_settings, dataset, site):
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 4
    target = make_target(dataset, site)
    now = timezone.now()
    canary = jobs.create_job(target=target, now=now, canary=True)
    ordinary = jobs.create_job(target=target, now=now, canary=False, server_check=False)
    checked = jobs.create_job(target=target, now=now, canary=False, server_check=True)
    assert canary.is_canary and canary.expected_hash
    node = bound_device()
    assert len(jobs.lease(device=node.device, ip=IP, want=3, now=now)) == 3
    bodies = {a.job_id: job_body(a, now) for a in jobs.current(node.device, now)}
    shown = [bodies[j.pk] for j in (canary, ordinary, checked)]
    assert all(body.keys() == shown[0].keys() for body in shown)
    without_id = [{k: v for k, v in body.items() if k != "id"} for body in shown]
    assert without_id[0] == without_id[1] == without_id[2]


@pytest.mark.django_db(transaction=True)
def test_a_beats_jobs_appear_together_in_random_order(job_settings, dataset, site):
    """The canaries' answers are fetched before any job of the beat is stored, and all are stored
    by one statement: a canary does not show up later than its siblings, and ids are not ordered
    by kind."""
    job_settings.REWARD_CANARY_RATE = 0.5
    for n in range(20):
        make_target(dataset, site, path=f"/weather?at={{slot}}&n={n}")
    assert jobs.make_due_jobs() == 20
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM rewards_fetchjob")
        assert cursor.fetchone()[0] == 1  # one transaction
    made = list(FetchJob.objects.order_by("pk"))
    assert len({j.created_at for j in made}) == 1 and len({j.reveal_at for j in made}) == 1
    kinds = [j.is_canary for j in made]
    assert 0 < sum(kinds) < 20
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)
    assert [j.target_id for j in made] != sorted(j.target_id for j in made)


@pytest.mark.django_db
def test_a_lease_on_a_job_that_failed_by_declines_ends_without_a_strike(job_settings, dataset, site):
    job_settings.REWARD_JOB_OPEN_LEASES_PER_DEVICE = 1
    job_settings.REWARD_JOB_STRIKES = 1
    [job] = open_jobs(dataset, site, 1)
    holder = bound_device()
    assert leased_ids(holder) == [job.pk]
    for _ in range(job.replicas * jobs.MAX_DECLINES_PER_REPLICA):
        node = bound_device()
        assert leased_ids(node) == [job.pk]
        jobs.decline(device=node.device, job_id=job.pk, reason="robots_txt")
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.FAILED
    held = JobAssignment.objects.get(job=job, device=holder.device)
    assert held.state == JobAssignment.State.EXPIRED and held.ended_at is None
    jobs.expire_leases(timezone.now() + timedelta(hours=1))
    assert jobs.suspended_until(holder.device) is None
    open_jobs(dataset, site, 1)
    assert len(leased_ids(holder)) == 1  # its open-lease place is free again


@pytest.mark.django_db
def test_a_lease_shorter_than_a_full_one_that_expires_is_no_strike(job_settings, dataset, site):
    """A place freed just before the job's reveal_at (someone declined it at the last moment)
    leaves whoever draws it too little time to fetch: its expiry is not held against them."""
    job_settings.REWARD_JOB_STRIKES = 1
    [job] = open_jobs(dataset, site, 1)
    FetchJob.objects.filter(pk=job.pk).update(reveal_at=timezone.now() + timedelta(seconds=2))
    honest = bound_device()
    [assignment] = jobs.lease(device=honest.device, ip=IP, want=1)
    assert (assignment.lease_expires_at - assignment.leased_at).total_seconds() <= 2
    jobs.expire_leases(now=assignment.lease_expires_at + timedelta(seconds=1))
    assignment.refresh_from_db()
    assert assignment.state == JobAssignment.State.EXPIRED and assignment.ended_at is None
    assert jobs.suspended_until(honest.device) is None
    # A full lease that expires is a strike (REWARD_JOB_STRIKES = 1 suspends at once).
    open_jobs(dataset, site, 1)
    [full] = jobs.lease(device=honest.device, ip=IP, want=1)
    jobs.expire_leases(now=full.lease_expires_at + timedelta(seconds=1))
    full.refresh_from_db()
    assert full.ended_at == full.lease_expires_at
    assert jobs.suspended_until(honest.device, now=full.lease_expires_at + timedelta(seconds=2)) is not None
