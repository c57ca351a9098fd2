"""The contributor's dashboard (/me/rewards), its CSV export and settings, and the public network
page (/rewards) with its API, over epochs scored by the real close against PostgreSQL: devices
and their state, uptime per day, amounts and held amounts with their reason, what can be claimed
with its proof, referrals, the leaderboard without those who opted out."""
import csv
from datetime import timedelta
import io

from django.test import Client
from django.utils import timezone
from eth_account import Account
import pytest

from marketplace.accounts.services import wallet_user
from marketplace.rewards import dashboard
from marketplace.rewards.merkle import verify
from marketplace.rewards.models import Contributor, DeviceDay, Epoch, EpochAmount, Flag
from tests.integration.test_epochs import (  # noqa: F401  (the epoch settings fixture)
    _epoch_settings, credit, device, first_window, heartbeats, score_through,
)

pytestmark = pytest.mark.django_db


def signed_in(address):
    client = Client()
    client.force_login(wallet_user(address))
    return client


@pytest.fixture
def two_epochs():
    """Two contributors over two scored epochs, the first matured and claimable; the second
    wallet flagged in epoch 2 (its amount held)."""
    epoch = first_window()
    a, b = Account.create().address, Account.create().address
    da, db_ = device(a), device(b)
    heartbeats(da, epoch.starts_at, 30)
    credit(da, 3, epoch.starts_at + timedelta(minutes=2))
    credit(db_, 1, epoch.starts_at + timedelta(minutes=2))
    score_through(1)
    Epoch.objects.filter(number=1).update(state=Epoch.State.MATURED, root_status=Epoch.RootStatus.PROPOSED)
    Flag.objects.create(kind=Flag.Kind.CANARY, wallet=b, device=db_, evidence={"job": 9})
    credit(db_, 2, epoch.ends_at + timedelta(minutes=3))
    score_through(2)
    da.last_seen_at = timezone.now()
    da.save(update_fields=["last_seen_at"])
    DeviceDay.objects.create(device=da, day=timezone.now().date(), heartbeats=60, verified_slots=30,
                             bytes_up=12_345, bytes_down=67_890, latency_ms_avg=42)
    return a, b


def test_the_dashboard_shows_devices_uptime_epochs_held_amounts_and_the_claim(two_epochs):
    a, b = two_epochs
    html = signed_in(a).get("/me/rewards").content.decode()
    one = EpochAmount.objects.get(epoch__number=1, wallet=a)
    assert f'data-cumulative="{int(one.amount)}"' in html and "data-claim " in html
    proof = html.split('data-proof="')[1].split('"')[0].split(",")
    root = Epoch.objects.get(number=1).root
    assert verify(root, a, int(one.amount), proof)
    assert 'data-online' in html and "0.5 h" in html  # 30 one-minute slots today
    assert "12,345 B up, 67,890 B down, 42 ms" in html  # its own figures, to its owner
    assert "12,345" not in Client().get("/rewards").content.decode()  # and to nobody else
    assert "12345" not in Client().get("/api/v1/rewards/leaderboard").content.decode()
    assert 'data-epoch="1"' in html and 'data-epoch="2"' not in html  # it earned nothing in epoch 2

    flagged = signed_in(b).get("/me/rewards").content.decode()
    assert 'data-epoch="1"' in flagged and 'data-epoch="2"' in flagged
    assert "data-held-reason" in flagged and "canary" in flagged.lower()
    assert 'data-offline' in flagged


def test_signed_out_visitors_get_the_sign_in_prompt_and_the_export_refuses():
    client = Client()
    page = client.get("/me/rewards")
    assert page.status_code == 200 and "is for signed-in contributors" in page.content.decode()
    assert client.get("/me/rewards/earnings.csv").status_code == 401
    assert client.post("/me/rewards/settings", {"leaderboard_opt_out": "on"}).status_code == 401


