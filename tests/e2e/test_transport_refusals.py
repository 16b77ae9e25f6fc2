"""Client mistakes below the RPC layer, on both ports: each gets a precise, well-formed answer and
nothing waits without bound.

HTTP port: protocol mistakes are refused before connectrpc reads them, as a Connect JSON error with
an ErrorInfo reason (or gRPC-Web trailers for gRPC-Web callers); bytes that are not HTTP, slow
headers, and one connection too many are answered by the server's protocol layer, also in JSON.
gRPC port: what grpcio answers itself before our code runs is pinned as the README documents it,
and the call grpcio never dispatches is bounded by the connection's age."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc
import grpc.aio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2

from altalune.v1 import project_pb2
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import failure_from_connect_body

pytestmark = pytest.mark.e2e

QUERY = "/altalune.v1.ProjectService/QueryProjects"
CREATE = "/altalune.v1.ProjectService/CreateProject"
EMPTY_FRAME = b"\x00\x00\x00\x00\x00"


@pytest_asyncio.fixture
async def guarded(database_url: str) -> AsyncIterator[AltaluneServer]:
    """A server with small limits, so the guards can be reached quickly."""
    async with conftest.running_server(
        database_url,
        ALTALUNE_HEADER_TIMEOUT_S="0.5",
        ALTALUNE_MAX_CONNECTIONS="4",
        ALTALUNE_MAX_DEADLINE_MS="1000",
        ALTALUNE_GRPC_MAX_CONNECTION_AGE_S="1",
    ) as running:
        yield running


# --- Connect and gRPC-Web mistakes on the HTTP port -------------------------------------------


@dataclass(frozen=True)
class Mistake:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int
    code: str
    reason: str


JSON = {"content-type": "application/json"}
GRPC_WEB = {"content-type": "application/grpc-web+proto"}
MISTAKES = {
    "gRPC content type (needs trailers)": Mistake(
        "POST",
        QUERY,
        {"content-type": "application/grpc"},
        EMPTY_FRAME,
        415,
        "invalid_argument",
        "UNSUPPORTED_CONTENT_TYPE",
    ),
    "gRPC+proto content type": Mistake(
        "POST",
        QUERY,
        {"content-type": "application/grpc+proto"},
        EMPTY_FRAME,
        415,
        "invalid_argument",
        "UNSUPPORTED_CONTENT_TYPE",
    ),
    "no content type": Mistake("POST", QUERY, {}, b"{}", 415, "invalid_argument", "UNSUPPORTED_CONTENT_TYPE"),
    "text/plain": Mistake(
        "POST", QUERY, {"content-type": "text/plain"}, b"{}", 415, "invalid_argument", "UNSUPPORTED_CONTENT_TYPE"
    ),
    "Connect-Timeout-Ms -1": Mistake(
        "POST", QUERY, {**JSON, "connect-timeout-ms": "-1"}, b"{}", 400, "invalid_argument", "INVALID_HEADER"
    ),
    "Connect-Timeout-Ms 0": Mistake(
        "POST", QUERY, {**JSON, "connect-timeout-ms": "0"}, b"{}", 400, "invalid_argument", "INVALID_HEADER"
    ),
    "Connect-Timeout-Ms not a number": Mistake(
        "POST", QUERY, {**JSON, "connect-timeout-ms": "soon"}, b"{}", 400, "invalid_argument", "INVALID_HEADER"
    ),
    "Connect-Protocol-Version 2": Mistake(
        "POST", QUERY, {**JSON, "connect-protocol-version": "2"}, b"{}", 400, "invalid_argument", "INVALID_HEADER"
    ),
    "unknown service": Mistake(
        "POST", "/altalune.v1.NoSuchService/Query", JSON, b"{}", 404, "unimplemented", "UNKNOWN_PROCEDURE"
    ),
    "unknown method": Mistake(
        "POST", "/altalune.v1.ProjectService/Nope", JSON, b"{}", 404, "unimplemented", "UNKNOWN_PROCEDURE"
    ),
    "GET on a write RPC": Mistake(
        "GET", CREATE + "?encoding=json&message=%7B%7D", {}, b"", 405, "unimplemented", "METHOD_NOT_ALLOWED"
    ),
    "PUT": Mistake("PUT", QUERY, JSON, b"{}", 405, "unimplemented", "METHOD_NOT_ALLOWED"),
    "GET without a message": Mistake(
        "GET", QUERY + "?encoding=json", {}, b"", 400, "invalid_argument", "MALFORMED_REQUEST"
    ),
    "GET with an unknown encoding": Mistake(
        "GET", QUERY + "?encoding=xml&message=x", {}, b"", 415, "invalid_argument", "UNSUPPORTED_CONTENT_TYPE"
    ),
    "Content-Encoding br": Mistake(
        "POST", QUERY, {**JSON, "content-encoding": "br"}, b"{}", 501, "unimplemented", "UNSUPPORTED_ENCODING"
    ),
    "WebSocket upgrade on an RPC path": Mistake(
        "GET",
        QUERY,
        {
            "connection": "Upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
        b"",
        400,
        "invalid_argument",
        "MALFORMED_REQUEST",
    ),
    "a path outside /api": Mistake("POST", "/../nope", JSON, b"{}", 404, "not_found", "NO_ROUTE"),
}


@pytest.mark.parametrize("name", list(MISTAKES))
async def test_a_connect_protocol_mistake_gets_a_json_error_with_a_reason(
    server: AltaluneServer, admin_token: str, name: str
) -> None:
    mistake = MISTAKES[name]
    url = mistake.path if mistake.path.startswith("/..") else "/api" + mistake.path
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as http:
        reply = await http.request(
            mistake.method,
            url,
            content=mistake.body,
            headers={"authorization": f"Bearer {admin_token}", **mistake.headers},
        )
    assert reply.headers["content-type"].startswith("application/json"), reply.content
    failure = failure_from_connect_body(reply.content)
    assert (reply.status_code, failure.code, failure.reason) == (mistake.status, mistake.code, mistake.reason)
    assert failure.domain == "altalune.v1"


NOPE = "/altalune.v1.ProjectService/Nope"
GRPC_WEB_MISTAKES: dict[str, tuple[str, bytes, dict[str, str], str, str]] = {
    "compressed flag without grpc-encoding": (QUERY, b"\x01" + EMPTY_FRAME[1:], {}, "3", "MALFORMED_REQUEST"),
    "frame length beyond the body": (QUERY, b"\x00\x00\x00\x00\x09ab", {}, "3", "MALFORMED_REQUEST"),
    "frame length short of the body": (QUERY, b"\x00\x00\x00\x00\x01abc", {}, "3", "MALFORMED_REQUEST"),
    "no frame at all": (QUERY, b"", {}, "3", "MALFORMED_REQUEST"),
    "a trailer frame as the request": (QUERY, b"\x80\x00\x00\x00\x00", {}, "3", "MALFORMED_REQUEST"),
    "grpc-encoding br": (QUERY, EMPTY_FRAME, {"grpc-encoding": "br"}, "12", "UNSUPPORTED_ENCODING"),
    "malformed grpc-timeout": (QUERY, EMPTY_FRAME, {"grpc-timeout": "soon"}, "3", "INVALID_HEADER"),
    "an unknown procedure": (NOPE, EMPTY_FRAME, {}, "12", "UNKNOWN_PROCEDURE"),
}


@pytest.mark.parametrize("name", list(GRPC_WEB_MISTAKES))
async def test_a_grpc_web_framing_mistake_gets_grpc_web_trailers_with_a_reason(
    server: AltaluneServer, admin_token: str, name: str
) -> None:
    path, body, headers, grpc_status, reason = GRPC_WEB_MISTAKES[name]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as http:
        reply = await http.post(
            "/api" + path, content=body, headers={"authorization": f"Bearer {admin_token}", **GRPC_WEB, **headers}
        )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/grpc-web+proto"
    trailers = _grpc_web_trailers(reply.content)
    status = status_pb2.Status.FromString(base64.b64decode(trailers["grpc-status-details-bin"] + "=="))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (trailers["grpc-status"], info.reason) == (grpc_status, reason)
    assert urllib.parse.unquote(trailers["grpc-message"]) == status.message


def _grpc_web_trailers(body: bytes) -> dict[str, str]:
    assert body[0] == 0x80, body
    assert int.from_bytes(body[1:5], "big") == len(body) - 5, body
    lines = body[5:].decode().strip().split("\r\n")
    return dict(line.split(": ", 1) for line in lines)


async def test_a_refused_cors_origin_is_logged(guarded: AltaluneServer, capsys: pytest.CaptureFixture[str]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{guarded.http_port}", timeout=10) as http:
        await http.post("/api" + QUERY, content=b"{}", headers={**JSON, "origin": "https://evil.example"})
    captured = capsys.readouterr()
    logged = captured.out + captured.err
    assert "CORS origin refused" in logged
    assert "https://evil.example" in logged


# --- The HTTP port's protocol layer -------------------------------------------------------------


async def _raw_exchange(port: int, data: bytes, *, within_s: float = 5.0) -> bytes:
    """Send bytes, read until the server closes the connection (which it must do within the time)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), within_s)
    finally:
        writer.close()


