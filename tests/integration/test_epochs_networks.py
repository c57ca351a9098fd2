"""The cap on devices per network and uptime slot, through the epoch close on the real database:
of the devices with a probe-answered heartbeat of a slot from one /24 (IPv4) or /56 (IPv6), only
REWARD_DEVICES_PER_NETWORK earn the slot, drawn per slot by a keyed hash of (slot, device id), not
by who sent first; trusted networks are exempt."""

from datetime import timedelta
import hashlib
import hmac

from django.conf import settings as django_settings
import pytest

from marketplace.rewards import epochs, scoring
from marketplace.rewards.models import EpochAmount

from .test_epochs import _epoch_settings, device, first_window, heartbeats, score_through, wallet

FIXTURES = (_epoch_settings,)
pytestmark = pytest.mark.django_db


def uptime_by_wallet(epoch):
    return {r.wallet: r.uptime_slots for r in EpochAmount.objects.filter(epoch=epoch)}


def expected_draw(devices, slots, cap):
    """The rule, written out: per slot, the first `cap` devices by md5 of the key (an HMAC of
    SECRET_KEY), the slot and the device id, ties by device id."""
    key = hmac.new(
        django_settings.SECRET_KEY.encode(), b"rewards uptime rank", hashlib.sha256
    ).hexdigest()
    earned = {d.pk: 0 for d in devices}
    for slot in slots:
        ranked = sorted(
            devices,
            key=lambda d: (hashlib.md5(f"{key}:{slot}:{d.pk}".encode()).hexdigest(), d.pk),
        )
        for d in ranked[:cap]:
            earned[d.pk] += 1
    return earned


