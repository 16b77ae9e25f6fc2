"""Block partitions of every project table (docs/tenancy.md).

A table partitioned by LIST (project_id) has one partition per block of `project_block_size()`
consecutive project ids, named `<table>_b<block>`. The SQL functions of migration 0004 own the
rules (which tables, which blocks are needed, which are dead); this module calls them:

* `ensure_project_blocks()` makes the blocks in use plus the next one, ahead of need (background
  keeper, `altalune migrate`, and CreateProject's inline fallback when an id outruns them);
* `purge_project_rows` removes a deleted project's rows in bounded batches;
* `retire_dead_blocks` detaches (CONCURRENTLY) and drops blocks no project can use any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from internal.logs import get_logger
from internal.postgres.database import Database, delete_in_batches

log = get_logger(__name__)

# Every INSERT into `projects` takes this advisory lock shared (inside the INSERT statement, before
# the id is drawn); deciding which blocks are dead takes it exclusive. So no transaction holding a
# fresh id of a block can be in flight when that block is judged unused.
CREATE_FENCE_KEY = 7813746515301351426
# Held (session lock, internal/postgres/lease.py) by the one process that runs the tenancy upkeep.
UPKEEP_LEASE_KEY = 7813746515301351427

# Rows deleted per statement when purging a project: each statement is short and holds its row
# locks only for its own duration.
PURGE_BATCH_ROWS = 5000

# Dropping a detached partition drops its foreign key's triggers on `projects`, which takes ACCESS
# EXCLUSIVE on `projects`: while that request waits in the lock queue, every later statement of
# every tenant that reads `projects` waits behind it. So the DROP waits at most this long; a drop
# that cannot get the lock is retried by the next round.
DROP_LOCK_TIMEOUT_MS = 100

PROJECT_TABLES_SQL = "SELECT relname FROM project_partitioned_tables() AS t JOIN pg_class c ON c.oid = t"
_ENSURE_SQL = "SELECT created, covered_through, block_size FROM ensure_project_blocks()"


@dataclass(frozen=True, slots=True)
class EnsuredBlocks:
    created: int
    covered_through: int  # every new project id up to this one has its block in every project table
    block_size: int


class BlockCoverage:
    """The highest project id known to have its block partitions, per process.

    Monotonic: a block is only removed once every id in it has been handed out and no project uses
    it, so an id newer than any issued before is never in a removed block.
    """

    def __init__(self) -> None:
        self._through = -1
        self._block_size = 1

    def covers(self, project_id: int) -> bool:
        return project_id <= self._through

    def running_low(self, project_id: int) -> bool:
        """True once ids reach the last block made ahead: time to make the next one."""
        return project_id > self._through - self._block_size

    def extend(self, ensured: EnsuredBlocks) -> None:
        self._through = max(self._through, ensured.covered_through)
        self._block_size = ensured.block_size


async def ensure_blocks(conn: AsyncConnection[Any]) -> EnsuredBlocks:
    """Make missing block partitions in the caller's transaction (serialised in the database)."""
    cur = await conn.execute(_ENSURE_SQL)
    row = await cur.fetchone()
    assert row is not None
    return EnsuredBlocks(created=int(row[0]), covered_through=int(row[1]), block_size=int(row[2]))


async def block_ready(conn: AsyncConnection[Any], project_id: int) -> bool:
    cur = await conn.execute("SELECT project_block_ready(%s)", (project_id,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def project_tables(conn: AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(PROJECT_TABLES_SQL)
    return [str(row[0]) for row in await cur.fetchall()]


async def warm_connection(conn: AsyncConnection[Any]) -> None:
    """Pool `configure` hook: plan one statement per project table that prunes to no partition.

    That loads each table's partition descriptor (its cost grows with the number of projects: ~45 ms
    at 100,000) into the new backend before a request needs it, without opening every partition.
    """
    try:
        cur = await conn.execute("SELECT to_regproc('project_partitioned_tables') IS NOT NULL")
        row = await cur.fetchone()
        if not row or not row[0]:
            return  # not migrated yet
        for table in await project_tables(conn):
            await conn.execute(sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE project_id = -1").format(sql.Identifier(table)))
    except psycopg.Error as exc:  # warming is an optimisation: never refuse a connection over it
        log.warning("connection warm-up skipped", error=type(exc).__name__)


async def purge_project_rows(db: Database, project_id: int, *, batch_rows: int = PURGE_BATCH_ROWS) -> int:
    """Delete every row of one project from every project table, `batch_rows` per statement.

    Each batch commits on its own (autocommit), so an interrupted purge keeps what it did and the
    next round resumes it. Returns how many rows were deleted.
    """
    deleted = 0
    async with db.purging() as conn:
        for table in await project_tables(conn):
            statement = sql.SQL(
                "DELETE FROM {t} WHERE project_id = %(p)s AND ctid = ANY (ARRAY("
                "SELECT ctid FROM {t} WHERE project_id = %(p)s LIMIT %(n)s))"
            ).format(t=sql.Identifier(table))
            deleted += await delete_in_batches(conn, statement, {"p": project_id}, batch=batch_rows)
    return deleted


def _set_lock_timeout(ms: int) -> sql.Composed:
    return sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{ms}ms"))


async def retire_dead_blocks(db: Database, *, lock_timeout_ms: int) -> list[str]:
    """Detach (CONCURRENTLY) and drop the partitions of blocks no project can use any more.

    The decision is taken under the creation fence; the DDL runs after it, outside any transaction
    block. A step that cannot get its lock in time is left for the next round; a partition left
    "detach pending" by an interrupted attempt is finalized. Safe to repeat.
    """
    async with db.transaction(lock_timeout_ms=lock_timeout_ms) as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_FENCE_KEY,))
        cur = await conn.execute("SELECT parent::text, partition_name, state FROM dead_project_blocks()")
        dead = [(str(p), str(name), str(state)) for p, name, state in await cur.fetchall()]
    dropped: list[str] = []
    if not dead:
        return dropped
    async with db.autocommit() as conn:
        for parent, name, state in dead:
            await conn.execute(_set_lock_timeout(lock_timeout_ms))
            if state != "detached":
                mode = sql.SQL("FINALIZE" if state == "detach_pending" else "CONCURRENTLY")
                await conn.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(
                        sql.Identifier(parent), sql.Identifier(name), mode
                    )
                )
            await conn.execute(_set_lock_timeout(min(lock_timeout_ms, DROP_LOCK_TIMEOUT_MS)))
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


def reconcile_partitions(conn: psycopg.Connection[Any]) -> list[str]:
    """Migration hook: make every block partition needed, inside each migration's transaction.

    So a migration that adds a project table gives it the blocks of every other, atomically with the
    table itself. Before migration 0004 defines the block functions there is nothing to do (earlier
    migrations leave their partitions for 0004 to convert).
    """
    row = conn.execute("SELECT to_regproc('ensure_project_blocks') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    before = _block_partitions(conn)
    conn.execute(_ENSURE_SQL)
    return sorted(_block_partitions(conn) - before)


def _block_partitions(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM project_partitioned_tables() AS t "
        "JOIN pg_inherits i ON i.inhparent = t JOIN pg_class c ON c.oid = i.inhrelid"
    ).fetchall()
    return {str(r[0]) for r in rows}
