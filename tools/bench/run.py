"""`make bench`: throughput, latency and memory figures of a real server, printed as a table.

The server runs in its own process (`altalune serve`) on a throw-away embedded PostgreSQL with
fsync off; the load generator is this process (grpcio and connectrpc clients), so on a 2-core machine
client and server share the CPUs: the figures are for comparing changes on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import protovalidate
from connectrpc.codec import proto_json_codec

from altalune.v1 import (
    api_key_pb2,
    api_key_pb2_grpc,
    employee_connect,
    employee_pb2,
    employee_pb2_grpc,
    project_pb2,
    project_pb2_grpc,
)
from internal.auth.bootstrap import ensure_admin
from internal.auth.oidc import LocalIssuer
from internal.container import LOCAL_ISSUER_KEY_FILE
from internal.postgres.embedded import EmbeddedPostgres
from internal.postgres.migrations import DEFAULT_MIGRATIONS_DIR, migrate_up
from internal.postgres.partitions import reconcile_partitions

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _letters(n: int) -> str:
    """Employee names allow letters only; spell a number with them."""
    return "".join(chr(ord("a") + int(d)) for d in str(n)).capitalize()


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {self.token}")]
        return await continuation(details._replace(metadata=metadata), request)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _load(call: Callable[[], Awaitable[object]], *, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies


def _row(name: str, count: int, seconds: float, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"{name:<54} {count / seconds:>9.0f} {p50:>9.2f} {p99:>9.2f}"


async def bench(seconds: float, concurrency: int, partitions: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="altalune-bench-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False)
    url = pg.start()
    migrate_up(url, DEFAULT_MIGRATIONS_DIR, after_each=reconcile_partitions)
    secrets = root / "secrets"
    admin = ensure_admin(url)
    admin_token = LocalIssuer.load_or_create(secrets / LOCAL_ISSUER_KEY_FILE).mint(
        user_public_id=admin.public_id, email=admin.email, ttl_s=3600
    )
    grpc_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ALTALUNE_GRPC_PORT": str(grpc_port),
        "ALTALUNE_HTTP_PORT": str(http_port),
        "ALTALUNE_LOG_LEVEL": "warning",
        "ALTALUNE_SECRETS_DIR": str(secrets),
    }
    server = subprocess.Popen(  # noqa: ASYNC220  (started once, before any load)
        [sys.executable, str(REPO / "cmd" / "altalune"), "serve"], env=env, cwd=REPO
    )
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}", interceptors=[_Bearer(admin_token)])
        await asyncio.wait_for(channel.channel_ready(), 30)
        projects = project_pb2_grpc.ProjectServiceStub(channel)
        employees = employee_pb2_grpc.EmployeeServiceStub(channel)
        rss_start = _rss_mb(server.pid)

        print(
            f"\nAltalune benchmark  ({seconds:.0f} s per row, {concurrency} concurrent calls, {partitions} projects"
            " = employees partitions, 2 cores shared)"
        )
        print(f"{'case':<54} {'calls/s':>9} {'p50 ms':>9} {'p99 ms':>9}")

        create_ms: list[float] = []
        project_ids: list[str] = []
        for i in range(partitions):
            started = time.perf_counter()
            response = await projects.CreateProject(
                project_pb2.CreateProjectRequest(
                    name=f"Bench {i}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                )
            )
            create_ms.append((time.perf_counter() - started) * 1000)
            project_ids.append(response.project.id)
        first = project_ids[0]
        employee = await employees.CreateEmployee(
            employee_pb2.CreateEmployeeRequest(
                project_id=first,
                name="Ada",
                email="ada@example.com",
                role="Engineer",
                department="R&D",
                status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
            )
        )
        for i in range(200):
            await employees.CreateEmployee(
                employee_pb2.CreateEmployeeRequest(
                    project_id=first,
                    name=f"Person {_letters(i)}",
                    email=f"p{i}@example.com",
                    role=f"Role {i % 7}",
                    department=f"Dept {i % 5}",
                    status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
                )
            )
        first_100, last_100 = create_ms[:100], create_ms[-100:]
        print(
            _row("CreateProject, first 100 projects (gRPC, serial)", len(first_100), sum(first_100) / 1000, first_100)
        )
        print(
            _row(
                f"CreateProject, projects {partitions - len(last_100)}..{partitions} (serial)",
                len(last_100),
                sum(last_100) / 1000,
                last_100,
            )
        )

        get_project = project_pb2.GetProjectRequest(id=first)
        n, lat = await _load(lambda: projects.GetProject(get_project), seconds=seconds, concurrency=concurrency)
        print(_row("GetProject (gRPC, grpcio aio client)", n, seconds, lat))

        get_employee = employee_pb2.GetEmployeeRequest(project_id=first, id=employee.employee.id)
        n, lat = await _load(lambda: employees.GetEmployee(get_employee), seconds=seconds, concurrency=concurrency)
        print(_row("GetEmployee (gRPC, user JWT: user + membership lookups)", n, seconds, lat))

        expires = api_key_pb2.CreateApiKeyRequest().expires_at
        expires.FromSeconds(int(time.time()) + 86_400)
        key = await api_key_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            api_key_pb2.CreateApiKeyRequest(
                project_id=first, name="bench", scopes=["employee:read"], expires_at=expires
            )
        )
        key_channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}", interceptors=[_Bearer(key.secret)])
        key_employees = employee_pb2_grpc.EmployeeServiceStub(key_channel)
        n, lat = await _load(lambda: key_employees.GetEmployee(get_employee), seconds=seconds, concurrency=concurrency)
        print(_row("GetEmployee (gRPC, API key: one lookup + HMAC)", n, seconds, lat))
        await key_channel.close()

        anonymous_channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        anonymous = employee_pb2_grpc.EmployeeServiceStub(anonymous_channel)

        async def unauthenticated() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await anonymous.GetEmployee(get_employee)

        n, lat = await _load(unauthenticated, seconds=seconds, concurrency=concurrency)
        print(_row("GetEmployee without credentials -> UNAUTHENTICATED", n, seconds, lat))
        await anonymous_channel.close()

        rng = random.Random(7)
        missing = "2" * 14

        async def get_in_random_project() -> None:
            request = employee_pb2.GetEmployeeRequest(project_id=rng.choice(project_ids), id=missing)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await employees.GetEmployee(request)

        n, lat = await _load(get_in_random_project, seconds=seconds, concurrency=concurrency)
        print(_row(f"GetEmployee, random one of {partitions} partitions (gRPC)", n, seconds, lat))

        async with employee_connect.EmployeeServiceClient(
            f"http://127.0.0.1:{http_port}/api", codec=proto_json_codec(), send_compression=None
        ) as connect_client:
            auth = {"authorization": f"Bearer {admin_token}"}
            n, lat = await _load(
                lambda: connect_client.get_employee(get_employee, headers=auth),
                seconds=seconds,
                concurrency=concurrency,
            )
        print(_row("GetEmployee (Connect JSON, connectrpc client)", n, seconds, lat))

        query = employee_pb2.QueryEmployeesRequest(project_id=first)
        query.query.pagination.page_size = 20
        query.query.keyword = "person"
        query.query.filters["department"].values.append("Dept 1")
        n, lat = await _load(lambda: employees.QueryEmployees(query), seconds=seconds, concurrency=concurrency)
        print(_row("QueryEmployees: keyword+filter+count+catalog (gRPC)", n, seconds, lat))

        bad = project_pb2.CreateProjectRequest()

        async def invalid() -> None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await projects.CreateProject(bad)

        n, lat = await _load(invalid, seconds=seconds, concurrency=concurrency)
        print(_row("CreateProject invalid -> INVALID_ARGUMENT (gRPC)", n, seconds, lat))

        print(
            f"\nserver RSS: {rss_start:.1f} MB after start-up and creates, {_rss_mb(server.pid):.1f} MB after the runs"
        )

        validator = protovalidate.Validator()
        request = employee_pb2.CreateEmployeeRequest(
            project_id=first,
            name="Ada Lovelace",
            email="ada@example.com",
            role="Engineer",
            department="R&D",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        )
        rounds = 20_000
        started = time.perf_counter()
        for _ in range(rounds):
            validator.collect_violations(request)
        valid_us = (time.perf_counter() - started) / rounds * 1e6
        started = time.perf_counter()
        for _ in range(rounds // 4):
            validator.collect_violations(bad)
        invalid_us = (time.perf_counter() - started) / (rounds // 4) * 1e6
        print(
            f"protovalidate: valid CreateEmployeeRequest {valid_us:.1f} us/op, empty CreateProjectRequest "
            f"(3 violations) {invalid_us:.1f} us/op"
        )
        await channel.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--projects", type=int, default=1000, help="projects (partitions) created first")
    args = parser.parse_args()
    asyncio.run(bench(args.seconds, args.concurrency, args.projects))


if __name__ == "__main__":
    main()
