"""Reads that a page runs on every request, as prepared statements.

PostgreSQL plans an ordinary statement each time it gets one: for the review queue's six-table
join that took 1.8 ms, twice its execution, on every request. `rows` sends a hand-written
statement through a server-side-binding cursor on Django's own connection with `prepare=True`,
so each database connection plans it once (psycopg keeps the statement per connection and
forgets it with the connection), and the rows come back as dicts without the ORM's per-query
compile. It takes part in whatever transaction Django has open on that connection.

Only for fixed statements of the hottest pages (bench/review_queue.py measures them): the rest of
the code uses the ORM. jsonb comes back as text here, as Django's connection loads it (`loads`
decodes it). DATABASE_PREPARED_STATEMENTS=0 (settings) turns preparing off for a connection
pooler that cannot keep prepared statements; the statements then run unprepared."""
from contextlib import contextmanager
import json

from django.db import connection
import psycopg
from psycopg.rows import dict_row


@contextmanager
def cursor(row_factory=None):
    """A server-side-binding cursor on Django's connection (execute with `prepare=True`); the
    database's errors come out as Django's, as from Django's own cursors. Like them it checks a
    kept connection once a request first (CONN_HEALTH_CHECKS): after the database restarted, a
    request opens a new one rather than failing on the old."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    options = {"row_factory": row_factory} if row_factory else {}
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection, **options) as opened:
        yield opened


def rows(sql: str, params=()) -> list[dict]:
    with cursor(dict_row) as opened:
        opened.execute(sql, params, prepare=True)
        return opened.fetchall()


def loads(value):
    """A jsonb value as Django's connection returns it (text) or already decoded."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def columns(model, alias: str, prefix: str) -> str:
    """The select list of every concrete field of `model` from table `alias`, named `prefix` +
    attname (what `instance` reads back)."""
    return ", ".join(f'{alias}."{f.column}" AS "{prefix}{f.attname}"' for f in model._meta.concrete_fields)


def instance(model, row: dict, prefix: str):
    """A `model` instance from the columns `columns(model, ..., prefix)` selected (None when its
    primary key is null: an outer join that found nothing). JSON fields are decoded as the ORM
    would."""
    fields = model._meta.concrete_fields
    if row[prefix + model._meta.pk.attname] is None:
        return None
    values = [row[prefix + f.attname] for f in fields]
    for i, f in enumerate(fields):
        if f.get_internal_type() == "JSONField" and values[i] is not None:
            values[i] = loads(values[i])
    return model.from_db(connection.alias, [f.attname for f in fields], values)
