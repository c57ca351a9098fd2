"""The audit log: `record` appends one entry to the hash chain, `verify` walks it.

Each entry's hash is sha256, in lower-case hex, of the UTF-8 bytes of this JSON object
(`canonical`), which anyone can recompute from the table or an export of it:

    {"action", "actor", "actor_id", "actor_role", "created_at", "details", "id",
     "internal_note", "prev_hash", "reason", "reporter", "statement", "target_id", "target_type"}

serialised with the keys sorted at every level, no whitespace (separators "," and ":"),
non-ASCII characters as themselves (not \\u escapes); `created_at` as UTC ISO 8601 with
microseconds and a Z (`2026-12-06T17:49:58.123456Z`), `actor_id` a number or null, `details` a
JSON object of strings, integers, booleans, nulls, lists and objects (no floats, so the value read
back from JSONB is the value hashed). `prev_hash` is the previous entry's (by id) hash, 64 zeros
for the first entry.

Appending takes a transaction-level advisory lock, so entries chain one at a time in id order;
the entry commits or rolls back with the caller's transaction. After the commit, the entry's id
and hash go to the `marketplace.audit` logger as `audit <id> <hash>`, a copy outside the table:
`manage.py check_audit --log FILE` compares them with the table, so even a rewrite of the whole
chain is seen.
"""
from dataclasses import dataclass
import hashlib
import json
import logging

from django.db import connection, transaction

from .models import AuditEntry

logger = logging.getLogger("marketplace.audit")

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the chain's head: 'audit' in ASCII.
LOCK_KEY = 0x6175646974

# The actions, by code (docs/moderation.md lists them with what each entry's target is).
ACTIONS = {
    "dataset.approve": "A revision of a dataset was approved",
    "dataset.reject": "A revision of a dataset (or a new dataset as a whole) was rejected",
    "dataset.request_changes": "The publisher was asked to change a revision",
    "dataset.delist": "A dataset was taken off sale",
    "dataset.relist": "A delisted or rejected dataset was put back on sale",
    "dataset.remove": "A dataset was removed for legal reasons (delisted, files refused, previews purged)",
    "dataset.restore": "A dataset removed for legal reasons was restored",
    "appeal.file": "A publisher appealed a decision (or filed a counter-notice to a legal removal)",
    "appeal.uphold": "An appeal was decided: the decision stands",
    "appeal.reverse": "An appeal was decided: the decision was reversed",
    "wallet.ban": "A wallet was banned",
    "wallet.unban": "A wallet's ban was lifted",
    "report.close": "A report was closed",
    "flag.clear": "A contributor flag was cleared (held amounts paid)",
    "flag.confirm": "A contributor flag was confirmed (held amounts returned to the pool)",
    "dispute.resolve": "An arbiter resolved a dispute with a refund share",
    "chain.confirmed": "A transaction carrying an earlier entry's decision was confirmed on-chain",
    "chain.retry": "A failed or cancelled operator action was queued again",
}
ROLES = ("moderator", "arbiter", "admin", "system", "publisher")  # publisher: an appeal's author
FIELDS = ("id", "created_at", "actor", "actor_id", "actor_role", "action", "target_type", "target_id", "reason",
          "statement", "internal_note", "reporter", "details", "prev_hash")


def format_time(value) -> str:
    """A timestamp as it is hashed: UTC, ISO 8601, microseconds, Z."""
    from datetime import timezone as tz

    return value.astimezone(tz.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: dict) -> bytes:
    """The bytes an entry's hash is computed over (see the module's docstring)."""
    values = {name: fields[name] for name in FIELDS}
    values["created_at"] = format_time(values["created_at"])
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(fields: dict) -> str:
    return hashlib.sha256(canonical(fields)).hexdigest()


def _check_details(value, path="details"):
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: keys must be strings")
            _check_details(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_details(item, f"{path}[{i}]")
    elif isinstance(value, float) or not isinstance(value, (str, int, bool, type(None))):
        raise ValueError(f"{path}: {type(value).__name__} is not hashed exactly; use a string or an integer")


def record(*, action: str, target_type: str, target_id, actor=None, actor_role: str = "moderator",
           reason: str = "", statement: str = "", internal_note: str = "", reporter: str = "",
           details: dict | None = None) -> AuditEntry:
    """Append one entry, in the caller's transaction (or its own). `actor` is a user (its
    username and id are stored), a string (a username or an address), or None for the system."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if actor_role not in ROLES:
        raise ValueError(f"unknown actor role {actor_role!r}")
    details = dict(details or {})
    _check_details(details)
    if actor is None:
        actor_name, actor_id = "", None
    elif isinstance(actor, str):
        actor_name, actor_id = actor, None
    else:
        actor_name, actor_id = actor.get_username(), actor.pk
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
            cursor.execute("SELECT hash FROM moderation_auditentry ORDER BY id DESC LIMIT 1")
            row = cursor.fetchone()
            # The id and the time are taken under the lock, so both grow along the chain.
            cursor.execute("SELECT nextval(pg_get_serial_sequence('moderation_auditentry', 'id')), clock_timestamp()")
            entry_id, created_at = cursor.fetchone()
        fields = {
            "id": entry_id, "created_at": created_at, "actor": actor_name, "actor_id": actor_id,
            "actor_role": actor_role, "action": action, "target_type": target_type, "target_id": str(target_id),
            "reason": reason, "statement": statement, "internal_note": internal_note, "reporter": reporter,
            "details": details, "prev_hash": row[0] if row else GENESIS,
        }
        entry = AuditEntry.objects.create(**fields, hash=entry_hash(fields))
        transaction.on_commit(lambda: logger.info("audit %s %s", entry.id, entry.hash))
    return entry


def dataset_decisions(dataset_id, actions):
    """The entries about dataset `dataset_id` with one of `actions` that decide the whole dataset,
    oldest first: a review decision about a part of it (a text edit, a version, a preview, whose
    `details.whole_dataset` is false) is left out. Entries recorded before that field existed
    count, as they did."""
    return (AuditEntry.objects.filter(target_type="dataset", target_id=str(dataset_id), action__in=actions)
            .exclude(details__contains={"whole_dataset": False}).order_by("id"))


@dataclass
class Problem:
    entry_id: int
    message: str


def verify(*, chunk_size: int = 5000):
    """Walk the whole chain in id order. Returns (entries checked, the last entry's id and hash,
    the first Problem or None)."""
    previous, count, last = GENESIS, 0, (None, None)
    rows = AuditEntry.objects.order_by("id").values(*FIELDS, "hash").iterator(chunk_size=chunk_size)
    for row in rows:
        count += 1
        if row["prev_hash"] != previous:
            return count, last, Problem(row["id"], f"entry {row['id']} names {row['prev_hash']} as the previous "
                                        f"entry's hash, but the entry before it has {previous} (an entry was "
                                        "removed, inserted or changed)")
        computed = entry_hash(row)
        if computed != row["hash"]:
            return count, last, Problem(row["id"], f"entry {row['id']} does not match its hash: its fields hash to "
                                        f"{computed}, it says {row['hash']} (the entry was changed)")
        previous, last = row["hash"], (row["id"], row["hash"])
    return count, last, None
