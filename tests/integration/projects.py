"""Helpers shared by the integration tests of projects and their tenancy: services in, protos out."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from altalune.v1 import employee_pb2, project_pb2
from internal.container import Container


async def create_project(
    container: Container, name: str, *, timezone: str = "Europe/Paris", description: str = ""
) -> project_pb2.Project:
    response = await container.projects.create_project(
        project_pb2.CreateProjectRequest(
            name=name, description=description, timezone=timezone, environment=project_pb2.ENVIRONMENT_LIVE
        )
    )
    return response.project


async def create_employee(container: Container, project_id: str, email: str) -> employee_pb2.Employee:
    response = await container.employees.create_employee(
        employee_pb2.CreateEmployeeRequest(
            project_id=project_id,
            name="Ann Lee",
            email=email,
            role="Engineer",
            department="R&D",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        )
    )
    return response.employee


async def fetch(container: Container, query: str | sql.Composed, *args: Any) -> list[tuple[Any, ...]]:
    async with container.db.transaction() as conn:
        cur = await conn.execute(query, args)
        return list(await cur.fetchall())


async def internal_id(container: Container, public_id: str) -> int:
    rows = await fetch(container, "SELECT id FROM projects WHERE public_id = %s", public_id)
    assert rows, f"no row for project {public_id}"
    return int(rows[0][0])
