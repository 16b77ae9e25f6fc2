"""`altalune serve` with ALTALUNE_WORKERS=2: two processes behind both ports, one supervisor.

Real processes, real sockets, real clients: every worker answers on both ports, the tenancy upkeep
runs in exactly one of them, a worker killed with -9 is replaced while the ports keep accepting, and
SIGTERM lets calls in flight on every worker finish inside the grace period.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest

from altalune.v1 import employee_pb2, employee_pb2_grpc
from internal.postgres.partitions import UPKEEP_LEASE_KEY
from tests.e2e.clients import bearer, free_port, project_and_employee
from tests.e2e.test_process import ALTALUNE, EXPORT_LINE, run_altalune, serve_env, wait_until_ready

pytestmark = pytest.mark.e2e

GRACE_S = 6.0
LEASE_HOLDERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND ((classid::bigint << 32) | objid::bigint) = %s
"""


@dataclass
class Service:
    process: asyncio.subprocess.Process
    http_port: int
    grpc_port: int
    token: str
    database_url: str
    log: Path

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@asynccontextmanager
async def two_workers(database_url: str, tmp_path: Path, **settings: str) -> AsyncIterator[Service]:
    """`altalune serve` with two workers and JSON logs, an administrator's token, both workers up."""
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(
        database_url,
        tmp_path / "secrets",
        grpc_port,
        http_port,
        ALTALUNE_WORKERS="2",
        ALTALUNE_LOG_FORMAT="json",
        **settings,
    )
    code, out, err = await run_altalune(env, "bootstrap")
    assert code == 0, (out, err)
    exported = EXPORT_LINE.search(out)
    assert exported is not None, out
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ALTALUNE), "serve", env=env, stdout=sink, stderr=sink
        )
    try:
        await wait_until_ready(http_port, process)
        served = Service(process, http_port, grpc_port, exported.group(1), database_url, log)
        for _ in range(200):  # "ready" answers as soon as one worker is up; wait for both
            if len(served.workers()) == 2 and sum(r["event"] == "serving" for r in served.records()) >= 3:
                break
            await asyncio.sleep(0.05)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.fixture
