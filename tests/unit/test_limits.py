"""The pure parts of the limits: rates, the sliding log's Retry-After, and which address a
request counts under with and without trusted proxies."""
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
import pytest

from marketplace.limits.http import client_address, client_network
from marketplace.limits.services import Rate, configured_rates, human_duration, retry_after


@pytest.mark.parametrize("text, rate", [
    ("30/minute", Rate(30, 60)), ("1/second", Rate(1, 1)), ("100 / days", Rate(100, 86400)),
    ("5/Hour", Rate(5, 3600)), ("off", None), (" OFF ", None),
])
def test_rates_parse(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["30", "0/minute", "-1/minute", "30/fortnight", "3.5/minute", "/minute", ""])
def test_bad_rates_are_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match="write it as 30/minute"):
        Rate.parse(text)


def test_rates_read_back_in_words():
    assert str(Rate(1000, 86400)) == "1,000 per day"


def test_a_bad_rate_in_settings_names_the_rule_and_scope(settings):
    settings.LIMITS = {"upload": {"wallet": "many/day"}}
    with pytest.raises(ImproperlyConfigured, match=r"LIMITS\['upload'\]\['wallet'\]: 'many/day' is not a rate"):
        configured_rates()
    settings.LIMITS = {"uploads": {"wallet": "1/day"}}
    with pytest.raises(ImproperlyConfigured, match="unknown rule 'uploads'"):
        configured_rates()
    settings.LIMITS = {"upload": {"host": "1/day"}}
    with pytest.raises(ImproperlyConfigured, match="unknown scope 'host'"):
        configured_rates()


def test_retry_after_waits_for_the_oldest_hit_that_makes_room_to_leave():
    rate = Rate(3, 60)
    # Three hits at 0, 10 and 20 s; at 25 s the one at 0 leaves at 60 s.
    assert retry_after(rate, 25.0, [0.0, 10.0, 20.0]) == 35
    # Hits older than the period do not count; five recent hits over a lowered limit of 3 wait
    # for the third-newest to leave.
    assert retry_after(rate, 100.0, [1.0, 50.0, 55.0, 70.0, 80.0, 90.0]) == 30  # 70 + 60 - 100
    assert retry_after(rate, 59.5, [0.0, 0.0, 0.0]) == 1  # never 0: Retry-After 0 means "now" to clients
    # A hit stored with a later time than this request's clock read (a concurrent request): at
    # most the period, never period + 1 (seen with Redis under 50 concurrent requests).
    assert retry_after(rate, 100.0, [100.2, 100.3, 100.4]) == 60


def test_durations_read_as_people_say_them():
    assert [human_duration(s) for s in (1, 45, 99, 100, 3599, 7200, 86400, 172800, 200000)] == [
        "1 second", "45 seconds", "99 seconds", "2 minutes", "60 minutes", "2 hours", "24 hours", "2 days", "3 days"]


def request(remote="192.0.2.10", forwarded=None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = 0
    assert client_address(request(forwarded="203.0.113.9")) == "192.0.2.10"


def test_with_one_trusted_proxy_the_entry_it_added_is_the_client(settings):
    settings.TRUSTED_PROXIES = 1
    # The client wrote "1.1.1.1, 2.2.2.2"; the proxy appended the address it saw.
    assert client_address(request(remote="10.0.0.2", forwarded="1.1.1.1, 2.2.2.2, 203.0.113.9")) == "203.0.113.9"


def test_with_two_trusted_proxies_the_outer_ones_entry_is_the_client(settings):
    settings.TRUSTED_PROXIES = 2
    assert client_address(request(remote="10.0.0.3", forwarded="6.6.6.6, 203.0.113.9, 10.0.0.2")) == "203.0.113.9"


def test_a_short_or_garbled_header_falls_back_to_the_peer(settings):
    settings.TRUSTED_PROXIES = 2
    assert client_address(request(remote="10.0.0.3", forwarded="203.0.113.9")) == "10.0.0.3"
    assert client_address(request(remote="10.0.0.3", forwarded="not-an-ip, 10.0.0.2")) == "10.0.0.3"
    assert client_address(request(remote="10.0.0.3")) == "10.0.0.3"


def test_ports_brackets_and_mapped_addresses_are_read(settings):
    settings.TRUSTED_PROXIES = 1
    assert client_address(request(remote="10.0.0.2", forwarded="203.0.113.9:51234")) == "203.0.113.9"
    assert client_address(request(remote="10.0.0.2", forwarded="[2001:db8::7]:443")) == "2001:db8::7"
    assert client_address(request(remote="::ffff:10.0.0.2", forwarded="::ffff:203.0.113.9")) == "203.0.113.9"


def test_a_peer_outside_the_proxies_networks_is_the_client_whatever_it_wrote(settings):
    settings.TRUSTED_PROXIES = 1  # and the default networks: loopback and private ranges
    assert client_address(request(remote="203.0.113.50", forwarded="198.51.100.7")) == "203.0.113.50"
    assert client_address(request(remote="2001:db8::50", forwarded="198.51.100.7")) == "2001:db8::50"
    assert client_address(request(remote="127.0.0.1", forwarded="198.51.100.7")) == "198.51.100.7"
    assert client_address(request(remote="fd00::2", forwarded="198.51.100.7")) == "198.51.100.7"


def test_the_proxies_networks_are_configurable(settings):
    settings.TRUSTED_PROXIES = 1
    settings.TRUSTED_PROXY_NETWORKS = ["203.0.113.0/24"]
    assert client_address(request(remote="203.0.113.50", forwarded="198.51.100.7")) == "198.51.100.7"
    assert client_address(request(remote="10.0.0.2", forwarded="198.51.100.7")) == "10.0.0.2"


def test_a_proxy_on_a_unix_socket_is_trusted(settings):
    settings.TRUSTED_PROXIES = 1
    assert client_address(request(remote="", forwarded="198.51.100.7")) == "198.51.100.7"


def test_a_bad_proxy_network_is_a_configuration_error(monkeypatch):
    from marketplace.env import env_networks

    monkeypatch.setenv("TRUSTED_PROXY_NETWORKS", "10.0.0.0/8, 10.0.0/33")
    with pytest.raises(ImproperlyConfigured, match=r"TRUSTED_PROXY_NETWORKS: '10.0.0/33' is not an IP network"):
        env_networks("TRUSTED_PROXY_NETWORKS", [])
    monkeypatch.setenv("TRUSTED_PROXY_NETWORKS", "10.0.0.0/8, 2001:db8::1")
    assert env_networks("TRUSTED_PROXY_NETWORKS", []) == ["10.0.0.0/8", "2001:db8::1"]


def test_an_ipv6_client_counts_as_its_64(settings):
    settings.TRUSTED_PROXIES = 0
    assert client_network(request(remote="2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_network(request(remote="2001:db8:1:2:ffff::9")) == "2001:db8:1:2::/64"
    assert client_network(request(remote="203.0.113.9")) == "203.0.113.9"


def test_a_malformed_redis_url_is_a_configuration_error(settings):
    from marketplace.limits.services import check_configuration

    settings.LIMITS_REDIS_URL = "127.0.0.1:6379"
    with pytest.raises(ImproperlyConfigured, match="LIMITS_REDIS_URL: Redis URL must specify one of the following schemes"):
        check_configuration()


def test_sizes_read_in_binary_units():
    from marketplace.limits.services import human_size

    assert [human_size(n) for n in (80, 2048, 50 * 1024**3)] == ["80 bytes", "2.0 KiB", "50.0 GiB"]
