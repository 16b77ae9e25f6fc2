"""The one write path of every repository (internal.postgres.rows): a write returns its row, or
raises the domain error itself; the service translates nothing."""

from __future__ import annotations

import psycopg.errors
import pytest
from psycopg import sql

from altalune.v1 import employee_pb2, project_pb2
from internal.container import Container
from internal.domain.employee.errors import EmployeeEmailTaken
from internal.domain.employee.model import EmployeeStatus, NewEmployee
from internal.domain.employee.repo import EmployeeRepo
from internal.domain.employee.service import EmployeeService
from internal.tenancy import ProjectNotFound, ProjectRef
from tests.integration.projects import create_employee, create_project, fetch, project_ref

pytestmark = pytest.mark.integration


def _request(project: ProjectRef, email: str) -> employee_pb2.CreateEmployeeRequest:
    return employee_pb2.CreateEmployeeRequest(
        project_id=project.public_id,
        name="Bo Chen",
        email=email,
        role="Engineer",
        department="Ops",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    )


def _service(container: Container) -> EmployeeService:
    return EmployeeService(container.db, EmployeeRepo())


async def test_a_write_into_a_project_deleted_since_authorization_is_project_not_found(container: Container) -> None:
    project = await project_ref(container, (await create_project(container, "Acme")).id)
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=project.public_id))

    with pytest.raises(ProjectNotFound) as caught:
        await _service(container).create_employee(project, _request(project, "bo@example.com"))

    assert caught.value.metadata == {"project_id": project.public_id}


async def test_a_write_whose_block_partition_is_gone_is_project_not_found(container: Container) -> None:
    project = await project_ref(container, (await create_project(container, "Acme")).id)
    first = await create_employee(container, project.public_id, "ann@example.com")
    (partition,) = await fetch(
        container, "SELECT tableoid::regclass::text FROM employees WHERE public_id = %s", first.id
    )
    async with container.db.transaction() as conn:  # as if the block were retired under a live ref
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(str(partition[0]))))

    with pytest.raises(ProjectNotFound) as caught:
        await _service(container).create_employee(project, _request(project, "bo@example.com"))

    assert caught.value.metadata == {"project_id": project.public_id}


async def test_a_clash_on_a_declared_key_is_the_domain_error_naming_the_public_project(container: Container) -> None:
    project = await project_ref(container, (await create_project(container, "Acme")).id)
    await create_employee(container, project.public_id, "ann@example.com")

    with pytest.raises(EmployeeEmailTaken) as caught:
        await _service(container).create_employee(project, _request(project, "ANN@example.com"))

    assert caught.value.metadata == {"project_id": project.public_id, "email": "ANN@example.com"}
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_a_clash_on_an_undeclared_key_stays_a_database_error(container: Container) -> None:
    project = await project_ref(container, (await create_project(container, "Acme")).id)
    first = await create_employee(container, project.public_id, "ann@example.com")
    same_public_id = NewEmployee(
        public_id=first.id, name="Bo", email="bo@example.com", role="R", department="D", status=EmployeeStatus.ACTIVE
    )

    with pytest.raises(psycopg.errors.UniqueViolation):
        async with container.db.connection() as conn:
            await EmployeeRepo().insert(conn, project, same_public_id)
