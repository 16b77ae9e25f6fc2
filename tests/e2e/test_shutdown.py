"""Shutdown keeps its promise with calls that would never finish on their own (stuck on a row lock):
after the grace period each is cut and answers UNAVAILABLE `SHUTTING_DOWN` in its own protocol,
its database statement is cancelled, and the server (in process and as a real process on SIGTERM)
is gone within grace + 1 s."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import project_pb2
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import (
    CREATE_PROJECT,
    TRANSPORTS,
    UPDATE_PROJECT,
    Outcome,
    active_project_updates,
    free_port,
    open_transport,
    project_row_locked,
    wait_for_blocked_project_updates,
)
from tests.e2e.test_process import ALTALUNE, bootstrap_token, serve_env, wait_until_ready

pytestmark = pytest.mark.e2e

GRACE_S = 1.0


async def _create_project(grpc_port: int, http_port: int, token: str, name: str) -> str:
    client = open_transport("grpc", grpc_port=grpc_port, http_port=http_port, token=token)
    try:
        request = project_pb2.CreateProjectRequest(name=name, timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE)
        return (await client.call(CREATE_PROJECT, request)).ok().project.id
    finally:
        await client.close()


async def _stuck_updates(
    grpc_port: int, http_port: int, token: str, project_id: str
) -> list[asyncio.Task[Outcome[project_pb2.UpdateProjectResponse]]]:
    """One UpdateProject per transport, each waiting for the row lock the test holds."""

    async def update_via(transport: str) -> Outcome[project_pb2.UpdateProjectResponse]:
        client = open_transport(transport, grpc_port=grpc_port, http_port=http_port, token=token)
        request = project_pb2.UpdateProjectRequest(id=project_id, name=transport, update_mask=FieldMask(paths=["name"]))
        try:
            return await client.call(UPDATE_PROJECT, request, timeout_s=30)
        finally:
            await client.close()

    return [asyncio.create_task(update_via(transport)) for transport in TRANSPORTS]


async def test_calls_still_running_after_the_grace_period_answer_unavailable_and_stop_keeps_its_bound(
    database_url: str,
) -> None:
    server = AltaluneServer(conftest.test_settings(ALTALUNE_SHUTDOWN_GRACE_S=str(GRACE_S)), database_url)
    await server.start()
    try:
        token = admin_token_for(server)
        project_id = await _create_project(server.grpc_port, server.http_port, token, "Stuck")
        async with project_row_locked(database_url, project_id):
            calls = await _stuck_updates(server.grpc_port, server.http_port, token, project_id)
            await wait_for_blocked_project_updates(database_url, len(TRANSPORTS))
            started = time.monotonic()
            await server.stop()
            stopped_after = time.monotonic() - started
            outcomes = await asyncio.wait_for(asyncio.gather(*calls), 5)
            # The statements were cancelled with their calls, while the lock was still held.
            assert await active_project_updates(database_url) == []
    finally:
        await server.stop()

    assert GRACE_S <= stopped_after <= GRACE_S + 1.0, stopped_after
    for outcome in outcomes:
        failure = outcome.failed()
        assert (failure.code, failure.reason) == ("unavailable", "SHUTTING_DOWN"), (outcome.transport, failure)
        assert "google.rpc.RetryInfo" in failure.detail_types, (outcome.transport, failure)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_serve_process_exits_within_grace_plus_one_second_on_sigterm_with_a_call_stuck(
    database_url: str, tmp_path: Path, workers: str
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(database_url, tmp_path / "secrets", grpc_port, http_port)
    token, _ = await bootstrap_token(env)
    settings = {"ALTALUNE_SHUTDOWN_GRACE_S": str(GRACE_S), "ALTALUNE_WORKERS": workers, "ALTALUNE_LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ALTALUNE),
        "serve",
        env={**env, **settings},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until_ready(http_port, process)
        project_id = await _create_project(grpc_port, http_port, token, "Stuck process")
        async with project_row_locked(database_url, project_id):
            calls = await _stuck_updates(grpc_port, http_port, token, project_id)
            await wait_for_blocked_project_updates(database_url, len(TRANSPORTS))
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), GRACE_S + 5)
            exited_after = time.monotonic() - started
            outcomes = await asyncio.wait_for(asyncio.gather(*calls), 5)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert process.returncode == 0, log
    assert exited_after <= GRACE_S + 1.0, exited_after
    for outcome in outcomes:
        failure = outcome.failed()
        assert (failure.code, failure.reason) == ("unavailable", "SHUTTING_DOWN"), (outcome.transport, failure)
    assert re.search(r'"event": ?"calls cut at the end of the grace period"', log), log
