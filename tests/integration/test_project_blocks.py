"""Block partitions: a bounded number of partitions per project table, made ahead of need and off
the request path, removed once no project can use them; the migration converting per-project
partitions keeps every row."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.container import Container
from internal.domain.employee.errors import EmployeeNotFound
from internal.postgres.migrations import DEFAULT_MIGRATIONS_DIR, migrate_up
from internal.postgres.partitions import CREATE_FENCE_KEY, purge_project_rows, reconcile_partitions
from internal.tenancy import ProjectNotFound
from tests.integration.projects import create_employee as _create_employee
from tests.integration.projects import create_project as _create_project
from tests.integration.projects import employees
from tests.integration.projects import fetch as _fetch
from tests.integration.projects import internal_id as _internal_id

pytestmark = pytest.mark.integration

BLOCK = 1024  # project_block_size(), checked by the first test


def _project_table_sql(table: str) -> str:
    """A project table as the recipe in docs/adding-a-domain.md declares one."""
    return f"""
CREATE TABLE {table} (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    body       text,
    PRIMARY KEY (project_id, id)
) PARTITION BY LIST (project_id);
"""


NOTES_TABLE_SQL = _project_table_sql("notes")
WIDGETS_MIGRATION = _project_table_sql("widgets")


async def _execute(container: Container, statement: str | sql.Composed, *args: Any) -> None:
    async with container.db.transaction() as conn:
        await conn.execute(statement, args or None)


async def _partitions(container: Container, parent: str) -> dict[str, str]:
    """Partition name -> its bound as PostgreSQL prints it."""
    rows = await _fetch(
        container,
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        parent,
    )
    return {str(name): str(bound) for name, bound in rows}


async def _tables_like(container: Container, pattern: str) -> set[str]:
    """Every plain table whose name matches, attached or not (an orphan would show up here)."""
    rows = await _fetch(container, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ %s", pattern)
    return {str(r[0]) for r in rows}


async def _set_next_project_id(container: Container, next_id: int) -> None:
    await _execute(container, "SELECT setval(pg_get_serial_sequence('projects', 'id'), %s)", next_id - 1)


def _bound(block: int) -> str:
    return "FOR VALUES IN (" + ", ".join(f"'{i}'" for i in range(block * BLOCK, (block + 1) * BLOCK)) + ")"


async def test_a_fresh_database_has_the_first_block_and_one_ahead_in_every_project_table(
    container: Container,
) -> None:
    assert await _fetch(container, "SELECT project_block_size()") == [(BLOCK,)]
    for table in ("employees", "api_keys"):
        assert await _partitions(container, table) == {f"{table}_b0": _bound(0), f"{table}_b1": _bound(1)}
    rows = await _fetch(
        container,
        "SELECT partdefid::regclass::text FROM pg_partitioned_table WHERE partrelid = 'employees'::regclass",
    )
    assert rows == [("-",)], "employees has a DEFAULT partition"


async def test_creating_projects_runs_no_ddl_and_each_lands_in_its_block(container: Container) -> None:
    before = await _fetch(container, "SELECT count(*), max(oid::int8) FROM pg_class")

    projects = [await _create_project(container, f"Tenant {n}") for n in range(20)]

    assert await _fetch(container, "SELECT count(*), max(oid::int8) FROM pg_class") == before
    for project in projects:
        internal = await _internal_id(container, project.id)
        employee = await _create_employee(container, project.id, "ann@example.com")
        located = await _fetch(
            container,
            "SELECT tableoid::regclass::text FROM employees WHERE project_id = %s AND public_id = %s",
            internal,
            employee.id,
        )
        assert located == [(f"employees_b{internal // BLOCK}",)]


async def test_a_project_id_beyond_the_blocks_made_ahead_still_gets_a_working_project(container: Container) -> None:
    await _set_next_project_id(container, 40 * BLOCK + 3)  # a sequence gap: blocks 2..39 never existed

    project = await _create_project(container, "Far away")

    internal = await _internal_id(container, project.id)
    assert internal // BLOCK >= 40
    for table in ("employees", "api_keys"):
        assert f"{table}_b{internal // BLOCK}" in await _partitions(container, table)
    employee = await _create_employee(container, project.id, "ann@example.com")
    got = await employees(container).get_employee(
        employee_pb2.GetEmployeeRequest(project_id=project.id, id=employee.id)
    )
    assert got.employee.email == "ann@example.com"
    # Only the blocks in use and the next one were made, not the gap.
    assert set(await _partitions(container, "employees")) == {
        "employees_b0",
        "employees_b1",
        f"employees_b{internal // BLOCK}",
        f"employees_b{internal // BLOCK + 1}",
    }


async def test_many_concurrent_creations_across_a_block_boundary_all_succeed_without_deadlock(
    container: Container,
) -> None:
    await _set_next_project_id(container, 2 * BLOCK - 10)  # the ids cross from block 1 into block 2 (not made)

    results = await asyncio.wait_for(
        asyncio.gather(*(_create_project(container, f"Tenant {n}") for n in range(40))), timeout=60
    )

    ids = sorted([await _internal_id(container, p.id) for p in results])
    assert len(set(ids)) == 40
    assert {i // BLOCK for i in ids} >= {1, 2}, f"the ids did not cross the boundary: {ids}"
    employee_blocks = set(await _partitions(container, "employees"))
    api_key_blocks = set(await _partitions(container, "api_keys"))
    for project in results:
        internal = await _internal_id(container, project.id)
        assert f"employees_b{internal // BLOCK}" in employee_blocks
        assert f"api_keys_b{internal // BLOCK}" in api_key_blocks
        await _create_employee(container, project.id, "ann@example.com")


async def test_a_project_insert_waits_for_the_block_fence_before_drawing_its_id(
    container: Container, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_FENCE_KEY,))
        last_before = await _fetch(container, "SELECT project_last_issued_id()")
        creating = asyncio.create_task(_create_project(container, "Waiting"))
        await asyncio.sleep(0.3)
        assert not creating.done(), "the project was created while the fence was held exclusively"
        assert await _fetch(container, "SELECT project_last_issued_id()") == last_before
        await holder.rollback()
    project = await asyncio.wait_for(creating, timeout=5)
    assert await _internal_id(container, project.id) == last_before[0][0] + 1


async def test_every_table_partitioned_by_list_on_project_id_gets_the_same_blocks(container: Container) -> None:
    await _execute(container, NOTES_TABLE_SQL)
    # Not partitioned by LIST(project_id): these must be left alone.
    await _execute(
        container, "CREATE TABLE events (project_id bigint NOT NULL, at date NOT NULL) PARTITION BY RANGE (at)"
    )
    await _execute(
        container, "CREATE TABLE regions (project_id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region)"
    )

    assert await container.projects.prepare_blocks() == 2
    assert await container.projects.prepare_blocks() == 0

    assert set(await _partitions(container, "notes")) == {"notes_b0", "notes_b1"}
    assert await _partitions(container, "events") == {}
    assert await _partitions(container, "regions") == {}
    first = await _internal_id(container, (await _create_project(container, "First")).id)
    await _execute(container, sql.SQL("INSERT INTO notes (project_id, body) VALUES ({}, 'hi')").format(first))
    assert await _fetch(container, "SELECT body FROM notes_b0") == [("hi",)]


async def test_a_migration_adding_a_project_table_gives_it_every_block_in_use(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    await _set_next_project_id(container, 5 * BLOCK)
    early = await _create_project(container, "Early")  # block 5 (made inline), block 6 ahead
    for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql")):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "0099_widgets.sql").write_text(WIDGETS_MIGRATION)

    applied = await asyncio.to_thread(migrate_up, database_url, tmp_path, after_each=reconcile_partitions)

    assert applied == ["0099"]
    # The new table gets the blocks in use and the one ahead; blocks 0 and 1 hold no project and
    # never will again (every id in them is issued), so nobody needs them.
    assert set(await _partitions(container, "widgets")) == {"widgets_b5", "widgets_b6"}
    await container.projects.reap_deleted()
    assert set(await _partitions(container, "employees")) == {"employees_b5", "employees_b6"}
    early_id = await _internal_id(container, early.id)
    await _execute(container, sql.SQL("INSERT INTO widgets (project_id, body) VALUES ({}, 'w')").format(early_id))
    # And employees still work in the pre-existing project.
    created = await _create_employee(container, early.id, "ann@example.com")
    listed = await employees(container).query_employees(
        employee_pb2.QueryEmployeesRequest(project_id=early.id, query=common_pb2.QueryRequest())
    )
    assert [e.id for e in listed.data] == [created.id]


async def test_reconciling_twice_creates_nothing_new(container: Container, database_url: str) -> None:
    await _create_project(container, "Alpha")

    def reconcile() -> list[str]:
        with psycopg.connect(database_url) as conn:
            return reconcile_partitions(conn)

    assert await asyncio.to_thread(reconcile) == []


# --- deletion: purge in batches, then retire dead blocks ----------------------------------------


async def _bulk_employees(container: Container, project_internal_id: int, count: int) -> None:
    await _execute(
        container,
        "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
        "SELECT %s, lpad(n::text, 14, '0'), 'Bulk', 'e' || n || '@example.com', 'R', 'D', 'active' "
        "FROM generate_series(1, %s) AS n",
        project_internal_id,
        count,
    )


async def test_purging_a_big_tenant_removes_its_rows_in_batches_and_leaves_others_alone(container: Container) -> None:
    doomed = await _create_project(container, "Doomed")
    kept = await _create_project(container, "Kept")
    doomed_id, kept_id = await _internal_id(container, doomed.id), await _internal_id(container, kept.id)
    await _bulk_employees(container, doomed_id, 12_000)
    kept_employee = await _create_employee(container, kept.id, "ann@example.com")

    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=doomed.id))
    with pytest.raises(ProjectNotFound):
        await employees(container).query_employees(
            employee_pb2.QueryEmployeesRequest(project_id=doomed.id, query=common_pb2.QueryRequest())
        )
    # A purge cut short keeps what it did; the next one finishes (batches commit on their own).
    first = await purge_project_rows(container.db, doomed_id, batch_rows=5000)
    assert first == 12_000

    assert await container.projects.reap_deleted() == 1

    assert await _fetch(container, "SELECT count(*) FROM employees WHERE project_id = %s", doomed_id) == [(0,)]
    assert await _fetch(container, "SELECT id FROM projects") == [(kept_id,)]
    got = await employees(container).get_employee(
        employee_pb2.GetEmployeeRequest(project_id=kept.id, id=kept_employee.id)
    )
    assert got.employee.id == kept_employee.id
    # Block 0 still holds the kept project: nothing is detached.
    assert set(await _partitions(container, "employees")) == {"employees_b0", "employees_b1"}


async def test_a_block_is_removed_once_every_id_in_it_is_issued_and_no_project_is_left(
    container: Container,
) -> None:
    gone = await _create_project(container, "Gone")  # block 0
    await _create_employee(container, gone.id, "ann@example.com")
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=gone.id))
    await _set_next_project_id(container, 3 * BLOCK + 1)
    later = await _create_project(container, "Later")  # block 3, made inline; block 4 ahead
    await container.projects.prepare_blocks()

    assert await container.projects.reap_deleted() == 1

    for table in ("employees", "api_keys"):
        assert set(await _partitions(container, table)) == {f"{table}_b3", f"{table}_b4"}
        assert await _tables_like(container, f"^{table}_b[0-9]+$") == {f"{table}_b3", f"{table}_b4"}
    await _create_employee(container, later.id, "ann@example.com")
    # The current block and the one ahead are never removed, even with no project in them.
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=later.id))
    assert await container.projects.reap_deleted() == 1
    assert set(await _partitions(container, "employees")) == {"employees_b3", "employees_b4"}


async def test_an_interrupted_detach_is_finished_and_a_detached_leftover_is_dropped(container: Container) -> None:
    await _set_next_project_id(container, 2 * BLOCK + 1)
    await _create_project(container, "Later")  # blocks 0 and 1 are now dead
    # As a crash would leave them: employees_b0 detached but not dropped.
    await _execute(container, "ALTER TABLE employees DETACH PARTITION employees_b0")

    await container.projects.reap_deleted()

    assert await _tables_like(container, "^(employees|api_keys)_b[01]$") == set()


async def test_removing_blocks_behind_a_long_reader_does_not_block_other_tenants_and_finishes_later(
    container: Container, database_url: str
) -> None:
    other = await _create_project(container, "Other")  # block 0
    other_employee = await _create_employee(container, other.id, "ann@example.com")
    await _set_next_project_id(container, 3 * BLOCK)
    await _create_project(container, "Later")  # block 2 is dead now (block 1 too)
    other_id = await _internal_id(container, other.id)

    reader = await psycopg.AsyncConnection.connect(database_url)
    observer = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        # Another tenant's long report: an open transaction that has read `employees`.
        await reader.execute("SELECT count(*) FROM employees WHERE project_id = %s", (other_id,))
        reap = asyncio.create_task(container.projects.reap_deleted(lock_timeout_ms=1500))
        for _ in range(200):
            cur = await observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            waiting = await cur.fetchone()
            if waiting and waiting[0] > 0:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the block removal never waited for the long reader")

        durations: list[float] = []
        for n in range(3):
            started = asyncio.get_running_loop().time()
            got = await employees(container).get_employee(
                employee_pb2.GetEmployeeRequest(project_id=other.id, id=other_employee.id)
            )
            assert got.employee.id == other_employee.id
            await _create_employee(container, other.id, f"new{n}@example.com")
            await _create_project(container, f"Meanwhile {n}")
            durations.append(asyncio.get_running_loop().time() - started)
        assert not reap.done(), "the removal gave up before the other tenant's calls were made"
        assert max(durations) < 1.0, f"other tenant's calls were blocked: {durations}"
        await reap
        assert "employees_b1" in await _tables_like(container, "^employees_b[0-9]+$"), "removed behind the reader"
    finally:
        await reader.rollback()
        await reader.close()
        await observer.close()

    await container.projects.reap_deleted()
    assert await _tables_like(container, "^employees_b[0-9]+$") == {"employees_b0", "employees_b3", "employees_b4"}


async def test_nothing_of_a_purged_project_is_readable_through_a_new_project(container: Container) -> None:
    old = await _create_project(container, "Acme")
    old_employee = await _create_employee(container, old.id, "ann@example.com")
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=old.id))
    assert await container.projects.reap_deleted() == 1

    new = await _create_project(container, "Acme")

    assert await _internal_id(container, new.id) > 0
    listed = await employees(container).query_employees(
        employee_pb2.QueryEmployeesRequest(project_id=new.id, query=common_pb2.QueryRequest())
    )
    assert list(listed.data) == []
    with pytest.raises(ProjectNotFound):
        await employees(container).get_employee(employee_pb2.GetEmployeeRequest(project_id=old.id, id=old_employee.id))
    with pytest.raises(EmployeeNotFound):
        await employees(container).get_employee(employee_pb2.GetEmployeeRequest(project_id=new.id, id=old_employee.id))


# --- converting a database with one partition per project --------------------------------------


def _old_layout_database(url: str, migrations: Path) -> dict[str, Any]:
    """Migrations 0001-0003 and projects with per-project partitions and data, as main made them."""
    for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("000[123]_*.sql")):
        shutil.copy(path, migrations / path.name)
    migrate_up(url, migrations, after_each=reconcile_partitions)
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [
            int(row[0])
            for row in conn.execute(
                "INSERT INTO projects (public_id, name, timezone, environment) "
                "SELECT lpad(n::text, 14, 'p'), 'P' || n, 'UTC', 'live' FROM generate_series(1, 4) AS n RETURNING id"
            ).fetchall()
        ]
        for project_id in ids:
            for table in ("employees", "api_keys"):
                child = sql.Identifier(f"{table}_p{project_id}")
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)"
                    ).format(child, sql.Identifier(table))
                )
                conn.execute(
                    sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
                        sql.Identifier(table), child, sql.Literal(project_id)
                    )
                )
            conn.execute(
                "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
                "SELECT %s, lpad((%s * 100 + n)::text, 14, 'e'), 'Emp', 'Mixed' || n || '@Example.com', 'R', 'D', "
                "'active' FROM generate_series(1, 3) AS n",
                (project_id, project_id),
            )
            conn.execute(
                "INSERT INTO api_keys (project_id, public_id, name, secret_hash, secret_hint, scopes, expires_at) "
                "VALUES (%s, lpad(%s::text, 14, 'k'), 'Key ' || %s, %s, 'abcd', '{employee:read}', now() + '1 day')",
                (project_id, project_id, project_id, bytes(32)),
            )
        conn.execute("UPDATE projects SET deleted_at = now() WHERE id = %s", (ids[-1],))
        employees = conn.execute(
            "SELECT project_id, id, public_id, email, email_key FROM employees ORDER BY project_id, id"
        ).fetchall()
        keys = conn.execute(
            "SELECT project_id, id, public_id, name_key FROM api_keys ORDER BY project_id, id"
        ).fetchall()
    return {"ids": ids, "employees": employees, "api_keys": keys}


async def test_the_block_migration_moves_every_row_of_per_project_partitions_into_blocks(
    empty_database_url: str, tmp_path: Path
) -> None:
    before = await asyncio.to_thread(_old_layout_database, empty_database_url, tmp_path)
    shutil.copy(DEFAULT_MIGRATIONS_DIR / "0004_project_blocks.sql", tmp_path)

    applied = await asyncio.to_thread(migrate_up, empty_database_url, tmp_path, after_each=reconcile_partitions)

    assert applied == ["0004"]
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:

        async def rows(query: str) -> list[tuple[Any, ...]]:
            cur = await conn.execute(query)
            return list(await cur.fetchall())

        # Every row kept, with its ids and its generated columns.
        assert (
            await rows("SELECT project_id, id, public_id, email, email_key FROM employees ORDER BY 1, 2")
            == before["employees"]
        )
        assert (
            await rows("SELECT project_id, id, public_id, name_key FROM api_keys ORDER BY 1, 2") == before["api_keys"]
        )
        # Only block partitions remain, attached; no per-project table is left behind.
        assert await rows(
            "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relname ~ '^(employees|api_keys)_[bp][0-9]+$' "
            "ORDER BY 1"
        ) == [("api_keys_b0",), ("api_keys_b1",), ("employees_b0",), ("employees_b1",)]
        assert await rows("SELECT count(*) FROM pg_inherits WHERE inhparent = 'employees'::regclass") == [(2,)]
        # The foreign keys to projects are back, as they were.
        assert await rows(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conparentid = 0 AND confrelid = 'projects'::regclass "
            "AND conrelid IN ('employees'::regclass, 'api_keys'::regclass) ORDER BY 1"
        ) == [
            ("api_keys", "FOREIGN KEY (project_id) REFERENCES projects(id) ON DELETE CASCADE"),
            ("employees", "FOREIGN KEY (project_id) REFERENCES projects(id) ON DELETE CASCADE"),
        ]
        # Identity goes on after the kept ids; the unique keys hold in the blocks.
        first = before["ids"][0]
        cur = await conn.execute(
            "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
            "VALUES (%s, 'newemployee001', 'New', 'new@example.com', 'R', 'D', 'active') RETURNING id",
            (first,),
        )
        new_row = await cur.fetchone()
        assert new_row is not None
        assert new_row[0] > max(e[1] for e in before["employees"])
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute(
                "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
                "VALUES (%s, 'newemployee002', 'Dup', 'MIXED1@example.COM', 'R', 'D', 'active')",
                (first,),
            )
