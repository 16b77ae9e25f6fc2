"""Starting and stopping the service as an operator or an orchestrator sees it: busy ports fail
loudly, health and readiness tell the truth, and a stop lets in-flight calls finish."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import httpx
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_health.v1 import health_pb2, health_pb2_grpc

from altalune.v1 import project_pb2
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import (
    CREATE_PROJECT,
    GET_PROJECT,
    UPDATE_PROJECT,
    Transport,
    bearer,
    free_port,
    open_transport,
    project_row_locked,
    wait_for_blocked_project_updates,
)

pytestmark = pytest.mark.e2e

SERVING = int(health_pb2.HealthCheckResponse.SERVING)
NOT_SERVING = int(health_pb2.HealthCheckResponse.NOT_SERVING)


@pytest_asyncio.fixture
async def own_server(database_url: str) -> AsyncIterator[AltaluneServer]:
    running = AltaluneServer(conftest.test_settings(), database_url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()  # a no-op if the test already stopped it


def grpc_client(server: AltaluneServer, token: str) -> Transport:
    return open_transport("grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=token)


async def health_status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(reply.status)


async def http_get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2.0) as client:
        return await client.get(path)


async def test_a_running_server_is_live_ready_and_serving(own_server: AltaluneServer) -> None:
    healthz = await http_get(own_server.http_port, "/healthz")
    readyz = await http_get(own_server.http_port, "/readyz")

    assert healthz.status_code == 200
    assert readyz.status_code == 200
    assert json.loads(readyz.content)["status"] == "ready"
    assert await health_status(own_server.grpc_port) == SERVING
    assert await health_status(own_server.grpc_port, "altalune.v1.EmployeeService") == SERVING


@pytest.mark.parametrize("busy", ["grpc", "http"])
async def test_a_second_server_on_a_port_already_in_use_fails_to_start(
    own_server: AltaluneServer, database_url: str, busy: str
) -> None:
    port = own_server.grpc_port if busy == "grpc" else own_server.http_port
    other_port = free_port()
    if busy == "grpc":
        env = {"ALTALUNE_GRPC_PORT": str(port), "ALTALUNE_HTTP_PORT": str(other_port)}
    else:
        env = {"ALTALUNE_HTTP_PORT": str(port), "ALTALUNE_GRPC_PORT": str(other_port)}
    second = AltaluneServer(conftest.test_settings(**env), database_url)

    with pytest.raises(OSError, match=str(port)):
        await second.start()

    # The failed start released the port it did get, so a corrected retry can use it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", other_port))

    # The first server is untouched and still answers on both ports.
    assert await health_status(own_server.grpc_port) == SERVING
    assert (await http_get(own_server.http_port, "/readyz")).status_code == 200


async def test_a_stopped_server_frees_its_ports_for_a_restart(database_url: str) -> None:
    first = AltaluneServer(conftest.test_settings(), database_url)
    await first.start()
    ports = {"ALTALUNE_GRPC_PORT": str(first.grpc_port), "ALTALUNE_HTTP_PORT": str(first.http_port)}
    assert (await http_get(first.http_port, "/healthz")).status_code == 200
    await first.stop()

    second = AltaluneServer(conftest.test_settings(**ports), database_url)
    await second.start()
    try:
        assert (second.grpc_port, second.http_port) == (first.grpc_port, first.http_port)
        assert await health_status(second.grpc_port) == SERVING
        assert (await http_get(second.http_port, "/readyz")).status_code == 200
    finally:
        await second.stop()


async def _grpc_says_not_serving(port: int) -> bool:
    try:
        return await health_status(port) == NOT_SERVING
    except grpc.aio.AioRpcError as exc:
        return bool(exc.code() == grpc.StatusCode.UNAVAILABLE)  # not accepting new calls any more


async def _http_says_not_ready(port: int) -> bool:
    try:
        return bool((await http_get(port, "/readyz")).status_code == 503)
    except httpx.TransportError:
        return True  # the listener is closed: new connections are refused


async def test_stopping_refuses_new_work_at_once_but_lets_in_flight_calls_finish(
    own_server: AltaluneServer, database_url: str
) -> None:
    token = admin_token_for(own_server)
    client = grpc_client(own_server, token)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{own_server.http_port}", timeout=10.0)
    try:
        env = project_pb2.ENVIRONMENT_LIVE
        via_grpc = (
            (
                await client.call(
                    CREATE_PROJECT, project_pb2.CreateProjectRequest(name="Slow g", timezone="UTC", environment=env)
                )
            )
            .ok()
            .project
        )
        via_http = (
            (
                await client.call(
                    CREATE_PROJECT, project_pb2.CreateProjectRequest(name="Slow h", timezone="UTC", environment=env)
                )
            )
            .ok()
            .project
        )

        async with project_row_locked(database_url, via_grpc.id), project_row_locked(database_url, via_http.id):
            grpc_call = asyncio.create_task(
                client.call(
                    UPDATE_PROJECT,
                    project_pb2.UpdateProjectRequest(
                        id=via_grpc.id, name="Finished g", update_mask=FieldMask(paths=["name"])
                    ),
                )
            )
            http_call = asyncio.create_task(
                http.post(
                    "/api" + UPDATE_PROJECT.path,
                    json={"id": via_http.id, "name": "Finished h", "updateMask": "name"},
                    headers={"connect-protocol-version": "1", **bearer(token)},
                )
            )
            await wait_for_blocked_project_updates(database_url, 2)

            stopping = asyncio.create_task(own_server.stop())
            started = time.monotonic()
            grpc_down = http_down = False
            while not (grpc_down and http_down) and time.monotonic() - started < 1.0:
                grpc_down = grpc_down or await _grpc_says_not_serving(own_server.grpc_port)
                http_down = http_down or await _http_says_not_ready(own_server.http_port)
                await asyncio.sleep(0.02)
            assert grpc_down, "gRPC health still SERVING 1 s after stop() began"
            assert http_down, "/readyz still 200 (and accepting) 1 s after stop() began"
            assert not grpc_call.done()
            assert not http_call.done()
            assert not stopping.done(), "stop() did not wait for the in-flight calls"
        # Locks released: both in-flight calls complete normally within the grace period.
        grpc_outcome = await asyncio.wait_for(grpc_call, 5)
        http_reply = await asyncio.wait_for(http_call, 5)
        await asyncio.wait_for(stopping, 5)
    finally:
        await client.close()
        await http.aclose()

    assert grpc_outcome.ok().project.name == "Finished g"
    assert http_reply.status_code == 200, http_reply.content
    assert json.loads(http_reply.content)["project"]["name"] == "Finished h"
    # And once stopped, nothing answers any more.
    with pytest.raises(httpx.TransportError):
        await http_get(own_server.http_port, "/healthz")
    with pytest.raises(grpc.aio.AioRpcError):
        await health_status(own_server.grpc_port)


async def test_the_work_of_a_finished_in_flight_call_is_durable(database_url: str) -> None:
    """After a graceful stop, a new server sees what the in-flight call committed."""
    first = AltaluneServer(conftest.test_settings(), database_url)
    await first.start()
    token = admin_token_for(first)
    client = grpc_client(first, token)
    try:
        project = (
            (
                await client.call(
                    CREATE_PROJECT,
                    project_pb2.CreateProjectRequest(
                        name="Durable", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                    ),
                )
            )
            .ok()
            .project
        )
        async with project_row_locked(database_url, project.id):
            call = asyncio.create_task(
                client.call(
                    UPDATE_PROJECT,
                    project_pb2.UpdateProjectRequest(
                        id=project.id,
                        description="written during shutdown",
                        update_mask=FieldMask(paths=["description"]),
                    ),
                )
            )
            await wait_for_blocked_project_updates(database_url, 1)
            stopping = asyncio.create_task(first.stop())
            await asyncio.sleep(0.2)
        (await asyncio.wait_for(call, 5)).ok()
        await asyncio.wait_for(stopping, 5)
    finally:
        await client.close()

    second = AltaluneServer(conftest.test_settings(), database_url)
    await second.start()
    reader = grpc_client(second, token)  # the same token: the local issuer's key outlives a restart
    try:
        got = (await reader.call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id))).ok().project
        assert got.description == "written during shutdown"
    finally:
        await reader.close()
        await second.stop()
