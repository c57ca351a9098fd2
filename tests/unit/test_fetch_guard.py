"""The fetch guard that nodes and the server's checks share: no private, loopback, link-local,
multicast, reserved or shared address however it is written, checked again at every redirect
hop, and the connection made to the address that was checked. Real HTTP against the demo site
(stdlib server in a thread); nothing is mocked but a resolver's answers where a name must
resolve to something this machine cannot make up."""

import ipaddress
import socket

import pytest

from marketplace.rewards import demo_site
from marketplace.rewards.fetching import AllowList, FetchError, check_address, fetch


@pytest.fixture(scope="module")
def site():
    server = demo_site.serve(port=0)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.0.0.1/",
        "http://10.255.1.2:8080/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://100.127.255.254/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:a00:1::]/",
        "http://198.18.0.1/",
    ],
)
def test_non_public_addresses_are_refused_in_every_form(url):
    with pytest.raises(FetchError) as refused:
        fetch(url, max_bytes=1000, timeout=2)
    assert refused.value.reason == "refused_address", refused.value.message


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass_the_check(address):
    assert check_address(ipaddress.ip_address(address)) is None


def _resolver(*addresses):
    def resolve(host, port, proto=0):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


def test_a_hostname_resolving_to_a_private_address_is_refused():
    with pytest.raises(FetchError) as refused:
        fetch("http://intranet.example/", max_bytes=1000, timeout=2, resolver=_resolver("10.0.0.5"))
    assert refused.value.reason == "refused_address"
    assert "10.0.0.5" in refused.value.message


def test_a_hostname_with_one_private_address_among_public_ones_is_refused():
    """A name that also resolves to a private address could be connected to that one (or
    rebound to it): it is refused whole."""
    with pytest.raises(FetchError) as refused:
        fetch(
            "http://mixed.example/",
            max_bytes=1000,
            timeout=2,
            resolver=_resolver("93.184.216.34", "127.0.0.1"),
        )
    assert refused.value.reason == "refused_address"


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(site):
    """DNS rebinding: the name is resolved once, checked, and that address is connected to; the
    resolver's second answer (a private address off the allow list) is never asked for."""
    calls = []

    def resolve(host, port, proto=0):
        calls.append(host)
        address = "127.0.0.1" if len(calls) == 1 else "10.0.0.9"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    fetched = fetch(
        f"http://rebind.example:{site}/weather?at=3",
        max_bytes=10_000,
        timeout=5,
        allow=AllowList([f"127.0.0.1:{site}"]),
        resolver=resolve,
    )
    assert calls == ["rebind.example"]
    assert b'"slot": 3' in fetched.body


def test_an_allow_listed_host_and_port_is_fetched(site):
    fetched = fetch(
        f"http://127.0.0.1:{site}/weather?at=7",
        max_bytes=10_000,
        timeout=5,
        allow=AllowList([f"127.0.0.1:{site}"]),
    )
    assert fetched.status == 200 and fetched.content_type == "application/json"
    assert fetched.bytes_read == len(fetched.body) > 0


def test_the_allow_list_names_a_port_not_the_whole_host(site):
    with pytest.raises(FetchError) as refused:
        fetch(
            f"http://127.0.0.1:{site}/",
            max_bytes=10_000,
            timeout=5,
            allow=AllowList([f"127.0.0.1:{site + 1}"]),
        )
    assert refused.value.reason == "refused_address"
    with pytest.raises(FetchError):
        fetch(f"http://127.0.0.1:{site}/", max_bytes=10_000, timeout=5)


def test_a_legacy_form_of_an_allow_listed_address_is_judged_by_the_address(site):
    fetched = fetch(
        f"http://127.1:{site}/weather?at=1",
        max_bytes=10_000,
        timeout=5,
        allow=AllowList([f"127.0.0.1:{site}"]),
    )
    assert fetched.status == 200


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{other}/",
        "http://127.0.0.1:{other}/",
    ],
)
def test_a_redirect_to_a_private_address_is_refused(site, target):
    """The allow-listed site redirects elsewhere: the new hop is checked like the first."""
    to = target.format(other=site + 1)
    with pytest.raises(FetchError) as refused:
        fetch(
            f"http://127.0.0.1:{site}/go?to={to}",
            max_bytes=10_000,
            timeout=5,
            allow=AllowList([f"127.0.0.1:{site}"]),
        )
    assert refused.value.reason == "refused_address", refused.value.message


def test_a_redirect_within_the_allowed_site_is_followed(site):
    fetched = fetch(
        f"http://127.0.0.1:{site}/go?to=/prices%3Fat%3D2",
        max_bytes=10_000,
        timeout=5,
        allow=AllowList([f"127.0.0.1:{site}"]),
    )
    assert fetched.url.endswith("/prices?at=2") and b"<table>" in fetched.body


def test_too_many_redirects_are_refused(site):
    allow = AllowList([f"127.0.0.1:{site}"])
    url = f"http://127.0.0.1:{site}/weather"
    for _ in range(7):
        url = f"http://127.0.0.1:{site}/go?to=" + url.replace("%", "%25").replace(
            "?", "%3F"
        ).replace("=", "%3D").replace("&", "%26")
    with pytest.raises(FetchError) as refused:
        fetch(url, max_bytes=10_000, timeout=5, allow=allow)
    assert refused.value.reason == "too_many_redirects"


def test_a_body_over_the_byte_limit_is_refused(site):
    with pytest.raises(FetchError) as refused:
        fetch(
            f"http://127.0.0.1:{site}/big?kb=200",
            max_bytes=100_000,
            timeout=5,
            allow=AllowList([f"127.0.0.1:{site}"]),
        )
    assert refused.value.reason == "too_large"


def test_a_non_2xx_answer_is_refused_with_its_status(site):
    with pytest.raises(FetchError) as refused:
        fetch(
            f"http://127.0.0.1:{site}/nothing-here",
            max_bytes=10_000,
            timeout=5,
            allow=AllowList([f"127.0.0.1:{site}"]),
        )
    assert refused.value.reason == "http_status" and refused.value.status == 404


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http:///nohost",
        "gopher://127.0.0.1:70/",
    ],
)
def test_urls_other_than_plain_http_are_refused(url):
    with pytest.raises(FetchError) as refused:
        fetch(url, max_bytes=1000, timeout=2)
    assert refused.value.reason == "bad_url"


def test_a_server_dripping_its_body_cannot_stretch_a_fetch_past_its_timeout():
    """A byte every 0.2 s for ten seconds: the fetch gives up at its one-second limit (a read of
    16 KB used to wait inside http.client for as long as bytes kept coming)."""
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def drip():
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
        try:
            for _ in range(50):
                conn.sendall(b"x")
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(FetchError) as refused:
        fetch(f"http://127.0.0.1:{port}/", max_bytes=1000, timeout=1.0, allow=AllowList([f"127.0.0.1:{port}"]))
    assert refused.value.reason == "timeout" and time.monotonic() - started < 2.5
    server.close()
