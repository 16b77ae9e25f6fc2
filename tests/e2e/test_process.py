"""The real `altalune serve` process: it serves both ports, logs JSON lines with the request id,
and exits cleanly on SIGTERM (health goes NOT_SERVING first, the pool is closed, exit code 0)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from internal.config import REPO_ROOT
from tests.e2e.clients import free_port

pytestmark = pytest.mark.e2e


async def wait_until_ready(http_port: int, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=1.0) as http:
        for _ in range(300):
            assert process.returncode is None, "the server process exited during start-up"
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not become ready within 15 s")


async def test_the_serve_command_answers_logs_json_and_exits_cleanly_on_sigterm(database_url: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ALTALUNE_GRPC_PORT": str(grpc_port),
        "ALTALUNE_HTTP_PORT": str(http_port),
        "ALTALUNE_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(REPO_ROOT) / "cmd" / "altalune"),
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until_ready(http_port, process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/api") as http:
            reply = await http.post(
                "/altalune.v1.ProjectService/CreateProject",
                json={"name": "Process", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
                headers={"x-request-id": "process-test-1"},
            )
            assert reply.status_code == 200, reply.text
            duplicate = await http.post(
                "/altalune.v1.ProjectService/CreateProject",
                json={"name": "process", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
                headers={"x-request-id": "process-test-2"},
            )
            assert duplicate.status_code == 409, duplicate.text
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0
    records = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    events = [r["event"] for r in records]
    assert "serving" in events
    assert events.index("shutting down") < events.index("stopped")
    calls = {r["request_id"]: r for r in records if r["event"] == "rpc"}
    assert calls["process-test-1"]["rpc"] == "altalune.v1.ProjectService/CreateProject"
    assert (calls["process-test-1"]["code"], calls["process-test-1"]["reason"]) == ("ok", None)
    assert (calls["process-test-2"]["code"], calls["process-test-2"]["reason"]) == (
        "already_exists",
        "PROJECT_NAME_TAKEN",
    )
    assert calls["process-test-1"]["transport"] == "connect"
    assert "duration_ms" in calls["process-test-1"]
