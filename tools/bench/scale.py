"""`make bench-scale`: how the service behaves as the number of projects (tenants) grows.

For each N of `--projects`, on a fresh throw-away embedded PostgreSQL (fsync off), N projects are
built in bulk SQL plus the migrations' partition hook (`reconcile_partitions`), not through the
API, so that 100,000 projects take minutes instead of hours; then a real `altalune serve` process is
driven with grpcio clients. The same file runs unchanged on checkouts with one partition per project
and with block partitions, so the two layouts can be compared figure by figure. It prints figures and
asserts nothing: client and server share the machine's CPUs, so compare runs on the same machine only.
The file is self-contained on purpose (its small client helpers repeat run.py's): copied onto an older
checkout, it measures that checkout with the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
import psycopg.errors

from altalune.v1 import employee_pb2, employee_pb2_grpc, project_pb2, project_pb2_grpc
from internal.auth.bootstrap import ensure_admin
from internal.auth.oidc import LocalIssuer
from internal.container import LOCAL_ISSUER_KEY_FILE
from internal.ids import new_public_id
from internal.postgres.embedded import EmbeddedPostgres
from internal.postgres.migrations import DEFAULT_MIGRATIONS_DIR, migrate_up
from internal.postgres.partitions import reconcile_partitions

REPO = Path(__file__).resolve().parents[2]

# At most this many projects per build transaction: with one partition per project, creating all
# of them in one transaction would exhaust the lock table. Same chunking on both layouts.
CHUNK = 500
CALL_TIMEOUT_S = 120.0
SERVER_READY_TIMEOUT_S = 120.0
GONE_POLL_S = 0.2
GONE_TIMEOUT_S = 120.0
SIDE_CONCURRENCY = 8  # "another tenant" load while something else happens
CASE_WIDTH = 64
PROGRESS_EVERY_S = 60.0


class BuildTimeout(Exception):
    """Building N projects took longer than --build-timeout; that N is skipped."""


@dataclass(frozen=True, slots=True)
class Options:
    seconds: float
    concurrency: int
    creates: int
    big_tenant_rows: int
    build_timeout_s: float


@dataclass(slots=True)
class Built:
    """What the bulk build made: (project public id, its one employee's public id) per project."""

    targets: list[tuple[str, str]]
    big_internal_id: int
    big_public_id: str
    projects_s: float
    employees_s: float
    big_tenant_s: float


@dataclass(slots=True)
class Load:
    """Latencies (ms) of the successful calls of one load run, its failures and its duration."""

    latencies: list[float]
    errors: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else math.nan

    @property
    def p99(self) -> float:
        return _percentile(self.latencies, 0.99)


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(slots=True)
class Report:
    """Prints one N's table as it goes and keeps the figures for the final summary."""

    n: int
    summary: dict[str, str] = field(default_factory=dict)

    def stats(self, case: str, load: Load, key: str | None = None) -> None:
        errors = f"  ({load.errors} failed calls)" if load.errors else ""
        print(f"{case:<{CASE_WIDTH}} {load.rate:>9.0f} {load.p50:>9.2f} {load.p99:>9.2f}{errors}", flush=True)
        if key is not None:
            self.summary[f"{key} calls/s"] = f"{load.rate:.0f}"
            self.summary[f"{key} p50 ms"] = f"{load.p50:.2f}"
            self.summary[f"{key} p99 ms"] = f"{load.p99:.2f}"
            if load.errors:
                self.summary[f"{key} failed calls"] = str(load.errors)

    def value(self, case: str, text: str, key: str | None = None, short: str | None = None) -> None:
        print(f"{case:<{CASE_WIDTH}} {text:>29}", flush=True)
        if key is not None:
            self.summary[key] = short if short is not None else text

    def failed(self, case: str, exc: BaseException, key: str) -> None:
        """A row that raised: say why, and mark its figures failed in the summary."""
        print(f"{case:<{CASE_WIDTH}} FAILED: {type(exc).__name__}: {_short(exc)}", flush=True)
        self.summary[key] = "failed"


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details()}"[:200]
    return " ".join(str(exc).split())[:200]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _checkout() -> str:
    """Which checkout and commit these figures are for (the script is copied between checkouts)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return str(REPO)
    suffix = " (+ uncommitted changes)" if dirty.stdout.strip() else ""
    subject = out.stdout.strip()
    subject = subject if len(subject) <= 72 else subject[:71] + "…"
    return f"{REPO}  {subject}{suffix}"


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {self.token}")]
        return await continuation(details._replace(metadata=metadata), request)


# --- bulk build -----------------------------------------------------------------------------------

_INSERT_PROJECTS = """
WITH p AS (
    INSERT INTO projects (public_id, name, timezone, environment)
    SELECT (%(ids)s::text[])[i], 'Bench ' || lpad((%(first)s + i)::text, 7, '0'), 'UTC', 'live'
    FROM generate_series(1, cardinality(%(ids)s::text[])) AS i
    RETURNING id, public_id
), m AS (
    INSERT INTO project_members (project_id, user_id, role) SELECT id, %(admin)s, 'owner' FROM p
)
SELECT id, public_id FROM p
"""

_INSERT_EMPLOYEES = """
INSERT INTO employees (project_id, public_id, name, email, role, department, status)
SELECT pid, epid, 'Bench Person', 'person@example.com', 'Engineer', 'R&D', 'active'
FROM unnest(%s::bigint[], %s::text[]) AS t(pid, epid)
"""

# Names allow letters and spaces only: the row number is spelled with letters a..j.
_INSERT_BIG_TENANT = """
INSERT INTO employees (project_id, public_id, name, email, role, department, status)
SELECT %(project)s, (%(ids)s::text[])[i], 'Person ' || translate((%(first)s + i)::text, '0123456789', 'abcdefghij'),
       'p' || (%(first)s + i) || '@example.com', 'Engineer', 'Dept ' || (i %% 5), 'active'
