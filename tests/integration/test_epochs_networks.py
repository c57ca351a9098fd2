"""The cap on devices per network and uptime slot, through the epoch close on the real database:
of the devices whose first probe-answered heartbeat of a slot came from one /24 (IPv4) or /56
(IPv6), only the first REWARD_DEVICES_PER_NETWORK by that heartbeat, ties by device id, earn the
slot; trusted networks are exempt."""

from datetime import timedelta

import pytest

from marketplace.rewards import epochs, scoring
from marketplace.rewards.models import EpochAmount

from .test_epochs import _epoch_settings, device, first_window, heartbeats, score_through, wallet

FIXTURES = (_epoch_settings,)
pytestmark = pytest.mark.django_db


def uptime_by_wallet(epoch):
    return {r.wallet: r.uptime_slots for r in EpochAmount.objects.filter(epoch=epoch)}


def test_a_device_farm_behind_one_24_earns_the_uptime_of_the_cap(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 3
    epoch = first_window()
    farm = [device(wallet(), ip=f"203.0.113.{i + 1}") for i in range(10)]
    for i, dev in enumerate(farm):
        # Later devices answer earlier in every slot: the first three by time are the last three.
        heartbeats(dev, epoch.starts_at + timedelta(seconds=20 - 2 * i), 30, ip=f"203.0.113.{i + 1}")
    elsewhere = device(wallet(), ip="198.51.100.7")
    heartbeats(elsewhere, epoch.starts_at, 30, ip="198.51.100.7")
    scored = score_through(1)
    slots = uptime_by_wallet(scored)
    earned = [slots.get(d.contributor.wallet, 0) for d in farm]
    assert earned == [0] * 7 + [30] * 3
    assert slots[elsewhere.contributor.wallet] == 30  # another network is not held back
    assert sum(slots.values()) == 4 * 30


def test_ties_go_to_the_lowest_device_id_and_a_rerun_agrees(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 2
    epoch = first_window()
    farm = [device(wallet(), ip="203.0.113.5") for _ in range(5)]
    for dev in reversed(farm):
        heartbeats(dev, epoch.starts_at, 10, ip="203.0.113.5")  # the same times
    weights = scoring.Weights.from_settings()
    window = {"start": epoch.starts_at, "end": epoch.ends_at}
    first = epochs._uptime(window, weights)
    assert {d.pk: first[(d.pk, d.contributor.wallet)][0] for d in farm} == {
        d.pk: (10 if n < 2 else 0) for n, d in enumerate(sorted(farm, key=lambda d: d.pk))
    }
    assert epochs._uptime(window, weights) == first


def test_ipv6_devices_share_their_56_and_mapped_addresses_count_as_ipv4(settings):
    settings.REWARD_DEVICES_PER_NETWORK = 1
    epoch = first_window()
    start = epoch.starts_at
    v6 = [device(wallet(), ip=ip) for ip in ("2001:db8:0:1::1", "2001:db8:0:ff::2", "2001:db8:0:100::1")]
    v4 = [device(wallet(), ip=ip) for ip in ("203.0.113.9", "::ffff:203.0.113.10")]
    for k, dev in enumerate(v6 + v4):
        heartbeats(dev, start + timedelta(seconds=k), 10, ip=dev.last_ip)
    slots = uptime_by_wallet(score_through(1))
    assert [slots.get(d.contributor.wallet, 0) for d in v6] == [10, 0, 10]  # 2001:db8::/56 twice
    assert [slots.get(d.contributor.wallet, 0) for d in v4] == [10, 0]  # one 203.0.113.0/24


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
    assert sorted(capped[(d.pk, d.contributor.wallet)][0] for d in local) == [0, 0, 5]
    settings.REWARD_DEVICES_PER_NETWORK = 0
    uncapped = epochs._uptime(window, scoring.Weights.from_settings())
    assert [uncapped[(d.pk, d.contributor.wallet)][0] for d in local] == [5] * 3


def test_the_scoring_endpoint_names_the_devices_per_network_cap(client, settings):
    settings.REWARD_DEVICES_PER_NETWORK = 4
    body = client.get("/api/v1/rewards/scoring").json()
    assert body["devices_per_network"] == 4
    assert "first" in body["devices_per_network_rule"]
