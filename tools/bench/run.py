"""`make bench`: what a call costs on top of the bare stack, with 1 worker and with N workers.

Set-up: a throw-away embedded PostgreSQL (fsync off), migrated, an administrator, projects and 201
employees in the first project, an API key. Then, for each worker count, a bare echo service
(tools/bench/echo.py: the same stack and messages, no interceptors, no database) and the real
`altalune serve` are driven by the same load generator, one after the other: GetEmployee and
QueryEmployees (keyword + filter + sort, page of 20) over Connect JSON and gRPC, with an API key and
with a login JWT. Each figure is printed with its percentage of the echo's figure on the same
transport and worker count, measured minutes apart in the same run. Then the write path:
CreateEmployee (every call hires someone new, in the second project, so the reads of every worker
count see the same 201 employees; its Attempted and Succeeded events included) without and with a
request_id (a new one per call: claimed and answered in the write's transaction), and their ratio.

Then the observability tax: GetEmployee with metrics and tracing off, with metrics on (the
default), and with tracing on too, 1 worker, in rotating order over `--tax-rounds` rounds; each row
gives calls/s and the server's CPU time per call. Last, the same call's instructions in the server
counted by valgrind (callgrind) with metrics off, on, and on as a worker keeps them: the one figure
a noisy machine does not move.

The load generator runs in `--load-processes` processes (2 by default) on the same machine as the
server: client and server share the CPUs, so compare runs on the same machine only, alternated.
`--server-repo` measures another checkout's server (its own .venv) with this file's load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from altalune.v1 import (
    api_key_pb2,
    api_key_pb2_grpc,
    employee_pb2,
    employee_pb2_grpc,
    project_pb2,
    project_pb2_grpc,
)
from internal.auth.bootstrap import ensure_admin
from internal.auth.oidc import LocalIssuer
from internal.container import LOCAL_ISSUER_KEY_FILE
from internal.postgres.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _letters(n: int) -> str:
    """Employee names allow letters only; spell a number with them."""
    return "".join(chr(ord("a") + int(d)) for d in str(n)).capitalize()


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _process_tree(pid: int) -> list[int]:
    """The process and its children (the workers of a supervisor)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    with contextlib.suppress(OSError):
        for child in children.read_text().split():
            found.extend(_process_tree(int(child)))
    return found


# --- load generator (runs in its own processes) ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    transport: str  # "grpc" | "connect"
    port: int
    rpc: str  # "GetEmployee" | "QueryEmployees" | "CreateEmployee"
    request: bytes  # for CreateEmployee: the template; every call hires someone new
    token: str | None
    concurrency: int
    seconds: float
    prefix: str = "/api"  # where the Connect routes are mounted
    channels: int = 4
    request_ids: bool = False  # CreateEmployee: every call carries a new request_id


_REQUEST_TYPES: dict[str, type[Any]] = {
    "GetEmployee": employee_pb2.GetEmployeeRequest,
    "QueryEmployees": employee_pb2.QueryEmployeesRequest,
    "CreateEmployee": employee_pb2.CreateEmployeeRequest,
}


def _next_request(case: Case, template: Any) -> Any:
    """A read repeats its request; a create hires someone new each call (a unique email), with a
    new request_id when the case asks for one."""
    if case.rpc != "CreateEmployee":
        return template
    request = employee_pb2.CreateEmployeeRequest()
    request.CopyFrom(template)
    token = uuid.uuid4()
    request.email = f"{token.hex}@bench.example.com"
    if case.request_ids:
        request.request_id = str(token)
    return request


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {self.token}")]
        return await continuation(details._replace(metadata=metadata), request)


