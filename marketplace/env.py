"""Reading settings from the environment (used by settings.py and the test plugin)."""
import os

from django.core.exceptions import ImproperlyConfigured


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {value!r}")


def env_int(name, default):
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def sqlalchemy_url(db):
    """The SQLAlchemy URL (psycopg 3 driver) for a Django database settings dict."""
    from sqlalchemy.engine import URL

    host = db.get("HOST") or None
    query = {}
    if host and host.startswith("/"):  # a unix socket directory, as the embedded server uses
        query["host"] = host
        host = None
    return URL.create(
        "postgresql+psycopg",
        username=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=host,
        port=int(db["PORT"]) if db.get("PORT") else None,
        database=db.get("NAME"),
        query=query,
    ).render_as_string(hide_password=False)
