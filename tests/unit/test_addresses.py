"""The caller's address (internal/addresses.py): X-Forwarded-For counts only from a trusted proxy,
and then only as far as trusted proxies vouch for it."""

from __future__ import annotations

import ipaddress

import pytest

from internal.addresses import IPNetwork, caller_address, peer_address, split_peer
from internal.config import ConfigError, load_settings

PROXIES: tuple[IPNetwork, ...] = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("host", "forwarded_for", "trusted", "expected"),
    [
        # No trusted proxies, or a socket peer that is not one: the header is anyone's to send.
        ("10.1.2.3", "203.0.113.7", (), ("10.1.2.3:4000", None)),
        ("198.51.100.9", "203.0.113.7", PROXIES, ("198.51.100.9:4000", None)),
        ("10.1.2.3", None, PROXIES, ("10.1.2.3:4000", None)),
        ("10.1.2.3", "", PROXIES, ("10.1.2.3:4000", None)),
        # One proxy: the address it appended.
        ("10.1.2.3", "203.0.113.7", PROXIES, ("203.0.113.7", "10.1.2.3:4000")),
        # A client's own (spoofed) entries sit left of what the proxy appended: ignored.
        ("10.1.2.3", "1.1.1.1, 203.0.113.7", PROXIES, ("203.0.113.7", "10.1.2.3:4000")),
        # Proxies in a chain: the first address from the right that is not a proxy.
        ("10.1.2.3", "1.1.1.1, 203.0.113.7, 10.9.9.9", PROXIES, ("203.0.113.7", "10.1.2.3:4000")),
        # Only proxies: the farthest one.
        ("10.1.2.3", "10.7.7.7, 10.9.9.9", PROXIES, ("10.7.7.7", "10.1.2.3:4000")),
        # Garbage ends the walk at the last trusted hop; none before it: the socket peer.
        ("10.1.2.3", "203.0.113.7, unknown, 10.9.9.9", PROXIES, ("10.9.9.9", "10.1.2.3:4000")),
        ("10.1.2.3", "203.0.113.7, nonsense", PROXIES, ("10.1.2.3:4000", None)),
        # Ports and brackets as some proxies write them; IPv6 named as both ports name it.
        ("10.1.2.3", "203.0.113.7:5555", PROXIES, ("203.0.113.7", "10.1.2.3:4000")),
        ("10.1.2.3", "[2001:db8::7]:5555", PROXIES, ("[2001:db8::7]", "10.1.2.3:4000")),
        ("fd00::1", "2001:db8::7", PROXIES, ("[2001:db8::7]", "[fd00::1]:4000")),
    ],
)
def test_the_caller_is_what_trusted_proxies_vouch_for(
    host: str, forwarded_for: str | None, trusted: tuple[IPNetwork, ...], expected: tuple[str, str | None]
) -> None:
    assert caller_address(host, 4000, forwarded_for, trusted) == expected


@pytest.mark.parametrize(
    ("host", "port"),
    [("127.0.0.1", 5000), ("::1", 5000), ("203.0.113.7", None), ("2001:db8::7", None)],
)
def test_an_address_reads_back_as_it_was_written(host: str, port: int | None) -> None:
    assert split_peer(peer_address(host, port)) == (host, port)


def test_trusted_proxies_are_addresses_or_networks_and_a_bad_one_stops_the_start() -> None:
    settings = load_settings({"ALTALUNE_TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1 ,::1"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert load_settings({}).trusted_proxies == ()
    with pytest.raises(ConfigError, match=r"ALTALUNE_TRUSTED_PROXIES: 'proxy\.internal'"):
        load_settings({"ALTALUNE_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"})
