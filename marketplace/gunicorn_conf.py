"""gunicorn's settings, as every way of running the web process uses them (the Procfile, the
Dockerfile, docker-compose.yml, the benches and the slow-download test):

    gunicorn -c marketplace/gunicorn_conf.py marketplace.wsgi

Threaded workers (gthread): a request that takes long to send (a download to a slow client, an
upload) holds one thread, not a whole worker, and the worker keeps telling the arbiter it is alive,
so `timeout` never ends a transfer that is still moving. WEB_WORKERS processes (default 4, one
search index reader each: Tantivy holds the GIL while it searches, so processes give the cores)
of WEB_THREADS threads (default 2) answer WEB_WORKERS x WEB_THREADS requests at once; each
thread keeps its own database connection. A worker accepts no more connections than it has
threads, so a request waits for a free worker rather than behind a busy one (with 8 threads and
no such limit, search's p95 under load was 20 to 40 % higher: bench/README.md). In production
nginx sends the files and buffers uploads, so slow clients hold no thread at all.
"""
import os
import re

from gunicorn.glogging import Logger

bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('WEB_PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "4"))
threads = int(os.environ.get("WEB_THREADS", "2"))
worker_class = "gthread"
# A worker takes no more connections than it has threads: the others wait in the kernel's queue
# for a worker that is free, instead of behind a busy worker's requests.
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", str(threads)))
timeout = 30  # a worker that stops answering the arbiter this long is restarted
graceful_timeout = 10
# One request a connection: a kept-alive connection stays with the worker that took it, and at
# concurrency 8 the search's p95 went from 35 to 59 ms (deep pages) and 30 to 63 ms (a publisher)
# when some workers held more of them than others (bench/catalog_1m.py, the same hour).
keepalive = 0
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None

_DOWNLOAD_TOKEN = re.compile(r"(/downloads/)[^?\s\"]*")


class RedactingLogger(Logger):
    """gunicorn's logger, with the token of a download link (a credential for minutes) cut out of
    the access log's request line, path and referrer. A download is known by its path as Django
    routes it (percent-decoded: /%64ownloads/<token> is one too), not by the raw request line."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        if "/downloads/" in (environ.get("PATH_INFO") or ""):
            atoms["U"] = "/downloads/-"
            atoms["r"] = " ".join([environ.get("REQUEST_METHOD", ""), "/downloads/-",
                                   environ.get("SERVER_PROTOCOL", "")])
        if isinstance(atoms.get("f"), str):
            atoms["f"] = _DOWNLOAD_TOKEN.sub(r"\1-", atoms["f"])
        return atoms


logger_class = RedactingLogger
