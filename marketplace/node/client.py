"""Signed requests of a node to the server: what `marketplace.node.jobs.work` (and the heartbeat
loop) talk through. Each request is signed anew with the device key (signing.request_message of
the chain, the device, the method, the path with its query, the node's clock and the body's
sha256), so the server takes it once and knows which device sent it."""

from __future__ import annotations

import json as jsonlib
import time

from eth_account import Account
import requests

from marketplace.rewards import signing


class NodeClient:
    """`signed(method, path, json=None) -> requests.Response` against `base_url`.

    `key` is the device key (hex or bytes); `clock` gives Unix seconds (a test moves it)."""

    def __init__(
        self, base_url: str, key, *, chain_id: int, timeout: float = 10.0, clock=time.time
    ):
        self.base_url = base_url.rstrip("/")
        self.account = Account.from_key(key)
        self.chain_id = chain_id
        self.timeout = timeout
        self.clock = clock
        self.session = requests.Session()
        self.session.trust_env = False  # the server is named by base_url, not by proxy variables
        self.signed_recently: dict[str, int] = {}  # message -> its time

    @property
    def device(self) -> str:
        return self.account.address

    def headers(self, method: str, path: str, body: bytes) -> dict:
        """The signature headers. Signatures are deterministic (RFC 6979) and the server takes
        each once, so the same request twice in one second is signed with the next second's time
        (a few seconds ahead at most, well within the server's allowed skew)."""
        now = int(self.clock())
        self.signed_recently = {m: t for m, t in self.signed_recently.items() if t > now - 120}
        timestamp = now
        while True:
            message = signing.request_message(
                chain_id=self.chain_id,
                device=self.device,
                method=method,
                path=path,
                timestamp=timestamp,
                body=body,
            )
            if message not in self.signed_recently:
                break
            timestamp += 1
        self.signed_recently[message] = timestamp
        return {
            "X-Device": self.device,
            "X-Device-Time": str(timestamp),
            "X-Device-Signature": signing.sign(self.account, message),
        }

    def signed(self, method: str, path: str, json=None) -> requests.Response:
        body = b"" if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        headers = self.headers(method, path, body)
        if json is not None:
            headers["Content-Type"] = "application/json"
        return self.session.request(
            method, self.base_url + path, data=body or None, headers=headers, timeout=self.timeout
        )
