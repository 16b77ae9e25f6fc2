"""With ALTALUNE_LOG_FORMAT=json, everything the real process writes to stderr is a JSON line:
its own log, and that of the libraries logging through the standard library (uvicorn's start-up and
shutdown lines, the embedded PostgreSQL launcher, psycopg, asyncio, grpc). A collector parsing
stderr line by line never meets plain text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.clients import bearer, free_port
from tests.e2e.test_process import bootstrap_token, run_altalune, serve_env, serving, stopped

pytestmark = pytest.mark.e2e


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as a JSON object with a level and an event (fails on any other)."""
    records = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a stderr line is not JSON: {line!r}")
        assert isinstance(record, dict), line
        assert {"level", "event", "timestamp", "logger"} <= record.keys(), line
        records.append(record)
    return records


async def test_every_line_the_serve_command_writes_is_json(database_url: str, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(
        database_url,
        tmp_path / "secrets",
        grpc_port,
        http_port,
        ALTALUNE_LOCAL_ISSUER="on",
        ALTALUNE_LOG_FORMAT="json",
    )
    token, bootstrap_log = await bootstrap_token(env)
    json_lines(bootstrap_log)

    async with serving(env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            reply = await http.post(
                "/api/altalune.v1.ProjectService/CreateProject",
                json={"name": "Pipeline", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
                headers={"x-request-id": "log-pipeline-1", **bearer(token)},
            )
            assert reply.status_code == 200, reply.text
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        stdout, stderr = await stopped(process)

    assert process.returncode == 0, stderr.decode()
    records = json_lines(stderr.decode())
    loggers = {r["logger"] for r in records}
    events = [r["event"] for r in records]
    uvicorn = [r for r in records if r["logger"].startswith("uvicorn")]
    assert uvicorn, f"no uvicorn line among {sorted(loggers)}"
    assert any(r["event"].startswith("Started server process [") for r in uvicorn), uvicorn
    assert all(r["level"] in {"debug", "info", "warning", "error", "critical"} for r in records)
    assert all("color_message" not in r for r in uvicorn), "uvicorn's ANSI copy of the message is dropped"
    assert "serving" in events
    assert "stopped" in events
    assert any(r.get("request_id") == "log-pipeline-1" and r["event"] == "rpc" for r in records)
    assert token.encode() not in stdout + stderr


async def test_the_embedded_postgresql_launcher_logs_json_too(pg_workdir: Path, tmp_path: Path) -> None:
    """Its lines come from the standard library's logging (internal/postgres/embedded.py)."""
    env = serve_env("", tmp_path / "secrets", free_port(), free_port(), ALTALUNE_LOG_FORMAT="json")
    env.pop("DATABASE_URL")
    env["ALTALUNE_DATA_DIR"] = str(pg_workdir / "data")

    code, out, err = await run_altalune(env, "migrate")

    assert code == 0, (out, err)
    records = json_lines(err)
    initialising = [r for r in records if r["logger"] == "internal.postgres.embedded"]
    assert initialising, records
    assert initialising[0]["event"] == f"initialising PostgreSQL cluster in {pg_workdir / 'data'}"
