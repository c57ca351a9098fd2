"""The default broker: kombu's SQLAlchemy transport on our PostgreSQL, polling five times a
second instead of once (kombu's default), so tasks start and workers stop promptly.

Every transport option of this transport goes to SQLAlchemy's create_engine, so the interval is
set on a subclass registered under the same `sqla+` URL scheme.
"""
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport


class PolledSQLTransport(Transport):
    polling_interval = 0.2


def register():
    TRANSPORT_ALIASES["sqla"] = f"{__name__}:PolledSQLTransport"
