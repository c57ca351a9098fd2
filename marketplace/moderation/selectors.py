"""Reads of the audit log and of notifications: newest first, one page at a time by id (keyset:
`before` is the last id of the page read, so every page costs the same however deep). The audit
reads are raw SQL giving plain dicts of the fields asked for, the same as the ORM's `.values()`
(no model instances, no query compiled per request: they run on every search)."""
import functools
import json

from django.db import connection

from marketplace.catalog.models import Dataset

from .models import Notification

PAGE_SIZE = 50


ENTRY_FIELDS = ("id", "created_at", "actor", "actor_id", "actor_role", "action", "target_type", "target_id", "reason",
                "statement", "internal_note", "reporter", "details", "prev_hash", "hash")
# What a publisher sees of an entry about their dataset: never who reported it, the moderators'
# internal note, or which moderator acted (their role only).
PUBLISHER_FIELDS = ("id", "created_at", "actor_role", "action", "target_type", "target_id", "reason", "statement",
                    "details")
# `created_at` as the API writes it when the time zone is UTC (catalog.api.iso_time: ISO 8601, the
# microseconds unless there are none, "Z"), made by PostgreSQL: no datetime to load and format
# again in Python for each of 50 entries.
UTC_ISO = ("to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN"
           " mod(extract(microseconds FROM e.created_at)::bigint, 1000000) = 0 THEN '' ELSE"
           " to_char(e.created_at AT TIME ZONE 'UTC', '.US') END || 'Z'")


def _columns(fields: tuple, iso_times: bool) -> str:
    return ", ".join(UTC_ISO if iso_times and name == "created_at" else f"e.{name}" for name in fields)


# Joined word tables at most: the planner orders up to join_collapse_limit (8) joins, and 4 words
# already narrow a page to a handful of candidates. The other words are checked by the `search`
# column itself.
MAX_JOINED_WORDS = 4


@functools.lru_cache(maxsize=1024)
def query_words(q: str) -> tuple[str, ...]:
    """The words of `q` as the search matches them: the lexemes of plainto_tsquery('simple', q)
    (lower case, split as PostgreSQL's parser splits them: `Foo-Bar` is foo-bar, foo and bar).
    Kept per process (the same `q` has the same words): paging a search asks once."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tsvector_to_array(to_tsvector('simple', %s))", [q])
        return tuple(cursor.fetchone()[0])


def _entries(sql: str, params: list, fields: tuple) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    details = fields.index("details")
    loads = json.loads
    return [dict(zip(fields, row[:details] + (loads(row[details]),) + row[details + 1:])) for row in rows]


def audit_entries(*, q: str = "", action: str = "", target_type: str = "", target_id: str = "", actor: str = "",
                  before: int | None = None, limit: int = PAGE_SIZE, iso_times: bool = False) -> list[dict]:
    """The moderators' search. `q`: entries having every word (actor, target id, reason,
    statement, internal note, reporter), matched whole and without case, as
    `search @@ plainto_tsquery('simple', q)` matches them.

    One SQL query, newest first by id. Each word of `q` is a join to the word index
    (`AuditWord`, primary key (word, entry_id)): the planner starts from the rarest word (its
    statistics tell) and reads its entries newest first, 50 and done, where the GIN index gave
    every match to sort. `before` bounds each word's read as well as the entries'. `iso_times`:
    `created_at` as the API's text in UTC (UTC_ISO), not a datetime."""
    joins, where, params = [], [], []
    if q:
        # The longer words first: more often the rarer (for the 4 joined).
        words = sorted(query_words(q), key=len, reverse=True)
        if not words:  # only punctuation: plainto_tsquery has no lexeme and matches nothing
            return []
        for i, word in enumerate(words[:MAX_JOINED_WORDS]):
            joins.append(f" JOIN moderation_auditword w{i} ON w{i}.entry_id = e.id AND w{i}.word = %s"
                         + (f" AND w{i}.entry_id < %s" if before is not None else ""))
            params += [word] if before is None else [word, before]
        if len(words) > MAX_JOINED_WORDS:
            where.append("e.search @@ plainto_tsquery('simple', %s)")
            params.append(q)
    for column, value in (("action", action), ("target_type", target_type), ("target_id", target_id),
                          ("actor", actor)):
        if value:
            where.append(f"e.{column} = %s")
            params.append(value)
    if before is not None and not joins:
        # With words, the bound is on the words' reads only: stated on the entries as well, the
        # planner counts it twice, expects fewer than 50 matches and sorts them all (20 ms).
        where.append("e.id < %s")
        params.append(before)
    sql = (f"SELECT {_columns(ENTRY_FIELDS, iso_times)} FROM moderation_auditentry e{''.join(joins)}"
           f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY e.id DESC LIMIT %s")
    return _entries(sql, [*params, limit], ENTRY_FIELDS)


def publisher_entries(user, *, before: int | None = None, limit: int = PAGE_SIZE,
                      iso_times: bool = False) -> list[dict]:
    """The entries about `user`'s datasets (dataset targets whose id is one of theirs);
    `iso_times` as for audit_entries."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id::text FROM {Dataset._meta.db_table} WHERE owner_id = %s", [user.pk])
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    sql = (f"SELECT {_columns(PUBLISHER_FIELDS, iso_times)} FROM moderation_auditentry e WHERE e.target_type = 'dataset'"
           f" AND e.target_id = ANY(%s){' AND e.id < %s' if before is not None else ''} ORDER BY e.id DESC LIMIT %s")
    return _entries(sql, [ids, *([before] if before is not None else []), limit], PUBLISHER_FIELDS)


def notifications(user, *, unread: bool = False, before: int | None = None, limit: int = PAGE_SIZE):
    rows = Notification.objects.filter(recipient=user)
    if unread:
        rows = rows.filter(read_at__isnull=True)
    if before is not None:
        rows = rows.filter(id__lt=before)
    return list(rows.order_by("-id")[:limit])


def unread_count(user) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()
