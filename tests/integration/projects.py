"""Helpers shared by the integration tests of projects and their tenancy: services in, protos out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg import sql

from altalune.v1 import employee_pb2, project_pb2
from internal.container import Container
from internal.domain.employee.repo import EmployeeRepo
from internal.domain.employee.service import EmployeeService
from internal.tenancy import ProjectNotFound, ProjectRef


async def project_ref(container: Container, public_id: str) -> ProjectRef:
    """What authorization hands a project-scoped call: the live project, or ProjectNotFound."""
    rows = await fetch(container, "SELECT id FROM projects WHERE public_id = %s AND deleted_at IS NULL", public_id)
    if not rows:
        raise ProjectNotFound(public_id)
    return ProjectRef(public_id, int(rows[0][0]))


class AsAuthorized:
    """A project-scoped service called as the server calls it: the request's `project_id` is first
    resolved to the live project (ProjectNotFound if missing or deleted), then passed in."""

    def __init__(self, container: Container, service: object) -> None:
        self._container = container
        self._service = service

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._service, name)

        async def call(request: Any, *args: Any) -> Any:
            return await method(await project_ref(self._container, request.project_id), request, *args)

        return call


_employee_service: list[tuple[Container, EmployeeService]] = []


def employees(container: Container) -> AsAuthorized:
    """One service (one repository, so one catalog cache) per container, as the server has."""
    if not _employee_service or _employee_service[0][0] is not container:
        _employee_service[:] = [(container, EmployeeService(container.db, EmployeeRepo()))]
    return AsAuthorized(container, _employee_service[0][1])


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
    response = await employees(container).create_employee(
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
