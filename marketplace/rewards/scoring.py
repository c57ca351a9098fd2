"""Scoring an epoch: points per wallet from verified work, referral bonuses, and token amounts
from the pool. Pure functions over plain values (no database), so that the rules are tested on
their own and the close (`epochs.py`) is only the reading and the writing around them.

Points are integers scaled by 10,000 (device quality is in basis points), so nothing is rounded
before the amounts: a device's points are ``(uptime slots x REWARD_UPTIME_WEIGHT + job points x
REWARD_JOB_WEIGHT) x quality_bps``. Everything is iterated in sorted order: the same inputs give
the same amounts, the same leaves and the same root.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import ipaddress

from django.conf import settings

QUALITY_SCALE = 10_000


@dataclass(frozen=True)
class Weights:
    """The scoring settings, read once per close (and shown by the API)."""

    uptime: int = 1
    job: int = 10
    referral_bps: tuple[int, ...] = (1_000, 500)
    referral_cap: int = 10_000  # bonus points per referrer per epoch (unscaled)
    referral_delay: timedelta = timedelta(days=7)
    network_cap: int = 0  # points per /24 or /56 per epoch (unscaled); 0: no cap
    devices_per_network: int = 0  # devices of one /24 or /56 earning each uptime slot; 0: no cap
    trusted: tuple = ()  # ip_network objects exempt from the network rules

    @classmethod
    def from_settings(cls) -> Weights:
        return cls(
            uptime=settings.REWARD_UPTIME_WEIGHT,
            job=settings.REWARD_JOB_WEIGHT,
            referral_bps=tuple(settings.REWARD_REFERRAL_BPS),
            referral_cap=settings.REWARD_REFERRAL_CAP,
            referral_delay=timedelta(days=settings.REWARD_REFERRAL_DELAY_DAYS),
            network_cap=settings.REWARD_NETWORK_POINT_CAP,
            devices_per_network=settings.REWARD_DEVICES_PER_NETWORK,
            trusted=tuple(
                ipaddress.ip_network(n, strict=False) for n in settings.REWARD_TRUSTED_NETWORKS
            ),
        )

    def as_dict(self) -> dict:
        return {
            "formula": "points = sum over the wallet's devices of (uptime_slots x uptime_weight "
            "+ job_points x job_weight) x quality_bps / 10000, plus referral bonuses; "
            "amount = floor(pool x points / all points)",
            "uptime_weight": self.uptime,
            "job_weight": self.job,
            "referral_tiers_bps": list(self.referral_bps),
            "referral_cap_points": self.referral_cap,
            "referral_delay_days": self.referral_delay.days,
            "network_cap_points": self.network_cap,
            "devices_per_network": self.devices_per_network,
            "devices_per_network_rule": "an uptime slot is earned by at most devices_per_network "
            "of the devices of one network with a probe-answered heartbeat in the slot, drawn per "
            "slot by a keyed hash of (slot, device id) known only to the server, not by arrival "
            "time: sending first does not decide who earns; the same data gives the same draw "
            "(0: no cap; trusted networks exempt)",
            "network_prefix": {"ipv4": 24, "ipv6": 56},
            "trusted_networks": [str(n) for n in self.trusted],
        }


def network_of(ip, trusted=()) -> str | None:
    """The /24 (IPv4) or /56 (IPv6) an address belongs to; None for no address or a trusted one
    (trusted networks are not told apart: the demo's nodes all come from 127.0.0.1)."""
    if not ip:
        return None
    address = ipaddress.ip_address(str(ip))
    if any(address in network for network in trusted):
        return None
    prefix = 24 if address.version == 4 else 56
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@dataclass(frozen=True)
class DeviceWork:
    """A device's verified work in the epoch, for the wallet it earned it for."""

    device_id: int
    wallet: str
    quality_bps: int
    uptime_slots: int = 0
    job_points: int = 0
    network: str | None = None  # where it mostly connected from (None: unknown or trusted)


@dataclass
class WalletScore:
    wallet: str
    uptime_slots: int = 0
    job_points: int = 0
    job_score: int = (
        0  # the quality-weighted (scaled) points of verified jobs: what referrals count
    )
    points: int = 0  # scaled, after the network cap, before bonuses
    referral_points: int = 0  # scaled bonus


def device_points(work: DeviceWork, weights: Weights) -> tuple[int, int]:
    """(all scaled points, scaled points of jobs) of one device."""
    jobs = work.job_points * weights.job * work.quality_bps
    return work.uptime_slots * weights.uptime * work.quality_bps + jobs, jobs


def score_wallets(works: list[DeviceWork], weights: Weights) -> dict[str, WalletScore]:
    """Points per wallet, summed over its devices; devices of one network share at most
    `network_cap` points (each scaled down pro rata, rounding down) unless the network is
    trusted or unknown."""
    works = sorted(works, key=lambda w: (w.wallet, w.device_id))
    raw = {id(w): device_points(w, weights) for w in works}
    factor = {}
    if weights.network_cap > 0:
        by_network = defaultdict(int)
        for w in works:
            if w.network is not None:
                by_network[w.network] += raw[id(w)][0]
        cap = weights.network_cap * QUALITY_SCALE
        factor = {network: (cap, total) for network, total in by_network.items() if total > cap}
    scores: dict[str, WalletScore] = {}
    for w in works:
        points, jobs = raw[id(w)]
        if w.network in factor:
            cap, total = factor[w.network]
            points, jobs = points * cap // total, jobs * cap // total
        score = scores.setdefault(w.wallet, WalletScore(w.wallet))
        score.uptime_slots += w.uptime_slots
        score.job_points += w.job_points
        score.job_score += jobs
        score.points += points
    return scores


@dataclass(frozen=True)
class Referrals:
    """Who referred whom, and what voids a bonus."""

    referrer: dict[str, str] = field(default_factory=dict)  # referee wallet -> referrer wallet
    first_activity: dict[str, datetime] = field(
        default_factory=dict
    )  # wallet -> first verified work
    networks: dict[str, frozenset] = field(default_factory=dict)  # wallet -> networks seen
    devices: dict[str, frozenset] = field(
        default_factory=dict
    )  # wallet -> devices that earned for it

    def void(self, referrer: str, referee: str) -> bool:
        """The two share an IP range or a device (the bonus would be paid to oneself), or the
        referrer has neither: a wallet with no network and no device of its own is no
        contributor, and nothing could show it is not the referee's own second wallet."""
        empty = frozenset()
        if not self.networks.get(referrer) and not self.devices.get(referrer):
            return True
        return bool(
            self.networks.get(referrer, empty) & self.networks.get(referee, empty)
            or self.devices.get(referrer, empty) & self.devices.get(referee, empty)
        )


def referral_bonuses(
    scores: dict[str, WalletScore], referrals: Referrals, weights: Weights, epoch_start: datetime
) -> dict[str, int]:
    """Scaled bonus points per referrer: tier i's rate of each referee's verified-job points
    (tier 1 the referee's referrer, tier 2 that one's referrer), for referees whose first
    verified work is at least `referral_delay` before the epoch starts, void when the two share an
    IP range or a device, at most `referral_cap` points per referrer per epoch. Bonuses come out
    of the pool like any points."""
    bonus = defaultdict(int)
    cap = weights.referral_cap * QUALITY_SCALE
    for referee in sorted(scores):
        score = scores[referee]
        first = referrals.first_activity.get(referee)
        if score.job_score <= 0 or first is None or first + weights.referral_delay > epoch_start:
            continue
        upline = referrals.referrer.get(referee)
        for bps in weights.referral_bps:
            if upline is None or upline == referee:
                break
            if not referrals.void(upline, referee):
                bonus[upline] += score.job_score * bps // 10_000
            upline = referrals.referrer.get(upline)
    return {wallet: min(points, cap) for wallet, points in sorted(bonus.items()) if points > 0}


def allocate(pool: int, points: dict[str, int]) -> tuple[dict[str, int], int]:
    """(amount per wallet, remainder): floor(pool x points / all points); the remainder is what
    rounding left (all of the pool when nobody has points), carried to the next epoch."""
    total = sum(points.values())
    if pool <= 0 or total <= 0:
        return {}, max(pool, 0)
    amounts = {wallet: pool * p // total for wallet, p in sorted(points.items()) if p > 0}
    return amounts, pool - sum(amounts.values())


def share_revenue(amount: int, shares: dict[str, int], buyer: str) -> tuple[dict[str, int], int]:
    """A community sale's `amount` among the version's contributors by their rows: each gets
    floor(amount x rows / all rows); a buyer who contributed gets nothing (their part, and what
    rounding leaves, goes to the pool). Returns (amount per wallet, to the pool)."""
    rows = sum(shares.values())
    if amount <= 0 or rows <= 0:
        return {}, max(amount, 0)
    paid = {
        wallet: amount * r // rows
        for wallet, r in sorted(shares.items())
        if r > 0 and wallet.lower() != (buyer or "").lower()
    }
    paid = {wallet: value for wallet, value in paid.items() if value > 0}
    return paid, amount - sum(paid.values())
