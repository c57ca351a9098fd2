"""The demo's small local website that nodes collect from, with no internet: weather stations'
readings (JSON) and a shop's prices (an HTML table), both changing from one time slot to the
next, deterministically from a seed, so every node (and the server's own check) fetching one
slot gets the same page. robots.txt disallows /private/.

    python -m marketplace.rewards.demo_site --port 8765 [--host 127.0.0.1] [--seed 1]

    /                       an index of the pages
    /weather?at=<slot>      {"slot": n, "stations": [{"slot", "id", "name", "temp_c",
                                                   "humidity"}, ...]}
    /prices?at=<slot>       <table> of product, price, stock
    /private/ledger         disallowed by robots.txt (a node must decline it)
    /big?kb=<n>             n KiB of filler (for byte limits)
    /go?to=<url>            a redirect to any URL (for the fetch guard's redirect checks)
    /robots.txt

Standard library only (no Django): the run command starts it as its own process.
"""

from __future__ import annotations

import argparse
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import random
import threading
from urllib.parse import parse_qs, urlsplit

STATIONS = [
    ("ST01", "Harbour"),
    ("ST02", "Old Town"),
    ("ST03", "Airport"),
    ("ST04", "Hill Park"),
    ("ST05", "University"),
]
PRODUCTS = [
    "Coffee beans 1 kg",
    "Oat milk 1 l",
    "Rye bread",
    "Apples 1 kg",
    "Olive oil 0.5 l",
    "Eggs (10)",
]
ROBOTS = "User-agent: *\nDisallow: /private/\n"


def weather(slot: int, seed: int = 1) -> dict:
    draw = random.Random(f"weather:{seed}:{slot}")
    return {
        "slot": slot,
        "stations": [
            {
                "slot": slot,
                "id": code,
                "name": name,
                "temp_c": f"{draw.uniform(-5, 30):.1f}",
                "humidity": draw.randint(20, 95),
            }
            for code, name in STATIONS
        ],
    }


def prices(slot: int, seed: int = 1) -> list[tuple[str, str, int]]:
    draw = random.Random(f"prices:{seed}:{slot}")
    return [(name, f"{draw.uniform(0.8, 15):.2f}", draw.randint(0, 40)) for name in PRODUCTS]


def _page(title: str, body: str) -> bytes:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    ).encode()


class DemoHandler(BaseHTTPRequestHandler):
    server_version = "DemoSite/1"
    seed = 1

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            slot = int(query.get("at", ["0"])[0])
        except ValueError:
            slot = 0
        path = parts.path
        if path == "/robots.txt":
            return self._send(200, ROBOTS.encode(), "text/plain")
        if path == "/":
            links = "".join(
                f'<li><a href="{p}">{p}</a></li>' for p in ("/weather?at=1", "/prices?at=1")
            )
            return self._send(
                200, _page("Demo data site", f"<ul>{links}</ul>"), "text/html; charset=utf-8"
            )
        if path == "/weather":
            return self._send(
                200, json.dumps(weather(slot, self.seed)).encode(), "application/json"
            )
        if path == "/prices":
            rows = "".join(
                f"<tr><td>{escape(n)}</td><td>{p}</td><td>{s}</td></tr>"
                for n, p, s in prices(slot, self.seed)
            )
            table = f"<table><tr><th>Product</th><th>Price</th><th>Stock</th></tr>{rows}</table>"
            return self._send(200, _page(f"Prices, slot {slot}", table), "text/html; charset=utf-8")
        if path.startswith("/private/"):
            return self._send(
                200, json.dumps({"stations": [{"id": "SECRET"}]}).encode(), "application/json"
            )
        if path == "/big":
            kb = min(int(query.get("kb", ["1"])[0] or 1), 64 * 1024)
            return self._send(200, b"x" * (kb * 1024), "text/plain")
        if path == "/go" and "to" in query:
            return self._send(302, b"", "text/plain", [("Location", query["to"][0])])
        return self._send(404, b"not found", "text/plain")


def serve(host: str = "127.0.0.1", port: int = 8765, seed: int = 1) -> ThreadingHTTPServer:
    """A started server in a daemon thread (tests); `.shutdown()` stops it."""
    handler = type("SeededDemoHandler", (DemoHandler,), {"seed": seed})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    handler = type("SeededDemoHandler", (DemoHandler,), {"seed": args.seed})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    print(f"demo site on http://{args.host}:{server.server_port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
