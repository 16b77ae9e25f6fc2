"""EmployeeService against a real PostgreSQL: tenant isolation, per-project email uniqueness, masked updates."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.container import Container
from internal.domain.employee.errors import EmployeeEmailTaken, EmployeeNotFound
from internal.tenancy import ProjectNotFound
from tests.integration.projects import employees

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"


async def _create_project(container: Container, name: str) -> str:
    response = await container.projects.create_project(
        project_pb2.CreateProjectRequest(name=name, timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_LIVE)
    )
    return response.project.id


async def _create_employee(
    container: Container,
    project_id: str,
    *,
    name: str = "Ann Lee",
    email: str = "ann@example.com",
    role: str = "Engineer",
    department: str = "R&D",
    status: employee_pb2.EmployeeStatus = employee_pb2.EMPLOYEE_STATUS_ACTIVE,
) -> employee_pb2.Employee:
    response = await employees(container).create_employee(
        employee_pb2.CreateEmployeeRequest(
            project_id=project_id, name=name, email=email, role=role, department=department, status=status
        )
    )
    return response.employee


async def _get(container: Container, project_id: str, employee_id: str) -> employee_pb2.Employee:
    response = await employees(container).get_employee(
        employee_pb2.GetEmployeeRequest(project_id=project_id, id=employee_id)
    )
    return response.employee


async def _update(
    container: Container, project_id: str, employee_id: str, paths: list[str], **fields: str
) -> employee_pb2.Employee:
    response = await employees(container).update_employee(
        employee_pb2.UpdateEmployeeRequest(
            project_id=project_id, id=employee_id, update_mask=FieldMask(paths=paths), **fields
        )
    )
    return response.employee


async def _query(container: Container, project_id: str) -> list[employee_pb2.Employee]:
    response = await employees(container).query_employees(
        employee_pb2.QueryEmployeesRequest(project_id=project_id, query=common_pb2.QueryRequest())
    )
    return list(response.data)


async def test_a_created_employee_can_be_read_back_with_public_ids_only(container: Container) -> None:
    project_id = await _create_project(container, "Acme")

    created = await _create_employee(container, project_id, email="Ann.Lee@Example.com")
    fetched = await _get(container, project_id, created.id)

    assert fetched == created
    assert fetched.project_id == project_id
    assert len(fetched.id) == 14
    assert fetched.id != project_id
    assert fetched.email == "Ann.Lee@Example.com"  # stored as given; only uniqueness ignores case
    assert fetched.status == employee_pb2.EMPLOYEE_STATUS_ACTIVE
    assert fetched.created_at == fetched.updated_at


async def test_an_employee_of_one_project_is_not_found_through_another_project(container: Container) -> None:
    project_a = await _create_project(container, "Acme")
    project_b = await _create_project(container, "Globex")
    employee = await _create_employee(container, project_a)

    with pytest.raises(EmployeeNotFound) as caught:
        await _get(container, project_b, employee.id)
    assert caught.value.reason == "EMPLOYEE_NOT_FOUND"
    assert caught.value.metadata == {"project_id": project_b, "employee_id": employee.id}
    with pytest.raises(EmployeeNotFound):
        await _update(container, project_b, employee.id, ["name", "role"], name="Mallory", role="Owner")
    with pytest.raises(EmployeeNotFound):
        await employees(container).delete_employee(
            employee_pb2.DeleteEmployeeRequest(project_id=project_b, id=employee.id)
        )
    assert await _query(container, project_b) == []

    assert await _get(container, project_a, employee.id) == employee
    assert await _query(container, project_a) == [employee]


async def test_employee_calls_naming_an_unknown_project_are_project_not_found(container: Container) -> None:
    with pytest.raises(ProjectNotFound):
        await _create_employee(container, UNKNOWN_ID)
    with pytest.raises(ProjectNotFound):
        await _get(container, UNKNOWN_ID, UNKNOWN_ID)


async def test_an_unknown_employee_is_not_found_for_get_update_and_delete(container: Container) -> None:
    project_id = await _create_project(container, "Acme")

    with pytest.raises(EmployeeNotFound):
        await _get(container, project_id, UNKNOWN_ID)
    with pytest.raises(EmployeeNotFound):
        await _update(container, project_id, UNKNOWN_ID, ["role"], role="CTO")
    with pytest.raises(EmployeeNotFound):
        await employees(container).delete_employee(
            employee_pb2.DeleteEmployeeRequest(project_id=project_id, id=UNKNOWN_ID)
        )


async def test_emails_are_unique_within_a_project_case_insensitively(container: Container) -> None:
    project_id = await _create_project(container, "Acme")
    first = await _create_employee(container, project_id, email="ann@example.com")

    with pytest.raises(EmployeeEmailTaken) as caught:
        await _create_employee(container, project_id, name="Ann Other", email="ANN@Example.COM")

    assert caught.value.reason == "EMPLOYEE_EMAIL_TAKEN"
    assert caught.value.metadata == {"project_id": project_id, "email": "ANN@Example.COM"}
    assert await _query(container, project_id) == [first]


async def test_the_same_email_is_fine_in_another_project(container: Container) -> None:
    project_a = await _create_project(container, "Acme")
    project_b = await _create_project(container, "Globex")
    await _create_employee(container, project_a, email="ann@example.com")

    other = await _create_employee(container, project_b, email="Ann@Example.com")

    assert (await _get(container, project_b, other.id)).email == "Ann@Example.com"


async def test_changing_an_email_onto_a_colleagues_email_is_refused(container: Container) -> None:
    project_id = await _create_project(container, "Acme")
    await _create_employee(container, project_id, email="ann@example.com")
    bob = await _create_employee(container, project_id, name="Bob", email="bob@example.com")

    with pytest.raises(EmployeeEmailTaken):
        await _update(container, project_id, bob.id, ["email"], email="Ann@example.com")

    assert (await _get(container, project_id, bob.id)).email == "bob@example.com"


async def test_an_update_masked_to_department_changes_only_the_department(container: Container) -> None:
    project_id = await _create_project(container, "Acme")
    before = await _create_employee(container, project_id, department="R&D")
    await asyncio.sleep(0.01)

    # name, email and role are empty in the request: outside the mask they must not be written.
    after = await _update(container, project_id, before.id, ["department"], department="Sales")

    assert after.department == "Sales"
    assert (after.name, after.email, after.role, after.status) == (
        before.name,
        before.email,
        before.role,
        before.status,
    )
    assert after.created_at == before.created_at
    assert after.updated_at.ToDatetime() > before.updated_at.ToDatetime()
    assert await _get(container, project_id, before.id) == after


async def test_an_update_can_change_the_status_and_several_fields_at_once(container: Container) -> None:
    project_id = await _create_project(container, "Acme")
    before = await _create_employee(container, project_id)

    after = await employees(container).update_employee(
        employee_pb2.UpdateEmployeeRequest(
            project_id=project_id,
            id=before.id,
            name="Ann Smith",
            role="CTO",
            status=employee_pb2.EMPLOYEE_STATUS_INACTIVE,
            update_mask=FieldMask(paths=["name", "role", "status"]),
        )
    )

    assert (after.employee.name, after.employee.role, after.employee.status) == (
        "Ann Smith",
        "CTO",
        employee_pb2.EMPLOYEE_STATUS_INACTIVE,
    )
    assert after.employee.department == before.department


async def test_a_deleted_employee_is_gone_and_its_email_is_free_again(container: Container) -> None:
    project_id = await _create_project(container, "Acme")
    employee = await _create_employee(container, project_id, email="ann@example.com")

    await employees(container).delete_employee(
        employee_pb2.DeleteEmployeeRequest(project_id=project_id, id=employee.id)
    )

    with pytest.raises(EmployeeNotFound):
        await _get(container, project_id, employee.id)
    with pytest.raises(EmployeeNotFound):
        await employees(container).delete_employee(
            employee_pb2.DeleteEmployeeRequest(project_id=project_id, id=employee.id)
        )
    again = await _create_employee(container, project_id, email="ann@example.com")
    assert again.id != employee.id