async def service(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    async with two_workers(
        database_url, tmp_path, ALTALUNE_SHUTDOWN_GRACE_S=str(GRACE_S), ALTALUNE_REAPER_INTERVAL_S="0.5"
    ) as served:
        yield served


async def _lease_holders(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(LEASE_HOLDERS, (UPKEEP_LEASE_KEY,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def _project_and_employee(service: Service) -> tuple[str, str]:
    return await project_and_employee(service.http_port, service.token, "Workers")


async def _connect_get(service: Service, project: str, employee: str) -> int:
    """One call on a new connection; the HTTP status."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}/api", timeout=5.0) as http:
        reply = await http.post(
            "/altalune.v1.EmployeeService/GetEmployee",
            json={"projectId": project, "id": employee},
            headers=bearer(service.token),
        )
        return reply.status_code


async def _grpc_get(service: Service, project: str, employee: str) -> str:
    """One call on a new connection (own subchannel pool); the employee's email."""
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{service.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        got = await employee_pb2_grpc.EmployeeServiceStub(channel).GetEmployee(
            employee_pb2.GetEmployeeRequest(project_id=project, id=employee),
            metadata=tuple(bearer(service.token).items()),
            timeout=5.0,
        )
        return str(got.employee.email)


async def test_both_workers_answer_on_both_ports_and_one_runs_the_upkeep(service: Service) -> None:
    project, employee = await _project_and_employee(service)
    assert len(service.workers()) == 2

    for _ in range(30):
        assert await _connect_get(service, project, employee) == 200
        assert await _grpc_get(service, project, employee) == "ann@example.com"

    calls = [r for r in service.records() if r["event"] == "rpc" and r["rpc"].endswith("/GetEmployee")]
    assert len(calls) == 60
    assert {r["worker"] for r in calls if r["transport"] == "connect"} == {0, 1}
    assert {r["worker"] for r in calls if r["transport"] == "grpc"} == {0, 1}
    # The peer reads the same on both ports.
    assert all(r["peer"].startswith("127.0.0.1:") for r in calls), {r["peer"] for r in calls}
    serving = [r for r in service.records() if r["event"] == "serving" and "workers" in r]
    assert [r["workers"] for r in serving] == [2], "the supervisor reports once, for the whole service"
    assert await _lease_holders(service.database_url) == 1


async def test_a_worker_killed_with_sigkill_is_replaced_and_the_ports_keep_accepting(service: Service) -> None:
    project, employee = await _project_and_employee(service)
    victim, survivor = service.workers()

    os.kill(victim, signal.SIGKILL)
    # New connections are accepted at once, on both ports, while the victim is being replaced.
    started = time.monotonic()
    answered = 0
    while time.monotonic() - started < 2.0:
        assert await _connect_get(service, project, employee) == 200
        assert await _grpc_get(service, project, employee) == "ann@example.com"
        answered += 1
    assert answered > 3

    for _ in range(200):
        current = service.workers()
        if len(current) == 2 and victim not in current:
            break
        await asyncio.sleep(0.05)
    current = service.workers()
    assert survivor in current, current
    assert victim not in current, current
    assert len(current) == 2, current
    assert any(r["event"] == "worker exited; replacing it" for r in service.records())
    # Whoever held the upkeep lease, exactly one process holds it again.
    for _ in range(100):
        if await _lease_holders(service.database_url) == 1:
            break
        await asyncio.sleep(0.1)
    assert await _lease_holders(service.database_url) == 1
    assert await _connect_get(service, project, employee) == 200


async def test_sigterm_lets_calls_in_flight_on_every_worker_finish_within_the_grace_period(service: Service) -> None:
    project, employee = await _project_and_employee(service)
    auth = tuple(bearer(service.token).items())

    async def connect_update(n: int) -> int:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}/api", timeout=30) as http:
            reply = await http.post(
                "/altalune.v1.EmployeeService/UpdateEmployee",
                json={"projectId": project, "id": employee, "role": f"Role {n}", "updateMask": "role"},
                headers=dict(auth),
            )
            return reply.status_code

    async def grpc_update(n: int) -> int:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            request = employee_pb2.UpdateEmployeeRequest(project_id=project, id=employee, role=f"Role {n}")
            request.update_mask.paths.append("role")
            await employee_pb2_grpc.EmployeeServiceStub(channel).UpdateEmployee(request, metadata=auth, timeout=30)
            return 200

    async with await psycopg.AsyncConnection.connect(service.database_url) as blocker:
        # Hold the employee's row: every update below waits for it, in flight inside a worker.
        await blocker.execute("SELECT 1 FROM employees WHERE public_id = %s FOR UPDATE", (employee,))
        calls = [asyncio.create_task(connect_update(n)) for n in range(4)]
        calls += [asyncio.create_task(grpc_update(n)) for n in range(4, 8)]
        async with await psycopg.AsyncConnection.connect(service.database_url, autocommit=True) as watcher:
            for _ in range(600):
                cur = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE employees %%'"
                )
                row = await cur.fetchone()
                if row and row[0] == 8:
                    break
                await asyncio.sleep(0.05)
            assert row is not None
            assert row[0] == 8, "every update should be waiting on the row lock"
        signalled = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        await blocker.rollback()  # the lock goes; the drained calls finish

    results = await asyncio.gather(*calls)
    assert results == [200] * 8
    await asyncio.wait_for(service.process.wait(), GRACE_S + 10)
    assert service.process.returncode == 0
    assert time.monotonic() - signalled < GRACE_S + 5
    stopped = [r for r in service.records() if r["event"] == "stopped"]
    assert sorted(r.get("worker", -1) for r in stopped) == [-1, 0, 1]
    updates = [r for r in service.records() if r["event"] == "rpc" and r["rpc"].endswith("/UpdateEmployee")]
    assert len(updates) == 8
    assert {r["code"] for r in updates} == {"ok"}


async def test_workers_do_not_outlive_a_supervisor_killed_with_sigkill(service: Service) -> None:
    workers = service.workers()
    assert len(workers) == 2

    service.process.kill()
    await service.process.wait()

    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        await asyncio.sleep(0.05)
    records = service.records()
    assert sorted(r["worker"] for r in records if r["event"] == "stopped") == [0, 1], "each worker drained and stopped"
