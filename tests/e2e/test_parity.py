"""Same request, same answer: every RPC behaves identically over gRPC, Connect (JSON and binary)
and hand-written HTTP JSON, against one real server on real sockets."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.server.app import AltaluneServer
from tests.e2e.clients import (
    CREATE_EMPLOYEE,
    CREATE_PROJECT,
    DELETE_EMPLOYEE,
    DELETE_PROJECT,
    GET_EMPLOYEE,
    GET_PROJECT,
    PUBLIC_ID,
    QUERY_EMPLOYEES,
    QUERY_PROJECTS,
    TRANSPORTS,
    UPDATE_EMPLOYEE,
    UPDATE_PROJECT,
    Outcome,
    Rpc,
    Transport,
    open_transport,
)

pytestmark = pytest.mark.e2e

_serial = itertools.count(1)
REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def unique(prefix: str) -> str:
    return f"{prefix} {next(_serial)}"


@pytest_asyncio.fixture(scope="module")
async def transports(server: AltaluneServer, admin_token: str) -> AsyncIterator[dict[str, Transport]]:
    opened = {
        name: open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port, token=admin_token)
        for name in TRANSPORTS
    }
    try:
        yield opened
    finally:
        for transport in opened.values():
            await transport.close()


@dataclass(frozen=True, slots=True)
class World:
    """Data the error table refers to: two projects, an employee of the first."""

    project_a: project_pb2.Project
    project_b: project_pb2.Project
    employee_a: employee_pb2.Employee


@pytest_asyncio.fixture(scope="module")
async def world(transports: dict[str, Transport]) -> World:
    t = transports["grpc"]
    env = project_pb2.ENVIRONMENT_LIVE
    a = await t.call(
        CREATE_PROJECT, project_pb2.CreateProjectRequest(name="Parity Alpha", timezone="UTC", environment=env)
    )
    b = await t.call(
        CREATE_PROJECT, project_pb2.CreateProjectRequest(name="Parity Beta", timezone="UTC", environment=env)
    )
    project_a, project_b = a.ok().project, b.ok().project
    employee = await t.call(
        CREATE_EMPLOYEE,
        employee_pb2.CreateEmployeeRequest(
            project_id=project_a.id,
            name="Grace Hopper",
            email="grace@parity.test",
            role="Admiral",
            department="Navy",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        ),
    )
    return World(project_a, project_b, employee.ok().employee)


async def new_project(t: Transport, prefix: str = "Project") -> project_pb2.Project:
    outcome = await t.call(
        CREATE_PROJECT,
        project_pb2.CreateProjectRequest(
            name=unique(prefix), timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_SANDBOX
        ),
    )
    return outcome.ok().project


async def new_employee(t: Transport, project_id: str, *, email: str, role: str = "Engineer") -> employee_pb2.Employee:
    outcome = await t.call(
        CREATE_EMPLOYEE,
        employee_pb2.CreateEmployeeRequest(
            project_id=project_id,
            name="Ada Lovelace",
            email=email,
            role=role,
            department="Analytical Engines",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        ),
    )
    return outcome.ok().employee


# --- full CRUD flows, once per transport ----------------------------------------------------------


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_a_project_can_be_created_read_updated_listed_and_deleted(
    transport_name: str, transports: dict[str, Transport]
) -> None:
    t = transports[transport_name]
    name = unique(f"Flow {transport_name}")

    created = (
        (
            await t.call(
                CREATE_PROJECT,
                project_pb2.CreateProjectRequest(
                    name=name, description="first", timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_SANDBOX
                ),
            )
        )
        .ok()
        .project
    )
    assert PUBLIC_ID.fullmatch(created.id), created.id
    assert (created.name, created.description, created.timezone, created.environment) == (
        name,
        "first",
        "Europe/Paris",
        project_pb2.ENVIRONMENT_SANDBOX,
    )
    assert created.created_at.seconds > 0
    assert created.updated_at.seconds > 0

    fetched = (await t.call(GET_PROJECT, project_pb2.GetProjectRequest(id=created.id))).ok().project
    assert fetched == created

    # name and timezone are empty in the request but not in the mask: they must stay as they were.
    updated = (
        (
            await t.call(
                UPDATE_PROJECT,
                project_pb2.UpdateProjectRequest(
                    id=created.id, description="second", update_mask=FieldMask(paths=["description"])
                ),
            )
        )
        .ok()
        .project
    )
    assert updated.description == "second"
    assert (updated.id, updated.name, updated.timezone, updated.environment) == (
        created.id,
        name,
        "Europe/Paris",
        project_pb2.ENVIRONMENT_SANDBOX,
    )
    assert updated.created_at == created.created_at
    assert updated.updated_at.ToDatetime() > created.updated_at.ToDatetime()
    assert (await t.call(GET_PROJECT, project_pb2.GetProjectRequest(id=created.id))).ok().project == updated

    listed = (
        await t.call(
            QUERY_PROJECTS,
            project_pb2.QueryProjectsRequest(
                query=common_pb2.QueryRequest(
                    keyword=name.upper(),
                    filters={
                        "environment": common_pb2.StringList(values=["sandbox"]),
                        "timezone": common_pb2.StringList(values=["europe/paris"]),
                    },
                )
            ),
        )
    ).ok()
    assert list(listed.data) == [updated]
    assert (listed.meta.row_count, listed.meta.page_count, listed.meta.page) == (1, 1, 1)
    assert set(listed.meta.filters) == {"environment", "timezone"}

    (await t.call(DELETE_PROJECT, project_pb2.DeleteProjectRequest(id=created.id))).ok()
    gone = (await t.call(GET_PROJECT, project_pb2.GetProjectRequest(id=created.id))).failed()
    assert (gone.code, gone.reason) == ("not_found", "PROJECT_NOT_FOUND")
    again = (await t.call(DELETE_PROJECT, project_pb2.DeleteProjectRequest(id=created.id))).failed()
    assert (again.code, again.reason) == ("not_found", "PROJECT_NOT_FOUND")
    after = (
        await t.call(QUERY_PROJECTS, project_pb2.QueryProjectsRequest(query=common_pb2.QueryRequest(keyword=name)))
    ).ok()
    assert list(after.data) == []
    assert after.meta.row_count == 0


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_an_employee_can_be_created_read_updated_listed_and_deleted(
    transport_name: str, transports: dict[str, Transport]
) -> None:
    t = transports[transport_name]
    project = await new_project(t, "Staff")
    email = f"ada.{next(_serial)}@example.com"

    created = await new_employee(t, project.id, email=email)
    assert PUBLIC_ID.fullmatch(created.id), created.id
    assert created.project_id == project.id
    assert (created.name, created.email, created.role, created.department, created.status) == (
        "Ada Lovelace",
        email,
        "Engineer",
        "Analytical Engines",
        employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    )

    fetched = (
        (await t.call(GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=project.id, id=created.id)))
        .ok()
        .employee
    )
    assert fetched == created

    # Only the department is in the mask; every other field is empty in the request and must not be touched.
    updated = (
        (
            await t.call(
                UPDATE_EMPLOYEE,
                employee_pb2.UpdateEmployeeRequest(
                    project_id=project.id,
                    id=created.id,
                    department="Research",
                    update_mask=FieldMask(paths=["department"]),
                ),
            )
        )
        .ok()
        .employee
    )
    expected = employee_pb2.Employee()
    expected.CopyFrom(created)
    expected.department = "Research"
    expected.updated_at.CopyFrom(updated.updated_at)
    assert updated == expected
    assert updated.updated_at.ToDatetime() > created.updated_at.ToDatetime()

    listed = (
        await t.call(
            QUERY_EMPLOYEES,
            employee_pb2.QueryEmployeesRequest(
                project_id=project.id,
                query=common_pb2.QueryRequest(
                    filters={"status": common_pb2.StringList(values=["active"])},
                    sorting=common_pb2.Sorting(field="name", order=common_pb2.SORT_ORDER_DESC),
                ),
            ),
        )
    ).ok()
    assert list(listed.data) == [updated]
    assert listed.meta.row_count == 1
    assert list(listed.meta.filters["department"].values) == ["Research"]

    (await t.call(DELETE_EMPLOYEE, employee_pb2.DeleteEmployeeRequest(project_id=project.id, id=created.id))).ok()
    gone = (await t.call(GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=project.id, id=created.id))).failed()
    assert (gone.code, gone.reason) == ("not_found", "EMPLOYEE_NOT_FOUND")


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_keyword_percent_and_underscore_match_only_themselves(
    transport_name: str, transports: dict[str, Transport]
) -> None:
    t = transports[transport_name]
    project = await new_project(t, "Keywords")
    percent = await new_employee(t, project.id, email="p@kw.test", role="Growth 100% lead")
    plain = await new_employee(t, project.id, email="q@kw.test", role="Growth 100 lead")
    underscore = await new_employee(t, project.id, email="r@kw.test", role="growth_lead")

    async def ids_for(keyword: str) -> set[str]:
        outcome = await t.call(
            QUERY_EMPLOYEES,
            employee_pb2.QueryEmployeesRequest(project_id=project.id, query=common_pb2.QueryRequest(keyword=keyword)),
        )
        return {e.id for e in outcome.ok().data}

    assert await ids_for("%") == {percent.id}
    assert await ids_for("_") == {underscore.id}
    assert await ids_for("GROWTH") == {percent.id, plain.id, underscore.id}


async def test_reading_the_same_project_gives_the_same_message_on_every_transport(
    transports: dict[str, Transport], world: World
) -> None:
    answers = {
        name: (await t.call(GET_PROJECT, project_pb2.GetProjectRequest(id=world.project_a.id))).ok().project
        for name, t in transports.items()
    }
    assert all(answer == world.project_a for answer in answers.values()), answers


# --- the same error, with the same details, on every transport -----------------------------------


@dataclass(frozen=True, slots=True)
class ErrorCase:
    rpc: Rpc[Any, Any]
    request: Callable[[World], Message]
    code: str
    reason: str
    fields: tuple[str, ...]
    mentions: tuple[str, ...] = ()  # words the violation descriptions must contain


UNKNOWN_ID = "zzzzzzzzzzzzzz"
P = project_pb2
E = employee_pb2
Q = common_pb2
ACTIVE = E.EMPLOYEE_STATUS_ACTIVE

ERROR_CASES: dict[str, ErrorCase] = {
    "create project with an empty name": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(name="", timezone="UTC", environment=P.ENVIRONMENT_LIVE),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("name",),
    ),
    "create project whose name differs from an existing one only in case": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(name="PARITY alpha", timezone="UTC", environment=P.ENVIRONMENT_LIVE),
        "already_exists",
        "PROJECT_NAME_TAKEN",
        (),
    ),
    "create project in a time zone that does not exist": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(name="Mars base", timezone="Mars/Olympus", environment=P.ENVIRONMENT_LIVE),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("timezone",),
    ),
    "create project with every field wrong": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(name="-bad", description="x" * 201, environment=7),  # type: ignore[arg-type]
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("name", "description", "timezone", "environment"),
    ),
    "get project with a malformed id (too short and bad characters: one violation per rule)": ErrorCase(
        GET_PROJECT,
        lambda w: P.GetProjectRequest(id="not-an-id"),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("id", "id"),
        mentions=("14",),
    ),
    "get project with an id of the right length made of look-alike characters": ErrorCase(
        GET_PROJECT,
        lambda w: P.GetProjectRequest(id="l0O1il0O1il0O1"),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("id",),
    ),
    "get project with an unknown id": ErrorCase(
        GET_PROJECT,
        lambda w: P.GetProjectRequest(id=UNKNOWN_ID),
        "not_found",
        "PROJECT_NOT_FOUND",
        (),
    ),
    "update project with the immutable environment in the mask": ErrorCase(
        UPDATE_PROJECT,
        lambda w: P.UpdateProjectRequest(id=w.project_a.id, update_mask=FieldMask(paths=["environment"])),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("update_mask",),
    ),
    "update project with a bad value for a masked field": ErrorCase(
        UPDATE_PROJECT,
        lambda w: P.UpdateProjectRequest(id=w.project_a.id, name="", update_mask=FieldMask(paths=["name"])),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("name",),
    ),
    "read an employee of project A through project B": ErrorCase(
        GET_EMPLOYEE,
        lambda w: E.GetEmployeeRequest(project_id=w.project_b.id, id=w.employee_a.id),
        "not_found",
        "EMPLOYEE_NOT_FOUND",
        (),
    ),
    "update an employee of project A through project B": ErrorCase(
        UPDATE_EMPLOYEE,
        lambda w: E.UpdateEmployeeRequest(
            project_id=w.project_b.id, id=w.employee_a.id, role="Thief", update_mask=FieldMask(paths=["role"])
        ),
        "not_found",
        "EMPLOYEE_NOT_FOUND",
        (),
    ),
    "delete an employee of project A through project B": ErrorCase(
        DELETE_EMPLOYEE,
        lambda w: E.DeleteEmployeeRequest(project_id=w.project_b.id, id=w.employee_a.id),
        "not_found",
        "EMPLOYEE_NOT_FOUND",
        (),
    ),
    "create an employee with an email taken in that project, in other case": ErrorCase(
        CREATE_EMPLOYEE,
        lambda w: E.CreateEmployeeRequest(
            project_id=w.project_a.id,
            name="Grace Twin",
            email="GRACE@parity.test",
            role="Admiral",
            department="Navy",
            status=ACTIVE,
        ),
        "already_exists",
        "EMPLOYEE_EMAIL_TAKEN",
        (),
    ),
    "create an employee in a project that does not exist": ErrorCase(
        CREATE_EMPLOYEE,
        lambda w: E.CreateEmployeeRequest(
            project_id=UNKNOWN_ID, name="Nobody", email="n@x.test", role="r", department="d", status=ACTIVE
        ),
        "not_found",
        "PROJECT_NOT_FOUND",
        (),
    ),
    "create an employee with nothing filled in": ErrorCase(
        CREATE_EMPLOYEE,
        lambda w: E.CreateEmployeeRequest(),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("project_id", "name", "email", "role", "department", "status"),
    ),
    "update an employee with an unknown path in the mask": ErrorCase(
        UPDATE_EMPLOYEE,
        lambda w: E.UpdateEmployeeRequest(
            project_id=w.project_a.id, id=w.employee_a.id, update_mask=FieldMask(paths=["salary"])
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("update_mask",),
    ),
    "update an employee with no mask at all": ErrorCase(
        UPDATE_EMPLOYEE,
        lambda w: E.UpdateEmployeeRequest(project_id=w.project_a.id, id=w.employee_a.id, department="Air Force"),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("update_mask",),
    ),
    "update an employee's department to empty (only the masked field is reported)": ErrorCase(
        UPDATE_EMPLOYEE,
        lambda w: E.UpdateEmployeeRequest(
            project_id=w.project_a.id, id=w.employee_a.id, update_mask=FieldMask(paths=["department"])
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("department",),
    ),
    "query employees sorted by an unknown field": ErrorCase(
        QUERY_EMPLOYEES,
        lambda w: E.QueryEmployeesRequest(
            project_id=w.project_a.id, query=Q.QueryRequest(sorting=Q.Sorting(field="salary"))
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("query.sorting.field",),
        mentions=("salary", "created_at", "department", "email", "name", "role", "status", "updated_at"),
    ),
    "query employees with an unknown filter key": ErrorCase(
        QUERY_EMPLOYEES,
        lambda w: E.QueryEmployeesRequest(
            project_id=w.project_a.id,
            query=Q.QueryRequest(filters={"salary": Q.StringList(values=["1"])}),
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ('query.filters["salary"]',),
        mentions=("salary", "department", "role", "status"),
    ),
    "query employees with a status value that does not exist": ErrorCase(
        QUERY_EMPLOYEES,
        lambda w: E.QueryEmployeesRequest(
            project_id=w.project_a.id,
            query=Q.QueryRequest(filters={"status": Q.StringList(values=["retired"])}),
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ('query.filters["status"]',),
        mentions=("retired", "active", "inactive"),
    ),
    "query projects with a page size over the limit": ErrorCase(
        QUERY_PROJECTS,
        lambda w: P.QueryProjectsRequest(query=Q.QueryRequest(pagination=Q.Pagination(page_size=101))),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("query.pagination.page_size",),
    ),
}


@pytest.mark.parametrize("case_name", list(ERROR_CASES))
async def test_the_same_bad_request_fails_the_same_way_on_every_transport(
    case_name: str, transports: dict[str, Transport], world: World
) -> None:
    case = ERROR_CASES[case_name]
    request = case.request(world)
    outcomes: list[Outcome[Any]] = [await t.call(case.rpc, request) for t in transports.values()]

    for outcome in outcomes:
        failure = outcome.failed()
        assert failure.shape == (case.code, case.reason, case.fields), (outcome.transport, failure)
        assert failure.domain == "altalune.v1", (outcome.transport, failure)
        assert failure.detail_types[0] == "google.rpc.ErrorInfo", (outcome.transport, failure.detail_types)
        assert ("google.rpc.BadRequest" in failure.detail_types) == bool(case.fields)
        assert all(v.description and v.rule for v in failure.violations), (outcome.transport, failure.violations)
        described = " ".join(v.description for v in failure.violations)
        for word in case.mentions:
            assert word in described, (outcome.transport, word, described)
        assert outcome.request_id, outcome.transport
    # Not only the shape: message, metadata and violation texts are the same everywhere.
    first = outcomes[0].failed()
    for outcome in outcomes[1:]:
        failure = outcome.failed()
        assert (failure.message, dict(failure.metadata), failure.violations) == (
            first.message,
            dict(first.metadata),
            first.violations,
        ), outcome.transport


async def test_a_rejected_update_changes_nothing(transports: dict[str, Transport], world: World) -> None:
    for t in transports.values():
        before = (
            await t.call(GET_EMPLOYEE, E.GetEmployeeRequest(project_id=world.project_a.id, id=world.employee_a.id))
        ).ok()
        failure = (
            await t.call(
                UPDATE_EMPLOYEE,
                E.UpdateEmployeeRequest(
                    project_id=world.project_b.id,
                    id=world.employee_a.id,
                    role="Thief",
                    update_mask=FieldMask(paths=["role"]),
                ),
            )
        ).failed()
        assert failure.code == "not_found", t.name
        after = (
            await t.call(GET_EMPLOYEE, E.GetEmployeeRequest(project_id=world.project_a.id, id=world.employee_a.id))
        ).ok()
        assert after == before, t.name
        assert after.employee.role == "Admiral", t.name


# --- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_every_answer_carries_a_request_id_and_a_valid_client_id_is_echoed(
    transport_name: str, transports: dict[str, Transport], world: World
) -> None:
    t = transports[transport_name]
    good = P.GetProjectRequest(id=world.project_a.id)
    bad = P.GetProjectRequest(id="nope")

    first, second = await t.call(GET_PROJECT, good), await t.call(GET_PROJECT, good)
    first.ok()
    for outcome in (first, second):
        assert outcome.request_id is not None, outcome.headers
        assert REQUEST_ID_SHAPE.fullmatch(outcome.request_id), outcome.request_id
    assert first.request_id != second.request_id

    failed = await t.call(GET_PROJECT, bad)
    failed.failed()
    assert failed.request_id is not None, failed.headers
    assert REQUEST_ID_SHAPE.fullmatch(failed.request_id)
    assert failed.request_id not in (first.request_id, second.request_id)

    mine = {"x-request-id": f"e2e-{transport_name}-{next(_serial)}"}
    echoed_ok = await t.call(GET_PROJECT, good, headers=mine)
    echoed_ok.ok()
    assert echoed_ok.request_id == mine["x-request-id"]
    echoed_error = await t.call(GET_PROJECT, bad, headers=mine)
    echoed_error.failed()
    assert echoed_error.request_id == mine["x-request-id"]

    # An id that could forge log lines is replaced, not echoed.
    forged = await t.call(GET_PROJECT, good, headers={"x-request-id": "forged id; level=error " + "x" * 80})
    forged.ok()
    assert forged.request_id is not None
    assert REQUEST_ID_SHAPE.fullmatch(forged.request_id), forged.request_id
