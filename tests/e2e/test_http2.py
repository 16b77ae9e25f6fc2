"""HTTP/2 cleartext on the HTTP port (internal/server/http2.py), with real sockets and real clients:
the `h2` library speaking prior knowledge, curl for `Upgrade: h2c`, and `buf curl --reflect`.

The guarantees of the HTTP/1.1 path live in the ASGI gateway and must hold on every h2 stream:
size limit, CORS, Connect JSON errors, header checks, request ids; a refused stream must not
disturb its siblings on the same connection."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import shutil
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import hpack
import httpx
import pytest

from internal.server.app import AltaluneServer
from internal.server.http2 import GuardedH2Protocol
from tests.conftest import TEST_ORIGIN
from tests.e2e.test_health import open_watches, watches_drop_to

pytestmark = pytest.mark.e2e

BUF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "buf"
JSON = "application/json"
_names = itertools.count(1)


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(self.body)
        return loaded


@dataclass(frozen=True, slots=True)
class Call:
    path: str
    body: bytes = b""
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    finished: bool = True  # False: the request's body goes on (the client never ends it)


def h2_exchange(port: int, calls: list[Call]) -> list[Answer]:
    """Open one h2c connection by prior knowledge, send every call as a concurrent stream, read all
    answers (blocking: run it in a thread, the server lives on the test's event loop)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="latin-1"))
    conn.initiate_connection()
    answers: dict[int, Answer] = {}
    for call in calls:
        stream_id = conn.get_next_available_stream_id()
        head = [(":method", call.method), (":path", call.path), (":scheme", "http"), (":authority", "127.0.0.1")]
        conn.send_headers(stream_id, [*head, *call.headers], end_stream=not call.body and call.finished)
        if call.body:
            conn.send_data(stream_id, call.body, end_stream=call.finished)
        answers[stream_id] = Answer()
    sock.sendall(conn.data_to_send())
    open_streams = set(answers)
    try:
        while open_streams:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    answer = answers[event.stream_id]
                    answer.headers = {str(k): str(v) for k, v in event.headers}
                    answer.status = int(answer.headers[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    answers[event.stream_id].body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    open_streams.discard(event.stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise AssertionError(f"GOAWAY {event.error_code}")
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return [answers[stream_id] for stream_id in sorted(answers)]


async def h2_calls(server: AltaluneServer, *calls: Call) -> list[Answer]:
    return await asyncio.to_thread(h2_exchange, server.http_port, list(calls))


def authed(token: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("content-type", JSON), ("authorization", f"Bearer {token}"), *extra)


async def create_project(server: AltaluneServer, token: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}/api") as client:
        created = await client.post(
            "/altalune.v1.ProjectService/CreateProject",
            json={"name": f"H2 {next(_names)}", "timezone": "UTC", "environment": "ENVIRONMENT_SANDBOX"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert created.status_code == 200, created.text
    project_id: str = created.json()["project"]["id"]
    return project_id


async def test_connect_json_over_h2_prior_knowledge(server: AltaluneServer, admin_token: str) -> None:
    project = await create_project(server, admin_token)
    body = json.dumps({"id": project}).encode()
    (got,) = await h2_calls(
        server, Call("/api/altalune.v1.ProjectService/GetProject", body, headers=authed(admin_token))
    )
    assert got.status == 200, got.body
    assert got.json()["project"]["id"] == project  # type: ignore[index]
    assert got.headers["x-request-id"]


async def test_http1_guarantees_hold_on_h2_streams_of_one_connection(server: AltaluneServer, admin_token: str) -> None:
    project = await create_project(server, admin_token)
    get = "/api/altalune.v1.ProjectService/GetProject"
    body = json.dumps({"id": project}).encode()
    oversized = ("content-length", str(4 * 1024 * 1024 + 1))
    answers = await h2_calls(
        server,
        Call("/api/altalune.v1.ProjectService/NoSuchMethod", b"{}", headers=authed(admin_token)),
        Call(get, body, headers=authed(admin_token, ("origin", TEST_ORIGIN), ("x-request-id", "h2-req-0001"))),
        # Refused on its declared size, before the body has arrived: the answer ends the stream.
        Call(get, b"{" + b" " * 1024, headers=authed(admin_token, oversized), finished=False),
        Call(get, body, headers=authed(admin_token, ("connect-timeout-ms", "soon"))),
        Call(get, body, headers=authed(admin_token)),
    )
    unknown, cors, too_large, bad_deadline, sibling = answers
    assert unknown.status == 404
    assert unknown.headers["content-type"] == JSON
    assert unknown.json()["code"] == "unimplemented"
    assert cors.status == 200
    assert cors.headers["access-control-allow-origin"] == TEST_ORIGIN
    assert "X-Request-Id" in cors.headers["access-control-expose-headers"]
    assert cors.headers["x-request-id"] == "h2-req-0001"
    assert too_large.status == 429
    assert too_large.json()["code"] == "resource_exhausted"
    assert bad_deadline.status == 400
    assert bad_deadline.json()["code"] == "invalid_argument"
    assert sibling.status == 200, "a refused stream must not disturb the others on its connection"


async def test_h2_preflight_and_health(server: AltaluneServer) -> None:
    preflight, health = await h2_calls(
        server,
        Call(
            "/api/altalune.v1.ProjectService/GetProject",
            method="OPTIONS",
            headers=(("origin", TEST_ORIGIN), ("access-control-request-method", "POST")),
        ),
        Call("/healthz", method="GET"),
    )
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == TEST_ORIGIN
    assert health.status == 200


async def run(argv: list[str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30.0)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_buf_curl_reflects_over_the_http_port_and_calls_with_an_api_key(
    server: AltaluneServer, admin_token: str
) -> None:
    assert BUF.exists(), f"{BUF} missing: install the dev extra (buf-bin)"
    project = await create_project(server, admin_token)
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}/api") as client:
        key = await client.post(
            "/altalune.v1.ApiKeyService/CreateApiKey",
            json={"projectId": project, "name": "buf", "scopes": ["project:read"], "expiresAt": expires},
            headers={"authorization": f"Bearer {admin_token}"},
        )
    assert key.status_code == 200, key.text
    secret = key.json()["secret"]
    base = f"http://127.0.0.1:{server.http_port}/api"
    code, out, err = await run(
        [
            str(BUF),
            "curl",
            "--reflect",
            "--http2-prior-knowledge",
            "-H",
            f"authorization: Bearer {secret}",
            "-d",
            json.dumps({"id": project}),
            f"{base}/altalune.v1.ProjectService/GetProject",
        ]
    )
    assert code == 0, err
    assert json.loads(out)["project"]["id"] == project
    # Both reflection versions, and the same services as the gRPC port lists.
    for version in ("grpc-v1", "grpc-v1alpha"):
        code, out, err = await run(
            [str(BUF), "curl", "--http2-prior-knowledge", "--reflect-protocol", version, "--list-services", base]
        )
        assert code == 0, err
        listed = set(out.split())
        assert {"altalune.v1.ProjectService", "grpc.reflection.v1.ServerReflection", "grpc.health.v1.Health"} <= listed


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_h2c_upgrade_on_a_bodiless_request_and_http1_for_one_with_a_body(server: AltaluneServer) -> None:
    url = f"http://127.0.0.1:{server.http_port}"
    code, out, err = await run(["curl", "-sS", "-i", "--http2", f"{url}/healthz"])
    assert code == 0, err
    assert out.startswith("HTTP/1.1 101 Switching Protocols"), out
    assert "HTTP/2 200" in out
    assert "x-request-id" in out
    code, out, err = await run(
        ["curl", "-sS", "-i", "--http2", "-H", f"content-type: {JSON}", "-d", "{}", f"{url}/api/x.Y/Z"]
    )
    assert code == 0, err
    assert out.startswith("HTTP/1.1 404"), out  # the upgrade is ignored: answered over HTTP/1.1
    assert json.loads(out.split("\r\n\r\n", 1)[1])["code"] == "unimplemented"


def cancel_calls_beside_a_watch(sock: socket.socket, cancels: int) -> tuple[list[str], int | None]:
    """On one h2c connection: a health Watch (a call that stays in flight), then `cancels` calls
    opened and reset by the client one after another, as a client cancelling calls does. Returns
    what happened, in order, and after how many resets the server's GOAWAY came (None: no GOAWAY)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    request = b'{"service": ""}'
    watch = conn.get_next_available_stream_id()
    conn.send_headers(
        watch,
        [
            (":method", "POST"),
            (":path", "/api/grpc.health.v1.Health/Watch"),
            (":scheme", "http"),
            (":authority", "127.0.0.1"),
            ("content-type", "application/connect+json"),
        ],
    )
    conn.send_data(watch, struct.pack(">BI", 0, len(request)) + request, end_stream=True)
    sock.sendall(conn.data_to_send())
    seen: list[str] = []

    def read(*, blocking: bool) -> None:
        sock.setblocking(blocking)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        finally:
            sock.setblocking(True)
        if not data:
            seen.append("closed")
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == watch:
                seen.append("watch answered")
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == watch:
                seen.append("watch reset")
            elif isinstance(event, h2.events.ConnectionTerminated):
                seen.append(f"GOAWAY {h2.errors.ErrorCodes(event.error_code or 0).name}")
        sock.sendall(conn.data_to_send())

    while "watch answered" not in seen:
        read(blocking=True)
    head = [(":method", "POST"), (":path", "/api/altalune.v1.ProjectService/GetProject"), (":scheme", "http")]
    for done in range(1, cancels + 1):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [*head, (":authority", "x"), ("content-type", JSON)])
        sock.sendall(conn.data_to_send())
        time.sleep(0.002)  # the server has taken the call when the client cancels it
        conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        sock.sendall(conn.data_to_send())
        time.sleep(0.002)
        read(blocking=False)
        if seen[-1] != "watch answered":
            return seen, done
    return seen, None


async def test_a_client_cancelling_many_calls_gets_a_graceful_goaway_and_its_call_in_flight_goes_on(
    server: AltaluneServer,
) -> None:
    # The HTTP/2 library alone ends the connection with ENHANCE_YOUR_CALM at the 257th reset,
    # failing the Watch in flight.
    watches = open_watches()
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=15)
    try:
        seen, goaway_after = await asyncio.to_thread(cancel_calls_beside_a_watch, sock, 300)
        assert seen == ["watch answered", "GOAWAY NO_ERROR"]
        assert goaway_after is not None
        assert goaway_after <= 128
        await asyncio.sleep(0.3)
        assert open_watches() == watches + 1, "the call in flight did not go on"
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # nor was the connection closed under it
    finally:
        sock.close()
    await watches_drop_to(watches, within_s=5)


def streams_with_goaway(port: int, streams: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Open `streams` GET /healthz streams at once on one h2c connection, then read everything:
    (the status of each stream, (error code, last stream id) of each GOAWAY). The frames are read
    by hand: the h2 library stops reading at the first GOAWAY, where the answers only begin."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    statuses: dict[int, int] = {}
    for _ in range(streams):
        stream = conn.get_next_available_stream_id()
        head = [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "127.0.0.1")]
        conn.send_headers(stream, head, end_stream=True)
        statuses[stream] = 0
    sock.sendall(conn.data_to_send() + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")  # and ack their SETTINGS
    decoder = hpack.Decoder()
    goaways: list[tuple[int, int]] = []
    ended: set[int] = set()
    buffered = b""
    try:
        while len(ended) < streams:
            data = sock.recv(65536)
            if not data:
                break
            buffered += data
            while len(buffered) >= 9:
                size, kind, flags = int.from_bytes(buffered[:3]), buffered[3], buffered[4]
                stream_id = int.from_bytes(buffered[5:9]) & 0x7FFFFFFF
                if len(buffered) < 9 + size:
                    break
                payload, buffered = buffered[9 : 9 + size], buffered[9 + size :]
                if kind == 0x1:  # HEADERS (zttp sends neither padding nor priority)
                    status = dict(decoder.decode(payload, raw=True)).get(b":status")
                    if status is not None:
                        statuses[stream_id] = int(status)
                elif kind == 0x3:  # RST_STREAM
                    ended.add(stream_id)
                elif kind == 0x7:  # GOAWAY
                    goaways.append((int.from_bytes(payload[4:8]), int.from_bytes(payload[:4]) & 0x7FFFFFFF))
                if kind in (0x0, 0x1) and flags & 0x1:  # END_STREAM
                    ended.add(stream_id)
    finally:
        sock.close()
    return [statuses[stream] for stream in sorted(statuses)], goaways


async def test_a_retired_connection_serves_the_streams_opened_before_its_goaway(
    server: AltaluneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retired after 20 streams (3840 in service): the 30 the client opened at once are all served,
    # none refused, and the GOAWAY names the largest id (RFC 9113 §6.8), not the 20th stream.
    monkeypatch.setattr(GuardedH2Protocol, "streams_per_connection", 20)
    statuses, goaways = await asyncio.to_thread(streams_with_goaway, server.http_port, 30)
    assert statuses == [200] * 30
    assert goaways[:1] == [(0, 2**31 - 1)]
