"""The real `altalune serve` process: it serves both ports, logs JSON lines with the request id
and the caller, and exits cleanly on SIGTERM (health goes NOT_SERVING first, the pool is closed,
exit code 0).

The credential comes the way a newcomer gets one: `altalune bootstrap` creates the administrator
and prints a local-issuer token; `serve`, given the same secrets directory, trusts it. The token
itself must never show up in what the server prints."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from internal.config import REPO_ROOT
from tests.e2e.clients import PUBLIC_ID, bearer, free_port

pytestmark = pytest.mark.e2e

ALTALUNE = Path(REPO_ROOT) / "cmd" / "altalune"
EXPORT_LINE = re.compile(r"^export ALTALUNE_TOKEN=(\S+)$", re.MULTILINE)
ADMIN_LINE = re.compile(r"^# Admin token for (\S+) \(user ([2-9a-hj-np-z]{14})\)", re.MULTILINE)


def serve_env(database_url: str, secrets_dir: Path, grpc_port: int, http_port: int, **settings: str) -> dict[str, str]:
    """The environment of a real `altalune serve`: this one's minus any ALTALUNE_* setting, plus these."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALTALUNE_")},
        "DATABASE_URL": database_url,
        "ALTALUNE_SECRETS_DIR": str(secrets_dir),
        "ALTALUNE_GRPC_PORT": str(grpc_port),
        "ALTALUNE_HTTP_PORT": str(http_port),
        **settings,
    }


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


@asynccontextmanager
async def serving(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`altalune serve` as a real process, ready on its HTTP port; killed if the block leaves it running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ALTALUNE), "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until_ready(int(env["ALTALUNE_HTTP_PORT"]), process)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stopped(process: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """SIGTERM, then everything it printed (stdout, stderr)."""
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.communicate(), 20)


async def run_altalune(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ALTALUNE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def bootstrap_token(env: dict[str, str]) -> tuple[str, str]:
    """`altalune bootstrap` in this environment: the administrator's token it prints, and its stderr."""
    code, out, err = await run_altalune(env, "bootstrap")
    assert code == 0, (out, err)
    exported = EXPORT_LINE.search(out)
    assert exported is not None, out
    return exported.group(1), err


def tampered(token: str) -> str:
    """The same token with its signature changed: well-formed, but not valid."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{signature[::-1]}"


async def test_the_serve_command_answers_logs_json_and_exits_cleanly_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(
        database_url,
        tmp_path / "secrets",
        grpc_port,
        http_port,
        ALTALUNE_LOCAL_ISSUER="on",
        ALTALUNE_LOG_FORMAT="json",
    )

    code, out, err = await run_altalune(env, "bootstrap")
    assert code == 0, (out, err)
    exported = EXPORT_LINE.search(out)
    admin = ADMIN_LINE.search(out)
    assert exported is not None, out
    assert admin is not None, out
    token, admin_id = exported.group(1), admin.group(2)
    assert PUBLIC_ID.fullmatch(admin_id), admin_id
    assert out.count(token) == 1, "bootstrap prints the token once, on its export line"
    assert token not in err
    assert (tmp_path / "secrets" / "local-issuer.pem").exists()

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ALTALUNE),
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
                headers={"x-request-id": "process-test-1", **bearer(token)},
            )
            assert reply.status_code == 200, reply.text
            duplicate = await http.post(
                "/altalune.v1.ProjectService/CreateProject",
                json={"name": "process", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
                headers={"x-request-id": "process-test-2", **bearer(token)},
            )
            assert duplicate.status_code == 409, duplicate.text
            anonymous = await http.post(
                "/altalune.v1.ProjectService/QueryProjects",
                json={},
                headers={"x-request-id": "process-test-anonymous"},
            )
            assert anonymous.status_code == 401, anonymous.text
            forged = await http.post(
                "/altalune.v1.ProjectService/QueryProjects",
                json={},
                headers={"x-request-id": "process-test-forged", **bearer(tampered(token))},
            )
            assert forged.status_code == 401, forged.text
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0
    printed = stdout + stderr
    for secret in (token, tampered(token)):
        assert secret.encode() not in printed, "a bearer token appears in the server's output"
        assert secret.rpartition(".")[2].encode() not in printed, "a token's signature appears in the output"
    records = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    events = [r["event"] for r in records]
    assert "serving" in events
    assert events.index("shutting down") < events.index("stopped")
    calls = {r["request_id"]: r for r in records if r["event"] == "rpc"}
    assert calls["process-test-1"]["rpc"] == "altalune.v1.ProjectService/CreateProject"
    assert calls["process-test-1"]["code"] == "ok"
    assert "reason" not in calls["process-test-1"], "a successful call logs no reason"
    assert (calls["process-test-2"]["code"], calls["process-test-2"]["reason"]) == (
        "already_exists",
        "PROJECT_NAME_TAKEN",
    )
    assert calls["process-test-1"]["transport"] == "connect"
    assert "duration_ms" in calls["process-test-1"]
    # Who called: the administrator bootstrap created, by public id (never the credential).
    assert calls["process-test-1"]["caller"] == f"user:{admin_id}"
    assert calls["process-test-2"]["caller"] == f"user:{admin_id}"
    # Refused callers are logged with the reason, and claim no identity.
    for rid, reason in (("process-test-anonymous", "CREDENTIALS_MISSING"), ("process-test-forged", "TOKEN_INVALID")):
        assert (calls[rid]["code"], calls[rid]["reason"]) == ("unauthenticated", reason), calls[rid]
        assert calls[rid].get("caller") is None, calls[rid]


async def test_the_cli_names_what_it_prints_and_what_it_ignores(database_url: str, tmp_path: Path) -> None:
    env = serve_env(database_url, tmp_path / "secrets", free_port(), free_port(), ALTALUNE_WORKRS="2")

    code, out, _ = await run_altalune(env, "--version")
    assert code == 0
    assert re.fullmatch(r"altalune \d+\.\d+\.\d+\S*\n", out), out

    code, out, err = await run_altalune(env, "bootstrap")
    assert code == 0, (out, err)
    admin = ADMIN_LINE.search(out)
    assert admin is not None, out
    assert "ALTALUNE_WORKRS" in err, "a misspelled setting is named"
    assert "ALTALUNE_WORKERS" in err, "with the setting it probably meant"

    code, out, err = await run_altalune(env, "token", "--email", admin.group(1))
    assert code == 0, (out, err)
    assert out.startswith(f"# Token for {admin.group(1)} (user {admin.group(2)})"), out
    assert "Admin" not in out, "only bootstrap's token is the administrator's by construction"