def _json_error(raw: bytes) -> tuple[int, str, str | None]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), raw
    failure = failure_from_connect_body(body)
    return status, failure.code, failure.reason


async def test_bytes_that_are_not_http_get_a_json_400_and_the_connection_is_closed(server: AltaluneServer) -> None:
    for garbage in (b"GARBAGE\r\n\r\n", b"POST /api/x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n"):
        raw = await _raw_exchange(server.http_port, garbage)
        assert _json_error(raw) == (400, "invalid_argument", "MALFORMED_HTTP")


async def test_a_header_value_that_is_not_utf8_gets_a_json_400_naming_the_header(
    server: AltaluneServer, admin_token: str
) -> None:
    request = (
        b"POST /api" + QUERY.encode() + b" HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + admin_token.encode() + b"\r\nX-High: \xff\xfe\x80\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    raw = await _raw_exchange(server.http_port, request)
    assert _json_error(raw) == (400, "invalid_argument", "INVALID_HEADER")
    assert b"x-high" in raw


async def test_headers_that_do_not_arrive_in_time_get_a_json_408_and_the_connection_is_closed(
    guarded: AltaluneServer,
) -> None:
    started = time.monotonic()
    silent, partial = await asyncio.gather(
        _raw_exchange(guarded.http_port, b""),
        _raw_exchange(guarded.http_port, b"POST /api" + QUERY.encode() + b" HTTP/1.1\r\nHost: a\r\n"),
    )
    assert time.monotonic() - started < 3.0
    assert _json_error(silent) == (408, "deadline_exceeded", "HEADER_TIMEOUT")
    assert _json_error(partial) == (408, "deadline_exceeded", "HEADER_TIMEOUT")


async def test_slow_clients_are_disconnected_and_the_port_keeps_serving(guarded: AltaluneServer) -> None:
    """A slowloris wave: connections dribbling header bytes are closed at the header timeout."""
    conns = [await asyncio.open_connection("127.0.0.1", guarded.http_port) for _ in range(3)]
    try:
        for _, writer in conns:
            writer.write(b"POST /api/x HTTP/1.1\r\n")
        for _ in range(2):  # dribbling does not extend the time the headers get
            await asyncio.sleep(0.2)
            for _, writer in conns:
                if not writer.is_closing():
                    with contextlib.suppress(RuntimeError, ConnectionError):
                        writer.write(b"X-A: b\r\n")
        closed = await asyncio.gather(*(asyncio.wait_for(reader.read(), 3) for reader, _ in conns))
        assert all(b" 408 " in answer.split(b"\r\n", 1)[0] for answer in closed), closed
    finally:
        for _, writer in conns:
            writer.close()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{guarded.http_port}", timeout=5) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_one_connection_past_the_cap_gets_a_json_503_and_the_others_are_served(guarded: AltaluneServer) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", guarded.http_port) for _ in range(4)]
    try:
        raw = await _raw_exchange(guarded.http_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert _json_error(raw) == (503, "unavailable", "TOO_MANY_CONNECTIONS")
    finally:
        for _, writer in idle:
            writer.close()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{guarded.http_port}", timeout=5) as http:
        assert (await http.get("/healthz")).status_code == 200


# --- The gRPC port -------------------------------------------------------------------------------


@dataclass
class H2Answer:
    headers: dict[str, str]
    closed_after_s: float | None  # the stream never got an answer; the connection ended this late
    grpc_status: str | None = None


def _h2_call(port: int, token: str, extra: list[tuple[str, str]], body: bytes, *, within_s: float) -> H2Answer:
    """A gRPC call written frame by frame, so it can be malformed in ways grpcio clients refuse to be."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(within_s)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", QUERY),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("authorization", f"Bearer {token}"),
            *extra,
        ],
    )
    conn.send_data(stream, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    started = time.monotonic()
    seen: dict[str, str] = {}
    try:
        while True:
            data = sock.recv(65535)
            if not data:
                return H2Answer(seen, time.monotonic() - started)
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return H2Answer(seen, time.monotonic() - started)
            for event in events:
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    seen.update({_text(k): _text(v) for k, v in event.headers})
                if isinstance(event, h2.events.StreamEnded) and "grpc-status" in seen:
                    return H2Answer(seen, None, seen["grpc-status"])
                if isinstance(event, h2.events.ConnectionTerminated | h2.events.StreamReset):
                    return H2Answer(seen, time.monotonic() - started)
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# What grpcio answers by itself, before any of our code runs (README, "Errors": the gRPC port).
GRPCIO_ANSWERS = {
    "malformed grpc-timeout": ([("grpc-timeout", "soon")], EMPTY_FRAME, "13", "Error parsing 'grpc-timeout' metadata"),
    "compressed flag without grpc-encoding": (
        [],
        b"\x01" + EMPTY_FRAME[1:],
        "13",
        "Compression bit set but no encoding configured",
    ),
    "bad gzip": ([("grpc-encoding", "gzip")], b"\x01\x00\x00\x00\x03abc", "13", "Decompression failed"),
    "grpc-encoding br": ([("grpc-encoding", "br")], b"\x01\x00\x00\x00\x03abc", "13", "Error parsing 'grpc-encoding'"),
}


@pytest.mark.parametrize("name", list(GRPCIO_ANSWERS))
async def test_what_grpcio_answers_itself_is_as_documented(server: AltaluneServer, admin_token: str, name: str) -> None:
    extra, body, status, message = GRPCIO_ANSWERS[name]
    answer = await asyncio.to_thread(_h2_call, server.grpc_port, admin_token, extra, body, within_s=5)
    assert answer.grpc_status == status, answer
    assert answer.headers.get("grpc-message", "").startswith(message), answer


async def test_a_request_grpcio_never_dispatches_ends_with_the_connections_age(guarded: AltaluneServer) -> None:
    """A message cut off at the end of the stream: grpcio neither calls us nor answers; the
    connection is closed at its maximum age plus the longest deadline and a margin (1 + 1 + 5 s here)."""
    answer = await asyncio.to_thread(
        _h2_call, guarded.grpc_port, admin_token_for(guarded), [], b"\x00\x00\x00\x00\x09ab", within_s=15
    )
    assert answer.grpc_status is None
    assert answer.closed_after_s is not None, answer
    assert answer.closed_after_s < 10, answer


async def test_a_grpc_connection_past_the_cap_is_refused_and_the_others_are_served(guarded: AltaluneServer) -> None:
    admin_token = admin_token_for(guarded)
    # A local subchannel pool each: otherwise the channels of one process share one connection.
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{guarded.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(5)
    ]
    metadata = (("authorization", f"Bearer {admin_token}"),)
    try:
        outcomes = []
        for channel in channels:
            call = channel.unary_unary(QUERY)(
                project_pb2.QueryProjectsRequest().SerializeToString(), metadata=metadata, timeout=3
            )
            try:
                await call
                outcomes.append("ok")
            except grpc.aio.AioRpcError as exc:
                outcomes.append(exc.code().name)
        assert outcomes[:4] == ["ok"] * 4
        assert outcomes[4] in ("UNAVAILABLE", "DEADLINE_EXCEEDED"), outcomes
    finally:
        for channel in channels:
            await channel.close()
