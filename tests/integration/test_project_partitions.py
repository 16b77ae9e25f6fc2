"""Per-project partitions: created with the project, atomically, for every table the catalog lists."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from psycopg import sql

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.container import Container
from internal.postgres.migrations import DEFAULT_MIGRATIONS_DIR, migrate_up
from internal.postgres.partitions import reconcile_partitions

pytestmark = pytest.mark.integration

NOTES_TABLE_SQL = """
CREATE TABLE notes (
    project_id bigint NOT NULL REFERENCES projects (id),
    id         bigint GENERATED ALWAYS AS IDENTITY,
    body       text,
    PRIMARY KEY (project_id, id)
) PARTITION BY LIST (project_id)
"""

WIDGETS_MIGRATION = """
CREATE TABLE widgets (
    project_id bigint NOT NULL REFERENCES projects (id),
    id         bigint GENERATED ALWAYS AS IDENTITY,
    name       text,
    PRIMARY KEY (project_id, id)
) PARTITION BY LIST (project_id);
"""


async def _create_project(container: Container, name: str) -> project_pb2.Project:
    response = await container.projects.create_project(
        project_pb2.CreateProjectRequest(name=name, timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_LIVE)
    )
    return response.project


async def _internal_id(container: Container, public_id: str) -> int:
    async with container.db.transaction() as conn:
        cur = await conn.execute("SELECT id FROM projects WHERE public_id = %s", (public_id,))
        row = await cur.fetchone()
    assert row is not None, f"no row for project {public_id}"
    return int(row[0])


async def _partitions(container: Container, parent: str) -> dict[str, str]:
    """Partition name -> its bound, as PostgreSQL prints it (`FOR VALUES IN ('7')`)."""
    async with container.db.transaction() as conn:
        cur = await conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (parent,),
        )
        rows = await cur.fetchall()
    return {str(name): str(bound) for name, bound in rows}


async def _table_exists(container: Container, name: str) -> bool:
    async with container.db.transaction() as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        row = await cur.fetchone()
    return bool(row and row[0])


async def _execute(container: Container, statement: str | sql.Composed) -> None:
    async with container.db.transaction() as conn:
        await conn.execute(statement)


async def _next_project_id(container: Container) -> int:
    """The id the next project will get (reading the sequence consumes one value)."""
    async with container.db.transaction() as conn:
        cur = await conn.execute("SELECT nextval(pg_get_serial_sequence('projects', 'id'))")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]) + 1


async def _project_names(container: Container) -> list[str]:
    response = await container.projects.query_projects(project_pb2.QueryProjectsRequest())
    return [p.name for p in response.data]


async def test_a_new_project_gets_its_own_employees_partition_bound_to_its_internal_id(container: Container) -> None:
    project = await _create_project(container, "Acme")
    internal = await _internal_id(container, project.id)

    partitions = await _partitions(container, "employees")

    assert partitions == {f"employees_p{internal}": f"FOR VALUES IN ('{internal}')"}


async def test_each_project_gets_a_partition_in_every_table_partitioned_by_list_on_project_id(
    container: Container,
) -> None:
    await _execute(container, NOTES_TABLE_SQL)
    # Not partitioned by LIST(project_id): these must be left alone.
    await _execute(
        container,
        "CREATE TABLE events (project_id bigint NOT NULL, at date NOT NULL) PARTITION BY RANGE (at)",
    )
    await _execute(
        container,
        "CREATE TABLE regions (project_id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region)",
    )

    first = await _internal_id(container, (await _create_project(container, "First")).id)
    second = await _internal_id(container, (await _create_project(container, "Second")).id)

    assert set(await _partitions(container, "notes")) == {f"notes_p{first}", f"notes_p{second}"}
    assert set(await _partitions(container, "employees")) == {f"employees_p{first}", f"employees_p{second}"}
    assert await _partitions(container, "events") == {}
    assert await _partitions(container, "regions") == {}
    # The partition really takes the project's rows.
    await _execute(container, sql.SQL("INSERT INTO notes (project_id, body) VALUES ({}, 'hi')").format(first))
    async with container.db.transaction() as conn:
        cur = await conn.execute(sql.SQL("SELECT body FROM {}").format(sql.Identifier(f"notes_p{first}")))
        assert await cur.fetchall() == [("hi",)]


async def test_employees_has_no_default_partition(container: Container) -> None:
    await _create_project(container, "Acme")

    async with container.db.transaction() as conn:
        cur = await conn.execute(
            "SELECT partdefid::regclass::text FROM pg_partitioned_table WHERE partrelid = 'employees'::regclass"
        )
        row = await cur.fetchone()

    assert row is not None
    assert row[0] == "-", f"employees has a DEFAULT partition: {row[0]}"


async def test_a_failing_partition_step_leaves_no_project_behind(container: Container) -> None:
    existing = await _internal_id(container, (await _create_project(container, "Existing")).id)
    next_id = await _next_project_id(container)
    # The next project's partition name is taken by a plain table, so CREATE TABLE fails.
    for candidate in range(next_id, next_id + 3):
        await _execute(container, sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(f"employees_p{candidate}")))

    with pytest.raises(psycopg.errors.DuplicateTable):
        await _create_project(container, "Doomed")

    assert await _project_names(container) == ["Existing"]
    async with container.db.transaction() as conn:
        cur = await conn.execute("SELECT count(*) FROM projects WHERE name = 'Doomed'")
        assert await cur.fetchone() == (0,)
    # Only the existing project's partition is attached; the plain tables stayed plain.
    assert set(await _partitions(container, "employees")) == {f"employees_p{existing}"}


async def test_a_failure_on_the_second_partitioned_table_rolls_back_the_first_partition_too(
    container: Container,
) -> None:
    await _execute(container, NOTES_TABLE_SQL)
    next_id = await _next_project_id(container)
    # employees_p<id> is created first (tables are taken in name order), then notes_p<id> fails.
    for candidate in range(next_id, next_id + 3):
        await _execute(container, sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(f"notes_p{candidate}")))

    with pytest.raises(psycopg.errors.DuplicateTable):
        await _create_project(container, "Doomed")

    assert await _project_names(container) == []
    assert await _partitions(container, "employees") == {}
    for candidate in range(next_id, next_id + 3):
        assert not await _table_exists(container, f"employees_p{candidate}")

    # Once the obstacle is gone the same name can be created, with both partitions.
    for candidate in range(next_id, next_id + 3):
        await _execute(container, sql.SQL("DROP TABLE {}").format(sql.Identifier(f"notes_p{candidate}")))
    project = await _create_project(container, "Doomed")
    internal = await _internal_id(container, project.id)
    assert set(await _partitions(container, "notes")) == {f"notes_p{internal}"}


async def test_a_migration_adding_a_partitioned_table_gives_every_live_project_its_partition(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    live = [await _create_project(container, name) for name in ("Alpha", "Beta", "Gamma")]
    deleted = await _create_project(container, "Gone")
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=deleted.id))
    live_ids = [await _internal_id(container, p.id) for p in live]
    deleted_id = await _internal_id(container, deleted.id)
    for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql")):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "0099_widgets.sql").write_text(WIDGETS_MIGRATION)

    applied = await asyncio.to_thread(migrate_up, database_url, tmp_path, after_each=reconcile_partitions)

    assert applied == ["0099"]
    assert await _partitions(container, "widgets") == {f"widgets_p{i}": f"FOR VALUES IN ('{i}')" for i in live_ids}
    assert not await _table_exists(container, f"widgets_p{deleted_id}")
    # Projects created after the migration get a widgets partition as well.
    later = await _internal_id(container, (await _create_project(container, "Later")).id)
    assert f"widgets_p{later}" in await _partitions(container, "widgets")
    # And employees still work in a pre-existing project.
    created = await container.employees.create_employee(
        employee_pb2.CreateEmployeeRequest(
            project_id=live[0].id,
            name="Ann",
            email="ann@example.com",
            role="Engineer",
            department="R&D",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        )
    )
    listed = await container.employees.query_employees(
        employee_pb2.QueryEmployeesRequest(project_id=live[0].id, query=common_pb2.QueryRequest())
    )
    assert [e.id for e in listed.data] == [created.employee.id]


async def test_reconciling_twice_creates_nothing_new(container: Container, database_url: str) -> None:
    await _create_project(container, "Alpha")

    def reconcile() -> list[str]:
        with psycopg.connect(database_url) as conn:
            return reconcile_partitions(conn)

    assert await asyncio.to_thread(reconcile) == []
