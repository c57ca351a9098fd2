"""gunicorn's settings for the heartbeat ingest server (marketplace/rewards/ingest_server.py), as
the Procfile's `ingest` process, docker-compose.yml and bench/heartbeats.py run it:

    gunicorn -c marketplace/ingest_conf.py marketplace.rewards.ingest_server:app

INGEST_WORKERS uvicorn worker processes (default 2: one a core on a small host; each holds one
PostgreSQL connection and stores its heartbeats in group commits), on INGEST_HOST:INGEST_PORT
(default 127.0.0.1:8001). nginx routes /api/v1/node/heartbeat and /api/v1/node/probe/ here and
keeps its connections to this server alive (`keepalive` in its upstream), so the server keeps an
idle connection 15 s. No access log by default (thousands of lines a second): INGEST_ACCESS_LOG=-
writes one to stdout. INGEST_STATEMENT_TIMEOUT (ms, default 10,000) ends a statement stuck behind
a lock: its heartbeats get a 503 and are sent again.
"""
import os

bind = f"{os.environ.get('INGEST_HOST', '127.0.0.1')}:{os.environ.get('INGEST_PORT', '8001')}"
workers = int(os.environ.get("INGEST_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
keepalive = 15
timeout = 30
graceful_timeout = 10
accesslog = os.environ.get("INGEST_ACCESS_LOG") or None
# uvicorn would take the client's address from X-Forwarded-For of any peer in this list (by
# default 127.0.0.1, so nginx on the same host would pass a client's own header through): none.
# The application reads the header itself, through TRUSTED_PROXIES as the web process does.
forwarded_allow_ips = ""
