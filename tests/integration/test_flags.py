"""Deciding contributor flags in the admin, against the real PostgreSQL and the demo site: a
canary catch takes quality off the device and the flag keeps what it took; clearing the flag gives
exactly that back (another flag's penalty stays), confirming gives nothing back, and a decided
flag is not decided again. Then the next epoch weighs the device's work at its restored quality."""

from datetime import timedelta

from django.utils import timezone
import pytest

from marketplace.rewards import epochs
from marketplace.rewards.models import Epoch, EpochAmount, Flag, WorkCredit

from .jobs_fixtures import bound_device, dataset, job_settings, make_target, site
from .test_jobs import commit_and_reveal, job_of, lease_all, slot_of, true_rows

FIXTURES = (dataset, job_settings, site)
pytestmark = pytest.mark.django_db


def caught(liar, honest, dataset, site):
    """A canary job the liar answers wrongly: its flag."""
    job = job_of(make_target(dataset, site, path=f"/weather?n={Flag.objects.count()}&at={{slot}}"), canary=True)
    lease_all(job, [honest, liar])
    fake = [{"slot": slot_of(job), "station": "ST01", "temp_c": "50.0", "humidity": 1}]
    commit_and_reveal([(honest, true_rows(slot_of(job))), (liar, fake)], job)
    return Flag.objects.filter(device=liar.device).latest("pk")


def decide(admin_client, action, flag):
    return admin_client.post("/admin/rewards/flag/", {"action": action, "_selected_action": [str(flag.pk)]})


def test_clearing_a_flag_gives_back_the_quality_it_took_and_only_that(admin_client, job_settings, dataset, site):
    honest, liar = bound_device(), bound_device()
    first = caught(liar, honest, dataset, site)
    second = caught(liar, honest, dataset, site)
    liar.device.refresh_from_db()
    assert liar.device.quality_bps == 5_000
    assert first.quality_penalty_bps == second.quality_penalty_bps == 2_500

    assert decide(admin_client, "clear", first).status_code == 302
    liar.device.refresh_from_db()
    first.refresh_from_db()
    assert first.status == Flag.Status.CLEARED and first.decided_by == "admin"
    assert liar.device.quality_bps == 7_500  # the second flag's penalty stays
    decide(admin_client, "clear", first)  # already decided: nothing more is given back
    decide(admin_client, "confirm", second)
    liar.device.refresh_from_db()
    second.refresh_from_db()
    assert second.status == Flag.Status.CONFIRMED and liar.device.quality_bps == 7_500


def test_a_penalty_never_takes_more_than_the_device_has_and_clearing_restores_full_quality(
        admin_client, job_settings, dataset, site):
    job_settings.REWARD_QUALITY_PENALTY_BPS = 6_000
    honest, liar = bound_device(), bound_device()
    flags = [caught(liar, honest, dataset, site) for _ in range(2)]
    liar.device.refresh_from_db()
    assert liar.device.quality_bps == 0 and [f.quality_penalty_bps for f in flags] == [6_000, 4_000]
    for flag in flags:
        decide(admin_client, "clear", flag)
    liar.device.refresh_from_db()
    assert liar.device.quality_bps == 10_000


def test_work_after_a_cleared_flag_is_weighed_at_the_restored_quality(admin_client, job_settings, dataset, site):
    """A device cleared by a moderator used to stay penalised for good."""
    job_settings.REWARD_EPOCH_SECONDS = 3600
    job_settings.REWARD_NETWORK_POINT_CAP = 0
    honest, liar = bound_device(), bound_device()
    flag = caught(liar, honest, dataset, site)
    decide(admin_client, "clear", flag)
    epochs.open_epochs(timezone.now() - timedelta(hours=1))
    job = job_of(make_target(dataset, site, path="/weather?after=clear&at={slot}"))
    lease_all(job, [honest, liar])
    commit_and_reveal([(honest, true_rows(slot_of(job))), (liar, true_rows(slot_of(job)))], job)
    one = Epoch.objects.get(number=1)
    (earned,) = WorkCredit.objects.filter(device=liar.device)  # settled once both revealed
    assert earned.quality_bps == 10_000
    WorkCredit.objects.update(earned_at=one.starts_at + timedelta(minutes=1))
    assert epochs.score_next() == 1
    row = EpochAmount.objects.get(epoch__number=1, wallet=liar.device.contributor.wallet)
    assert int(row.points) == job_settings.REWARD_JOB_POINTS * job_settings.REWARD_JOB_WEIGHT * 10_000
