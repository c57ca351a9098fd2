"""Reads of epochs, amounts and proofs, for the API, the admin and the dashboard.

A proof is read from the stored tree: the wallet's leaf row gives its cumulative amount and the
index of its hash in the node array, and one query takes just the sibling nodes out of the
epoch's `bytea` with `substring` (stored uncompressed out of line, so PostgreSQL reads the few
pages that hold them, not the whole tree)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from eth_utils import is_address, to_checksum_address

from .merkle import MerkleTree
from .models import Epoch, EpochAmount, EpochLeaf, HeldAmount


def sibling_nodes(epoch_id: int, node: int) -> list[str]:
    """The proof of the leaf at `node` in the stored tree of an epoch, leaf up, as 0x-hex."""
    indexes = MerkleTree.sibling_indexes(node)
    if not indexes:
        return []
    columns = ", ".join(f"substring(nodes from {32 * i + 1} for 32)" for i in indexes)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM rewards_epochtree WHERE epoch_id = %s", [epoch_id])
        row = cursor.fetchone()
    return ["0x" + bytes(value).hex() for value in row]


_PROOF = """
SELECT e.id, e.number, e.root, e.root_status, l.cumulative, l.node,
       (SELECT MAX(c.cumulative) FROM rewards_rewardclaim c
        WHERE c.chain_id = %(chain)s AND c.account = %(wallet)s),
       (SELECT d.address FROM chain_deployment d
        WHERE d.chain_id = %(chain)s AND d.contract = 'RewardDistributor')
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT id, number, root, root_status FROM rewards_epoch
    WHERE state = 'matured' AND root_status IN ('proposed', 'suspended') AND root <> ''
      -- never a root whose amounts went back to a pool (a reorganisation may have taken its RootRevoked)
      AND revoked_back_in_id IS NULL
    ORDER BY number DESC LIMIT 1) AS e ON true
LEFT JOIN rewards_epochleaf l ON l.epoch_id = e.id AND l.wallet = %(wallet)s
"""


def proof(wallet: str) -> dict:
    """The claimable root's leaf and proof for `wallet` (checksummed), with what it has claimed:
    two queries (the epoch, the leaf, the claims and the distributor in one; the sibling nodes
    in the other), the hot path of the dashboard and of every claim."""
    with connection.cursor() as cursor:
        cursor.execute(_PROOF, {"chain": settings.CHAIN_ID, "wallet": wallet})
        epoch_id, number, root, status, cumulative, node, claimed_so_far, distributor = (
            cursor.fetchone()
        )
    claimed_so_far = int(claimed_so_far or 0)
    paused = status == Epoch.RootStatus.SUSPENDED
    answer = {
        "wallet": wallet,
        "distributor": distributor,
        "epoch": number,
        "root": root,
        "cumulative": "0",
        "proof": [],
        "claimed": str(claimed_so_far),
        "claimable": "0",
        "paused": paused,
    }
    if cumulative is not None:
        cumulative = int(cumulative)
        answer.update(
            cumulative=str(cumulative),
            proof=sibling_nodes(epoch_id, node),
            claimable="0" if paused else str(max(0, cumulative - claimed_so_far)),
        )
    return answer


def wallet_or_none(value: str) -> str | None:
    return to_checksum_address(value) if isinstance(value, str) and is_address(value) else None


def epochs(limit: int = 50):
    return Epoch.objects.order_by("-number")[:limit]


def wallet_epochs(wallet: str, limit: int = 100) -> list[dict]:
    """A wallet's amounts per epoch (newest first), with its held amounts and why."""
    amounts = list(
        EpochAmount.objects.filter(wallet=wallet)
        .select_related("epoch")
        .order_by("-epoch__number")[:limit]
    )
    held = {}
    for h in HeldAmount.objects.filter(wallet=wallet, epoch__in=[a.epoch_id for a in amounts]):
        held.setdefault(h.epoch_id, []).append(h)
    cumulative = dict(
        EpochLeaf.objects.filter(
            wallet=wallet, epoch__in=[a.epoch_id for a in amounts]
        ).values_list("epoch_id", "cumulative")
    )
    return [
        {
            "epoch": a.epoch.number,
            "state": a.epoch.state,
            "root_status": a.epoch.root_status,
            "uptime_slots": a.uptime_slots,
            "job_points": a.job_points,
            "points": str(int(a.points)),
            "referral_points": str(int(a.referral_points)),
            "amount": str(int(a.amount)),
            "revenue": str(int(a.revenue)),
            "released": str(int(a.released)),
            "held": str(int(a.held)),
            "cumulative": str(int(cumulative[a.epoch_id])) if a.epoch_id in cumulative else None,
            "held_amounts": [
                {
                    "amount": str(int(h.amount)),
                    "reason": h.reason,
                    "status": h.status,
                    "flag": h.flag_id,
                }
                for h in held.get(a.epoch_id, [])
            ],
        }
        for a in amounts
    ]


def held_total(wallet: str) -> int:
    return int(
        HeldAmount.objects.filter(wallet=wallet, status=HeldAmount.Status.HELD).aggregate(
            s=Sum("amount")
        )["s"]
        or 0
    )
