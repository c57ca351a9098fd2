"""GET /healthz: the state of the database, the broker and the chain, each bounded in time."""
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
import time

from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from marketplace.celery import app as celery_app, publish_connection
from marketplace.chain.health import check_chain
from marketplace.chain.models import Deployment
from marketplace.outbox.models import WorkerHeartbeat

CHECK_TIMEOUT = 3.0  # seconds; each check also bounds its own I/O more tightly


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"up": True}
    except Exception as exc:
        return {"up": False, "error": f"database unreachable: {type(exc).__name__}"}


def check_broker() -> dict:
    url = celery_app.conf.broker_url
    transport = url.split("://", 1)[0]
    try:
        with publish_connection() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=1)
            channel = conn.default_channel
            if transport.startswith("sqla"):  # kombu's SQLAlchemy channel connects lazily
                from sqlalchemy import text

                channel.session.execute(text("SELECT 1"))
                channel.session.rollback()
        return {"up": True, "transport": transport}
    except Exception as exc:
        return {"up": False, "transport": transport, "error": f"broker unreachable: {type(exc).__name__}"}


def check_worker() -> dict:
    """Informational: when did a Celery worker last run its heartbeat task?"""
    try:
        last = WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True).first()
    except Exception:
        return {"last_seen_seconds_ago": None}
    return {"last_seen_seconds_ago": None if last is None else round((timezone.now() - last).total_seconds())}


@never_cache
@require_GET
def healthz(request):
    started = time.monotonic()
    # Database reads happen here, in the request's own connection; only network checks that
    # need no database run in threads, side by side, each waited for a bounded time.
    results = {"database": check_database()}
    deployments = list(Deployment.objects.all()) if results["database"]["up"] else []
    checks = {"broker": check_broker, "chain": lambda: check_chain(deployments)}
    # Not a `with` block: leaving it would wait for a check that hangs past its timeout.
    pool = ThreadPoolExecutor(max_workers=len(checks))
    futures = {name: pool.submit(check) for name, check in checks.items()}
    for name, future in futures.items():
        remaining = max(0.0, CHECK_TIMEOUT - (time.monotonic() - started))
        try:
            results[name] = future.result(timeout=remaining)
        except FutureTimeout:
            results[name] = {"up": False, "error": f"no answer within {CHECK_TIMEOUT:.0f} s"}
    pool.shutdown(wait=False, cancel_futures=True)
    healthy = all(result["up"] for result in results.values())
    if results["database"]["up"]:
        results["worker"] = check_worker()
    body = {"status": "ok" if healthy else "degraded", **results}
    return JsonResponse(body, status=200 if healthy else 503)