class RawConnectCall:
    """A Connect unary JSON call over one HTTP/1.1 keep-alive connection, as prepared bytes.

    The lightest client that still makes the server do all of its work (parse, route, decode,
    encode, gzip): on a machine where load and server share the cores, a heavy client would cap the
    echo's figure and flatter every percentage.
    """

    def __init__(self, port: int, path: str, body: bytes, token: str | None) -> None:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Connect-Protocol-Version: 1\r\nAccept-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
        )
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        self._request = (head + "\r\n").encode() + body
        self._length = f"Content-Length: {len(body)}".encode()
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def call(self, request: Any = None) -> None:
        assert self._reader is not None
        assert self._writer is not None
        if isinstance(request, employee_pb2.CreateEmployeeRequest):
            body = json_format.MessageToJson(request, indent=None).encode()
            head, _, _ = self._request.partition(b"\r\n\r\n")
            head = head.replace(self._length, f"Content-Length: {len(body)}".encode())
            self._writer.write(head + b"\r\n\r\n" + body)
        else:
            self._writer.write(self._request)
        head = (await self._reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        marker = head.find(b"content-length:")
        if marker >= 0:
            end = head.index(b"\r\n", marker)
            await self._reader.readexactly(int(head[marker + 15 : end]))
        else:  # chunked
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
                await self._reader.readexactly(size + 2)
                if size == 0:
                    break
        if status != 200:
            raise RuntimeError(f"HTTP {status}")


async def _drive(case: Case) -> tuple[int, int, list[float]]:
    """(calls that succeeded, calls that failed, latencies in ms) over case.seconds."""
    request = _REQUEST_TYPES[case.rpc].FromString(case.request)
    closers: list[Any] = []
    calls: list[Any] = []
    if case.transport == "grpc":
        for _ in range(case.channels):
            channel = grpc.aio.insecure_channel(
                f"127.0.0.1:{case.port}",
                options=[("grpc.use_local_subchannel_pool", 1)],  # one connection per channel
                interceptors=[_Bearer(case.token)] if case.token else None,
            )
            closers.append(channel.close)
            stub = employee_pb2_grpc.EmployeeServiceStub(channel)
            calls.append(getattr(stub, case.rpc))
    else:
        body = json_format.MessageToJson(request, indent=None).encode()
        path = f"{case.prefix}/altalune.v1.EmployeeService/{case.rpc}"
        for _ in range(case.concurrency):
            client = RawConnectCall(case.port, path, body, case.token)
            await client.open()
            closers.append(client.close)
            calls.append(client.call)
    latencies: list[float] = []
    failed = 0
    # One warm-up call per caller, then the clock starts.
    for call in calls:
        with contextlib.suppress(Exception):
            await call(_next_request(case, request))
    stop_at = time.perf_counter() + case.seconds

    async def caller(index: int) -> None:
        nonlocal failed
        call = calls[index % len(calls)]
        while time.perf_counter() < stop_at:
            next_request = _next_request(case, request)
            started = time.perf_counter()
            try:
                await call(next_request)
            except Exception:
                failed += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(caller(i) for i in range(case.concurrency)))
    for close in closers:
        await close()
    return len(latencies), failed, latencies


def _drive_in_process(case: Case) -> tuple[int, int, list[float]]:
    return asyncio.run(_drive(case))


@dataclass
class Figure:
    rate: float
    p50: float
    p99: float
    failed: int


