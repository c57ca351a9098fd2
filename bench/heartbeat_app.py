"""The WSGI application of bench/heartbeats.py: the project's, plus the bare reference view at
/bench/bare-heartbeat (parse, one signature recovery, one insert: the least a verified heartbeat
can cost through the same Django, middleware and gunicorn), and an empty view at /bench/empty
(the ceiling: what the stack and the load generator do with no work)."""
import json
import os
import secrets
import time
from datetime import datetime, timezone as dt_timezone

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
import psycopg  # noqa: E402

from marketplace import urls  # noqa: E402
from marketplace.rewards import signing  # noqa: E402

_INSERT = ("INSERT INTO rewards_heartbeat (device_id, seq, received_at, slot, probe_ok, ip, sent_at) "
           "VALUES (0, %s, %s, %s, false, %s::inet, %s)")


@csrf_exempt
def bare(request):
    body = json.loads(request.body)
    message = signing.heartbeat_message(chain_id=settings.CHAIN_ID, device=body["device"], seq=body["seq"],
                                        nonce=body["nonce"], sent_at=body["sent_at"], probe=body["probe"])
    signing.recover(message, body["signature"])
    now = time.time()
    received = datetime.fromtimestamp(now, tz=dt_timezone.utc)
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_INSERT, [secrets.randbits(62), received, int(now // 60), request.META.get("REMOTE_ADDR"),
                                 received], prepare=True)
    return JsonResponse({"seq": body["seq"], "nonce": body["nonce"]})


@csrf_exempt
def empty(request):
    """No work at all: the ceiling of gunicorn, Django and the load generator on this machine."""
    return JsonResponse({"seq": 0, "nonce": ""})


class URLs:
    urlpatterns = [path("bench/bare-heartbeat", bare), path("bench/empty", empty), *urls.urlpatterns]


settings.ROOT_URLCONF = URLs