def test_the_earnings_export_has_a_row_per_epoch_in_base_units(two_epochs):
    a, _ = two_epochs
    answer = signed_in(a).get("/me/rewards/earnings.csv")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert [r["epoch"] for r in rows] == ["1"]  # it earned nothing in epoch 2
    assert rows[0]["amount"] == str(int(EpochAmount.objects.get(epoch__number=1, wallet=a).amount))
    assert rows[0]["uptime_slots"] == "30" and rows[0]["job_points"] == "3"
    _, b = two_epochs
    held = list(csv.DictReader(io.StringIO(signed_in(b).get("/me/rewards/earnings.csv").content.decode())))
    assert [r["epoch"] for r in held] == ["2", "1"] and held[0]["held"] == held[0]["amount"] != "0"


def test_the_leaderboard_leaves_out_who_opted_out(two_epochs):
    a, b = two_epochs
    board = Client().get("/api/v1/rewards/leaderboard").json()["results"]
    assert [r["wallet"] for r in board][:1] == [a] and {r["wallet"] for r in board} == {a, b}
    assert signed_in(a).post("/me/rewards/settings", {"leaderboard_opt_out": "on"}).status_code == 302
    assert [r["wallet"] for r in Client().get("/api/v1/rewards/leaderboard").json()["results"]] == [b]
    page = Client().get("/rewards").content.decode()
    assert f'data-leader="{b}"' in page and f'data-leader="{a}"' not in page
    signed_in(a).post("/me/rewards/settings", {})  # unchecked: back on the board
    assert a in {r["wallet"] for r in Client().get("/api/v1/rewards/leaderboard").json()["results"]}


def test_network_figures(two_epochs):
    figures = Client().get("/api/v1/rewards/network").json()
    assert figures["nodes"] == 2 and figures["nodes_online"] == 1 and figures["contributors"] == 2
    assert figures["last_epoch"] == 2 and int(figures["last_pool"]) > 0
    assert figures["jobs_last_hour"] == 0  # the credits are hours old
    assert 'data-figure="nodes_online">1<' in Client().get("/rewards").content.decode()


def test_a_referral_is_named_once_before_the_first_epoch_and_never_loops(two_epochs):
    a, _ = two_epochs
    referrer = Contributor.objects.get(wallet=a)
    newcomer = Account.create().address
    client = signed_in(newcomer)
    refused = client.post("/me/rewards/settings", {"ref": "no-such-code"})
    assert refused.status_code == 302 and "error" not in refused["Location"]
    assert "No contributor has that referral code" in client.get(refused["Location"]).content.decode()
    assert "No contributor has" not in client.get("/me/rewards").content.decode()  # said once
    # A link cannot put words of its own on the page.
    assert "Send your key" not in client.get("/me/rewards?error=Send+your+key").content.decode()
    assert client.post("/me/rewards/settings", {"ref": referrer.referral_code}).status_code == 302
    assert Contributor.objects.get(wallet=newcomer).referred_by == referrer
    again = client.post("/me/rewards/settings", {"ref": referrer.referral_code})
    assert "already named" in client.get(again["Location"]).content.decode()
    page = signed_in(a).get("/me/rewards").content.decode()
    assert "data-referrals" in page and newcomer in page
    # The referrer naming its own referee would make a loop; it has earned already anyway.
    with pytest.raises(dashboard.ReferralRefused):
        dashboard.set_referrer(referrer, Contributor.objects.get(wallet=newcomer).referral_code)
    fresh = Contributor.objects.create(wallet=Account.create().address)
    with pytest.raises(dashboard.ReferralRefused, match="loop"):
        dashboard.set_referrer(fresh, fresh.referral_code)


def test_a_suspended_root_pauses_the_claim(two_epochs):
    a, _ = two_epochs
    Epoch.objects.filter(number=1).update(root_status=Epoch.RootStatus.SUSPENDED)
    html = signed_in(a).get("/me/rewards").content.decode()
    assert "data-claim-paused" in html and "data-claim " not in html
