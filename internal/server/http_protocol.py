"""uvicorn's HTTP/1.1 protocol with the guards uvicorn leaves out, per connection:

- a header-read timeout: a client that opens a connection (or starts a request on a kept-alive
  one) and does not finish the headers in time gets a 408 and is disconnected (uvicorn has only
  an idle keep-alive timeout, so slow senders could hold sockets forever);
- a cap on open connections: one past it is answered 503 and closed at once;
- bytes that are not HTTP get a Connect JSON error instead of uvicorn's plain-text 400;
- HTTP/2: a connection that opens with the HTTP/2 preface (h2c prior knowledge), or whose first
  request is a bodiless `Upgrade: h2c` (RFC 7540 §3.2, answered 101), is handed to the HTTP/2
  protocol (internal/server/http2.py) after the connection cap was checked here;
- any other Upgrade (WebSocket, h2c on a request with a body) is ignored, as HTTP/1.1 allows: the
  request is answered as a plain HTTP request, so the caller sees a Connect error, not a 500.
Every answer written here is a complete response with `connection: close`.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from internal.addresses import socket_peer
from internal.errors import AppError, HeaderTimeout, MalformedHttp, TooManyConnections, to_connect_error
from internal.logs import get_logger
from internal.server.http2 import H2_PREFACE, SWITCHING_TO_H2C, GuardedH2Protocol, guarded_h2_protocol, wants_h2c
from internal.server.http_gateway import connect_error_body

log = get_logger("altalune.http")


def raw_error_response(error: AppError) -> bytes:
    """A whole HTTP/1.1 error response with a Connect JSON body, written before any ASGI app runs."""
    status, body = connect_error_body(to_connect_error(error), error.http_status)
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
        status,
        HTTPStatus(status).phrase.encode(),
        len(body),
    )
    return head + body


class GuardedHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """Subclassed per server by `guarded_protocol` (uvicorn builds protocols from a class)."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    # The protocol h2c connections are handed to; None serves HTTP/1.1 only.
    h2_protocol: type[GuardedH2Protocol] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        # The first bytes of a connection, held while they could still be the HTTP/2 preface.
        self._sniffing = self.h2_protocol is not None
        self._first_bytes = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: too many open connections", limit=self.max_connections)
            self._answer_and_close(TooManyConnections(self.max_connections))
            return
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the h2c hand-overs; other upgrades are ignored (the request was served)."""
        if self._sniffing:
            self._first_bytes += data
            if len(self._first_bytes) < len(H2_PREFACE) and H2_PREFACE.startswith(self._first_bytes):
                return
            self._sniffing = False
            data, self._first_bytes = self._first_bytes, b""
            if data.startswith(H2_PREFACE):
                self._hand_over_to_h2().data_received(data)
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self._upgrade_to_h2c(data[upgrade.args[0] :])

    def send_400_response(self, msg: str) -> None:
        self._stop_header_timer()
        log.info("malformed HTTP request", peer=socket_peer(self.client))
        self._answer_and_close(MalformedHttp())

    def _should_upgrade(self) -> bool:
        """Only a bodiless h2c upgrade is taken: the request is then served as stream 1 of the new
        HTTP/2 connection. One with a body is answered over HTTP/1.1 (§3.2 lets a server ignore an
        upgrade), which spares buffering a body outside the gateway's size limit."""
        if self.h2_protocol is None or self.scheme != "http" or not wants_h2c(self.headers):
            return False
        length = next((value for name, value in self.headers if name == b"content-length"), b"0")
        chunked = any(name == b"transfer-encoding" for name, _ in self.headers)
        return length.strip() == b"0" and not chunked

    def _upgrade_to_h2c(self, rest: bytes) -> None:
        method = self.scope["method"].encode()
        headers = list(self.headers)
        self.transport.write(SWITCHING_TO_H2C)
        self._hand_over_to_h2().upgraded(method, self.url, headers, rest)

    def _hand_over_to_h2(self) -> GuardedH2Protocol:
        """The connection continues as HTTP/2; it keeps its place under the connection cap."""
        assert self.h2_protocol is not None
        self._stop_header_timer()
        self._unset_keepalive_if_required()
        self.connections.discard(self)
        protocol = self.h2_protocol(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        return protocol

    def _unsupported_upgrade_warning(self) -> None:
        """Upgrades are ignored by design (see the module docstring); nothing to warn about."""

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        log.info("request headers too slow", peer=socket_peer(self.client), timeout_s=self.header_timeout_s)
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined answer is still being written: no second response
            return
        self._answer_and_close(HeaderTimeout(self.header_timeout_s))

    def _answer_and_close(self, error: AppError) -> None:
        self.transport.write(raw_error_response(error))
        self.transport.close()


def guarded_protocol(*, header_timeout_s: float, max_connections: int, http2: bool = True) -> type[GuardedHttpProtocol]:
    h2 = guarded_h2_protocol(header_timeout_s=header_timeout_s) if http2 else None
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections, "h2_protocol": h2},
    )
