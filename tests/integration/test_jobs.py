"""Fetch jobs on the server, against the real PostgreSQL and the demo site over real HTTP:
assignment by wallet and network, commit-reveal, settling into credits and deduplicated rows,
canaries and the server's own checks catching a node alone or a colluding pair, expired leases."""

from datetime import timedelta
import secrets

from django.utils import timezone
import pytest

from marketplace.rewards import demo_site, extracting, jobs
from marketplace.rewards.models import CollectedRow, FetchJob, Flag, JobAssignment, WorkCredit

from .jobs_fixtures import bound_device, dataset, job_settings, make_target, site

FIXTURES = (dataset, job_settings, site)
pytestmark = pytest.mark.django_db


def true_rows(slot):
    return [
        {"slot": slot, "station": s["id"], "temp_c": s["temp_c"], "humidity": s["humidity"]}
        for s in demo_site.weather(slot)["stations"]
    ]


def job_of(target, **kwargs):
    return jobs.create_job(target=target, **kwargs)


def slot_of(job):
    return int(job.url.rsplit("=", 1)[1])


def commit_and_reveal(nodes_rows, job):
    """Each (node, rows) commits, then each reveals (what an honest or lying node would send)."""
    salts = {}
    for node, rows in nodes_rows:
        salts[node.address] = secrets.token_hex(16)
        jobs.commit(
            device=node.device,
            job_id=job.pk,
            commit_hash=extracting.commitment(
                job_id=job.pk, device=node.address, rows=rows, salt=salts[node.address]
            ),
        )
    for node, rows in nodes_rows:
        jobs.reveal(device=node.device, job_id=job.pk, rows=rows, salt=salts[node.address])


def lease_all(job, nodes, ip="127.0.0.1"):
    for node in nodes:
        leased = jobs.lease(device=node.device, ip=ip, want=1)
        assert [a.job_id for a in leased] == [job.pk]


# Assignment --------------------------------------------------------------------------------------


