"""A pytest plugin loaded with -p (see pyproject.toml) before pytest-django reads the settings.

It gives the tests settings that work over plain HTTP and, when DATABASE_URL is unset, starts
the embedded PostgreSQL under .data/ (shared with a running `scripts/dev run`, if any). The
Celery broker defaults to kombu's SQLAlchemy transport on the *test* database, which is created
fresh for each run, so no message from an earlier run can reach this run's worker.
"""
import atexit
import os
import shutil
import signal
import tempfile

import dj_database_url

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_MANIFEST_STATIC", "0")  # no collectstatic before tests
os.environ["CHAIN_EMBEDDED"] = "0"
# Files uploaded by tests go to a throwaway directory (the worker process inherits it).
_files = tempfile.mkdtemp(prefix="marketplace-test-files-")
os.environ.setdefault("PRIVATE_STORAGE_DIR", os.path.join(_files, "files"))
os.environ.setdefault("UPLOAD_TMP_DIR", os.path.join(_files, "uploads"))
atexit.register(shutil.rmtree, _files, True)

if not os.environ.get("DATABASE_URL"):
    from marketplace.devstack import StartError, start_embedded_postgres

    try:
        os.environ["DATABASE_URL"] = start_embedded_postgres()
    except StartError as exc:
        raise SystemExit(f"error: {exc}") from None

if not os.environ.get("CELERY_BROKER_URL"):
    from marketplace.env import sqlalchemy_url

    test_db = dj_database_url.parse(os.environ["DATABASE_URL"])
    test_db["NAME"] = "test_" + test_db["NAME"]
    os.environ["CELERY_BROKER_URL"] = "sqla+" + sqlalchemy_url(test_db)


def _interrupt(signum, frame):
    # Turn SIGTERM into pytest's orderly interrupt, so atexit stops the embedded PostgreSQL.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)
