"""A kill -9 of the real `altalune serve` in the middle of tenancy upkeep loses nothing and leaves
nothing half-made: the next start finishes a purge where it stopped, and a block creation that was
cut off leaves no partition behind and is made whole by the next start."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import TEST_PEPPER
from tests.e2e.clients import free_port
from tests.e2e.test_process import ALTALUNE, serve_env, wait_until_ready

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def serving(database_url: str, tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real service on free ports; killed (SIGKILL) when the block ends if still running."""
    http_port = free_port()
    env = serve_env(
        database_url,
        tmp_path / "secrets",
        free_port(),
        http_port,
        ALTALUNE_API_KEY_PEPPER=TEST_PEPPER,
        ALTALUNE_REAPER_INTERVAL_S="0.5",
        ALTALUNE_LOG_LEVEL="warning",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ALTALUNE),
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_until_ready(http_port, process)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def scalar(conn: psycopg.AsyncConnection[Any], query: str, *args: Any) -> Any:
    cur = await conn.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def test_a_purge_cut_off_by_kill_9_is_finished_by_the_next_start(database_url: str, tmp_path: Path) -> None:
    rows = 300_000
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        doomed = await scalar(
            conn,
            "INSERT INTO projects (public_id, name, timezone, environment) "
            "VALUES ('doomedproject1', 'Doomed', 'UTC', 'live') RETURNING id",
        )
        kept = await scalar(
            conn,
            "INSERT INTO projects (public_id, name, timezone, environment) "
            "VALUES ('keptproject001', 'Kept', 'UTC', 'live') RETURNING id",
        )
        for project_id, count in ((doomed, rows), (kept, 50)):
            await conn.execute(
                "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
                "SELECT %s, lpad(n::text, 14, '0'), 'Bulk', 'e' || n || '@example.com', 'R', 'D', 'active' "
                "FROM generate_series(1, %s) AS n",
                (project_id, count),
            )
        await conn.execute("UPDATE projects SET deleted_at = now() WHERE id = %s", (doomed,))

        async with serving(database_url, tmp_path) as process:
            deadline = time.monotonic() + 30
            while (left := await scalar(conn, "SELECT count(*) FROM employees WHERE project_id = %s", doomed)) == rows:
                assert time.monotonic() < deadline, "the purge never started"
                await asyncio.sleep(0.02)
            process.kill()
            await process.wait()
        left = await scalar(conn, "SELECT count(*) FROM employees WHERE project_id = %s", doomed)
        assert 0 < left < rows, f"the kill did not land in the middle of the purge ({left} rows left)"
        assert await scalar(conn, "SELECT count(*) FROM projects WHERE id = %s", doomed) == 1

        async with serving(database_url, tmp_path):
            deadline = time.monotonic() + 60
            while await scalar(conn, "SELECT count(*) FROM projects WHERE id = %s", doomed):
                assert time.monotonic() < deadline, "the purge was not resumed after the restart"
                await asyncio.sleep(0.1)

        assert await scalar(conn, "SELECT count(*) FROM employees WHERE project_id = %s", doomed) == 0
        assert await scalar(conn, "SELECT count(*) FROM employees WHERE project_id = %s", kept) == 50
        assert await scalar(conn, "SELECT count(*) FROM projects WHERE id = %s AND deleted_at IS NULL", kept) == 1


async def test_a_block_creation_cut_off_by_kill_9_leaves_nothing_and_is_made_by_the_next_start(
    database_url: str, tmp_path: Path
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as observer:
        # Ids have reached block 3: blocks 3 and 4 must be made (api_keys first, then employees).
        await observer.execute("SELECT setval(pg_get_serial_sequence('projects', 'id'), 3 * 1024)")
        blocker = await psycopg.AsyncConnection.connect(database_url)
        try:
            await blocker.execute("LOCK TABLE employees IN SHARE MODE")  # ATTACH on employees must wait
            async with serving(database_url, tmp_path) as process:
                deadline = time.monotonic() + 15
                while not await scalar(
                    observer,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%%ensure_project_blocks%%'",
                ):
                    assert time.monotonic() < deadline, "the block creation never reached employees"
                    await asyncio.sleep(0.02)
                process.kill()
                await process.wait()
            # The orphaned backend gives up at its lock timeout and rolls back everything it made.
            deadline = time.monotonic() + 15
            while await scalar(
                observer,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE '%%ensure_project_blocks%%' AND pid <> pg_backend_pid()",
            ):
                assert time.monotonic() < deadline, "the cut-off block creation is still running"
                await asyncio.sleep(0.05)
            made = await scalar(
                observer, "SELECT count(*) FROM pg_class WHERE relname ~ '^(api_keys|employees)_b[34]$'"
            )
            assert made == 0, "a half-made block creation left partitions behind"
        finally:
            await blocker.rollback()
            await blocker.close()

        async with serving(database_url, tmp_path):
            deadline = time.monotonic() + 15
            while (
                await scalar(
                    observer,
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE c.relname ~ '^(api_keys|employees)_b[34]$'",
                )
                < 4
            ):
                assert time.monotonic() < deadline, "the next start did not make the blocks"
                await asyncio.sleep(0.05)
