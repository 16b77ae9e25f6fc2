"""DeleteProject on a running server: the project is gone for its users at once, the background
upkeep purges its rows and its row within seconds, and other tenants keep working meanwhile."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from altalune.v1 import employee_pb2, project_pb2
from internal.server.app import AltaluneServer
from tests.e2e.clients import (
    CREATE_EMPLOYEE,
    CREATE_PROJECT,
    DELETE_PROJECT,
    GET_EMPLOYEE,
    GET_PROJECT,
    Transport,
    open_transport,
)

pytestmark = pytest.mark.e2e


async def internal_id(database_url: str, public_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT id FROM projects WHERE public_id = %s", (public_id,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def leftovers(database_url: str, project_id: int) -> list[str]:
    """What is left of a project in the database: its row and its employees."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT 'row' FROM projects WHERE id = %(id)s "
            "UNION ALL SELECT 'employee ' || public_id FROM employees WHERE project_id = %(id)s",
            {"id": project_id},
        )
        return [str(name) for (name,) in await cur.fetchall()]


async def make_project(client: Transport, name: str) -> project_pb2.Project:
    request = project_pb2.CreateProjectRequest(name=name, timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE)
    return (await client.call(CREATE_PROJECT, request)).ok().project


async def make_employee(client: Transport, project_id: str, name: str, email: str) -> employee_pb2.Employee:
    request = employee_pb2.CreateEmployeeRequest(
        project_id=project_id,
        name=name,
        email=email,
        role="Engineer",
        department="R&D",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    )
    return (await client.call(CREATE_EMPLOYEE, request)).ok().employee


async def test_a_deleted_projects_rows_are_purged_within_seconds_while_other_tenants_keep_working(
    server: AltaluneServer, module_database_url: str, admin_token: str
) -> None:
    client = open_transport("grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=admin_token)
    try:
        doomed = await make_project(client, "Doomed")
        other = await make_project(client, "Survivor")
        employee = await make_employee(client, other.id, "Grace Hopper", "grace@example.com")
        doomed_id = await internal_id(module_database_url, doomed.id)
        doomed_employee = await make_employee(client, doomed.id, "Ada Lovelace", "ada@example.com")
        assert await leftovers(module_database_url, doomed_id) == ["row", f"employee {doomed_employee.id}"]

        (await client.call(DELETE_PROJECT, project_pb2.DeleteProjectRequest(id=doomed.id))).ok()
        assert (await client.call(GET_PROJECT, project_pb2.GetProjectRequest(id=doomed.id))).failed().reason == (
            "PROJECT_NOT_FOUND"
        )

        slowest = 0.0
        started = time.monotonic()
        while await leftovers(module_database_url, doomed_id):
            assert time.monotonic() - started < 10, "a deleted project's data is still there after 10 s"
            call_started = time.monotonic()
            reply = await client.call(
                GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=other.id, id=employee.id)
            )
            slowest = max(slowest, time.monotonic() - call_started)
            assert reply.ok().employee.name == "Grace Hopper"
            await asyncio.sleep(0.01)
        assert slowest < 1.0, f"another tenant's call took {slowest:.2f} s while the project was reaped"
        reply = await client.call(GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=other.id, id=employee.id))
        assert reply.ok().employee.id == employee.id
    finally:
        await client.close()
