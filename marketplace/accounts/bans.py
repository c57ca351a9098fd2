"""Checking a wallet's bans (accounts.WalletBan) where the banned activity happens: the catalog's
publishing endpoints, the orders' downloads and buy card, the rewards' binding, heartbeats and
jobs. A refusal is a 403 with the code `banned`. The moderation app places and lifts bans
(moderation/bans.py)."""
from marketplace.api import APIError

from .models import WalletBan

PUBLISH, BUY, CONTRIBUTE = WalletBan.Scope.PUBLISH, WalletBan.Scope.BUY, WalletBan.Scope.CONTRIBUTE

REFUSALS = {
    PUBLISH: "This wallet is banned from publishing: it cannot create datasets, upload versions, list or "
             "edit them. See the notice about it under Decisions (/me/audit).",
    BUY: "This wallet is banned from buying here. Orders paid before the ban still download and settle. "
         "See the notice about it under Decisions (/me/audit).",
    CONTRIBUTE: "This wallet is banned from contributing: its devices cannot bind, send heartbeats or take "
                "jobs. See the notice about it under Decisions (/me/audit).",
}

# The SQL the heartbeat statements use (rewards/ingest.py, ingest_server.py): true when the
# device's bound wallet has an active contribute ban. `{device}` is the rewards_device row's alias.
CONTRIBUTE_BANNED_SQL = (
    "EXISTS (SELECT 1 FROM accounts_walletban b JOIN rewards_contributor c ON c.wallet = b.address "
    "WHERE c.id = {device}.contributor_id AND b.scope = 'contribute' AND b.lifted_at IS NULL)")


def active_ban(address: str | None, scope: str) -> WalletBan | None:
    """The wallet's active ban of `scope` (address checksummed), or None."""
    if not address:
        return None
    return WalletBan.objects.filter(address=address, scope=scope, lifted_at__isnull=True).first()


def is_banned(address: str | None, scope: str) -> bool:
    return active_ban(address, scope) is not None


def refuse_if_banned(address: str | None, scope: str) -> None:
    """Raise the API's 403 `banned` when the wallet has an active ban of `scope`."""
    if is_banned(address, scope):
        raise APIError("banned", REFUSALS[scope], status=403)


def refuse_user_if_banned(user, scope: str) -> None:
    refuse_if_banned(getattr(user, "address", None), scope)
