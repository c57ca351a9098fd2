"""Contributor abuse in the moderation console, against the real PostgreSQL: open flags with their
evidence, device and held amounts; clear or confirm (flags.decide), recorded once in the audit log
(by the flag_decided receiver) with the moderator's note, the contributor told; a second decision
409, a bad one 400, and the list closed to everyone but moderators (the failed operator actions'
to everyone but moderators and arbiters)."""
from datetime import timedelta

from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
import pytest

from marketplace.accounts.models import User
from marketplace.moderation import audit
from marketplace.moderation.models import AuditEntry, Notification
from marketplace.rewards.models import Contributor, Device, Epoch, Flag, HeldAmount

pytestmark = pytest.mark.django_db
WALLET = "0x" + "C0" * 20
DEVICE = "0x" + "D1" * 20


def person(name, *roles, **extra):
    user = User.objects.create_user(name, password="a-long-password-1", **extra)
    for role in roles:
        Group.objects.get(name=role).user_set.add(user)
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def moderator():
    return person("moderator", "moderator")


@pytest.fixture
def flagged():
    """A canary flag on a bound device, holding 3 USDC of an epoch's rewards."""
    contributor = Contributor.objects.create(wallet=WALLET)
    device = Device.objects.create(address=DEVICE, contributor=contributor, name="attic-node", quality_bps=7_500)
    flag = Flag.objects.create(kind=Flag.Kind.CANARY, wallet=WALLET, device=device, quality_penalty_bps=2_500,
                               evidence={"job": 17, "expected_hash": "0xaaa", "got_hash": "0xbbb"})
    now = timezone.now()
    epoch = Epoch.objects.create(number=1, starts_at=now - timedelta(hours=1), ends_at=now)
    HeldAmount.objects.create(epoch=epoch, wallet=WALLET, flag=flag, amount=3_000_000, reason="canary")
    User.objects.create_user(WALLET, address=WALLET)
    return flag


def test_the_list_shows_each_open_flag_with_its_evidence_and_what_it_holds(moderator, flagged):
    _, client = moderator
    (row,) = client.get("/api/v1/moderation/flags").json()["results"]
    assert row["id"] == flagged.pk and row["held"] == "3000000" and row["evidence"]["got_hash"] == "0xbbb"
    assert row["device"]["address"] == DEVICE and row["device"]["quality_bps"] == 7_500
    page = client.get("/moderation/abuse").content.decode()
    assert f'data-flag="{flagged.pk}"' in page and "3 USDC" in page and "0xbbb" in page and "attic-node" in page
    assert client.get("/api/v1/moderation/flags?kind=server").json()["results"] == []
    assert client.get("/api/v1/moderation/flags?kind=nonsense").status_code == 400


def test_clearing_on_the_page_gives_the_quality_back_and_is_recorded_once(moderator, flagged):
    _, client = moderator
    answer = client.post("/moderation/abuse", {"flag": flagged.pk, "decision": "clear", "note": "A flaky proxy."})
    assert answer.status_code == 302
    flagged.refresh_from_db()
    assert flagged.status == "cleared" and flagged.decided_by == "moderator" and "A flaky proxy." in flagged.note
    assert Device.objects.get(address=DEVICE).quality_bps == 10_000
    (entry,) = AuditEntry.objects.filter(target_type="flag")
    assert (entry.action, entry.actor, entry.actor_role) == ("flag.clear", "moderator", "moderator")
    assert entry.internal_note == "A flaky proxy." and entry.details["wallet"] == WALLET
    (told,) = Notification.objects.filter(recipient__address=WALLET)
    assert told.kind == "flag.clear" and "paid in the next epoch" in told.text
    page = client.get(answer["Location"]).content.decode()
    assert "paid in the next epoch" in page and f'data-decided="{flagged.pk}"' in page
    assert audit.verify()[2] is None


def test_confirming_through_the_api_and_deciding_again_is_a_409(moderator, flagged):
    _, client = moderator
    done = client.post(f"/api/v1/moderation/flags/{flagged.pk}/decide", {"decision": "confirm"},
                       content_type="application/json")
    assert done.status_code == 200 and done.json()["status"] == "confirmed"
    assert Device.objects.get(address=DEVICE).quality_bps == 7_500  # a confirmed flag gives nothing back
    again = client.post(f"/api/v1/moderation/flags/{flagged.pk}/decide", {"decision": "clear"},
                        content_type="application/json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["flag.confirm"]
    assert client.post("/moderation/abuse", {"flag": flagged.pk, "decision": "clear"}).status_code == 409


@pytest.mark.parametrize("body", [{"decision": "pardon"}, {}, {"decision": "clear", "note": "x" * 2001},
                                  {"decision": "clear", "note": 7}])
def test_a_bad_decision_is_a_400_and_nothing_changes(moderator, flagged, body):
    _, client = moderator
    answer = client.post(f"/api/v1/moderation/flags/{flagged.pk}/decide", body, content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid"
    flagged.refresh_from_db()
    assert flagged.status == "open" and not AuditEntry.objects.exists()


def test_an_unknown_flag_is_a_404(moderator):
    _, client = moderator
    answer = client.post("/api/v1/moderation/flags/999/decide", {"decision": "clear"}, content_type="application/json")
    assert answer.status_code == 404


def test_only_moderators_see_or_decide_flags(flagged):
    _, arbiter = person("arbiter", "arbiter")
    _, nobody = person("nobody")
    for client, status in ((arbiter, 403), (nobody, 403), (Client(), 401)):
        assert client.get("/api/v1/moderation/flags").status_code == status
        assert client.post(f"/api/v1/moderation/flags/{flagged.pk}/decide", {"decision": "clear"},
                           content_type="application/json").status_code == status
    assert arbiter.get("/moderation/abuse").status_code == 403
    assert arbiter.post("/moderation/abuse", {"flag": flagged.pk, "decision": "clear"}).status_code == 403
    flagged.refresh_from_db()
    assert flagged.status == "open"


def test_the_failed_actions_page_is_for_moderators_and_arbiters():
    _, nobody = person("nobody")
    assert nobody.get("/moderation/actions").status_code == 403
    assert nobody.get("/api/v1/moderation/actions").status_code == 403
    assert nobody.post("/api/v1/moderation/actions/1/retry").status_code == 403
    assert Client().get("/api/v1/moderation/actions").status_code == 401
    _, arbiter = person("arbiter", "arbiter")
    assert arbiter.get("/moderation/actions").status_code == 200
    assert arbiter.get("/api/v1/moderation/actions?before=x").status_code == 400