FROM generate_series(1, cardinality(%(ids)s::text[])) AS i
"""


def _chunks(total: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    """(start, count) slices of range(total), `size` at a time."""
    for start in range(0, total, size):
        yield start, min(size, total - start)


def build(url: str, n: int, admin_email: str, big_rows: int, timeout_s: float) -> Built:
    """N projects, each with the admin as owner and one employee, plus one big tenant, in bulk.

    Same code path as a migration that meets existing projects: rows first, then
    `reconcile_partitions` in the same transaction. Raises BuildTimeout once `timeout_s` is over:
    checked between chunks, and a watchdog cancels the statement running at the deadline, so one
    slow chunk cannot overrun it by much.
    """
    started = time.perf_counter()
    next_progress = started + PROGRESS_EVERY_S
    where = {"stage": "setup", "done": 0}

    def timed_out() -> BuildTimeout:
        return BuildTimeout(
            f"building {n} projects exceeded --build-timeout {timeout_s:.0f} s during {where['stage']} "
            f"({where['done']} of {n} done after {time.perf_counter() - started:.0f} s)"
        )

    def check(stage: str, done: int) -> None:
        nonlocal next_progress
        where["stage"], where["done"] = stage, done
        now = time.perf_counter()
        if now >= next_progress:  # a long build shows it is alive, and how fast it goes
            print(f"  ... {stage}: {done} of {n} after {now - started:.0f} s", flush=True)
            next_progress = now + PROGRESS_EVERY_S
        if now - started > timeout_s:
            raise timed_out()

    with psycopg.connect(url, autocommit=True) as conn:
        watchdog = threading.Timer(timeout_s, conn.cancel_safe)
        watchdog.daemon = True
        watchdog.start()
        try:
            return _build(conn, n, admin_email, big_rows, check, started)
        except psycopg.errors.QueryCanceled:
            raise timed_out() from None
        finally:
            watchdog.cancel()


def _build(
    conn: psycopg.Connection[Any],
    n: int,
    admin_email: str,
    big_rows: int,
    check: Callable[[str, int], None],
    started: float,
) -> Built:
    """The statements of `build`, on its connection."""
    row = conn.execute("SELECT id FROM users WHERE email_key = lower(%s)", (admin_email,)).fetchone()
    if row is None:
        raise RuntimeError(f"admin {admin_email} not found in users")
    admin_id = int(row[0])

    projects: list[tuple[int, str]] = []
    for start, count in _chunks(n):
        check("projects + partitions", start)
        ids = [new_public_id() for _ in range(count)]
        with conn.transaction():
            rows = conn.execute(_INSERT_PROJECTS, {"ids": ids, "first": start, "admin": admin_id}).fetchall()
            reconcile_partitions(conn)
        projects.extend((int(r[0]), str(r[1])) for r in rows)
    projects_s = time.perf_counter() - started

    employees_started = time.perf_counter()
    targets: list[tuple[str, str]] = []
    for start, count in _chunks(len(projects)):
        check("employees", start)
        chunk = projects[start : start + count]
        employee_ids = [new_public_id() for _ in chunk]
        with conn.transaction():
            conn.execute(_INSERT_EMPLOYEES, ([pid for pid, _ in chunk], employee_ids))
        targets.extend((public, employee) for (_, public), employee in zip(chunk, employee_ids, strict=True))
    employees_s = time.perf_counter() - employees_started

    check("the big tenant", n)
    big_started = time.perf_counter()
    big_public_id = new_public_id()
    with conn.transaction():
        rows = conn.execute(_INSERT_PROJECTS, {"ids": [big_public_id], "first": n, "admin": admin_id}).fetchall()
        reconcile_partitions(conn)
    big_internal_id = int(rows[0][0])
    for start, count in _chunks(big_rows, 50_000):
        with conn.transaction():
            conn.execute(
                _INSERT_BIG_TENANT,
                {"project": big_internal_id, "first": start, "ids": [new_public_id() for _ in range(count)]},
            )
    # A database that grew to N projects over time has been vacuumed and analysed; one built in
    # seconds has not, and autovacuum would otherwise compete with the first measurements.
    conn.execute("VACUUM (ANALYZE)")
    big_tenant_s = time.perf_counter() - big_started
    return Built(targets, big_internal_id, big_public_id, projects_s, employees_s, big_tenant_s)


# --- load -----------------------------------------------------------------------------------------


async def _load(
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int,
    seconds: float | None = None,
    stop: asyncio.Event | None = None,
) -> Load:
    """`concurrency` workers call in a loop for `seconds`, or until `stop` is set."""
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    stop_at = started + seconds if seconds is not None else math.inf

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at and not (stop is not None and stop.is_set()):
            t = time.perf_counter()
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
                await asyncio.sleep(0.01)  # a failing server must not turn this into a busy loop
                continue
            latencies.append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Load(latencies, errors, time.perf_counter() - started)


def _backend_memory(pids: list[int]) -> tuple[list[float], list[int]]:
    """Private (clean + dirty) MB of each backend from /proc/<pid>/smaps_rollup; unreadable pids apart."""
    sizes: list[float] = []
    unreadable: list[int] = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            unreadable.append(pid)
            continue
        kb = 0
        for line in text.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb += int(line.split()[1])
        sizes.append(kb / 1024)
    return sizes, unreadable


async def _count(mon: psycopg.AsyncConnection[Any], query: str, params: tuple[Any, ...] = ()) -> int:
    cur = await mon.execute(query, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def measure(url: str, grpc_port: int, token: str, built: Built, opts: Options, report: Report) -> None:
    """Every row of one N's table against the running server; a failing row does not stop the rest."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}", interceptors=[_Bearer(token)])
    mon = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await asyncio.wait_for(channel.channel_ready(), SERVER_READY_TIMEOUT_S)
        projects = project_pb2_grpc.ProjectServiceStub(channel)
        employees = employee_pb2_grpc.EmployeeServiceStub(channel)
        seconds, concurrency = opts.seconds, opts.concurrency

        print(f"{'case':<{CASE_WIDTH}} {'calls/s':>9} {'p50 ms':>9} {'p99 ms':>9}", flush=True)

        case = f"CreateProject (gRPC, serial, {opts.creates} calls)"
        try:
            latencies: list[float] = []
            errors = 0
            for i in range(opts.creates):
                request = project_pb2.CreateProjectRequest(
                    name=f"Created {i}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                )
                t = time.perf_counter()
                try:
                    await projects.CreateProject(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - t) * 1000)
            report.stats(case, Load(latencies, errors, sum(latencies) / 1000), key="CreateProject")
        except Exception as exc:
            report.failed(case, exc, key="CreateProject")

        fixed_project, fixed_employee = built.targets[0]
        fixed = employee_pb2.GetEmployeeRequest(project_id=fixed_project, id=fixed_employee)

        async def get_fixed() -> None:
            await employees.GetEmployee(fixed, timeout=CALL_TIMEOUT_S)

        case = f"GetEmployee, one fixed project (c={concurrency})"
        try:
            await _load(get_fixed, seconds=1.0, concurrency=concurrency)  # warm-up
            report.stats(
                case, await _load(get_fixed, seconds=seconds, concurrency=concurrency), key="GetEmployee fixed"
            )
        except Exception as exc:
            report.failed(case, exc, key="GetEmployee fixed")

        rng = random.Random(7)
        targets = built.targets

        async def get_random() -> None:
            project, employee = rng.choice(targets)
            request = employee_pb2.GetEmployeeRequest(project_id=project, id=employee)
            await employees.GetEmployee(request, timeout=CALL_TIMEOUT_S)

        case = f"GetEmployee, random one of {len(targets)} projects (c={concurrency})"
        try:
            report.stats(
                case, await _load(get_random, seconds=seconds, concurrency=concurrency), key="GetEmployee random"
            )
        except Exception as exc:
            report.failed(case, exc, key="GetEmployee random")

        case = "PostgreSQL client backends, private memory"
        try:
            cur = await mon.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid"
            )
            pids = [int(r[0]) for r in await cur.fetchall()]
            sizes, unreadable = _backend_memory(pids)
            if sizes:
                report.value(
                    case,
                    f"max {max(sizes):.1f} MB, sum {sum(sizes):.1f} MB ({len(sizes)} backends)",
                    key="backend private MB max / sum",
                    short=f"{max(sizes):.1f} / {sum(sizes):.1f}",
                )
                report.summary["client backends"] = str(len(sizes))
            else:
                report.value(case, "no readable backend", key="backend private MB max / sum", short="n/a")
            if unreadable:
                print(
                    f"  skipped {len(unreadable)} backend(s) whose /proc/<pid>/smaps_rollup is not readable: "
                    f"{unreadable}"
                )
        except Exception as exc:
            report.failed(case, exc, key="backend private MB max / sum")

        case = f"GetEmployee, fixed project alone (c={SIDE_CONCURRENCY})"
        try:
            alone = await _load(get_fixed, seconds=seconds, concurrency=SIDE_CONCURRENCY)
            report.stats(case, alone, key="other tenant alone")
            stop = asyncio.Event()
            cycles, churn_errors = 0, 0

            async def churn() -> None:
                nonlocal cycles, churn_errors
                attempt = 0
                while not stop.is_set():
                    attempt += 1
                    try:
                        created = await projects.CreateProject(
                            project_pb2.CreateProjectRequest(
                                name=f"Churn {attempt}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                            ),
                            timeout=CALL_TIMEOUT_S,
                        )
                        await projects.DeleteProject(
                            project_pb2.DeleteProjectRequest(id=created.project.id), timeout=CALL_TIMEOUT_S
                        )
                        cycles += 1
                    except grpc.aio.AioRpcError:
                        churn_errors += 1
                        await asyncio.sleep(0.05)

            churner = asyncio.create_task(churn())
            try:
                busy = await _load(get_fixed, seconds=seconds, concurrency=SIDE_CONCURRENCY)
            finally:
                stop.set()
                await churner
            report.stats(
                f"  same, while projects are created + deleted (c={SIDE_CONCURRENCY})",
                busy,
                key="other tenant during churn",
            )
            ratio = busy.p99 / alone.p99 if alone.p99 > 0 else math.nan
            failures = f", {churn_errors} failed" if churn_errors else ""
            report.value(
                "  p99 during churn / alone",
                f"x{ratio:.2f} ({cycles} create+delete{failures})",
                key="churn p99 ratio",
                short=f"x{ratio:.2f}",
            )
            report.summary["churn create+delete cycles"] = str(cycles)
        except Exception as exc:
            report.failed(case, exc, key="other tenant churn")

        case = "DeleteProject, empty project (call latency)"
        try:
            empty = await projects.CreateProject(
                project_pb2.CreateProjectRequest(
                    name="Empty tenant", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                ),
                timeout=CALL_TIMEOUT_S,
            )
            t = time.perf_counter()
            await projects.DeleteProject(project_pb2.DeleteProjectRequest(id=empty.project.id), timeout=CALL_TIMEOUT_S)
            empty_ms = (time.perf_counter() - t) * 1000
            report.value(case, f"{empty_ms:.2f} ms", key="DeleteProject empty ms", short=f"{empty_ms:.2f}")
            await asyncio.sleep(2.0)  # let the reaper finish with it before the big one
        except Exception as exc:
            report.failed(case, exc, key="DeleteProject empty ms")

        rows = opts.big_tenant_rows
        case = f"DeleteProject, project with {rows} employees (call latency)"
        try:
            stop = asyncio.Event()
            side = asyncio.create_task(_load(get_fixed, concurrency=SIDE_CONCURRENCY, stop=stop))
            gone_s: float | None = None
            try:
                t = time.perf_counter()
                await projects.DeleteProject(
                    project_pb2.DeleteProjectRequest(id=built.big_public_id), timeout=CALL_TIMEOUT_S
                )
                big_ms = (time.perf_counter() - t) * 1000
                while time.perf_counter() - t < GONE_TIMEOUT_S:
                    left = await _count(
                        mon, "SELECT count(*) FROM employees WHERE project_id = %s", (built.big_internal_id,)
                    )
                    if left == 0:
                        gone_s = time.perf_counter() - t
                        break
                    await asyncio.sleep(GONE_POLL_S)
            finally:
                stop.set()
                during = await side
            report.value(case, f"{big_ms:.2f} ms", key="DeleteProject big ms", short=f"{big_ms:.2f}")
            if gone_s is None:
                report.value(
                    "  its employees gone from `employees` after",
                    f"NOT within {GONE_TIMEOUT_S:.0f} s",
                    key="big tenant rows gone s",
                    short="timeout",
                )
            else:
                report.value(
                    "  its employees gone from `employees` after",
                    f"{gone_s:.2f} s",
                    key="big tenant rows gone s",
                    short=f"{gone_s:.2f}",
                )
            report.stats(
                f"  GetEmployee, other tenant, meanwhile (c={SIDE_CONCURRENCY})",
                during,
                key="other tenant during big delete",
            )
        except Exception as exc:
            report.failed(case, exc, key="DeleteProject big ms")

        case = "partitions of employees / api_keys"
        try:
            parts = [
                await _count(mon, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", (table,))
                for table in ("employees", "api_keys")
            ]
            report.value(case, f"{parts[0]} / {parts[1]}", key="partitions employees / api_keys")
        except Exception as exc:
            report.failed(case, exc, key="partitions employees / api_keys")
    finally:
        await mon.close()
        await channel.close()


# --- one N ------------------------------------------------------------------------------------------


def _stop_server(server: subprocess.Popen[bytes] | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _log_tail(path: Path, lines: int = 8) -> None:
    """The server logs warnings to a file (the table stays readable); show how many, and the last ones."""
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").splitlines()
        if text:
            print(f"  server log: {len(text)} line(s) at level warning or above; last {min(lines, len(text))}:")
            for line in text[-lines:]:
                print(f"    {line[:240]}")


def run_one(n: int, opts: Options) -> Report:
    """Build N projects on a fresh PostgreSQL, serve, measure; always cleans up."""
    report = Report(n)
    print(f"\n=== N = {n} projects ===", flush=True)
    root = Path(tempfile.mkdtemp(prefix="altalune-bench-scale-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "pg", durable=False)
    server: subprocess.Popen[bytes] | None = None
    server_log = root / "server.log"
    try:
        url = pg.start()
        migrate_up(url, DEFAULT_MIGRATIONS_DIR, after_each=reconcile_partitions)
        admin = ensure_admin(url)
        try:
            built = build(url, n, admin.email, opts.big_tenant_rows, opts.build_timeout_s)
        except BuildTimeout as exc:
            print(f"ABORTED: {exc}", flush=True)
            report.summary["build"] = "timed out"
            return report
        total = built.projects_s + built.employees_s
        print(
            f"built in bulk SQL + the migration hook reconcile_partitions (not through the API), "
            f"chunks of {CHUNK} projects per transaction:\n"
            f"  {n} projects + owner memberships + partitions {built.projects_s:.1f} s, "
            f"one employee each {built.employees_s:.1f} s (total {total:.1f} s); "
            f"big tenant with {opts.big_tenant_rows} employees {built.big_tenant_s:.1f} s",
            flush=True,
        )
        report.summary["build s (projects + employees)"] = f"{total:.1f}"

        secrets = root / "secrets"
        token = LocalIssuer.load_or_create(secrets / LOCAL_ISSUER_KEY_FILE).mint(
            user_public_id=admin.public_id, email=admin.email, ttl_s=6 * 3600
        )
        grpc_port, http_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "ALTALUNE_GRPC_PORT": str(grpc_port),
            "ALTALUNE_HTTP_PORT": str(http_port),
            "ALTALUNE_LOG_LEVEL": "warning",
            "ALTALUNE_SECRETS_DIR": str(secrets),
            "ALTALUNE_REAPER_INTERVAL_S": "1",
            # One serving process, as on checkouts before worker processes: figures stay comparable.
            "ALTALUNE_WORKERS": "1",
        }
        with server_log.open("wb") as log_file:
            server = subprocess.Popen(
                [sys.executable, str(REPO / "cmd" / "altalune"), "serve"],
                env=env,
                cwd=REPO,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        asyncio.run(measure(url, grpc_port, token, built, opts, report))
    except Exception as exc:
        print(f"N = {n} FAILED: {type(exc).__name__}: {_short(exc)}", flush=True)
        report.summary["run"] = "failed"
    finally:
        _stop_server(server)
        _log_tail(server_log)
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return report


def _summary(reports: list[Report]) -> None:
    """One row per figure, one column per N; '-' where an N did not get that far."""
    keys: list[str] = []
    for report in reports:
        keys.extend(k for k in report.summary if k not in keys)
    width = max([len(k) for k in keys] + [10])
    print(f"\nSummary ({_checkout()})")
    print(f"{'projects (N)':<{width}} " + " ".join(f"{r.n:>14}" for r in reports))
    for key in keys:
        print(f"{key:<{width}} " + " ".join(f"{r.summary.get(key, '-'):>14}" for r in reports))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", default="10,10000,100000", help="comma-separated project counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load row")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--creates", type=int, default=200, help="serial CreateProject calls")
    parser.add_argument("--big-tenant-rows", type=int, default=100_000, help="employees of the deleted big tenant")
    parser.add_argument("--build-timeout", type=float, default=1800.0, help="seconds before an N's build is abandoned")
    args = parser.parse_args()
    try:
        counts = [int(x) for x in args.projects.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--projects must be comma-separated integers, got {args.projects!r}")
    if not counts or min(counts) < 1:
        parser.error("--projects needs at least one count, each >= 1")
    opts = Options(args.seconds, args.concurrency, args.creates, args.big_tenant_rows, args.build_timeout)
    print(
        f"Altalune scale benchmark  ({_checkout()})\n"
        f"{opts.seconds:.0f} s per load row, concurrency {opts.concurrency} (other-tenant rows {SIDE_CONCURRENCY}), "
        f"{os.cpu_count()} CPUs shared by client, server and PostgreSQL"
    )
    reports = [run_one(n, opts) for n in counts]
    _summary(reports)


if __name__ == "__main__":
    main()
