"""Actions on a wallet: ban it from publishing, buying or contributing, lift a ban, and find the
wallets that may be evading a ban. The ban itself is `accounts.WalletBan`, which the catalog,
orders and rewards check (accounts/bans.py); here are the moderators' actions, each one
transaction with its audit entry (`wallet.ban` / `wallet.unban`) and a notification to the
wallet's user.

What a ban does beyond refusing (docs/moderation.md, "Wallet bans"):
- publish: the approvals of the wallet's listings are cleared on-chain in one batch (the operator
  sender, `catalog.services.clear_listing_approvals`), and its datasets' waiting revisions are
  rejected, so nothing waiting can approve them again;
- contribute: the wallet's open flags are confirmed, so what they hold goes back to the pool at
  the next epoch close (and, the devices being refused, the wallet earns nothing more);
- buy: nothing beyond the refusals (orders already paid settle as ever).
"""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from eth_utils import is_address, to_checksum_address

from marketplace.api import Refused
from marketplace.accounts.models import User, WalletBan
from marketplace.catalog import revisions
from marketplace.catalog import services as catalog
from marketplace.catalog.models import Dataset, Listing
from marketplace.chain.models import IndexerCursor
from marketplace.rewards import flags
from marketplace.rewards.models import Flag

from . import audit
from .notifications import notify
from .receivers import role_of

SCOPES = [value for value, _ in WalletBan.Scope.choices]
SCOPE_WORDS = {WalletBan.Scope.PUBLISH: "publishing", WalletBan.Scope.BUY: "buying",
               WalletBan.Scope.CONTRIBUTE: "contributing"}
# The policy a ban is under (its `reason`), with what the wallet's owner reads.
REASONS = {
    "illegal_content": "Publishing unlawful content",
    "repeated_violations": "Repeated violations of the content policy",
    "fraud": "Fraud or deceptive listings",
    "payment_abuse": "Abuse of purchases, disputes or refunds",
    "contribution_abuse": "Fake or manipulated contributions",
    "ban_evasion": "Evading an earlier ban",
    "sanctions": "Legal or sanctions requirement",
    "other": "Other (see the statement)",
}
REASON_CODES = sorted(REASONS)  # the API's choices, alphabetical (BanReasonEnum)
MAX_STATEMENT = 2000
MAX_NOTE = 2000


class BanRefused(Refused):
    """A ban or lift that cannot be done."""


def checksummed(value: str) -> str:
    """The address checksummed, or BanRefused (400)."""
    value = (value or "").strip()
    if not (len(value) == 42 and is_address(value)):
        raise BanRefused("invalid_address", "Not a wallet address (0x and 40 hex digits).", status=400)
    return to_checksum_address(value)


def _user(address: str):
    return User.objects.filter(address=address).first()


def ban(*, address: str, scope: str, reason: str, statement: str, internal_note: str = "", moderator) -> WalletBan:
    """Ban `address` from `scope`. A second active ban of the same wallet and scope is refused
    (409 `already_banned`): the first one's statement stays what its owner read."""
    address = checksummed(address)
    if scope not in SCOPES:
        raise BanRefused("invalid_scope", f"Ban from one of {', '.join(SCOPES)}.", status=400)
    if reason not in REASONS:
        raise BanRefused("invalid_reason", f"Give a policy: one of {', '.join(REASONS)}.", status=400)
    if not statement.strip() or len(statement) > MAX_STATEMENT or len(internal_note) > MAX_NOTE:
        raise BanRefused("invalid_statement", f"Give a statement of reasons of 1 to {MAX_STATEMENT} characters "
                         f"(an internal note of at most {MAX_NOTE}).", status=400)
    with transaction.atomic():
        try:
            with transaction.atomic():
                row = WalletBan.objects.create(address=address, scope=scope, reason=reason, statement=statement,
                                               internal_note=internal_note, created_by=moderator,
                                               before_block=_indexed_block() if scope == WalletBan.Scope.BUY
                                               else None)
        except IntegrityError:
            raise BanRefused("already_banned", f"{address} is already banned from {SCOPE_WORDS[scope]}; lift that "
                             "ban first to place another.") from None
        details = {"ban": row.pk, "scope": scope}
        if scope == WalletBan.Scope.PUBLISH:
            details.update(_stop_publishing(address, moderator))
        elif scope == WalletBan.Scope.CONTRIBUTE:
            details.update(_stop_contributing(address, moderator))
        audit.record(action="wallet.ban", target_type="wallet", target_id=address, actor=moderator,
                     actor_role=role_of(moderator), reason=reason, statement=statement,
                     internal_note=internal_note, details=details)
        user = _user(address)
        if user is not None:
            notify(user, kind="wallet.ban", text=f"Your wallet {address} was banned from {SCOPE_WORDS[scope]} "
                   f"({REASONS[reason]}). Reasons: {statement}", link="/me/audit")
    return row


def lift(*, ban_id: int, statement: str, moderator) -> WalletBan:
    """Lift an active ban: the wallet may do again what it was banned from. What the ban did
    stays done: cleared approvals stay cleared until a moderator approves the listings again,
    confirmed flags stay confirmed."""
    with transaction.atomic():
        row = WalletBan.objects.select_for_update().filter(pk=ban_id).first()
        if row is None:
            raise BanRefused("not_found", f"No ban {ban_id}.", status=404)
        if row.lifted_at is not None:
            raise BanRefused("already_lifted", f"Ban {ban_id} was lifted already.")
        row.lifted_at, row.lifted_by, row.lift_statement = timezone.now(), moderator, statement
        row.save(update_fields=["lifted_at", "lifted_by", "lift_statement"])
        details = {"ban": row.pk, "scope": row.scope}
        audit.record(action="wallet.unban", target_type="wallet", target_id=row.address, actor=moderator,
                     actor_role=role_of(moderator), reason=row.reason, statement=statement, details=details)
        user = _user(row.address)
        if user is not None:
            notify(user, kind="wallet.unban", text=f"The ban of your wallet {row.address} from "
                   f"{SCOPE_WORDS[row.scope]} was lifted. {statement}".strip(), link="/me/audit")
    return row


