"""Load shedding: beyond the configured number of calls in flight, new calls are refused at once
with RESOURCE_EXHAUSTED + RetryInfo, on every transport alike (the limit counts both ports)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import project_pb2
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import (
    CREATE_PROJECT,
    GET_PROJECT,
    TRANSPORTS,
    UPDATE_PROJECT,
    open_transport,
    project_row_locked,
    wait_for_blocked_project_updates,
)

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def single_call_server(database_url: str) -> AsyncIterator[AltaluneServer]:
    async with conftest.running_server(database_url, ALTALUNE_MAX_CONCURRENT_CALLS="1") as running:
        yield running


async def test_a_call_beyond_the_concurrency_limit_is_refused_with_retry_info_on_every_transport(
    single_call_server: AltaluneServer, database_url: str
) -> None:
    server = single_call_server
    token = admin_token_for(server)
    grpc_client = open_transport("grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=token)
    try:
        project = (
            (
                await grpc_client.call(
                    CREATE_PROJECT,
                    project_pb2.CreateProjectRequest(
                        name="Busy", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                    ),
                )
            )
            .ok()
            .project
        )
        async with project_row_locked(database_url, project.id):
            # The one allowed call is now stuck on the row lock...
            blocker = asyncio.create_task(
                grpc_client.call(
                    UPDATE_PROJECT,
                    project_pb2.UpdateProjectRequest(
                        id=project.id, name="Later", update_mask=FieldMask(paths=["name"])
                    ),
                )
            )
            await wait_for_blocked_project_updates(database_url, 1)
            # ...so every other (properly authenticated) call, on any port, is shed immediately.
            for name in TRANSPORTS:
                transport = open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port, token=token)
                try:
                    outcome = await asyncio.wait_for(
                        transport.call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id)), 2
                    )
                finally:
                    await transport.close()
                failure = outcome.failed()
                assert (failure.code, failure.reason) == ("resource_exhausted", "OVERLOADED"), name
                assert "google.rpc.RetryInfo" in failure.detail_types, name
                assert failure.metadata == {"max_concurrent_calls": "1"}, name
            assert not blocker.done()
        assert (await asyncio.wait_for(blocker, 5)).ok().project.name == "Later"
        # Once the slot is free again, calls go through.
        assert (await grpc_client.call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id))).ok()
    finally:
        await grpc_client.close()
