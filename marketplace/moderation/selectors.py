"""Reads of the audit log and of notifications: newest first, one page at a time by id (keyset:
`before` is the last id of the page read, so every page costs the same however deep). The audit
reads give plain dicts of the fields asked for (no model instances: they run on every search)."""
from marketplace.catalog.models import Dataset

from .models import AuditEntry, Notification

PAGE_SIZE = 50


ENTRY_FIELDS = ("id", "created_at", "actor", "actor_id", "actor_role", "action", "target_type", "target_id", "reason",
                "statement", "internal_note", "reporter", "details", "prev_hash", "hash")
# What a publisher sees of an entry about their dataset: never who reported it, the moderators'
# internal note, or which moderator acted (their role only).
PUBLISHER_FIELDS = ("id", "created_at", "actor_role", "action", "target_type", "target_id", "reason", "statement",
                    "details")


def audit_entries(*, q: str = "", action: str = "", target_type: str = "", target_id: str = "", actor: str = "",
                  before: int | None = None, limit: int = PAGE_SIZE) -> list[dict]:
    """The moderators' search. `q`: entries having every word (actor, target id, reason,
    statement, internal note, reporter), matched whole and without case."""
    entries = AuditEntry.objects.all()
    if q:
        entries = entries.extra(where=["search @@ plainto_tsquery('simple', %s)"], params=[q])
    if action:
        entries = entries.filter(action=action)
    if target_type:
        entries = entries.filter(target_type=target_type)
    if target_id:
        entries = entries.filter(target_id=target_id)
    if actor:
        entries = entries.filter(actor=actor)
    if before is not None:
        entries = entries.filter(id__lt=before)
    return list(entries.order_by("-id").values(*ENTRY_FIELDS)[:limit])


def publisher_entries(user, *, before: int | None = None, limit: int = PAGE_SIZE) -> list[dict]:
    """The entries about `user`'s datasets (dataset targets whose id is one of theirs)."""
    ids = [str(pk) for pk in Dataset.objects.filter(owner=user).values_list("pk", flat=True)]
    if not ids:
        return []
    entries = AuditEntry.objects.filter(target_type="dataset", target_id__in=ids)
    if before is not None:
        entries = entries.filter(id__lt=before)
    return list(entries.order_by("-id").values(*PUBLISHER_FIELDS)[:limit])


def notifications(user, *, unread: bool = False, before: int | None = None, limit: int = PAGE_SIZE):
    rows = Notification.objects.filter(recipient=user)
    if unread:
        rows = rows.filter(read_at__isnull=True)
    if before is not None:
        rows = rows.filter(id__lt=before)
    return list(rows.order_by("-id")[:limit])


def unread_count(user) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()
