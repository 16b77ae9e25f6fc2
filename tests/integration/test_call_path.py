"""The call path through the real chain and a real database: one pool checkout per call whatever
the credential, the project resolved once by authorization, and filter catalogs reused between
pages but never stale for the process that wrote."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from connectrpc.errors import ConnectError
from connectrpc.request import Headers, RequestContext
from google.protobuf.message import Message

from altalune.v1 import api_key_pb2, employee_pb2, project_pb2
from internal.auth.bootstrap import ensure_admin
from internal.auth.principal import Caller, Principal
from internal.container import Container
from internal.domain.api_key.repo import ApiKeyRepo
from internal.domain.api_key.service import ApiKeyService
from internal.postgres.lease import SessionLease
from internal.postgres.partitions import UPKEEP_LEASE_KEY
from tests.integration.projects import create_employee, employees, fetch, project_ref

PROJECT_PERMISSIONS = frozenset({"employee:read", "employee:write", "apikey:write"})


async def _call(container: Container, path: str, request: Message, token: str) -> Message:
    route = container.routes[path]
    ctx: RequestContext[Any, Any] = RequestContext(
        method=route.method,
        http_method="POST",
        request_headers=Headers({"authorization": f"Bearer {token}"}),
        timeout_ms=None,
    )
    return await route.function(request, ctx)


async def _setup(container: Container, database_url: str) -> tuple[str, str, str, str]:
    """A project owned by the administrator, one employee, an API key; and the admin's JWT."""
    admin = ensure_admin(database_url)
    assert container.issuer is not None
    jwt = container.issuer.mint(user_public_id=admin.public_id, email=admin.email, ttl_s=600)
    rows = await fetch(container, "SELECT id FROM users WHERE public_id = %s", admin.public_id)
    owner = Caller(principal=Principal.user(int(rows[0][0]), admin.public_id), permissions=frozenset())
    created = await container.projects.create_project(
        project_pb2.CreateProjectRequest(name="Call path", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE),
        owner,
    )
    project = created.project.id
    hired = await create_employee(container, project, "ann@example.com")
    expires = api_key_pb2.CreateApiKeyRequest().expires_at
    expires.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    ref = await project_ref(container, project)
    key_caller = Caller(principal=owner.principal, permissions=PROJECT_PERMISSIONS, project=ref, project_role="owner")
    key = await ApiKeyService(container.db, ApiKeyRepo(), container.hasher).create_api_key(
        ref,
        api_key_pb2.CreateApiKeyRequest(
            project_id=project, name="reader", scopes=["employee:read"], expires_at=expires
        ),
        key_caller,
    )
    return project, hired.id, key.secret, jwt


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
async def test_a_call_takes_one_pool_checkout_for_authentication_authorization_and_handler(
    container: Container, database_url: str, credential: str
) -> None:
    project, employee, api_key, jwt = await _setup(container, database_url)
    token = api_key if credential == "api_key" else jwt
    request = employee_pb2.GetEmployeeRequest(project_id=project, id=employee)
    await _call(container, "/altalune.v1.EmployeeService/GetEmployee", request, token)  # warm (last_used_at)

    container.db.pool.pop_stats()
    for _ in range(5):
        got = await _call(container, "/altalune.v1.EmployeeService/GetEmployee", request, token)
        assert isinstance(got, employee_pb2.GetEmployeeResponse)
        assert got.employee.email == "ann@example.com"

    assert container.db.pool.get_stats().get("requests_num", 0) == 5


async def test_a_refused_call_returns_its_connection(container: Container, database_url: str) -> None:
    project, employee, api_key, _ = await _setup(container, database_url)
    stranger = employee_pb2.GetEmployeeRequest(project_id="23456789abcdef", id=employee)

    with pytest.raises(ConnectError) as refused:
        await _call(container, "/altalune.v1.EmployeeService/GetEmployee", stranger, api_key)

    assert refused.value.code.name == "NOT_FOUND"
    await container.refusals.flush()  # the refusal's event is written off the request path
    stats = container.db.pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"], stats  # nothing left checked out
    owned = await _call(
        container,
        "/altalune.v1.EmployeeService/GetEmployee",
        employee_pb2.GetEmployeeRequest(project_id=project, id=employee),
        api_key,
    )
    assert isinstance(owned, employee_pb2.GetEmployeeResponse)


async def test_pages_reuse_the_catalog_but_the_count_and_the_writers_own_changes_are_current(
    container: Container, database_url: str
) -> None:
    project, _, _, _ = await _setup(container, database_url)
    query = employee_pb2.QueryEmployeesRequest(project_id=project)
    query.query.pagination.page_size = 1

    first = await employees(container).query_employees(query)
    assert list(first.meta.filters["department"].values) == ["R&D"]
    assert first.meta.row_count == 1

    # A row written behind this process's back (as another worker would): page and count see it at
    # once, the catalog only after its short lifetime.
    ref = await project_ref(container, project)
    async with container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
            "VALUES (%s, '23456789abcdeg', 'Bo Chen', 'bo@example.com', 'Engineer', 'Ops', 'active')",
            (ref.id,),
        )
    second = await employees(container).query_employees(query)
    assert second.meta.row_count == 2
    assert list(second.meta.filters["department"].values) == ["R&D"]

    # A write through this process forgets the project's catalogs at once.
    await employees(container).create_employee(
        employee_pb2.CreateEmployeeRequest(
            project_id=project,
            name="Cy Diaz",
            email="cy@example.com",
            role="Manager",
            department="Sales",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        )
    )
    third = await employees(container).query_employees(query)
    assert third.meta.row_count == 3
    assert list(third.meta.filters["department"].values) == ["Ops", "R&D", "Sales"]


async def test_the_upkeep_lease_has_one_holder_and_passes_on_when_released(database_url: str) -> None:
    first = SessionLease(database_url, UPKEEP_LEASE_KEY, name="test-first")
    second = SessionLease(database_url, UPKEEP_LEASE_KEY, name="test-second")
    try:
        assert await first.held()
        assert not await second.held()
        assert await first.held()  # still held, not taken twice
        await first.release()
        deadline = time.monotonic() + 5
        while not await second.held():
            assert time.monotonic() < deadline, "the released lease was never taken over"
        assert not await first.held()
    finally:
        await first.release()
        await second.release()
