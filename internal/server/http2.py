"""HTTP/2 cleartext (h2c) on the HTTP port: uvicorn's zttp HTTP/2 protocol with the guards of the
HTTP/1.1 path (internal/server/http_protocol.py), which hands a connection over here when it
starts with the HTTP/2 preface (prior knowledge) or asks for `Upgrade: h2c` (RFC 7540 §3.2).

What holds on an h2 connection, as on an HTTP/1.1 one:
- the connection cap: it is counted when the connection is accepted, before the protocol is known
  (the HTTP/1.1 protocol refuses one past the cap before it reads a byte);
- a handshake timeout: the preface and the first request's headers must arrive within the
  header timeout; then, with no stream open, the connection is closed (GOAWAY) when no new request
  starts within the keep-alive timeout. Unlike uvicorn's keep-alive timer, this one is not reset by
  frames that carry no request (PING, SETTINGS, WINDOW_UPDATE, a header block that never ends), so
  a peer cannot hold a socket forever by trickling bytes;
- everything per request (size limit, in-flight cap, CORS, Connect errors, deadlines, request id)
  lives in the ASGI gateway, which serves every stream exactly as it serves an HTTP/1.1 request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol

from internal.addresses import socket_peer
from internal.logs import get_logger

log = get_logger("altalune.http")

NO_ERROR = 0x0
MAX_STREAM_ID = 2**31 - 1
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SWITCHING_TO_H2C = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
# Hop-by-hop fields of the HTTP/1.1 upgrade request that an HTTP/2 request may not carry (RFC 9113 §8.2.2).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


def wants_h2c(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A valid h2c upgrade request (RFC 7540 §3.2): `Upgrade: h2c`, `Connection` naming both Upgrade
    and HTTP2-Settings, and exactly one well-formed `HTTP2-Settings` header (base64url SETTINGS)."""
    connection: set[bytes] = set()
    upgrade: list[bytes] = []
    settings: list[bytes] = []
    for name, value in headers:
        if name == b"connection":
            connection.update(token.strip().lower() for token in value.split(b","))
        elif name == b"upgrade":
            upgrade += [token.strip().lower() for token in value.split(b",")]
        elif name == b"http2-settings":
            settings.append(value)
    if upgrade[:1] != [b"h2c"] or not {b"upgrade", b"http2-settings"} <= connection or len(settings) != 1:
        return False
    return _settings_payload(settings[0]) is not None


def _settings_payload(value: bytes) -> bytes | None:
    """The SETTINGS payload of an HTTP2-Settings header, None when it is not base64url of 6-byte entries."""
    try:
        payload = base64.urlsafe_b64decode(value.strip() + b"=" * (-len(value.strip()) % 4))
    except (binascii.Error, ValueError):
        return None
    return payload if len(payload) % 6 == 0 else None