def test_a_device_farm_behind_one_24_earns_the_uptime_of_the_cap(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 3
    epoch = first_window()
    farm = [device(wallet(), ip=f"203.0.113.{i + 1}") for i in range(10)]
    for i, dev in enumerate(farm):
        # Later devices answer earlier in every slot: arrival no longer decides.
        heartbeats(dev, epoch.starts_at + timedelta(seconds=20 - 2 * i), 30, ip=f"203.0.113.{i + 1}")
    elsewhere = device(wallet(), ip="198.51.100.7")
    heartbeats(elsewhere, epoch.starts_at, 30, ip="198.51.100.7")
    scored = score_through(1)
    slots = uptime_by_wallet(scored)
    earned = [slots.get(d.contributor.wallet, 0) for d in farm]
    assert sum(earned) == 3 * 30  # three devices of the /24 in every slot
    assert earned != [0] * 7 + [30] * 3  # not the three earliest senders
    assert slots[elsewhere.contributor.wallet] == 30  # another network is not held back
    assert sum(slots.values()) == 4 * 30


def test_the_draw_is_the_keyed_hash_of_slot_and_device_and_a_rerun_agrees(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 2
    epoch = first_window()
    farm = [device(wallet(), ip="203.0.113.5") for _ in range(5)]
    for dev in reversed(farm):
        heartbeats(dev, epoch.starts_at, 10, ip="203.0.113.5")  # the same times
    weights = scoring.Weights.from_settings()
    window = {"start": epoch.starts_at, "end": epoch.ends_at}
    first = epochs._uptime(window, weights)
    got = {d.pk: first[(d.pk, d.contributor.wallet)][0] for d in farm}
    start_slot = int(epoch.starts_at.timestamp()) // 60
    assert got == expected_draw(farm, range(start_slot, start_slot + 10), 2)
    assert sum(got.values()) == 2 * 10
    assert epochs._uptime(window, weights) == first


def test_sending_first_at_each_slot_start_does_not_take_a_shared_24(settings):
    """An attacker sharing a /24 with honest nodes sent its 8 devices' heartbeats right at each
    slot's start: ranked by arrival, the honest devices of that /24 got no uptime at all."""
    settings.REWARD_DEVICES_PER_NETWORK = 8
    epoch = first_window()
    slots = 60
    attacker = [device(wallet(), ip=f"203.0.113.{i + 1}") for i in range(8)]
    honest = [device(wallet(), ip=f"203.0.113.{i + 101}") for i in range(2)]
    for i, dev in enumerate(attacker):
        heartbeats(dev, epoch.starts_at, slots, ip=f"203.0.113.{i + 1}")  # at the boundary
    for i, dev in enumerate(honest):
        heartbeats(dev, epoch.starts_at + timedelta(seconds=30 + i), slots, ip=f"203.0.113.{i + 101}")
    weights = scoring.Weights.from_settings()
    window = {"start": epoch.starts_at, "end": epoch.ends_at}
    counted = epochs._uptime(window, weights)
    everyone = attacker + honest
    earned = {d.pk: counted[(d.pk, d.contributor.wallet)][0] for d in everyone}
    assert sum(earned.values()) == 8 * slots  # the cap still holds in every slot
    # Each device earns in some slots and not in others (each is left out of a slot 1 time in 5:
    # earning all 60, or none, has a chance of about 1 in 700,000 per device).
    assert all(0 < earned[d.pk] < slots for d in everyone), earned
    assert all(earned[d.pk] > 0 for d in honest)
    # The earliest sender does not always win.
    assert earned[attacker[0].pk] < slots
    assert epochs._uptime(window, weights) == counted  # a rerun agrees


def test_ipv6_devices_share_their_56_and_mapped_addresses_count_as_ipv4(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 1
    epoch = first_window()
    start = epoch.starts_at
    v6 = [device(wallet(), ip=ip) for ip in ("2001:db8:0:1::1", "2001:db8:0:ff::2", "2001:db8:0:100::1")]
    v4 = [device(wallet(), ip=ip) for ip in ("203.0.113.9", "::ffff:203.0.113.10")]
    for k, dev in enumerate(v6 + v4):
        heartbeats(dev, start + timedelta(seconds=k), 10, ip=dev.last_ip)
    slots = uptime_by_wallet(score_through(1))
    got6 = [slots.get(d.contributor.wallet, 0) for d in v6]
    assert got6[0] + got6[1] == 10 and got6[2] == 10  # 2001:db8::/56 twice: one earns each slot
    assert sum(slots.get(d.contributor.wallet, 0) for d in v4) == 10  # one 203.0.113.0/24


def test_trusted_networks_and_a_cap_of_zero_are_not_capped(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 1
    settings.REWARD_TRUSTED_NETWORKS = ["127.0.0.0/8"]
    epoch = first_window()
    local = [device(wallet(), ip="127.0.0.1") for _ in range(3)]
    for dev in local:
        heartbeats(dev, epoch.starts_at, 5, ip="127.0.0.1")
    weights = scoring.Weights.from_settings()
    window = {"start": epoch.starts_at, "end": epoch.ends_at}
    assert [epochs._uptime(window, weights)[(d.pk, d.contributor.wallet)][0] for d in local] == [5] * 3
    settings.REWARD_TRUSTED_NETWORKS = []
    capped = epochs._uptime(window, scoring.Weights.from_settings())
    assert sum(capped[(d.pk, d.contributor.wallet)][0] for d in local) == 5  # one a slot
    settings.REWARD_DEVICES_PER_NETWORK = 0
    uncapped = epochs._uptime(window, scoring.Weights.from_settings())
    assert [uncapped[(d.pk, d.contributor.wallet)][0] for d in local] == [5] * 3


def test_the_scoring_endpoint_names_the_devices_per_network_cap(client, settings):
    settings.REWARD_DEVICES_PER_NETWORK = 4
    body = client.get("/api/v1/rewards/scoring").json()
    assert body["devices_per_network"] == 4
    rule = body["devices_per_network_rule"]
    assert "keyed hash of (slot, device id)" in rule and "not by arrival" in rule
