"""Reads of epochs, amounts and proofs, for the API, the admin and the dashboard.

A proof is read from the stored tree: the wallet's leaf row gives its cumulative amount and the
index of its hash in the node array, and one query takes just the sibling nodes out of the
epoch's `bytea` with `substring` (stored uncompressed out of line, so PostgreSQL reads the few
pages that hold them, not the whole tree)."""
from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.models import Max, Sum
from eth_utils import is_address, to_checksum_address

from .merkle import MerkleTree
from .models import Epoch, EpochAmount, EpochLeaf, HeldAmount, RewardClaim

CLAIMABLE = (Epoch.RootStatus.PROPOSED, Epoch.RootStatus.SUSPENDED)


def claimable_epoch() -> Epoch | None:
    """The epoch whose root the distributor checks claims against: the latest matured one whose
    root was proposed (and not replaced or revoked); it may be suspended."""
    return (Epoch.objects.filter(state=Epoch.State.MATURED, root_status__in=CLAIMABLE)
            .exclude(root="").order_by("-number").first())


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


def claimed(wallet: str) -> int:
    """What the wallet has claimed so far, from the indexed `Claimed` events."""
    top = RewardClaim.objects.filter(chain_id=settings.CHAIN_ID, account=wallet).aggregate(top=Max("cumulative"))
    return int(top["top"] or 0)


def proof(wallet: str) -> dict:
    """The claimable root's leaf and proof for `wallet` (checksummed), with what it has claimed."""
    epoch = claimable_epoch()
    answer = {"wallet": wallet, "epoch": None, "root": None, "cumulative": "0", "proof": [],
              "claimed": str(claimed(wallet)), "claimable": "0", "paused": False,
              "distributor": _distributor()}
    if epoch is None:
        return answer
    answer.update(epoch=epoch.number, root=epoch.root, paused=epoch.root_status == Epoch.RootStatus.SUSPENDED)
    leaf = EpochLeaf.objects.filter(epoch=epoch, wallet=wallet).values_list("cumulative", "node").first()
    if leaf is None:
        return answer
    cumulative, node = int(leaf[0]), leaf[1]
    answer.update(cumulative=str(cumulative), proof=sibling_nodes(epoch.pk, node),
                  claimable="0" if answer["paused"] else str(max(0, cumulative - int(answer["claimed"]))))
    return answer


def _distributor() -> str | None:
    from marketplace.chain.services import deployed_address

    return deployed_address(settings.CHAIN_ID, "RewardDistributor")


def wallet_or_none(value: str) -> str | None:
    return to_checksum_address(value) if isinstance(value, str) and is_address(value) else None


def epochs(limit: int = 50):
    return Epoch.objects.order_by("-number")[:limit]


def wallet_epochs(wallet: str, limit: int = 100) -> list[dict]:
    """A wallet's amounts per epoch (newest first), with its held amounts and why."""
    amounts = list(EpochAmount.objects.filter(wallet=wallet).select_related("epoch")
                   .order_by("-epoch__number")[:limit])
    held = {}
    for h in HeldAmount.objects.filter(wallet=wallet, epoch__in=[a.epoch_id for a in amounts]):
        held.setdefault(h.epoch_id, []).append(h)
    cumulative = dict(EpochLeaf.objects.filter(wallet=wallet, epoch__in=[a.epoch_id for a in amounts])
                      .values_list("epoch_id", "cumulative"))
    return [{
        "epoch": a.epoch.number, "state": a.epoch.state, "uptime_slots": a.uptime_slots,
        "job_points": a.job_points, "points": str(int(a.points)), "referral_points": str(int(a.referral_points)),
        "amount": str(int(a.amount)), "revenue": str(int(a.revenue)), "released": str(int(a.released)),
        "held": str(int(a.held)),
        "cumulative": str(int(cumulative[a.epoch_id])) if a.epoch_id in cumulative else None,
        "held_amounts": [{"amount": str(int(h.amount)), "reason": h.reason, "status": h.status,
                          "flag": h.flag_id} for h in held.get(a.epoch_id, [])],
    } for a in amounts]


def held_total(wallet: str) -> int:
    return int(HeldAmount.objects.filter(wallet=wallet, status=HeldAmount.Status.HELD)
               .aggregate(s=Sum("amount"))["s"] or 0)