def test_a_job_goes_to_replicas_of_different_wallets(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    first = bound_device()
    same_wallet = bound_device(wallet=first.device.contributor.wallet)
    other = bound_device()
    third = bound_device()
    assert len(jobs.lease(device=first.device, ip="127.0.0.1", want=1)) == 1
    assert jobs.lease(device=same_wallet.device, ip="127.0.0.1", want=1) == []
    assert [a.job_id for a in jobs.lease(device=other.device, ip="127.0.0.1", want=1)] == [job.pk]
    assert jobs.lease(device=third.device, ip="127.0.0.1", want=1) == []  # both replicas taken
    assert JobAssignment.objects.filter(job=job).count() == 2


def test_a_job_goes_to_replicas_of_different_ranges(job_settings, dataset, site):
    job_settings.REWARD_TRUSTED_NETWORKS = []
    job_of(make_target(dataset, site))
    a, b, c, d = (bound_device() for _ in range(4))
    assert len(jobs.lease(device=a.device, ip="203.0.113.5", want=1)) == 1
    assert jobs.lease(device=b.device, ip="203.0.113.200", want=1) == []  # the same /24
    assert (
        jobs.lease(device=c.device, ip="::ffff:203.0.113.9", want=1) == []
    )  # mapped: the same /24
    assert len(jobs.lease(device=d.device, ip="198.51.100.1", want=1)) == 1


def test_ipv6_nodes_are_told_apart_by_their_56(job_settings, dataset, site):
    job_settings.REWARD_TRUSTED_NETWORKS = []
    job_of(make_target(dataset, site))
    a, b, c = (bound_device() for _ in range(3))
    assert len(jobs.lease(device=a.device, ip="2001:db8:0:1::1", want=1)) == 1
    assert jobs.lease(device=b.device, ip="2001:db8:0:ff::2", want=1) == []  # 2001:db8:0:0::/56
    assert len(jobs.lease(device=c.device, ip="2001:db8:0:100::1", want=1)) == 1


def test_one_address_gets_one_place_unless_its_network_is_trusted(job_settings, dataset, site):
    job_settings.REWARD_TRUSTED_NETWORKS = []
    job_of(make_target(dataset, site))
    a, b = bound_device(), bound_device()
    assert len(jobs.lease(device=a.device, ip="127.0.0.1", want=1)) == 1
    assert jobs.lease(device=b.device, ip="127.0.0.1", want=1) == []
    job_settings.REWARD_TRUSTED_NETWORKS = ["127.0.0.0/8"]
    assert len(jobs.lease(device=b.device, ip="127.0.0.1", want=1)) == 1
    assert jobs.network_of("127.0.0.1") == "" and jobs.network_of("10.1.2.3") == "10.1.2.0/24"


def test_an_expired_lease_is_reassigned(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    a, b, c = (bound_device() for _ in range(3))
    lease_all(job, [a, b])
    assert jobs.lease(device=c.device, ip="127.0.0.1", want=1) == []
    JobAssignment.objects.filter(device=a.device).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert [x.job_id for x in jobs.lease(device=c.device, ip="127.0.0.1", want=1)] == [job.pk]
    assert JobAssignment.objects.get(device=a.device).state == JobAssignment.State.EXPIRED
    with pytest.raises(jobs.JobError) as refused:
        jobs.commit(device=a.device, job_id=job.pk, commit_hash="0x" + "00" * 32)
    assert refused.value.code == "lease_expired"
    assert jobs.lease(device=a.device, ip="127.0.0.1", want=1) == []  # never the same job again


def test_a_declined_job_goes_to_another_node(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    a, b, c = (bound_device() for _ in range(3))
    lease_all(job, [a, b])
    jobs.decline(device=a.device, job_id=job.pk, reason="robots_txt")
    assert [x.job_id for x in jobs.lease(device=c.device, ip="127.0.0.1", want=1)] == [job.pk]
    assert JobAssignment.objects.get(device=a.device).decline_reason == "robots_txt"


# Commit-reveal ----------------------------------------------------------------------------------


def test_a_reveal_without_a_commitment_is_refused(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    with pytest.raises(jobs.JobError) as refused:
        jobs.reveal(device=a.device, job_id=job.pk, rows=true_rows(slot_of(job)), salt="ab" * 16)
    assert refused.value.code == "not_committed"


def test_a_reveal_before_every_commitment_is_refused(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    rows, salt = true_rows(slot_of(job)), "cd" * 16
    jobs.commit(
        device=a.device,
        job_id=job.pk,
        commit_hash=extracting.commitment(job_id=job.pk, device=a.address, rows=rows, salt=salt),
    )
    with pytest.raises(jobs.JobError) as refused:
        jobs.reveal(device=a.device, job_id=job.pk, rows=rows, salt=salt)
    assert refused.value.code == "reveal_too_early"
    # Past the job's reveal_at the commitments in hand are enough.
    FetchJob.objects.filter(pk=job.pk).update(reveal_at=timezone.now() - timedelta(seconds=1))
    assert (
        jobs.reveal(device=a.device, job_id=job.pk, rows=rows, salt=salt).state
        == JobAssignment.State.REVEALED
    )


def test_a_reveal_that_does_not_match_the_commitment_is_refused(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    rows = true_rows(slot_of(job))
    for node in (a, b):
        jobs.commit(
            device=node.device,
            job_id=job.pk,
            commit_hash=extracting.commitment(
                job_id=job.pk, device=node.address, rows=rows, salt="ee" * 16
            ),
        )
    changed = [dict(rows[0], temp_c="99.9")] + rows[1:]
    for bad_rows, salt in ((changed, "ee" * 16), (rows, "ef" * 16)):
        with pytest.raises(jobs.JobError) as refused:
            jobs.reveal(device=a.device, job_id=job.pk, rows=bad_rows, salt=salt)
        assert refused.value.code == "reveal_mismatch"
    assert JobAssignment.objects.get(device=a.device).state == JobAssignment.State.COMMITTED


# Settling ---------------------------------------------------------------------------------------


def test_agreeing_results_earn_credit_once_each_and_rows_once_per_content(
    job_settings, dataset, site
):
    target = make_target(dataset, site)
    a, b = bound_device(), bound_device()
    now = timezone.now()
    first = jobs.create_job(target=target, now=now)
    lease_all(first, [a, b])
    commit_and_reveal([(a, true_rows(slot_of(first))), (b, true_rows(slot_of(first)))], first)
    first.refresh_from_db()
    assert (first.state, first.outcome) == (FetchJob.State.SETTLED, FetchJob.Outcome.ACCEPTED)
    credits = WorkCredit.objects.filter(ref=f"job:{first.pk}")
    assert sorted(c.wallet for c in credits) == sorted(
        [a.device.contributor.wallet, b.device.contributor.wallet]
    )
    assert all(c.points == 10 for c in credits)
    rows = CollectedRow.objects.filter(dataset=dataset)
    assert rows.count() == 5
    assert all(
        sorted(r.wallets) == sorted([a.device.contributor.wallet, b.device.contributor.wallet])
        for r in rows
    )
    # The same slot collected again (an unchanged page): credit for the work, no new rows.
    again = jobs.create_job(target=target, now=now)
    lease_all(again, [a, b])
    commit_and_reveal([(a, true_rows(slot_of(again))), (b, true_rows(slot_of(again)))], again)
    assert CollectedRow.objects.filter(dataset=dataset).count() == 5
    assert WorkCredit.objects.filter(device=a.device).count() == 2
    # Settling again (the beat after the inline settlement) writes nothing twice.
    assert jobs.settle_due(timezone.now() + timedelta(days=1)) == 0
    assert WorkCredit.objects.count() == 4
    counts = jobs.row_counts(dataset.pk)
    assert counts == {a.device.contributor.wallet: 5, b.device.contributor.wallet: 5}


def test_a_lone_fabricator_without_a_check_earns_nothing_and_is_not_flagged(
    job_settings, dataset, site
):
    job = job_of(make_target(dataset, site))
    honest, liar = bound_device(), bound_device()
    lease_all(job, [honest, liar])
    commit_and_reveal(
        [(honest, true_rows(slot_of(job))), (liar, [{"station": "ST01", "temp_c": "50.0"}])], job
    )
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.DISAGREED
    assert (
        not WorkCredit.objects.exists()
        and not CollectedRow.objects.exists()
        and not Flag.objects.exists()
    )


def test_a_node_disagreeing_with_a_canary_loses_quality_and_is_flagged(job_settings, dataset, site):
    job = job_of(make_target(dataset, site), canary=True)
    assert job.is_canary and job.expected_hash == extracting.rows_hash(true_rows(slot_of(job)))
    honest, liar = bound_device(), bound_device()
    lease_all(job, [honest, liar])
    fake = [{"slot": slot_of(job), "station": "ST01", "temp_c": "50.0", "humidity": 1}]
    commit_and_reveal([(honest, true_rows(slot_of(job))), (liar, fake)], job)
    liar.device.refresh_from_db()
    honest.device.refresh_from_db()
    assert liar.device.quality_bps == 7_500 and honest.device.quality_bps == 10_000
    flag = Flag.objects.get()
    assert (flag.kind, flag.status, flag.wallet) == (
        Flag.Kind.CANARY,
        Flag.Status.OPEN,
        liar.device.contributor.wallet,
    )
    assert flag.evidence["job"] == job.pk and flag.evidence["expected_hash"] == job.expected_hash
    assert flag.evidence["got_hash"] == extracting.rows_hash(fake)
    assert list(WorkCredit.objects.values_list("device", flat=True)) == [honest.device.pk]
    assert CollectedRow.objects.count() == 5


def test_a_colluding_pair_is_caught_by_a_canary(job_settings, dataset, site):
    job = job_of(make_target(dataset, site), canary=True)
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    fake = [{"slot": slot_of(job), "station": "ST09", "temp_c": "21.0", "humidity": 50}]
    commit_and_reveal([(a, fake), (b, fake)], job)
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.DISAGREED
    assert sorted(Flag.objects.values_list("wallet", flat=True)) == sorted(
        [a.device.contributor.wallet, b.device.contributor.wallet]
    )
    assert not WorkCredit.objects.exists() and not CollectedRow.objects.exists()


def test_a_colluding_pair_is_caught_by_the_servers_own_fetch(job_settings, dataset, site):
    job = job_of(make_target(dataset, site), canary=False, server_check=True)
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    fake = [{"slot": slot_of(job), "station": "ST09", "temp_c": "21.0", "humidity": 50}]
    commit_and_reveal([(a, fake), (b, fake)], job)
    job.refresh_from_db()
    assert job.state == FetchJob.State.REVEALING and not Flag.objects.exists()  # left for the beat
    assert jobs.settle_due() == 1
    job.refresh_from_db()
    assert job.server_hash == extracting.rows_hash(true_rows(slot_of(job)))
    assert job.outcome == FetchJob.Outcome.DISAGREED
    assert set(Flag.objects.values_list("kind", flat=True)) == {Flag.Kind.SERVER}
    assert Flag.objects.count() == 2
    a.device.refresh_from_db()
    assert a.device.quality_bps == 7_500
    assert not WorkCredit.objects.exists() and not CollectedRow.objects.exists()


def test_a_colluding_pair_on_an_unchecked_job_is_accepted(job_settings, dataset, site):
    """The documented risk: with no canary and no server fetch on a job, two colluding nodes that
    agree are accepted (docs/rewards-jobs.md gives the odds per setting)."""
    job = job_of(make_target(dataset, site), canary=False, server_check=False)
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    fake = [{"slot": slot_of(job), "station": "ST09", "temp_c": "21.0", "humidity": 50}]
    commit_and_reveal([(a, fake), (b, fake)], job)
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.ACCEPTED and WorkCredit.objects.count() == 2


def test_the_server_check_agrees_with_honest_nodes(job_settings, dataset, site):
    job = job_of(make_target(dataset, site), canary=False, server_check=True)
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    commit_and_reveal([(a, true_rows(slot_of(job))), (b, true_rows(slot_of(job)))], job)
    assert jobs.settle_due() == 1
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.ACCEPTED and not Flag.objects.exists()
    assert WorkCredit.objects.count() == 2


def test_a_job_past_its_deadline_settles_with_what_was_revealed(job_settings, dataset, site):
    job = job_of(make_target(dataset, site))
    a, b = bound_device(), bound_device()
    lease_all(job, [a, b])
    rows = true_rows(slot_of(job))
    jobs.commit(
        device=a.device,
        job_id=job.pk,
        commit_hash=extracting.commitment(
            job_id=job.pk, device=a.address, rows=rows, salt="aa" * 16
        ),
    )
    assert jobs.settle_due() == 0
    later = timezone.now() + timedelta(seconds=job_settings.REWARD_JOB_COMMIT_SECONDS + 1)
    jobs.reveal(device=a.device, job_id=job.pk, rows=rows, salt="aa" * 16, now=later)
    job.refresh_from_db()
    assert job.outcome == FetchJob.Outcome.UNVERIFIED  # one result: nothing to compare it with
    assert not WorkCredit.objects.exists()


def test_due_targets_make_one_job_each(job_settings, dataset, site):
    make_target(dataset, site)
    make_target(dataset, site, path="/prices?at={slot}", extractor={"kind": "table", "table": 0})
    assert jobs.make_due_jobs() == 2
    assert jobs.make_due_jobs() == 0
    urls = sorted(FetchJob.objects.values_list("url", flat=True))
    assert all("{slot}" not in url and "at=" in url for url in urls)
