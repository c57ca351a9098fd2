"""wrk driven from a bench script: GET a list of paths in turn at concurrency 8 and read wrk's own
latency histogram (p50/p90/p95/p99, through a Lua done() hook); and `gunicorn`, the web server
the moderation benches measure. Used by catalog_1m.py, audit.py and review_queue.py."""
from contextlib import contextmanager
import os
from pathlib import Path
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def gunicorn(workers, threads):
    """The marketplace under gunicorn (its production config, `workers` x `threads`) on a free
    loopback port, with this process's environment; yields its base URL once it serves a static
    file, and stops it on leaving."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "marketplace/gunicorn_conf.py", "marketplace.wsgi",
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
         "--log-level", "warning", "--access-logfile", "/dev/null"], cwd=ROOT, env=os.environ)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/static/app.css", timeout=30).read()
                break
            except OSError:
                time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait()


def wrk(base, paths, duration, name, cookie="", width=50):
    """Run wrk (2 threads, 8 connections) over `paths` in turn, with `cookie` if given; print a
    line and return (requests a second, p95 in ms as wrk printed it)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    quoted = ",".join('"' + p.replace('"', '\\"') + '"' for p in paths)
    headers = f', {{["Cookie"] = "{cookie}"}}' if cookie else ""
    script.write(f"""
local paths = {{{quoted}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1]{headers})
end
done = function(summary, latency, requests)
  for _, p in ipairs({{50, 90, 95, 99}}) do
    io.write(string.format("P%d %.2f\\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("ERRORS %d\\n", summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
""")
    script.close()
    out = subprocess.run(["wrk", "-t", "2", "-c", "8", "-d", f"{duration}s", "-s", script.name, base],
                         capture_output=True, text=True).stdout
    os.unlink(script.name)
    marks = dict(line.split() for line in out.splitlines() if line.startswith(("P", "ERRORS")))
    rps = next((float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec")), 0.0)
    print(f"{name:<{width}} {rps:>8.1f} req/s   p50 {marks.get('P50', '?'):>7} ms   p90 {marks.get('P90', '?'):>7} ms"
          f"   p95 {marks.get('P95', '?'):>7} ms   p99 {marks.get('P99', '?'):>7} ms   errors {marks.get('ERRORS', '?')}")
    return rps, marks.get("P95", "?")
