"""ProjectService against a real PostgreSQL: names, time zones, deletion and the reaper, pooled sessions."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.container import Container
from internal.domain.employee.repo import EmployeeRepo
from internal.domain.project.errors import ProjectNameTaken
from internal.errors import InvalidArgument
from internal.tenancy import ProjectNotFound
from tests.integration.projects import create_employee as _create_employee
from tests.integration.projects import create_project as _create_project
from tests.integration.projects import employees
from tests.integration.projects import fetch as _fetch
from tests.integration.projects import internal_id as _internal_id

pytestmark = pytest.mark.integration


async def _delete_project(container: Container, public_id: str) -> None:
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=public_id))


async def _employee_partitions(container: Container) -> set[str]:
    rows = await _fetch(
        container,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'employees'::regclass",
    )
    return {str(r[0]) for r in rows}


async def _employee_tables(container: Container) -> set[str]:
    """Every table named like a partition, attached or not (an orphan would show up here)."""
    rows = await _fetch(
        container,
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^employees_b[0-9]+$'",
    )
    return {str(r[0]) for r in rows}


async def _get_employee(container: Container, project_id: str, employee_id: str) -> employee_pb2.Employee:
    response = await employees(container).get_employee(
        employee_pb2.GetEmployeeRequest(project_id=project_id, id=employee_id)
    )
    return response.employee


# --- names and time zones ----------------------------------------------------------------------


async def test_project_names_are_unique_case_insensitively(container: Container) -> None:
    await _create_project(container, "Acme")

    with pytest.raises(ProjectNameTaken) as caught:
        await _create_project(container, "acme")

    assert caught.value.reason == "PROJECT_NAME_TAKEN"
    assert caught.value.metadata == {"name": "acme"}
    listed = await container.projects.query_projects(project_pb2.QueryProjectsRequest())
    assert [p.name for p in listed.data] == ["Acme"]


async def test_renaming_a_project_onto_a_taken_name_fails_and_keeps_the_old_name(container: Container) -> None:
    await _create_project(container, "Acme")
    other = await _create_project(container, "Globex")

    with pytest.raises(ProjectNameTaken):
        await container.projects.update_project(
            project_pb2.UpdateProjectRequest(id=other.id, name="ACME", update_mask=FieldMask(paths=["name"]))
        )

    fetched = await container.projects.get_project(project_pb2.GetProjectRequest(id=other.id))
    assert fetched.project.name == "Globex"


async def test_renaming_a_project_to_another_case_of_its_own_name_is_allowed(container: Container) -> None:
    project = await _create_project(container, "acme")

    updated = await container.projects.update_project(
        project_pb2.UpdateProjectRequest(id=project.id, name="ACME", update_mask=FieldMask(paths=["name"]))
    )

    assert updated.project.name == "ACME"


async def test_an_update_changes_only_the_masked_fields(container: Container) -> None:
    project = await _create_project(container, "Acme", description="old", timezone="Asia/Tokyo")

    updated = await container.projects.update_project(
        project_pb2.UpdateProjectRequest(id=project.id, description="new", update_mask=FieldMask(paths=["description"]))
    )

    assert updated.project.description == "new"
    assert updated.project.name == "Acme"
    assert updated.project.timezone == "Asia/Tokyo"
    assert updated.project.created_at == project.created_at
    assert updated.project.updated_at.ToDatetime() > project.updated_at.ToDatetime()


def test_the_containers_validator_refuses_an_unknown_time_zone_on_create_and_update(container: Container) -> None:
    """The domain's time zone rule is wired into the one validation pass (the chain runs it
    before any handler; tests/e2e/test_parity.py shows it on every transport)."""
    create = project_pb2.CreateProjectRequest(
        name="", timezone="Mars/Olympus_Mons", environment=project_pb2.ENVIRONMENT_LIVE
    )
    with pytest.raises(InvalidArgument) as caught:
        container.validator.validate(create)
    assert [(v.field, v.reason) for v in caught.value.violations] == [
        ("name", "required"),
        ("timezone", "timezone.iana"),
    ]

    update = project_pb2.UpdateProjectRequest(
        id="23456789abcdef", timezone="europe/paris", update_mask=FieldMask(paths=["timezone"])
    )
    with pytest.raises(InvalidArgument) as caught:
        container.validator.validate(update)
    assert [v.field for v in caught.value.violations] == ["timezone"]
    container.validator.validate(
        project_pb2.UpdateProjectRequest(
            id="23456789abcdef", timezone="Europe/Paris", update_mask=FieldMask(paths=["timezone"])
        )
    )


async def test_an_unknown_project_id_is_not_found_for_get_update_and_delete(container: Container) -> None:
    missing = "23456789abcdef"

    with pytest.raises(ProjectNotFound):
        await container.projects.get_project(project_pb2.GetProjectRequest(id=missing))
    with pytest.raises(ProjectNotFound):
        await container.projects.update_project(
            project_pb2.UpdateProjectRequest(id=missing, description="x", update_mask=FieldMask(paths=["description"]))
        )
    with pytest.raises(ProjectNotFound):
        await _delete_project(container, missing)


# --- deletion and reaping ------------------------------------------------------------------------


async def test_a_deleted_project_is_gone_at_once_for_projects_and_employees(container: Container) -> None:
    project = await _create_project(container, "Acme")
    employee = await _create_employee(container, project.id, "ann@example.com")
    await _get_employee(container, project.id, employee.id)  # warms the id cache

    await _delete_project(container, project.id)

    with pytest.raises(ProjectNotFound):
        await container.projects.get_project(project_pb2.GetProjectRequest(id=project.id))
    with pytest.raises(ProjectNotFound):
        await _delete_project(container, project.id)
    listed = await container.projects.query_projects(project_pb2.QueryProjectsRequest())
    assert list(listed.data) == []
    employee_calls = [
        _get_employee(container, project.id, employee.id),
        _create_employee(container, project.id, "bob@example.com"),
        employees(container).update_employee(
            employee_pb2.UpdateEmployeeRequest(
                project_id=project.id, id=employee.id, role="CTO", update_mask=FieldMask(paths=["role"])
            )
        ),
        employees(container).delete_employee(employee_pb2.DeleteEmployeeRequest(project_id=project.id, id=employee.id)),
        employees(container).query_employees(
            employee_pb2.QueryEmployeesRequest(project_id=project.id, query=common_pb2.QueryRequest())
        ),
    ]
    for call in employee_calls:
        with pytest.raises(ProjectNotFound) as caught:
            await call
        assert caught.value.reason == "PROJECT_NOT_FOUND"


async def test_a_deleted_projects_name_can_be_reused_immediately(container: Container) -> None:
    old = await _create_project(container, "Acme")
    await _delete_project(container, old.id)

    new = await _create_project(container, "ACME")

    assert new.id != old.id
    fetched = await container.projects.get_project(project_pb2.GetProjectRequest(id=new.id))
    assert fetched.project.name == "ACME"
    employee = await _create_employee(container, new.id, "ann@example.com")
    assert (await _get_employee(container, new.id, employee.id)).email == "ann@example.com"


async def test_reaping_purges_the_deleted_projects_rows_and_row_and_nothing_else(container: Container) -> None:
    doomed = await _create_project(container, "Doomed")
    kept = await _create_project(container, "Kept")
    await _create_employee(container, doomed.id, "ann@example.com")
    kept_employee = await _create_employee(container, kept.id, "ann@example.com")
    doomed_id = await _internal_id(container, doomed.id)
    kept_id = await _internal_id(container, kept.id)
    partitions = await _employee_partitions(container)
    await _delete_project(container, doomed.id)

    purged = await container.projects.reap_deleted()

    assert purged == 1
    assert await _fetch(container, "SELECT id FROM projects") == [(kept_id,)]
    assert await _fetch(container, "SELECT count(*) FROM employees WHERE project_id = %s", doomed_id) == [(0,)]
    assert await _fetch(container, "SELECT count(*) FROM project_members WHERE project_id = %s", doomed_id) == [(0,)]
    assert (await _get_employee(container, kept.id, kept_employee.id)).id == kept_employee.id
    assert await _employee_partitions(container) == partitions  # the block still holds the kept project
    assert await container.projects.reap_deleted() == 0


async def test_purging_beside_a_long_reader_neither_waits_nor_blocks_other_tenants(
    container: Container, database_url: str
) -> None:
    doomed = await _create_project(container, "Doomed")
    other = await _create_project(container, "Other")
    await _create_employee(container, doomed.id, "bob@example.com")
    other_employee = await _create_employee(container, other.id, "ann@example.com")
    doomed_id = await _internal_id(container, doomed.id)
    other_id = await _internal_id(container, other.id)
    await _delete_project(container, doomed.id)

    # Another tenant's long report: an open transaction that has read `employees` (the same block).
    reader = await psycopg.AsyncConnection.connect(database_url)
    try:
        await reader.execute("SELECT count(*) FROM employees WHERE project_id = %s", (other_id,))
        started = time.perf_counter()
        assert await container.projects.reap_deleted(lock_timeout_ms=1500) == 1
        assert time.perf_counter() - started < 1.0, "the purge waited for the reader"
        assert (await _get_employee(container, other.id, other_employee.id)).id == other_employee.id
        await _create_employee(container, other.id, "new@example.com")
    finally:
        await reader.rollback()
        await reader.close()

    assert await _fetch(container, "SELECT count(*) FROM projects WHERE id = %s", doomed_id) == [(0,)]
    listed = await employees(container).query_employees(
        employee_pb2.QueryEmployeesRequest(project_id=other.id, query=common_pb2.QueryRequest())
    )
    assert listed.meta.row_count == 2


async def test_removing_a_dead_block_while_another_transaction_reads_projects_stalls_other_tenants_only_briefly(
    container: Container, database_url: str
) -> None:
    # Dropping a detached partition needs ACCESS EXCLUSIVE on `projects` (its foreign key's triggers
    # live there); every tenant's call reads `projects`, so a long wait for that lock would stall them all.
    other = await _create_project(container, "Other")
    other_employee = await _create_employee(container, other.id, "ann@example.com")
    async with container.db.transaction() as conn:  # every id of block 1 issued, none used: block 1 is dead
        await conn.execute("SELECT setval(pg_get_serial_sequence('projects', 'id'), 3 * 1024)")
    await container.projects.prepare_blocks()

    reader = await psycopg.AsyncConnection.connect(database_url)
    try:
        await reader.execute("SELECT count(*) FROM projects")
        reap = asyncio.create_task(container.projects.reap_deleted(lock_timeout_ms=1500))
        durations: list[float] = []
        deadline = time.perf_counter() + 0.6
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await _get_employee(container, other.id, other_employee.id)
            durations.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
        await reap
        assert await _employee_tables(container) >= {"employees_b1"}, "dropped although the reader held projects"
        assert max(durations) < 0.5, f"other tenant's calls were blocked for {max(durations):.2f} s"
    finally:
        await reader.rollback()
        await reader.close()

    await container.projects.reap_deleted()
    assert await _employee_tables(container) == {"employees_b0", "employees_b3", "employees_b4"}


async def test_concurrent_project_creations_all_succeed_in_existing_blocks(container: Container) -> None:
    partitions = await _employee_partitions(container)

    results = await asyncio.gather(*(_create_project(container, f"Tenant {n}") for n in range(12)))

    internal_ids = {await _internal_id(container, p.id) for p in results}
    assert len(internal_ids) == 12
    assert await _employee_partitions(container) == partitions


async def test_concurrent_creates_deletes_reads_and_reaps_leave_every_live_project_working(
    container: Container,
) -> None:
    earlier = [await _create_project(container, f"Earlier {n}") for n in range(5)]
    for project in earlier:
        await _create_employee(container, project.id, "ann@example.com")

    async def read(project: project_pb2.Project) -> object:
        return await container.projects.get_project(project_pb2.GetProjectRequest(id=project.id))

    operations = [
        *(_create_project(container, f"Later {n}") for n in range(5)),
        *(_delete_project(container, p.id) for p in earlier),
        *(read(p) for p in earlier),
        *(container.projects.query_projects(project_pb2.QueryProjectsRequest()) for _ in range(3)),
        container.projects.reap_deleted(lock_timeout_ms=500),
        container.projects.prepare_blocks(lock_timeout_ms=500),
    ]
    results = await asyncio.gather(*operations, return_exceptions=True)

    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, ProjectNotFound)]
    assert unexpected == []
    created = [r for r in results[:5] if isinstance(r, project_pb2.Project)]
    assert len(created) == 5
    for _ in range(5):  # a reap that met a concurrent transaction postpones; it finishes once things are quiet
        await container.projects.reap_deleted()
    live_ids = {int(r[0]) for r in await _fetch(container, "SELECT id FROM projects")}
    assert live_ids == {await _internal_id(container, p.id) for p in created}
    assert await _fetch(container, "SELECT count(*) FROM employees") == [(0,)]
    for project in created:
        employee = await _create_employee(container, project.id, "ann@example.com")
        assert (await _get_employee(container, project.id, employee.id)).id == employee.id


# --- pooled sessions and partition locks ---------------------------------------------------------


async def test_pooled_connections_force_custom_plans(container: Container) -> None:
    async def setting() -> str:
        async with container.db.transaction() as conn:
            cur = await conn.execute("SHOW plan_cache_mode")
            row = await cur.fetchone()
            await asyncio.sleep(0.05)  # keep the connection so the other call gets another one
        assert row is not None
        return str(row[0])

    assert list(await asyncio.gather(setting(), setting())) == ["force_custom_plan", "force_custom_plan"]


async def test_a_new_pooled_connection_has_the_project_tables_partition_descriptors_loaded(
    container: Container,
) -> None:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT ident FROM pg_backend_memory_contexts WHERE name = 'partition descriptor' ORDER BY ident"
        )
        loaded = [str(r[0]) for r in await cur.fetchall()]

    assert loaded == ["api_keys", "employees", "project_events"]


async def test_repeating_the_same_employee_read_keeps_locking_only_its_own_partition(container: Container) -> None:
    async with container.db.transaction() as conn:  # spread the tenants over many blocks
        await conn.execute("SELECT setval(pg_get_serial_sequence('projects', 'id'), 1024)")
    projects = []
    for n in range(8):
        projects.append(await _create_project(container, f"Tenant {n}"))
        async with container.db.transaction() as conn:
            await conn.execute("SELECT setval(pg_get_serial_sequence('projects', 'id'), %s)", ((n + 2) * 1024,))
    target = projects[5]
    employee = await _create_employee(container, target.id, "ann@example.com")
    target_id = await _internal_id(container, target.id)
    repo = EmployeeRepo()

    async with container.db.transaction() as conn:
        for _ in range(10):  # psycopg prepares the statement from the 6th execution on
            row = await repo.get(conn, target_id, employee.id)
            assert row is not None
            assert row.public_id == employee.id
        cur = await conn.execute(
            "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relname ~ '^employees_b[0-9]+$'"
        )
        locked = {str(r[0]) for r in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%FROM employees WHERE%%'"
        )
        prepared = await cur.fetchone()

    assert prepared == (1,), "the read was never prepared; the test proves nothing"
    assert len(await _employee_partitions(container)) >= 9
    assert locked <= {f"employees_b{target_id // 1024}"}, f"{len(locked)} partitions locked"
