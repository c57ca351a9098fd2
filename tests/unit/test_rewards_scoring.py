"""The scoring rules on their own: points from verified uptime and jobs times quality, network
caps, referral bonuses (two tiers, verified jobs only, after the referee's first week, capped,
void between wallets that share an IP range or a device), amounts rounded down with the
remainder carried, and community revenue shared by rows without the buyer."""

from datetime import datetime, timedelta, timezone
import ipaddress

from hypothesis import given, strategies as st

from marketplace.rewards.scoring import (
    DeviceWork,
    Referrals,
    Weights,
    allocate,
    network_of,
    referral_bonuses,
    score_wallets,
    share_revenue,
)

W = Weights(
    uptime=1,
    job=10,
    referral_bps=(1_000, 500),
    referral_cap=10_000,
    referral_delay=timedelta(days=7),
    network_cap=0,
)
START = datetime(2026, 12, 1, tzinfo=timezone.utc)
LONG_AGO = START - timedelta(days=30)


def test_points_are_uptime_and_jobs_by_weight_times_quality_summed_over_devices():
    scores = score_wallets(
        [
            DeviceWork(1, "0xA", 10_000, uptime_slots=30, job_points=2),
            DeviceWork(2, "0xA", 5_000, uptime_slots=10),
            DeviceWork(3, "0xB", 2_500, job_points=4),
        ],
        W,
    )
    # (30 + 2 x 10) x 1.0 + 10 x 0.5 = 55 points, scaled by 10,000.
    assert scores["0xA"].points == 55 * 10_000
    assert scores["0xA"].uptime_slots == 40 and scores["0xA"].job_points == 2
    assert scores["0xA"].job_score == 20 * 10_000
    assert scores["0xB"].points == 4 * 10 * 2_500


def test_a_device_of_quality_zero_earns_nothing():
    assert (
        score_wallets([DeviceWork(1, "0xA", 0, uptime_slots=60, job_points=9)], W)["0xA"].points
        == 0
    )


def test_network_of_is_the_24_or_the_56_and_none_when_trusted():
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:1234:5678::1") == "2001:db8:1234:5600::/56"
    assert network_of(None) is None
    assert network_of("127.0.0.1", (ipaddress.ip_network("127.0.0.0/8"),)) is None


def test_devices_of_one_network_share_the_network_cap_pro_rata():
    capped = Weights(**{**W.__dict__, "network_cap": 100})
    scores = score_wallets(
        [
            DeviceWork(1, "0xA", 10_000, uptime_slots=150, network="198.51.100.0/24"),
            DeviceWork(2, "0xB", 10_000, uptime_slots=50, network="198.51.100.0/24"),
            DeviceWork(3, "0xC", 10_000, uptime_slots=150, network="192.0.2.0/24"),
            DeviceWork(
                4, "0xD", 10_000, uptime_slots=500, network=None
            ),  # trusted or unknown: exempt
        ],
        capped,
    )
    assert scores["0xA"].points == 75 * 10_000 and scores["0xB"].points == 25 * 10_000
    assert scores["0xC"].points == 100 * 10_000
    assert scores["0xD"].points == 500 * 10_000


def refs(**kwargs):
    defaults = {
        "referrer": {"0xR": "0xU", "0xU": "0xT"},
        "first_activity": {"0xR": LONG_AGO, "0xU": LONG_AGO},
        # The referrers are contributors of their own, elsewhere.
        "networks": {"0xU": frozenset({"203.0.113.0/24"}), "0xT": frozenset({"192.0.2.0/24"})},
        "devices": {"0xU": frozenset({11}), "0xT": frozenset({12})},
    }
    return Referrals(**{**defaults, **kwargs})


def test_referral_bonuses_are_two_tiers_of_verified_job_points_only():
    scores = score_wallets([DeviceWork(1, "0xR", 10_000, uptime_slots=1_000, job_points=100)], W)
    bonuses = referral_bonuses(scores, refs(), W, START)
    # The referee's job points: 100 x 10 = 1,000; uptime does not count.
    assert bonuses == {"0xU": 100 * 10_000, "0xT": 50 * 10_000}


