"""The node's HTTP client: heartbeats, probes, device-signed requests, bindings.

Every call returns the decoded JSON answer or raises: `ServerDown` when the server cannot be
reached or answers 5xx (the run loop backs off and retries), `Refused` for a 4xx with the API's
error body (its code says what to do: resync after `replayed`, `out_of_order`, `precomputed`)."""
from __future__ import annotations

import json
import secrets
import time

import requests

from marketplace.rewards import signing

TIMEOUT = 10


class ServerDown(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, error: dict):
        self.status, self.error = status, error
        self.code = error.get("code", "error")
        super().__init__(f"{status} {self.code}: {error.get('message', '')}")


def new_nonce() -> str:
    return "0x" + secrets.token_hex(32)


class Client:
    def __init__(self, server: str, key, chain_id: int):
        self.server = server.rstrip("/")
        self.key = key
        self.device = key.address
        self.chain_id = chain_id
        self.http = requests.Session()
        self.bytes_up = 0
        self.bytes_down = 0
        self.last_latency_ms = 0

    def _send(self, method: str, path: str, *, body: bytes = b"", headers: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json", **(headers or {})} if body else dict(headers or {})
        started = time.monotonic()
        try:
            response = self.http.request(method, self.server + path, data=body or None, headers=headers,
                                         timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ServerDown(str(exc)) from None
        self.last_latency_ms = int((time.monotonic() - started) * 1000)
        self.bytes_up += len(body) + len(path)
        self.bytes_down += len(response.content)
        if response.status_code >= 500:
            raise ServerDown(f"the server answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise ServerDown(f"the server answered {response.status_code} without JSON") from None
        if response.status_code >= 400:
            raise Refused(response.status_code, data.get("error", {}) if isinstance(data, dict) else {})
        return data

    def sign_request(self, method: str, path: str, payload: dict | None) -> tuple[str, bytes, dict]:
        """(path, body, headers) of a device-signed request (rewards/device_auth.py)."""
        body = json.dumps(payload).encode() if payload is not None else b""
        # Signatures are deterministic (RFC 6979) and the time is in seconds: two identical
        # requests within a second (two turns asking for jobs) would carry one signature, and the
        # server takes each once. A random query parameter makes every request its own.
        path += ("&" if "?" in path else "?") + "r=" + secrets.token_hex(4)
        stamp = int(time.time())
        message = signing.request_message(chain_id=self.chain_id, device=self.device, method=method, path=path,
                                          timestamp=stamp, body=body)
        return path, body, {"X-Device": self.device, "X-Device-Time": str(stamp),
                            "X-Device-Signature": signing.sign(self.key, message)}

    def signed(self, method: str, path: str, payload: dict | None = None) -> dict:
        """A device-signed request; its JSON answer, or ServerDown / Refused."""
        path, body, headers = self.sign_request(method, path, payload)
        return self._send(method, path, body=body, headers=headers)

    def signed_response(self, method: str, path: str, payload: dict | None = None) -> requests.Response:
        """A device-signed request whose answer the caller reads itself (fetch jobs look at each
        status code); a network failure raises requests' errors (OSError)."""
        path, body, headers = self.sign_request(method, path, payload)
        if body:
            headers["Content-Type"] = "application/json"
        response = self.http.request(method, self.server + path, data=body or None, headers=headers,
                                     timeout=TIMEOUT)
        self.bytes_up += len(body) + len(path)
        self.bytes_down += len(response.content)
        return response

    def session(self) -> dict:
        return self.signed("GET", "/api/v1/node/session")

    def status(self) -> dict:
        return self.signed("GET", "/api/v1/node/status")

    def probe(self, url: str) -> str:
        return self._send("GET", url)["answer"]

    def heartbeat(self, *, seq: int, nonce: str, probe: str = "") -> dict:
        figures = {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down, "latency_ms": self.last_latency_ms}
        sent_at = int(time.time())
        message = signing.heartbeat_message(chain_id=self.chain_id, device=self.device, seq=seq, nonce=nonce,
                                            sent_at=sent_at, probe=probe, **figures)
        body = {"device": self.device, "seq": seq, "nonce": nonce, "sent_at": sent_at, "probe": probe, **figures,
                "signature": signing.sign(self.key, message)}
        answer = self._send("POST", "/api/v1/node/heartbeat", body=json.dumps(body).encode())
        self.bytes_up = self.bytes_down = 0
        return answer

    # Binding ---------------------------------------------------------------------------------
    def bind_fields(self, wallet: str) -> dict:
        return {"chain_id": self.chain_id, "device": self.device, "wallet": wallet, "nonce": new_nonce(),
                "issued_at": int(time.time())}

    def bind(self, wallet_key, *, old_wallet_key=None) -> dict:
        """Bind with a wallet key held here (from a keystore or a hidden prompt)."""
        fields = self.bind_fields(wallet_key.address)
        payload = {"device": self.device, "wallet": wallet_key.address, "nonce": fields["nonce"],
                   "issued_at": fields["issued_at"],
                   "device_signature": signing.sign_binding(self.key, "Bind", **fields),
                   "wallet_signature": signing.sign_binding(wallet_key, "Bind", **fields)}
        if old_wallet_key is not None:
            old = self.bind_fields(old_wallet_key.address)
            payload["unbind"] = {"wallet": old_wallet_key.address, "nonce": old["nonce"],
                                 "issued_at": old["issued_at"],
                                 "signature": signing.sign_binding(old_wallet_key, "Unbind", **old)}
        return self._send("POST", "/api/v1/node/bind", body=json.dumps(payload).encode())

    def bind_url(self, wallet: str) -> str:
        """The website's page where the signed-in wallet signs the Bind the device signed here."""
        from urllib.parse import urlencode

        fields = self.bind_fields(wallet)
        query = urlencode({"device": self.device, "wallet": fields["wallet"], "nonce": fields["nonce"],
                           "issued": fields["issued_at"], "sig": signing.sign_binding(self.key, "Bind", **fields)})
        return f"{self.server}/node/bind?{query}"

    def unbind(self, wallet_key) -> dict:
        fields = self.bind_fields(wallet_key.address)
        payload = {"device": self.device, "wallet": wallet_key.address, "nonce": fields["nonce"],
                   "issued_at": fields["issued_at"], "signature": signing.sign_binding(wallet_key, "Unbind", **fields)}
        return self._send("POST", "/api/v1/node/unbind", body=json.dumps(payload).encode())