def _indexed_block():
    """How far the chain indexer has read this chain (None: nothing yet): a buy ban's line
    between the orders paid before it and after it."""
    return IndexerCursor.objects.filter(chain_id=settings.CHAIN_ID).values_list("block_number", flat=True).first()


def _stop_publishing(address: str, moderator) -> dict:
    """Clear the approvals of every listing of the wallet's datasets on this chain in one batch
    for the operator sender, and reject its datasets' waiting revisions."""
    datasets = list(Dataset.objects.filter(owner__address=address).order_by("pk"))
    for dataset in datasets:
        revisions.close_open(dataset, moderator=moderator, reason="The publisher was banned from publishing.")
    listings = list(Listing.objects.filter(version__dataset__owner__address=address, chain_id=settings.CHAIN_ID)
                    .select_related("version__dataset__owner").order_by("pk"))
    queued = catalog.clear_listing_approvals(listings, intent="ban", moderator=moderator)
    return {"datasets": len(datasets), "clearings_queued": queued}


def _stop_contributing(address: str, moderator) -> dict:
    """Confirm the wallet's open flags: the ban is the confirmation, and what they hold goes back
    to the pool at the next epoch close (flags.decide; each is a `flag.confirm` entry)."""
    open_ids = list(Flag.objects.filter(wallet=address, status=Flag.Status.OPEN).values_list("pk", flat=True))
    return {"confirmed_flags": flags.decide(open_ids, Flag.Status.CONFIRMED, by=moderator) if open_ids else 0}


# Reads ------------------------------------------------------------------------------------------


def active_bans(limit: int = 500):
    return list(WalletBan.objects.filter(lifted_at__isnull=True).select_related("created_by")
                .order_by("-created_at", "-pk")[:limit])


def wallet_bans(address: str):
    return list(WalletBan.objects.filter(address=address).select_related("created_by", "lifted_by")
                .order_by("-created_at", "-pk"))


# Ban evasion: another wallet that shares a payout address, a device or a network (/24 of IPv4,
# /56 of IPv6) with a wallet under an active ban. One SQL statement, run when the page is read
# (the evidence tables are indexed by wallet; a banned wallet is rare).
_EVASION = """
WITH banned AS (SELECT DISTINCT address FROM accounts_walletban WHERE lifted_at IS NULL {banned_filter}),
payouts AS (  -- the payout addresses a wallet's datasets and listings pay to, and the wallet itself
    SELECT u.address AS wallet, d.payout_address AS shared FROM catalog_dataset d
    JOIN accounts_user u ON u.id = d.owner_id WHERE u.address IS NOT NULL AND d.payout_address <> ''
    UNION SELECT l.owner, l.payout FROM catalog_listing l
),
by_payout AS (
    SELECT b.address AS banned, p.wallet AS suspect, 'payout' AS kind, p.shared AS evidence
    FROM banned b JOIN payouts p ON p.wallet <> b.address
     AND (p.shared = b.address OR p.shared IN (SELECT shared FROM payouts WHERE wallet = b.address))
),
by_device AS (
    SELECT b.address, e.wallet, 'device', dv.address
    FROM banned b JOIN rewards_bindingevent own ON own.wallet = b.address
    JOIN rewards_bindingevent e ON e.device_id = own.device_id AND e.wallet <> b.address
    JOIN rewards_device dv ON dv.id = own.device_id
),
by_network AS (
    SELECT b.address, o.wallet, 'network',
           host(network(set_masklen(own.ip, CASE WHEN family(own.ip) = 4 THEN 24 ELSE 56 END)))
           || CASE WHEN family(own.ip) = 4 THEN '/24' ELSE '/56' END
    FROM banned b JOIN rewards_addresswallet own ON own.wallet = b.address
    JOIN rewards_addresswallet o ON o.wallet <> b.address
     AND family(o.ip) = family(own.ip)
     AND network(set_masklen(o.ip, CASE WHEN family(o.ip) = 4 THEN 24 ELSE 56 END))
         = network(set_masklen(own.ip, CASE WHEN family(own.ip) = 4 THEN 24 ELSE 56 END))
)
SELECT banned, suspect, kind, evidence FROM (
    SELECT * FROM by_payout UNION SELECT * FROM by_device UNION SELECT * FROM by_network) found
WHERE suspect IS NOT NULL AND suspect <> ''
  AND NOT EXISTS (SELECT 1 FROM accounts_walletban w WHERE w.address = found.suspect AND w.lifted_at IS NULL)
ORDER BY banned, suspect, kind, evidence
LIMIT 1000"""


def evasion_suspects(*, banned: str | None = None) -> list[dict]:
    """Wallets not banned that share a payout address, a device or a network with a banned one
    (`banned`: that wallet's only), each with its evidence: [{banned, suspect, kind, evidence}],
    kind one of payout, device, network."""
    params = []
    banned_filter = ""
    if banned:
        banned_filter, params = "AND address = %s", [banned]
    with connection.cursor() as cursor:
        cursor.execute(_EVASION.format(banned_filter=banned_filter), params)
        return [dict(zip(("banned", "suspect", "kind", "evidence"), row)) for row in cursor.fetchall()]


def wallet_suspected(address: str) -> list[dict]:
    """The evidence linking `address` to a banned wallet (the wallet page's view of a suspect)."""
    return [row for row in evasion_suspects() if row["suspect"] == address]
