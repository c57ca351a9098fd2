"""wrk driven from a bench script: GET a list of paths in turn at concurrency 8 and read wrk's own
latency histogram (p50/p90/p95/p99, through a Lua done() hook). Used by catalog_1m.py and
audit.py."""
import os
import subprocess
import tempfile


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
