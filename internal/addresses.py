"""How both ports name the caller of a call: one form for the access log, the events, the peer
rate limit and the traces, whichever port the call used, and whether a proxy forwarded it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def peer_address(host: str, port: int | None = None) -> str:
    """`127.0.0.1:5000` / `[::1]:5000`: how both ports name a peer (grpc's own `ipv6:[::1]:5000`
    minus the scheme), so the access log, the events and the peer rate limit see one address
    whichever port the call used. A caller named by a proxy has no port: `203.0.113.7`, `[2001:db8::7]`."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def socket_peer(client: tuple[str, int] | None) -> str | None:
    """An ASGI scope's or a protocol's `client` (host, port), named as `peer_address` names it."""
    return peer_address(client[0], client[1]) if client else None


def split_peer(address: str) -> tuple[str, int | None]:
    """`peer_address` read back: (host, port or None)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else None
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, int(port) if port.isdigit() else None
    return address, None


FORWARDED_FOR_HEADER = "x-forwarded-for"


def caller_address(
    host: str, port: int, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> tuple[str, str | None]:
    """(the caller's address, the proxy's when a trusted proxy forwarded the call, else None).

    X-Forwarded-For is read only when the socket peer is a trusted proxy (anyone can send the
    header). Each proxy appends the address it received the call from, so the header is read
    right to left: the first address that is not itself a trusted proxy is the caller. An entry
    that is not an address ends the walk: the caller is then the last trusted hop, since nothing
    trusted vouched for what lies left of it. Both ports call this, so a call has one caller."""
    socket_peer = peer_address(host, port)
    if not trusted or not forwarded_for or not _in(_ip(host), trusted):
        return socket_peer, None
    caller: IPAddress | None = None
    for entry in reversed(forwarded_for.split(",")):
        hop = _ip(entry.strip())
        if hop is None:
            break
        caller = hop
        if not _in(hop, trusted):
            break
    if caller is None:
        return socket_peer, None
    return peer_address(str(caller)), socket_peer


def _ip(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, `[v6]`, or with a port (`1.2.3.4:5`, `[v6]:5`)."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in(address: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in networks)
