"""With the database unreachable the service still starts and tells the truth: gRPC health is
NOT_SERVING, /readyz is 503, and calls fail fast with UNAVAILABLE + RetryInfo on every transport.

Authentication needs the database too (the token's user is looked up), so a call with a valid
credential cannot be judged and gets UNAVAILABLE (retry later), never UNAUTHENTICATED (which would
tell the client to throw its good credential away). A call with no credential at all needs no
database to refuse: it still gets UNAUTHENTICATED, at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from altalune.v1 import project_pb2
from internal.ids import new_public_id
from internal.server.app import AltaluneServer
from tests import conftest
from tests.e2e.clients import GET_PROJECT, TRANSPORTS, free_port, open_transport

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def server_without_database() -> AsyncIterator[AltaluneServer]:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/altalune?connect_timeout=1"
    async with conftest.running_server(url, ALTALUNE_MAX_DEADLINE_MS="1000") as running:
        yield running


async def test_without_a_database_health_and_readiness_say_so_and_calls_are_unavailable(
    server_without_database: AltaluneServer,
) -> None:
    server = server_without_database
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
        assert (await http.get("/healthz")).status_code == 200  # alive...
        assert (await http.get("/readyz")).status_code == 503  # ...but not ready

    # A well-signed token of the server's own issuer; which user it names cannot be checked now.
    assert server.container.issuer is not None
    token = server.container.issuer.mint(user_public_id=new_public_id(), email="owner@example.com", ttl_s=3600)
    for name in TRANSPORTS:
        transport = open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port, token=token)
        try:
            started = time.monotonic()
            outcome = await asyncio.wait_for(
                transport.call(GET_PROJECT, project_pb2.GetProjectRequest(id="23456789abcdef")), 10
            )
            elapsed = time.monotonic() - started
        finally:
            await transport.close()
        failure = outcome.failed()
        assert (failure.code, failure.reason) == ("unavailable", "DATABASE_UNAVAILABLE"), name
        assert "google.rpc.RetryInfo" in failure.detail_types, name
        assert elapsed < 1.0, (name, elapsed)  # gave up before the 1 s server deadline


async def test_without_a_database_a_call_without_credentials_is_still_unauthenticated_at_once(
    server_without_database: AltaluneServer,
) -> None:
    server = server_without_database
    for name in TRANSPORTS:
        transport = open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port)
        try:
            started = time.monotonic()
            outcome = await asyncio.wait_for(
                transport.call(GET_PROJECT, project_pb2.GetProjectRequest(id="23456789abcdef")), 10
            )
            elapsed = time.monotonic() - started
        finally:
            await transport.close()
        failure = outcome.failed()
        assert (failure.code, failure.reason) == ("unauthenticated", "CREDENTIALS_MISSING"), name
        assert elapsed < 0.5, (name, elapsed)  # no database round trip, no pool wait
