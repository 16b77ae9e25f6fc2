"""Per-project list partitions of every project-scoped table.

The set of partitioned tables is read from the catalog (tables partitioned by LIST on
`project_id`), so a migration that adds one needs no hand-kept list. A partition is created
with `CREATE TABLE ... (LIKE ...)` + `ATTACH PARTITION`, which takes SHARE UPDATE EXCLUSIVE on
the parent instead of the ACCESS EXCLUSIVE of `PARTITION OF`, so other tenants keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

PARTITION_KEY = "project_id"

PARTITIONED_TABLES_SQL = """
SELECT c.relname
FROM pg_partitioned_table pt
JOIN pg_class c ON c.oid = pt.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
WHERE pt.partstrat = 'l' AND pt.partnatts = 1 AND a.attname = %s
  AND n.nspname = current_schema() AND NOT c.relispartition
ORDER BY c.relname
"""

# Partitions attached (or pending detach) to a parent, with their bound project id.
ATTACHED_SQL = """
SELECT c.relname, i.inhdetachpending
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = %s::regclass
"""


def partition_name(table: str, project_id: int) -> str:
    return f"{table}_p{project_id}"


@dataclass(frozen=True, slots=True)
class PartitionDDL:
    create: sql.Composed
    attach: sql.Composed


def partition_ddl(table: str, project_id: int) -> PartitionDDL:
    parent = sql.Identifier(table)
    child = sql.Identifier(partition_name(table, project_id))
    return PartitionDDL(
        create=sql.SQL(
            "CREATE TABLE {child} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)"
        ).format(child=child, parent=parent),
        attach=sql.SQL("ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES IN ({value})").format(
            parent=parent, child=child, value=sql.Literal(project_id)
        ),
    )


async def partitioned_tables(conn: AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute(PARTITIONED_TABLES_SQL, (PARTITION_KEY,))
    return [row[0] for row in await cur.fetchall()]


async def lock_partitioned_tables(conn: AsyncConnection[Any]) -> list[str]:
    """SHARE UPDATE EXCLUSIVE on every partitioned table, taken first in a project's creation.

    ATTACH PARTITION needs this lock, and then SHARE ROW EXCLUSIVE on `projects` (for the foreign
    key), which conflicts with the ROW EXCLUSIVE every concurrent creation holds from its INSERT:
    two creations that locked in the opposite order deadlocked. Taken before the INSERT, it makes
    creations queue one behind the other, holding no lock a concurrent one or a concurrent
    `DETACH ... CONCURRENTLY` (which waits for every locker of the parent) would wait for.
    """
    tables = await partitioned_tables(conn)
    if tables:
        await conn.execute(
            sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )
    return tables


async def create_project_partitions(conn: AsyncConnection[Any], project_id: int, tables: list[str]) -> list[str]:
    """Attach an empty partition for the project to each of `tables` (caller's transaction; the
    tables as returned by lock_partitioned_tables)."""
    created = []
    for table in tables:
        ddl = partition_ddl(table, project_id)
        await conn.execute(ddl.create)
        await conn.execute(ddl.attach)
        created.append(partition_name(table, project_id))
    return created


def reconcile_partitions(conn: psycopg.Connection[Any]) -> list[str]:
    """Give every live project a partition in every partitioned table that lacks one.

    Runs inside each migration's transaction, so a migration that adds a partitioned table
    gives existing projects their partitions atomically with the table itself.
    """
    tables = [row[0] for row in conn.execute(PARTITIONED_TABLES_SQL, (PARTITION_KEY,)).fetchall()]
    if not tables:
        return []
    has_projects = conn.execute("SELECT to_regclass('projects') IS NOT NULL").fetchone()
    if not has_projects or not has_projects[0]:
        return []
    projects = [row[0] for row in conn.execute("SELECT id FROM projects WHERE deleted_at IS NULL ORDER BY id")]
    created: list[str] = []
    for table in tables:
        existing = {row[0] for row in conn.execute(ATTACHED_SQL, (table,)).fetchall()}
        for project_id in projects:
            if partition_name(table, project_id) in existing:
                continue
            ddl = partition_ddl(table, project_id)
            conn.execute(ddl.create)
            conn.execute(ddl.attach)
            created.append(partition_name(table, project_id))
    return created


# Dropping a detached partition drops its foreign key's triggers on `projects`, which takes ACCESS
# EXCLUSIVE on `projects`: while that request waits in the lock queue, every later statement of
# every tenant that reads `projects` waits behind it. So the DROP waits at most this long; a purge
# that cannot get the lock is retried by the reaper's next round.
DROP_LOCK_TIMEOUT_MS = 100


def _set_lock_timeout(ms: int) -> sql.Composed:
    return sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{ms}ms"))


async def drop_project_partitions(conn: AsyncConnection[Any], project_id: int, *, lock_timeout_ms: int) -> list[str]:
    """Detach (CONCURRENTLY) and drop a project's partitions; `conn` must be in autocommit mode.

    `DETACH ... CONCURRENTLY` takes only SHARE UPDATE EXCLUSIVE on the parent, so other tenants'
    reads and writes go on. If an earlier attempt was interrupted half-way, the partition is left
    "detach pending" and is finalized here. Safe to repeat.
    """
    await conn.execute(_set_lock_timeout(lock_timeout_ms))
    dropped = []
    for table in await partitioned_tables(conn):
        name = partition_name(table, project_id)
        cur = await conn.execute(ATTACHED_SQL, (table,))
        attached = {row[0]: row[1] for row in await cur.fetchall()}
        if name in attached:
            mode = sql.SQL("FINALIZE" if attached[name] else "CONCURRENTLY")
            await conn.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(
                    sql.Identifier(table), sql.Identifier(name), mode
                )
            )
        await conn.execute(_set_lock_timeout(min(lock_timeout_ms, DROP_LOCK_TIMEOUT_MS)))
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        await conn.execute(_set_lock_timeout(lock_timeout_ms))
        dropped.append(name)
    return dropped
