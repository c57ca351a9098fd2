"""Heartbeat ingest through gunicorn: verified heartbeats a second from 10,000 devices, one per
request, against a bare view (one signature recovery and one insert) measured in the same run.

    .venv/bin/python bench/heartbeats.py [--server ingest|web] [--devices 10000] [--duration 60]
                                         [--bare-duration 30] [--workers N] [--threads 2]
                                         [--clients 2] [--connections 64] [--keepalive yes|no]
                                         [--ip-count process|shared]

It uses its own database `bench_heartbeats` (emptied at start) on DATABASE_URL's server (else the
embedded PostgreSQL), makes the devices (keys precomputed, bound to 1,000 wallets), and starts
gunicorn as shipped:
- `--server ingest` (the default): the ingest server (marketplace/ingest_conf.py, 2 uvicorn
  workers, group commits), where nginx sends heartbeats, over connections kept alive as nginx's
  upstream keeps them; the references are bench/ingest_app.py's.
- `--server web`: the Django view in the web process (marketplace/gunicorn_conf.py, 4 workers x 2
  threads, one request a connection as its keepalive=0 makes them); the references are
  bench/heartbeat_app.py's.
The load comes from --clients processes of --connections connections each (asyncio, plain
HTTP/1.1). The load is closed (each connection sends its next heartbeat when the last is
answered), so the rate is at most connections / latency: 10,000 independent devices are many
more senders than that, and 2 x 64 connections keep the server busy without measuring the load
generator's own queueing. The empty view, the bare view and the heartbeats run in --rounds
interleaved slices (other work on this shared machine then weighs on each alike). Each device
keeps its state: a heartbeat signs the nonce its last acknowledgement gave, with the next sequence
number and the probe's answer (the bench knows the server's secret key, so it computes the answer
rather than fetching it: the server's check is the same). Every device waits
REWARD_HEARTBEAT_MIN_INTERVAL (1 s here) between two of its heartbeats.

Printed: the empty view's rate (the server and this load generator doing no work: the ceiling on
this machine), heartbeats/s (acknowledged, so stored), p50/p95 latency, the refusals by status,
the bare view's figures, the ratio, and a check that the table holds exactly the acknowledged
rows.
"""
import argparse
import asyncio
from collections import deque
import hashlib
import hmac
import json
import multiprocessing
import os
from pathlib import Path
import random
import secrets
import signal
import socket
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECRET = "bench-heartbeats-secret"
CHAIN_ID = 31337


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url():
    import dj_database_url
    import psycopg

    base = os.environ.get("DATABASE_URL")
    if not base:
        from marketplace.devstack import start_embedded_postgres

        base = start_embedded_postgres()
    db = dj_database_url.parse(base)
    admin = dict(dbname="postgres", user=db["USER"] or None, password=db["PASSWORD"] or None,
                 host=db["HOST"] or None, port=db["PORT"] or None)
    # Made once and emptied by make_devices: DROP DATABASE waits for a checkpoint, which can take
    # minutes while other work writes on the same server.
    with psycopg.connect(**admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_heartbeats'").fetchone():
            conn.execute("CREATE DATABASE bench_heartbeats")
    return base.rsplit("/", 1)[0] + "/bench_heartbeats"


def make_devices(count):
    """(private key bytes, checksummed address) of `count` fresh device keys, bound in the database."""
    import coincurve
    import django
    from django.core.management import call_command
    from django.db import connection
    from eth_utils import keccak, to_checksum_address

    django.setup()
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE rewards_heartbeat, rewards_device, rewards_contributor CASCADE")
    devices = []
    for _ in range(count):
        key = coincurve.PrivateKey()
        address = to_checksum_address(keccak(key.public_key.format(compressed=False)[1:])[-20:])
        devices.append((key.secret, address))
    with connection.cursor() as cursor:
        wallets = [to_checksum_address("0x" + secrets.token_hex(20)) for _ in range(max(1, count // 10))]
        with cursor.copy("COPY rewards_contributor (wallet, referral_code, leaderboard_opt_out, created_at) "
                         "FROM STDIN") as copy:
            for wallet in wallets:
                copy.write_row((wallet, secrets.token_urlsafe(9), False, "now"))
        cursor.execute("SELECT id FROM rewards_contributor ORDER BY id")
        ids = [row[0] for row in cursor.fetchall()]
        nonces = {}
        with cursor.copy("COPY rewards_device (address, contributor_id, name, seq, nonce, quality_bps, created_at) "
                         "FROM STDIN") as copy:
            for i, (_, address) in enumerate(devices):
                nonces[address] = "0x" + secrets.token_hex(32)
                copy.write_row((address, ids[i % len(ids)], "", 0, nonces[address], 10_000, "now"))
    connection.close()
    return [(key, address, nonces[address], 0) for key, address in devices]


# The load generator (one process per --clients) ---------------------------------------------------


def probe_answer(device, nonce):
    return hmac.new(SECRET.encode(), f"{device.lower()}|{nonce.lower()}".encode(), hashlib.sha256).hexdigest()


def client_process(port, devices, duration, connections, min_interval, path, start_at, results, keepalive):
    import coincurve
    from eth_utils import keccak

    from marketplace.rewards.signing import heartbeat_message

    keys = {address: coincurve.PrivateKey(key) for key, address, _, _ in devices}
    state = {address: [seq, nonce, 0.0] for _, address, nonce, seq in devices}  # seq, nonce, next allowed time
    ready = deque(address for _, address, _, _ in devices)
    latencies, statuses = [], {}

    def body(address):
        seq, nonce, _ = state[address]
        seq += 1
        sent_at = int(time.time())
        probe = probe_answer(address, nonce)
        text = heartbeat_message(chain_id=CHAIN_ID, device=address, seq=seq, nonce=nonce, sent_at=sent_at,
                                 probe=probe).encode()
        digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(text)).encode() + text)
        raw = keys[address].sign_recoverable(digest, hasher=None)
        signature = "0x" + raw[:64].hex() + format(raw[64] + 27, "02x")
        return seq, json.dumps({"device": address, "seq": seq, "nonce": nonce, "sent_at": sent_at, "probe": probe,
                                "bytes_up": 0, "bytes_down": 0, "latency_ms": 0,
                                "signature": signature}).encode()

    async def one(address, conn):
        """One heartbeat on the worker's connection (a new one each time without keep-alive)."""
        seq, payload = body(address)
        request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\n{'' if keepalive else 'Connection: close' + chr(13) + chr(10)}"
                   "\r\n").encode() + payload
        started = time.perf_counter()
        if not conn:
            conn[:] = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = conn
        writer.write(request)
        if keepalive:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            content = await reader.readexactly(length)
        else:
            head, _, content = (await reader.read()).partition(b"\r\n\r\n")
            writer.close()
            conn.clear()
        elapsed = time.perf_counter() - started
        status = int(head.split(b" ", 2)[1])
        return status, elapsed, seq, content

    async def worker(end):
        conn = []
        while time.time() < end:
            address = ready.popleft()
            wait = state[address][2] - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                status, elapsed, seq, content = await one(address, conn)
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
                statuses["error"] = statuses.get("error", 0) + 1
                if conn:
                    conn[1].close()
                    conn.clear()
                ready.append(address)
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(elapsed)
                state[address][0] = seq
                state[address][1] = json.loads(content).get("nonce", state[address][1])
            state[address][2] = time.monotonic() + min_interval
            ready.append(address)
        if conn:
            conn[1].close()

    async def main():
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.time() + duration
        await asyncio.gather(*(worker(end) for _ in range(connections)))

    asyncio.run(main())
    results.put((latencies, statuses, {a: (st[0], st[1]) for a, st in state.items()}))


def drive(port, devices, *, duration, clients, connections, min_interval, path, keepalive):
    results = multiprocessing.Queue()
    # Each slice starts its round robin at a random device, so that every device takes turns.
    start = random.randrange(len(devices))
    rotated = devices[start:] + devices[:start]
    shards = [rotated[i::clients] for i in range(clients)]
    start_at = time.time() + 1.0
    processes = [multiprocessing.Process(target=client_process, args=(port, shard, duration, connections,
                                                                      min_interval, path, start_at, results,
                                                                      keepalive))
                 for shard in shards]
    for p in processes:
        p.start()
    latencies, statuses, states = [], {}, {}
    for _ in processes:
        lat, st, device_states = results.get()
        latencies += lat
        states.update(device_states)
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    for p in processes:
        p.join()
    if path.endswith("/node/heartbeat"):  # carry each device's sequence and nonce into the next slice
        devices[:] = [(key, address, states[address][1], states[address][0]) if address in states
                      else (key, address, nonce, seq) for key, address, nonce, seq in devices]
    return {"latencies": latencies, "ok": statuses.get(200, 0), "statuses": statuses, "seconds": duration}


def summary(slices):
    latencies = sorted(x for s in slices for x in s["latencies"])
    statuses = {}
    for s in slices:
        for k, v in s["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    ok = statuses.get(200, 0)
    seconds = sum(s["seconds"] for s in slices)

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"per_second": ok / seconds, "ok": ok, "p50": pct(0.50), "p95": pct(0.95), "statuses": statuses}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=60, help="seconds of heartbeats")
    parser.add_argument("--bare-duration", type=float, default=30, help="seconds of each reference view")
    parser.add_argument("--rounds", type=int, default=3, help="the runs are split into this many interleaved slices")
    parser.add_argument("--server", choices=["ingest", "web"], default="ingest",
                        help="the ingest server (marketplace/ingest_conf.py, uvicorn workers, group commits; what "
                             "nginx sends heartbeats to) or the Django view in the web process (gunicorn_conf.py)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (ingest_conf.py: 2, gunicorn_conf.py: 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per web worker (gunicorn_conf.py: 2)")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--ip-count", choices=["process", "shared"], default="process",
                        help="REWARD_HEARTBEAT_IP_COUNT: the per-address count in each process, or the limits service")
    parser.add_argument("--connections", type=int, default=64, help="connections at once per load process")
    parser.add_argument("--keepalive", choices=["yes", "no"],
                        help="keep each load connection open (default: yes for the ingest server, as nginx's upstream "
                             "keepalive does; no for the web process, whose shipped keepalive is 0)")
    args = parser.parse_args()
    args.workers = args.workers or (2 if args.server == "ingest" else 4)
    keepalive = (args.keepalive or ("yes" if args.server == "ingest" else "no")) == "yes"

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ["DJANGO_SECRET_KEY"] = SECRET
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"
    os.environ["DJANGO_MANIFEST_STATIC"] = "0"
    os.environ["LOG_LEVEL"] = "ERROR"
    os.environ["REWARD_HEARTBEAT_MIN_INTERVAL"] = "1"
    os.environ["REWARD_HEARTBEATS_PER_IP_MINUTE"] = str(10**9)  # counted (all from 127.0.0.1), never refused
    os.environ["REWARD_TRUSTED_NETWORKS"] = ""
    os.environ["REWARD_HEARTBEAT_IP_COUNT"] = args.ip_count
    os.environ["DATABASE_URL"] = database_url()
    started = time.time()
    devices = make_devices(args.devices)
    print(f"{args.devices} devices bound in {time.time() - started:.1f} s")

    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    if args.server == "ingest":
        command = [gunicorn, "-c", "marketplace/ingest_conf.py", "bench.ingest_app:app"]
        os.environ.update(INGEST_WORKERS=str(args.workers), INGEST_HOST="127.0.0.1", INGEST_PORT=str(port))
        shape = f"the ingest server ({args.workers} uvicorn workers)"
    else:
        command = [gunicorn, "-c", "marketplace/gunicorn_conf.py", "bench.heartbeat_app:application", "--workers",
                   str(args.workers), "--threads", str(args.threads), "--bind", f"127.0.0.1:{port}",
                   "--access-logfile", "/dev/null"]
        shape = f"the web process ({args.workers} workers x {args.threads} threads)"
    server = subprocess.Popen(command + ["--log-level", "warning"], cwd=ROOT, env=os.environ, start_new_session=True)
    try:
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/node/probe/0x{'0' * 40}/0x{'0' * 64}",
                                       timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        common = dict(clients=args.clients, connections=args.connections, min_interval=1.0, keepalive=keepalive)
        # A short warm-up of both views (connections, prepared statements, imports).
        drive(port, devices[:2000], duration=3, path="/bench/bare-heartbeat", **common)
        drive(port, devices[:2000], duration=3, path="/bench/empty", **common)
        print(f"\nthrough gunicorn: {shape}, {args.clients} load processes x {args.connections} connections "
              f"({'kept alive' if keepalive else 'one request each'}), one heartbeat a request, {os.cpu_count()} "
              "cores shared with the load")
        # Interleaved slices, so that other work on the machine weighs on each view alike.
        rounds = args.rounds
        empty, bare, real = [], [], []
        for _ in range(rounds):
            empty.append(drive(port, devices, duration=args.bare_duration / rounds, path="/bench/empty", **common))
            bare.append(drive(port, devices, duration=args.bare_duration / rounds, path="/bench/bare-heartbeat",
                              **common))
            real.append(drive(port, devices, duration=args.duration / rounds, path="/api/v1/node/heartbeat",
                              **common))
        empty, bare, real = summary(empty), summary(bare), summary(real)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    import django
    from django.db import connection

    django.setup()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FILTER (WHERE device_id <> 0), count(*) FILTER (WHERE device_id <> 0 AND "
                       "probe_ok), count(DISTINCT device_id) FILTER (WHERE device_id <> 0) FROM rewards_heartbeat")
        stored, probed, devices_seen = cursor.fetchone()

    def line(name, r):
        refused = {k: v for k, v in r["statuses"].items() if k != 200}
        return (f"{name:<40} {r['per_second']:>9.0f}/s  p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  "
                f"ok {r['ok']}  other {refused or '-'}")

    print(line("empty view (the stack's ceiling)", empty))
    print(line("bare view (1 recover + 1 insert)", bare))
    print(line(f"heartbeats, verified ({args.duration:g} s, per-address count: {args.ip_count})", real))
    print(f"ratio to the bare view: {real['per_second'] / bare['per_second'] * 100:.0f} %")
    print(f"stored: {stored} heartbeats (acknowledged: {real['ok']}; warm-up sent none), {probed} with the probe "
          f"answered, from {devices_seen} devices")
    assert stored >= real["ok"], "an acknowledged heartbeat is missing"


if __name__ == "__main__":
    main()
