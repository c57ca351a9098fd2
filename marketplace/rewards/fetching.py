"""The one way a fetch job's URL is fetched, by a node and by the server's own checks alike: only
public addresses (or an allow-listed host and port), every redirect hop checked again, a byte
limit and a deadline.

Why this much care: a job's URL comes from the server, but a node must not trust it blindly
(a compromised or careless target could point nodes at their own routers, at cloud metadata
services or at localhost), and the server's re-fetch must not be turned against the server's own
network. So a host name is resolved once, every address it resolves to is checked, and the
connection is made to that checked address (the name is only sent as Host and SNI): a name that
resolves to a public address for the check and to a private one for the connection (DNS
rebinding) never reaches the private one. `getaddrinfo` also turns the legacy forms of IPv4
(`127.1`, `0x7f.1`, `2130706433`) into the address the OS would connect to, so those are judged
by what they are, not by how they are written.

Pure logic and the standard library: no Django import, shared by the server and the node program.
"""

from __future__ import annotations

from dataclasses import dataclass
import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

__all__ = ["FetchError", "Fetched", "AllowList", "check_address", "fetch", "resolve"]

USER_AGENT = "datamarket-node/1 (+community data collection)"
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 16 * 1024

# What no fetch may reach, beyond what `ipaddress` already calls non-global: the shared address
# space of carrier-grade NAT (100.64/10, global in some Python versions' tables), and NAT64's
# well-known prefix, whose addresses stand for the IPv4 address in their last 32 bits.
SHARED_SPACE = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(Exception):
    """A fetch that was refused or failed. `reason` is a stable word a node sends back when it
    declines a job: refused_address, bad_url, too_large, timeout, http_status, too_many_redirects,
    connection."""

    def __init__(self, reason: str, message: str, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status  # the HTTP status of an http_status refusal
        self.bytes_read = 0  # body bytes read before it failed (they count against a bandwidth cap)


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    status: int
    content_type: str
    body: bytes
    bytes_read: int  # body bytes of every hop, for the node's bandwidth count


class AllowList:
    """Hosts and ports a fetch may reach although their addresses are not public (the demo's local
    site, a test server). An entry is `host:port`, `[v6]:port`, or `host` (any port); a host is
    matched against the URL's host name and against every address it resolves to."""

    def __init__(self, entries=()):
        self.entries = set()
        for entry in entries:
            entry = entry.strip().lower()
            if not entry:
                continue
            host, port = entry, None
            if entry.startswith("["):
                host, _, rest = entry[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") else None
            elif entry.count(":") == 1:
                host, port_text = entry.split(":")
                port = int(port_text)
            self.entries.add((_normal_host(host), port))

    def allows(self, host: str, port: int) -> bool:
        host = _normal_host(host)
        return (host, port) in self.entries or (host, None) in self.entries

    def __bool__(self):
        return bool(self.entries)


def _normal_host(host: str) -> str:
    host = host.strip("[]").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.rstrip(".")


def check_address(address) -> str | None:
    """Why `address` (an ipaddress object) must not be fetched from, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return check_address(mapped)
        if address in NAT64:
            return check_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and check_address(address.sixtofour):
            return "a 6to4 address of a non-public IPv4 address"
        if address.teredo is not None:
            return "a Teredo address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_reserved:
        return "a reserved address"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_SPACE:
        return "a shared (carrier-grade NAT) address"
    if address.is_private or not address.is_global:
        return "a private address"
    return None


def resolve(host: str, port: int, *, resolver=socket.getaddrinfo) -> list:
    """Every address `host` resolves to for TCP, as ipaddress objects (IPv6 zone ids dropped)."""
    try:
        infos = resolver(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise FetchError("connection", f"{host} does not resolve: {exc}") from None
    addresses = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError("connection", f"{host} has no IPv4 or IPv6 address")
    return addresses


def _target(url: str, allow: AllowList, resolver):
    """(scheme, host, port, path, the address to connect to) of one hop; FetchError when the URL
    is malformed or any address its host resolves to is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("bad_url", f"not a URL: {url[:200]}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("bad_url", "only http and https URLs with a host are fetched")
    if parts.username is not None or parts.password is not None:
        raise FetchError("bad_url", "URLs with credentials are not fetched")
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port, resolver=resolver)
    host_allowed = allow.allows(host, port)
    for address in addresses:
        why = check_address(address)
        if why and not (host_allowed or allow.allows(str(address), port)):
            raise FetchError("refused_address", f"{host} resolves to {address}, {why}: not fetched")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, host, port, path, addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address already checked, whatever the host name resolves to now."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((str(self.address), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((str(self.address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allow: AllowList | None = None,
    resolver=socket.getaddrinfo,
    user_agent: str = USER_AGENT,
    max_redirects: int = MAX_REDIRECTS,
) -> Fetched:
    """GET `url` safely (see the module's docstring): at most `max_bytes` of body, all hops within
    `timeout` seconds. A non-2xx final answer is a FetchError("http_status") whose message
    names the status; `Fetched.status` of a success is 2xx."""
    read = [0]
    try:
        return _fetch(
            url, max_bytes, timeout, allow or AllowList(), resolver, user_agent, max_redirects, read
        )
    except FetchError as exc:
        exc.bytes_read = read[0]
        raise


def _fetch(url, max_bytes, timeout, allow, resolver, user_agent, max_redirects, read):
    deadline = time.monotonic() + timeout
    for _hop in range(max_redirects + 1):
        scheme, host, port, path, address = _target(url, allow, resolver)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", f"no answer from {host} within {timeout} s")
        connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
        connection = connection_class(host, port, address, remaining)
        try:
            connection.request(
                "GET",
                path,
                headers={
                    "User-Agent": user_agent,
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            response = connection.getresponse()
            if response.status in REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            declared = response.getheader("Content-Length")
            if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(
                    "too_large", f"{url} is {declared} bytes, over the job's {max_bytes}"
                )
            chunks, size = [], 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FetchError("timeout", f"{url} took longer than {timeout} s")
                # read1 returns what one receive brings, and the socket waits at most until the
                # deadline: a server dripping a byte at a time cannot stretch a fetch past it.
                if connection.sock is not None:
                    connection.sock.settimeout(left)
                chunk = response.read1(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                read[0] += len(chunk)
                if size > max_bytes:
                    raise FetchError("too_large", f"{url} is over the job's {max_bytes} bytes")
                chunks.append(chunk)
            if not 200 <= response.status < 300:
                raise FetchError(
                    "http_status", f"{url} answered {response.status}", status=response.status
                )
            return Fetched(
                url=url,
                status=response.status,
                content_type=(response.getheader("Content-Type") or "")
                .split(";")[0]
                .strip()
                .lower(),
                body=b"".join(chunks),
                bytes_read=read[0],
            )
        except socket.timeout:
            raise FetchError("timeout", f"{url} took longer than {timeout} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError("connection", f"{url} could not be fetched: {exc}") from None
        finally:
            connection.close()
    raise FetchError("too_many_redirects", f"more than {max_redirects} redirects")