def test_no_referral_bonus_in_the_referees_first_seven_days():
    scores = score_wallets([DeviceWork(1, "0xR", 10_000, job_points=100)], W)
    recent = refs(first_activity={"0xR": START - timedelta(days=6, hours=23)})
    assert referral_bonuses(scores, recent, W, START) == {}
    week = refs(first_activity={"0xR": START - timedelta(days=7)})
    assert referral_bonuses(scores, week, W, START)["0xU"] == 100 * 10_000


def test_referral_bonuses_are_capped_per_referrer_per_epoch():
    scores = score_wallets(
        [DeviceWork(i, f"0xR{i}", 10_000, job_points=5_000) for i in range(3)], W
    )
    referrals = Referrals(
        referrer={f"0xR{i}": "0xU" for i in range(3)},
        first_activity={f"0xR{i}": LONG_AGO for i in range(3)},
        devices={"0xU": frozenset({11})},
    )
    assert referral_bonuses(scores, referrals, W, START) == {"0xU": W.referral_cap * 10_000}


def test_a_referral_is_void_when_the_two_share_an_ip_range_or_a_device():
    scores = score_wallets([DeviceWork(1, "0xR", 10_000, job_points=100)], W)
    shared_network = refs(
        networks={"0xR": frozenset({"198.51.100.0/24"}), "0xU": frozenset({"198.51.100.0/24"})}
    )
    bonuses = referral_bonuses(scores, shared_network, W, START)
    assert (
        "0xU" not in bonuses and bonuses["0xT"] == 50 * 10_000
    )  # tier 2 shares nothing with the referee
    shared_device = refs(devices={"0xR": frozenset({7}), "0xU": frozenset({7, 8})})
    assert "0xU" not in referral_bonuses(scores, shared_device, W, START)


def test_a_referrer_with_no_device_and_no_network_of_its_own_earns_no_bonus():
    """Wallets that only signed in and named each other's codes (no node of their own) would
    otherwise take a share of the pool on the referee's work (a referee's own second wallets)."""
    scores = score_wallets([DeviceWork(1, "0xR", 10_000, job_points=100)], W)
    bare = refs(networks={}, devices={"0xT": frozenset({12})})
    assert referral_bonuses(scores, bare, W, START) == {"0xT": 50 * 10_000}
    assert referral_bonuses(scores, refs(networks={}, devices={}), W, START) == {}


def test_amounts_are_rounded_down_and_the_remainder_carried():
    amounts, remainder = allocate(100, {"0xA": 1, "0xB": 1, "0xC": 1})
    assert amounts == {"0xA": 33, "0xB": 33, "0xC": 33} and remainder == 1
    assert allocate(100, {}) == ({}, 100)
    assert allocate(0, {"0xA": 5}) == ({}, 0)


def test_revenue_is_shared_by_rows_and_a_contributing_buyer_gets_nothing():
    paid, to_pool = share_revenue(1_000, {"0xA": 1, "0xB": 2, "0xBuyer": 1}, "0xbuyer")
    assert paid == {"0xA": 250, "0xB": 500} and to_pool == 250
    assert share_revenue(999, {}, "0xA") == ({}, 999)


@given(
    st.integers(0, 10**30),
    st.dictionaries(
        st.sampled_from([f"0x{i}" for i in range(20)]), st.integers(0, 10**12), max_size=20
    ),
)
def test_allocation_never_pays_more_than_the_pool(pool, points):
    amounts, remainder = allocate(pool, points)
    assert sum(amounts.values()) + remainder == pool
    assert remainder >= 0 and all(v >= 0 for v in amounts.values())
    if amounts:
        assert remainder < len(points)  # rounding leaves less than one unit per wallet


def test_scores_do_not_depend_on_the_order_of_their_inputs():
    works = [
        DeviceWork(
            i,
            f"0x{i % 3}",
            7_000 + i,
            uptime_slots=i,
            job_points=i * 2,
            network=f"10.0.{i % 2}.0/24",
        )
        for i in range(12)
    ]
    capped = Weights(**{**W.__dict__, "network_cap": 50})
    forward = {w: s.points for w, s in score_wallets(works, capped).items()}
    backward = {w: s.points for w, s in score_wallets(list(reversed(works)), capped).items()}
    assert forward == backward