def load(pool: concurrent.futures.ProcessPoolExecutor, processes: int, case: Case) -> Figure:
    share = Case(**{**case.__dict__, "concurrency": max(case.concurrency // processes, 1)})
    results = list(pool.map(_drive_in_process, [share] * processes))
    latencies = sorted(lat for _, _, part in results for lat in part)
    count = sum(n for n, _, _ in results)
    failed = sum(f for _, f, _ in results)
    if not latencies:
        return Figure(0.0, 0.0, 0.0, failed)
    return Figure(
        count / case.seconds,
        statistics.median(latencies),
        latencies[max(int(len(latencies) * 0.99) - 1, 0)],
        failed,
    )


# --- servers ---------------------------------------------------------------------------------------


def _wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Setup:
    url: str
    secrets: Path
    project: str
    employee: str
    admin_token: str
    api_key: str
    # The CreateEmployee rows hire here: thousands of hires in `project` would make every later
    # QueryEmployees row (those of N workers) scan a table many times larger than the earlier ones.
    write_project: str = ""


async def _populate(grpc_port: int, admin_token: str, projects: int) -> tuple[str, str, str, str]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}", interceptors=[_Bearer(admin_token)])
    await asyncio.wait_for(channel.channel_ready(), 30)
    project_stub = project_pb2_grpc.ProjectServiceStub(channel)
    employee_stub = employee_pb2_grpc.EmployeeServiceStub(channel)
    ids = []
    for i in range(max(projects, 2)):
        created = await project_stub.CreateProject(
            project_pb2.CreateProjectRequest(
                name=f"Bench {i}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
            )
        )
        ids.append(created.project.id)
    first = ids[0]
    employee = await employee_stub.CreateEmployee(
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
        await employee_stub.CreateEmployee(
            employee_pb2.CreateEmployeeRequest(
                project_id=first,
                name=f"Person {_letters(i)}",
                email=f"p{i}@example.com",
                role=f"Role {i % 7}",
                department=f"Dept {i % 5}",
                status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
            )
        )
    expires = api_key_pb2.CreateApiKeyRequest().expires_at
    expires.FromSeconds(int(time.time()) + 86_400)
    key = await api_key_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
        api_key_pb2.CreateApiKeyRequest(project_id=first, name="bench", scopes=["employee:read"], expires_at=expires)
    )
    await channel.close()
    return first, employee.employee.id, key.secret, ids[1]


def _server_env(setup: Setup, grpc_port: int, http_port: int, workers: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": setup.url,
        "ALTALUNE_GRPC_PORT": str(grpc_port),
        "ALTALUNE_HTTP_PORT": str(http_port),
        "ALTALUNE_LOG_LEVEL": "warning",
        "ALTALUNE_SECRETS_DIR": str(setup.secrets),
        "ALTALUNE_WORKERS": str(workers),
    }


# What the service pays for being observable, GetEmployee with an API key, 1 worker: metrics and
# tracing off (ALTALUNE_METRICS=off), the default (metrics on, tracing off), and tracing on too
# (every span exported, as console JSON into /dev/null: an upper bound of an exporter's cost).
TAX_MODES: dict[str, dict[str, str]] = {
    "metrics off, tracing off": {"ALTALUNE_METRICS": "off"},
    "metrics on, tracing off (default)": {},
    "metrics on, tracing on (console)": {"OTEL_TRACES_EXPORTER": "console"},
}


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (their /proc stat, in clock ticks)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def _observability_tax(
    args: argparse.Namespace,
    pool: concurrent.futures.ProcessPoolExecutor,
    processes: list[subprocess.Popen[bytes]],
    server_cmd: list[str],
    server_repo: Path,
    setup: Setup,
    get: bytes,
) -> None:
    """Two figures per mode: calls/s, and the server's CPU time per call (what the server itself
    spent, less moved by the load generator sharing the cores, though still by other work on the
    machine). The modes take turns in a rotating order, so no mode always runs first after a cold
    start."""
    print(f"\nObservability tax: GetEmployee (API key), 1 worker, {args.tax_rounds} alternated rounds")
    print(f"{'case':<58} {'calls/s':>8} {'CPU us':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    modes = list(TAX_MODES.items())
    for round_ in range(args.tax_rounds):
        for mode, extra in modes[round_ % len(modes) :] + modes[: round_ % len(modes)]:
            grpc_port, http_port = _free_port(), _free_port()
            env = {k: v for k, v in _server_env(setup, grpc_port, http_port, 1).items() if not k.startswith("OTEL_")}
            server = subprocess.Popen(server_cmd, env=env | extra, cwd=server_repo, stdout=subprocess.DEVNULL)
            processes.append(server)
            _wait_for_port(http_port)
            _wait_for_port(grpc_port)
            time.sleep(0.5)
            for transport, port in (("connect", http_port), ("grpc", grpc_port)):
                case = Case(transport, port, "GetEmployee", get, setup.api_key, args.concurrency, args.seconds)
                pids = _process_tree(server.pid)
                before = _cpu_seconds(pids)
                figure = load(pool, args.load_processes, case)
                calls = figure.rate * args.seconds + figure.failed
                per_call_us = (_cpu_seconds(pids) - before) / calls * 1e6 if calls else 0.0
                rates.setdefault((mode, transport), []).append(figure.rate)
                cpu.setdefault((mode, transport), []).append(per_call_us)
                name = f"round {round_ + 1}: {mode} ({transport})"
                print(
                    f"{name:<58} {figure.rate:>8.0f} {per_call_us:>7.0f} {figure.p50:>8.2f} {figure.p99:>8.2f} "
                    f"{figure.failed:>6}"
                )
            _stop(server)
    baseline = "metrics off, tracing off"
    print("\nmedians against metrics and tracing off (a tax of 5% is 0.95x calls/s, 1.05x CPU per call):")
    print(f"  {'mode':<36} {'':<8} {'calls/s':>8} {'CPU/call':>9}")
    for (mode, transport), figures in sorted(rates.items()):
        base = statistics.median(rates[(baseline, transport)])
        base_cpu = statistics.median(cpu[(baseline, transport)])
        if mode != baseline and base and base_cpu:
            rate_ratio = statistics.median(figures) / base
            cpu_ratio = statistics.median(cpu[(mode, transport)]) / base_cpu
            print(f"  {mode:<36} {transport:<8} {rate_ratio:>7.3f}x {cpu_ratio:>8.3f}x")


async def _sequential_calls(transport: str, port: int, get: bytes, token: str, calls: int) -> None:
    """`calls` GetEmployee calls one after the other over one connection."""
    request = employee_pb2.GetEmployeeRequest.FromString(get)
    if transport == "connect":
        body = json_format.MessageToJson(request, indent=None).encode()
        client = RawConnectCall(port, "/api/altalune.v1.EmployeeService/GetEmployee", body, token)
        await client.open()
        for _ in range(calls):
            await client.call()
        await client.close()
        return
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=[_Bearer(token)])
    stub = employee_pb2_grpc.EmployeeServiceStub(channel)
    for _ in range(calls):
        await stub.GetEmployee(request, timeout=60)
    await channel.close()


def _callgrind_total(directory: Path) -> int:
    """The event total of the newest callgrind dump in `directory`."""
    dumps = [path for path in directory.iterdir() if path.name.startswith("callgrind.out")]
    newest = max(dumps, key=lambda path: path.stat().st_mtime_ns)
    for line in newest.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {newest}")


# Modes counted under valgrind (the goal is about metrics with tracing off), and metrics as a
# worker keeps them (ALTALUNE_WORKERS > 1: prometheus_client's multiprocess files).
INSTRUCTION_MODES = ("metrics off, tracing off", "metrics on, tracing off (default)", "metrics on, as a worker")


def _instruction_tax(args: argparse.Namespace, server_repo: Path, setup: Setup, get: bytes) -> None:
    """The tax in instructions the server executes per call, counted by valgrind's callgrind:
    the same figure on a busy machine as on a quiet one (user-space instructions of every thread,
    after a warm-up; not the kernel's work, so the share of CPU time is lower than this)."""
    if args.instruction_calls <= 0:
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("\nInstructions per call: skipped (valgrind is not installed)")
        return
    calls = args.instruction_calls
    print(f"\nInstructions per GetEmployee call in the server (valgrind callgrind, {calls} sequential calls):")
    serve = [str(server_repo / ".venv" / "bin" / "python"), str(server_repo / ".venv" / "bin" / "altalune"), "serve"]
    counted: dict[tuple[str, str], float] = {}
    for mode in INSTRUCTION_MODES:
        grpc_port, http_port = _free_port(), _free_port()
        env = {k: v for k, v in _server_env(setup, grpc_port, http_port, 1).items() if not k.startswith("OTEL_")}
        env["ALTALUNE_HEADER_TIMEOUT_S"] = "120"  # everything is ~50x slower
        with tempfile.TemporaryDirectory(prefix="altalune-callgrind-") as out:
            if mode in TAX_MODES:
                env |= TAX_MODES[mode]
            else:  # the directory a supervisor would make for its workers
                os.mkdir(f"{out}/metrics")
                env["PROMETHEUS_MULTIPROC_DIR"] = f"{out}/metrics"
            server = subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out", *serve],
                env=env,
                cwd=server_repo,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_for_port(http_port, timeout_s=600)
                _wait_for_port(grpc_port, timeout_s=600)
                for transport, port in (("connect", http_port), ("grpc", grpc_port)):
                    asyncio.run(_sequential_calls(transport, port, get, setup.api_key, 30))  # warm-up
                    subprocess.run(["callgrind_control", "--zero", str(server.pid)], check=True, capture_output=True)
                    asyncio.run(_sequential_calls(transport, port, get, setup.api_key, calls))
                    subprocess.run(["callgrind_control", "--dump", str(server.pid)], check=True, capture_output=True)
                    time.sleep(0.5)
                    counted[(mode, transport)] = per_call = _callgrind_total(Path(out)) / calls
                    base = counted.get((INSTRUCTION_MODES[0], transport))
                    ratio = f"{per_call / base:.3f}x" if base and mode != INSTRUCTION_MODES[0] else ""
                    print(f"  {mode:<36} {transport:<8} {per_call / 1e6:>7.3f} M {ratio:>7}")
            finally:
                _stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight, over all load processes")
    parser.add_argument("--projects", type=int, default=1000, help="projects created first (one block = 1024)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N of the N-worker rows")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--server-repo", type=Path, default=REPO, help="checkout whose server to measure")
    parser.add_argument("--echo-loop", choices=("asyncio", "uvloop", "auto"), default="auto")
    parser.add_argument("--tax-only", action="store_true", help="only the observability tax rows")
    parser.add_argument("--tax-rounds", type=int, default=8, help="alternated rounds of the tax rows")
    parser.add_argument(
        "--instruction-calls",
        type=int,
        default=200,
        help="calls counted under valgrind per tax mode (0: skip the instruction counts)",
    )
    args = parser.parse_args()
    server_repo: Path = args.server_repo.resolve()
    server_cmd = [str(server_repo / ".venv" / "bin" / "altalune"), "serve"]
    echo_loop = args.echo_loop
    if echo_loop == "auto":
        # The echo runs on the event loop the measured server uses.
        runtime = server_repo / "internal" / "server" / "runtime.py"
        echo_loop = "uvloop" if runtime.exists() and "uvloop" in runtime.read_text() else "asyncio"

    root = Path(tempfile.mkdtemp(prefix="altalune-bench-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False)
    url = pg.start()
    processes: list[subprocess.Popen[bytes]] = []
    pool = concurrent.futures.ProcessPoolExecutor(args.load_processes, mp_context=multiprocessing.get_context("spawn"))
    try:
        subprocess.run([*server_cmd[:-1], "migrate", "up"], env={**os.environ, "DATABASE_URL": url}, check=True)
        secrets = root / "secrets"
        admin = ensure_admin(url)
        admin_token = LocalIssuer.load_or_create(secrets / LOCAL_ISSUER_KEY_FILE).mint(
            user_public_id=admin.public_id, email=admin.email, ttl_s=3600
        )
        setup = Setup(url, secrets, "", "", admin_token, "")
        grpc_port, http_port = _free_port(), _free_port()
        server = subprocess.Popen(server_cmd, env=_server_env(setup, grpc_port, http_port, 1), cwd=server_repo)
        processes.append(server)
        _wait_for_port(http_port)
        started = time.perf_counter()
        setup.project, setup.employee, setup.api_key, setup.write_project = asyncio.run(
            _populate(grpc_port, admin_token, args.projects)
        )
        populate_s = time.perf_counter() - started
        _stop(server)

        get = employee_pb2.GetEmployeeRequest(project_id=setup.project, id=setup.employee).SerializeToString()
        query_request = employee_pb2.QueryEmployeesRequest(project_id=setup.project)
        query_request.query.pagination.page_size = 20
        query_request.query.keyword = "person"
        query_request.query.filters["department"].values.append("Dept 1")
        query_request.query.sorting.field = "name"
        query = query_request.SerializeToString()
        hire = employee_pb2.CreateEmployeeRequest(
            project_id=setup.write_project,
            name="Bench Hire",
            email="template@bench.example.com",
            role="Engineer",
            department="Dept 1",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        ).SerializeToString()
        # A server of a checkout before request_ids has no such field (Connect JSON would refuse it).
        with_request_ids = "request_id" in (server_repo / "proto" / "altalune" / "v1" / "employee.proto").read_text()

        print(
            f"\nAltalune benchmark: {args.seconds:.0f} s per row, {args.concurrency} calls in flight from "
            f"{args.load_processes} load processes, {args.projects} projects, {os.cpu_count()} cores shared by "
            f"server and load.\nServer: {server_repo}; echo on {echo_loop}; set-up (projects + 201 employees, serial): "
            f"{populate_s:.1f} s"
        )
        print(f"{'case':<58} {'calls/s':>8} {'% echo':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        rates: dict[tuple[int, str, str], float] = {}
        memory: dict[int, list[float]] = {}
        for workers in sorted({1, args.workers}) if not args.tax_only else ():
            echo = subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "tools" / "bench" / "echo.py"),
                    f"--http-port={http_port}",
                    f"--grpc-port={grpc_port}",
                    f"--processes={workers}",
                    f"--loop={echo_loop}",
                ]
            )
            processes.append(echo)
            _wait_for_port(http_port)
            _wait_for_port(grpc_port)
            echo_rate: dict[str, float] = {}
            for transport, port in (("connect", http_port), ("grpc", grpc_port)):
                figure = load(
                    pool,
                    args.load_processes,
                    Case(transport, port, "GetEmployee", get, None, args.concurrency, args.seconds, prefix=""),
                )
                echo_rate[transport] = figure.rate
                name = f"echo ({transport}), {workers} worker{'s' if workers > 1 else ''}"
                print(
                    f"{name:<58} {figure.rate:>8.0f} {'100%':>7} {figure.p50:>8.2f} {figure.p99:>8.2f} "
                    f"{figure.failed:>6}"
                )
            _stop(echo)

            server = subprocess.Popen(
                server_cmd, env=_server_env(setup, grpc_port, http_port, workers), cwd=server_repo
            )
            processes.append(server)
            _wait_for_port(http_port)
            _wait_for_port(grpc_port)
            time.sleep(1.0)  # every worker up
            for rpc, request in (("GetEmployee", get), ("QueryEmployees", query)):
                for credential, token in (("API key", setup.api_key), ("JWT", admin_token)):
                    for transport, port in (("connect", http_port), ("grpc", grpc_port)):
                        figure = load(
                            pool,
                            args.load_processes,
                            Case(transport, port, rpc, request, token, args.concurrency, args.seconds),
                        )
                        rates[(workers, rpc, f"{transport}/{credential}")] = figure.rate
                        share = figure.rate / echo_rate[transport] * 100 if echo_rate[transport] else 0.0
                        name = f"{rpc} ({transport}, {credential}), {workers} worker{'s' if workers > 1 else ''}"
                        print(
                            f"{name:<58} {figure.rate:>8.0f} {share:>6.0f}% {figure.p50:>8.2f} {figure.p99:>8.2f} "
                            f"{figure.failed:>6}"
                        )
            # Writes, as the administrator (a JWT): every call hires someone new; with request_ids,
            # each call also carries a new request_id (claimed and answered in its transaction).
            for request_ids in (False, True) if with_request_ids else (False,):
                for transport, port in (("connect", http_port), ("grpc", grpc_port)):
                    case = Case(transport, port, "CreateEmployee", hire, admin_token, args.concurrency, args.seconds)
                    figure = load(pool, args.load_processes, replace(case, request_ids=request_ids))
                    label = "CreateEmployee + request_id" if request_ids else "CreateEmployee"
                    rates[(workers, label, f"{transport}/JWT")] = figure.rate
                    name = f"{label} ({transport}, JWT), {workers} worker{'s' if workers > 1 else ''}"
                    print(
                        f"{name:<58} {figure.rate:>8.0f} {'':>7} {figure.p50:>8.2f} {figure.p99:>8.2f} "
                        f"{figure.failed:>6}"
                    )
            memory[workers] = [_rss_mb(pid) for pid in _process_tree(server.pid)]
            _stop(server)
        if args.workers > 1:
            print(f"\n{args.workers} workers / 1 worker:")
            for (workers, rpc, how), rate in sorted(rates.items()):
                if workers == args.workers and rates.get((1, rpc, how)):
                    print(f"  {rpc:<16} {how:<20} {rate / rates[(1, rpc, how)]:.2f}x")
        print("\nCreateEmployee + request_id / CreateEmployee (calls/s; > 1 would be faster):")
        for (workers, rpc, how), rate in sorted(rates.items()):
            plain = rates.get((workers, "CreateEmployee", how))
            if rpc == "CreateEmployee + request_id" and plain:
                print(f"  {workers} worker(s) {how:<16} {rate / plain:.2f}x")
        for workers, sizes in memory.items():
            print(f"server RSS with {workers} worker(s), per process after the runs (MB): {[round(s) for s in sizes]}")
        if (server_repo / "internal" / "observability").exists():
            _observability_tax(args, pool, processes, server_cmd, server_repo, setup, get)
            _instruction_tax(args, server_repo, setup, get)
    finally:
        for process in processes:
            if process.poll() is None:
                _stop(process)
        pool.shutdown(cancel_futures=True)
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