class GuardedH2Protocol(ZttpH2Protocol):  # type: ignore[misc]
    """Subclassed per server by `guarded_h2_protocol` (the timeouts come from the settings)."""

    header_timeout_s: float = 10.0
    # zttp 0.0.35 ends a connection with GOAWAY ENHANCE_YOUR_CALM when its client opens the 4097th
    # stream, failing every call in flight on it. Well before that (less the 128 streams a client may
    # have open at once, and those it opens before it reads our GOAWAY), the connection is retired.
    streams_per_connection: int = 3840
    # zttp 0.0.35 also ends a connection with GOAWAY ENHANCE_YOUR_CALM at the 257th RST_STREAM its
    # client sends (rapid-reset protection, over the connection's whole life), failing every call in
    # flight. Clients reset a stream for every call they cancel (a deadline, an aborted fetch), so a
    # long-lived connection of an ordinary client gets there. After this many resets the connection
    # is retired; the streams still open may be reset too without reaching zttp's limit.
    resets_per_connection: int = 128
    # A retired connection is closed once it has no stream open, and no sooner than this after its
    # GOAWAY: time for the streams the client opened before it read the GOAWAY (one round trip).
    retire_grace_s: float = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._no_request_timer: asyncio.TimerHandle | None = None
        self._streams_opened = 0
        self._resets_received = 0
        self._retired = False
        self._retire_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_no_request_timer(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_no_request_timer()
        if self._retire_timer is not None:
            self._retire_timer.cancel()
        super().connection_lost(exc)

    def handle_request(self, event: Any) -> None:
        self._disarm_no_request_timer()
        super().handle_request(event)
        self._streams_opened += 1
        if self._streams_opened >= self.streams_per_connection:
            self._retire("many streams")

    def handle_rst_stream(self, event: Any) -> None:
        super().handle_rst_stream(event)
        self._resets_received += 1
        if self._resets_received >= self.resets_per_connection:
            self._retire("many streams reset by the client")

    def _retire(self, why: str) -> None:
        """The graceful shutdown of RFC 9113 §6.8: GOAWAY NO_ERROR naming the largest stream id, so
        the client opens no new stream here, and every stream it opened before it read the GOAWAY is
        still served (one refused instead would fail its call: connect-node does not retry a
        REFUSED_STREAM). The calls in flight finish; then the connection closes."""
        if self._retired:
            return
        self._retired = True
        log.info("HTTP/2 connection retired", why=why, peer=socket_peer(self.client))
        self.conn.close(NO_ERROR, MAX_STREAM_ID)
        self.flush()
        self._retire_timer = self.loop.call_later(self.retire_grace_s, self._end_retirement_grace)

    def _end_retirement_grace(self) -> None:
        self._retire_timer = None
        self.shutdown_requested = True  # from now on a stream would be answered 503 by uvicorn
        if not self.cycles and not self.transport.is_closing():
            self._close_connection()

    def on_response_complete(self, stream_id: int) -> None:
        """An answer that ends before its request did (a refusal on the head: size, route, content
        type) is followed by RST_STREAM NO_ERROR, which asks the client to stop sending (RFC 9113
        §8.1). Without it clients reset such streams themselves, and zttp counts peer resets: after
        ~256 on one connection it sends GOAWAY ENHANCE_YOUR_CALM and every call in flight fails."""
        cycle = self.cycles.get(stream_id)
        if cycle is not None and cycle.more_body and not cycle.disconnected and not self.transport.is_closing():
            cycle.stream.reset(0)
            self.flush()
        super().on_response_complete(stream_id)

    def on_stream_closed(self) -> None:
        super().on_stream_closed()
        if not self.cycles and not self.transport.is_closing():
            self._arm_no_request_timer(float(self.timeout_keep_alive))

    def upgraded(self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]], rest: bytes) -> None:
        """Serve the HTTP/1.1 request that asked for h2c as stream 1 (half-closed: it had no body),
        then read on: `rest` is what followed the request (the client preface, if sent eagerly)."""
        settings = next(value for name, value in headers if name == b"http2-settings")
        kept = [(name, value) for name, value in headers if name not in _HOP_BY_HOP and name != b"http2-settings"]
        kept = [(name, value) for name, value in kept if name != b"te" or value.strip().lower() == b"trailers"]
        self.conn.initiate_upgrade_connection(method, target, kept, settings.strip())
        self.handle_events()
        stream_one = self.cycles.get(1)
        if stream_one is not None:
            stream_one.more_body = False  # zttp opens stream 1 half-closed and emits no EndOfMessage for it
            stream_one.message_event.set()
        self.flush()
        if rest:
            self.data_received(rest)

    def _arm_no_request_timer(self, delay_s: float) -> None:
        self._disarm_no_request_timer()
        self._no_request_timer = self.loop.call_later(delay_s, self._no_request_in_time)

    def _disarm_no_request_timer(self) -> None:
        if self._no_request_timer is not None:
            self._no_request_timer.cancel()
            self._no_request_timer = None

    def _no_request_in_time(self) -> None:
        self._no_request_timer = None
        if self.cycles or self.transport.is_closing():
            return
        log.info("HTTP/2 connection closed: no request in time", peer=socket_peer(self.client))
        self._close_connection()


def guarded_h2_protocol(*, header_timeout_s: float) -> type[GuardedH2Protocol]:
    return type("GuardedH2Protocol", (GuardedH2Protocol,), {"header_timeout_s": header_timeout_s})
