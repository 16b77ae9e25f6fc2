"""grpc.health.v1 on both ports (internal/server/health.py), with real clients: grpcio on the gRPC
port; httpx speaking Connect (unary and server streaming), `buf curl` and a raw h2 client over
HTTP/2 on the HTTP port. Both ports answer from one status table, the same way, without credentials."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from internal.server.app import AltaluneServer
from tests.conftest import running_server
from tests.e2e.clients import failure_from_connect_body, failure_from_details

pytestmark = pytest.mark.e2e

BUF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "buf"
CHECK = "/api/grpc.health.v1.Health/Check"
WATCH = "/api/grpc.health.v1.Health/Watch"
END_STREAM = 0x02


async def grpc_check(port: int, service: str) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def connect_check(port: int, service: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        return await http.post(CHECK, json={"service": service}, timeout=5)


async def test_check_answers_the_same_on_both_ports_without_credentials(server: AltaluneServer) -> None:
    for service in ("", "altalune.v1.EmployeeService"):
        answer = await connect_check(server.http_port, service)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "SERVING"}
        assert await grpc_check(server.grpc_port, service) == "SERVING"


async def test_an_unknown_service_is_not_found_with_the_same_reason_on_both_ports(server: AltaluneServer) -> None:
    answer = await connect_check(server.http_port, "altalune.v1.NoSuchService")
    assert answer.status_code == 404
    over_connect = failure_from_connect_body(answer.content)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="altalune.v1.NoSuchService"), timeout=5
            )
    error = raised.value
    assert error.code() is grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(error)
    assert status is not None, "the gRPC port sent no status details"
    over_grpc = failure_from_details("not_found", status.message, status.details)

    for failure in (over_connect, over_grpc):
        assert failure.code == "not_found"
        assert failure.reason == "HEALTH_SERVICE_UNKNOWN"
        assert failure.metadata == {"service": "altalune.v1.NoSuchService"}
    assert over_connect.message == over_grpc.message


async def test_buf_curl_checks_health_over_http2_through_reflection(server: AltaluneServer) -> None:
    assert BUF.exists(), f"{BUF} missing: install the dev extra (buf-bin)"
    proc = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--http2-prior-knowledge",
        "--reflect",
        "-d",
        '{"service": ""}',
        f"http://127.0.0.1:{server.http_port}{CHECK}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30.0)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"status": "SERVING"}


async def stream_messages(response: httpx.Response) -> AsyncIterator[tuple[int, dict[str, object]]]:
    """The Connect streaming envelopes of a response: (flags, JSON payload), as they arrive."""
    buffered = b""
    async for chunk in response.aiter_bytes():
        buffered += chunk
        while len(buffered) >= 5:
            flags, size = struct.unpack(">BI", buffered[:5])
            if len(buffered) < 5 + size:
                break
            payload, buffered = buffered[5 : 5 + size], buffered[5 + size :]
            yield flags, json.loads(payload)


async def test_watch_over_connect_follows_the_status_and_ends_when_the_server_stops(database_url: str) -> None:
    async with running_server(database_url) as own:
        request = json.dumps({"service": ""}).encode()
        headers = {"content-type": "application/connect+json", "connect-protocol-version": "1"}
        said: list[object] = []
        ended: dict[str, object] | None = None
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{own.http_port}", timeout=10) as http,
            http.stream(
                "POST", WATCH, content=struct.pack(">BI", 0, len(request)) + request, headers=headers
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/connect+json"
            stopping: asyncio.Task[None] | None = None
            async for flags, message in stream_messages(response):
                if flags & END_STREAM:
                    ended = message
                    break
                said.append(message.get("status"))
                if stopping is None:
                    stopping = asyncio.create_task(own.stop())
            assert stopping is not None
            await asyncio.wait_for(stopping, 15)
    assert said == ["SERVING", "NOT_SERVING"]
    assert ended == {}, "the stream ended with an error"


def open_watches() -> int:
    """Watch loops of grpcio-health running in this process (the server runs on the test's loop)."""
    return sum(
        1 for task in asyncio.all_tasks() if "HealthServicer.Watch" in getattr(task.get_coro(), "__qualname__", "")
    )


async def watches_drop_to(count: int, within_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while (left := open_watches()) > count:
        assert asyncio.get_running_loop().time() < deadline, f"{left - count} watch(es) still open"
        await asyncio.sleep(0.02)


async def test_a_watch_whose_client_left_is_ended_at_once_not_at_the_next_status_change(
    server: AltaluneServer,
) -> None:
    request = json.dumps({"service": ""}).encode()
    headers = {"content-type": "application/connect+json", "connect-protocol-version": "1"}
    body = struct.pack(">BI", 0, len(request)) + request
    before = open_watches()
    for _ in range(3):
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as http,
            http.stream("POST", WATCH, content=body, headers=headers) as response,
        ):
            async for _flags, message in stream_messages(response):
                assert message == {"status": "SERVING"}
                break
            assert open_watches() == before + 1
        # The client closed the connection mid-stream; the status does not change meanwhile.
        await watches_drop_to(before, within_s=5)


async def test_a_watch_reset_over_http2_is_ended_while_its_connection_stays(server: AltaluneServer) -> None:
    request = json.dumps({"service": ""}).encode()
    before = open_watches()
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        head = [(":method", "POST"), (":path", WATCH), (":scheme", "http"), (":authority", "127.0.0.1")]
        conn.send_headers(1, [*head, ("content-type", "application/connect+json")])
        conn.send_data(1, struct.pack(">BI", 0, len(request)) + request, end_stream=True)
        await asyncio.to_thread(sock.sendall, conn.data_to_send())
        answered = False
        while not answered:
            data = await asyncio.to_thread(sock.recv, 65536)
            assert data, "the server closed the connection"
            answered = any(isinstance(e, h2.events.DataReceived) for e in conn.receive_data(data))
        assert open_watches() == before + 1
        conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        await asyncio.to_thread(sock.sendall, conn.data_to_send())
        await watches_drop_to(before, within_s=5)
    finally:
        sock.close()
