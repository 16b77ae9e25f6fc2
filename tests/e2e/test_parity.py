"""Same request, same answer: every RPC behaves identically over gRPC, Connect (JSON and binary)
and hand-written HTTP JSON, against one real server on real sockets."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from altalune.v1 import api_key_pb2, common_pb2, employee_pb2, iam_pb2, permission_pb2, project_pb2, role_pb2, user_pb2
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
    bearer,
    open_transport,
)

pytestmark = pytest.mark.e2e

_serial = itertools.count(1)
REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# The request_id the world's employee was created with: reusing it for another request is refused.
WORLD_REQUEST_ID = "0b4f5a52-8f5e-4a0e-9d0c-6a1e2b3c4d5e"


def unique(prefix: str) -> str:
    return f"{prefix} {next(_serial)}"


def unique_email(local: str) -> str:
    return f"{local}.{next(_serial)}@parity.test"


def from_now(days: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    return stamp


# The RPCs of users, roles, permissions, IAM and API keys (response types read from the contract).
CREATE_USER = Rpc.of("UserService", "CreateUser")
GET_USER = Rpc.of("UserService", "GetUser")
UPDATE_USER = Rpc.of("UserService", "UpdateUser")
QUERY_USERS = Rpc.of("UserService", "QueryUsers")
CREATE_ROLE = Rpc.of("RoleService", "CreateRole")
DELETE_ROLE = Rpc.of("RoleService", "DeleteRole")
QUERY_ROLES = Rpc.of("RoleService", "QueryRoles")
GET_PERMISSION = Rpc.of("PermissionService", "GetPermission")
ASSIGN_USER_ROLES = Rpc.of("IamService", "AssignUserRoles")
LIST_USER_ROLES = Rpc.of("IamService", "ListUserRoles")
ADD_PROJECT_MEMBERS = Rpc.of("IamService", "AddProjectMembers")
UPDATE_PROJECT_MEMBER = Rpc.of("IamService", "UpdateProjectMember")
REMOVE_PROJECT_MEMBERS = Rpc.of("IamService", "RemoveProjectMembers")
LIST_PROJECT_MEMBERS = Rpc.of("IamService", "ListProjectMembers")
CREATE_API_KEY = Rpc.of("ApiKeyService", "CreateApiKey")
GET_API_KEY = Rpc.of("ApiKeyService", "GetApiKey")
UPDATE_API_KEY = Rpc.of("ApiKeyService", "UpdateApiKey")
QUERY_API_KEYS = Rpc.of("ApiKeyService", "QueryApiKeys")


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
    """Data the error table refers to.

    Two projects and an employee of the first; the bootstrap administrator (owner of every project
    here, as their creator) and the built-in `viewer` role; a `team` project where `member` holds the
    member role while `outsider` and `newcomer` belong nowhere; an API key of project A.
    """

    project_a: project_pb2.Project
    project_b: project_pb2.Project
    employee_a: employee_pb2.Employee
    admin_id: str
    viewer_role: role_pb2.Role
    team: project_pb2.Project
    member: user_pb2.User
    outsider: user_pb2.User
    newcomer: user_pb2.User
    api_key: api_key_pb2.ApiKey


async def new_user(t: Transport, email: str, first_name: str = "Parity") -> user_pb2.User:
    outcome = await t.call(CREATE_USER, user_pb2.CreateUserRequest(email=email, first_name=first_name))
    user: user_pb2.User = outcome.ok().user
    return user


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
            request_id=WORLD_REQUEST_ID,
        ),
    )

    admins = (
        await t.call(
            QUERY_USERS, user_pb2.QueryUsersRequest(query=common_pb2.QueryRequest(keyword="owner@example.com"))
        )
    ).ok()
    assert [u.email for u in admins.data] == ["owner@example.com"], admins
    roles = (
        await t.call(
            QUERY_ROLES,
            role_pb2.QueryRolesRequest(
                query=common_pb2.QueryRequest(
                    keyword="viewer", filters={"builtin": common_pb2.StringList(values=["true"])}
                )
            ),
        )
    ).ok()
    viewers = [r for r in roles.data if r.name == "viewer"]
    assert [r.builtin for r in viewers] == [True], roles

    team = await new_project(t, "Parity Team")
    member = await new_user(t, "member@parity.test", "Member")
    outsider = await new_user(t, "outsider@parity.test", "Outsider")
    newcomer = await new_user(t, "newcomer@parity.test", "Newcomer")
    added = await t.call(
        ADD_PROJECT_MEMBERS,
        iam_pb2.AddProjectMembersRequest(
            project_id=team.id,
            members=[iam_pb2.NewProjectMember(user_id=member.id, role=iam_pb2.PROJECT_ROLE_MEMBER)],
        ),
    )
    added.ok()
    key = await t.call(
        CREATE_API_KEY,
        api_key_pb2.CreateApiKeyRequest(
            project_id=project_a.id, name="Parity key", scopes=["employee:read"], expires_at=from_now(30)
        ),
    )
    return World(
        project_a,
        project_b,
        employee.ok().employee,
        admin_id=admins.data[0].id,
        viewer_role=viewers[0],
        team=team,
        member=member,
        outsider=outsider,
        newcomer=newcomer,
        api_key=key.ok().api_key,
    )


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
    expected.etag = updated.etag
    assert updated == expected
    assert updated.etag != created.etag
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


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_a_created_user_reads_back_as_the_same_message_on_every_transport(
    transport_name: str, transports: dict[str, Transport]
) -> None:
    t = transports[transport_name]
    email = unique_email(f"user.{transport_name}")
    created = (
        (await t.call(CREATE_USER, U.CreateUserRequest(email=email, first_name="Katherine", last_name="Johnson")))
        .ok()
        .user
    )
    assert PUBLIC_ID.fullmatch(created.id), created.id
    assert (created.email, created.first_name, created.last_name, created.active) == (
        email,
        "Katherine",
        "Johnson",
        True,
    )
    assert created.created_at.seconds > 0
    assert created.updated_at.seconds > 0

    fetched = (await t.call(GET_USER, U.GetUserRequest(id=created.id))).ok().user
    assert fetched == created
    elsewhere = {
        name: (await other.call(GET_USER, U.GetUserRequest(id=created.id))).ok().user
        for name, other in transports.items()
    }
    assert all(user == created for user in elsewhere.values()), elsewhere


def carries_no_secret(message: Message, secret: str) -> bool:
    """Neither the whole key nor its secret part appears anywhere in the message, in any encoding."""
    secret_part = secret.rsplit("_", 1)[-1]
    encodings = (
        message.SerializeToString(),
        json_format.MessageToJson(message).encode(),
        str(message).encode(),
    )
    return all(secret.encode() not in raw and secret_part.encode() not in raw for raw in encodings)


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_an_api_key_secret_is_a_bearer_credential_on_the_transport_that_created_it(
    transport_name: str, transports: dict[str, Transport], world: World
) -> None:
    t = transports[transport_name]
    project = world.project_a
    created = (
        await t.call(
            CREATE_API_KEY,
            K.CreateApiKeyRequest(
                project_id=project.id,
                name=unique(f"Bearer {transport_name}"),
                scopes=["project:read"],
                expires_at=from_now(30),
            ),
        )
    ).ok()
    key, secret = created.api_key, created.secret
    assert PUBLIC_ID.fullmatch(key.id), key.id
    assert (key.project_id, list(key.scopes), key.active) == (project.id, ["project:read"], True)
    assert secret.startswith(f"ak_{project.id}_{key.id}_"), secret
    assert len(secret.rsplit("_", 1)[-1]) >= 32, secret
    assert key.prefix == secret[: len(key.prefix)], (key.prefix, secret)
    assert carries_no_secret(key, secret)

    # The key, sent instead of the administrator's token, reads its own project...
    through_key = await t.call(GET_PROJECT, P.GetProjectRequest(id=project.id), headers=bearer(secret))
    assert through_key.ok().project == project
    # ...but a key whose secret part was altered is not a credential.
    forged = secret[:-1] + ("2" if secret[-1] != "2" else "3")
    refused = (await t.call(GET_PROJECT, P.GetProjectRequest(id=project.id), headers=bearer(forged))).failed()
    assert refused.code == "unauthenticated", refused

    # No read of the keys ever shows a secret again.
    fetched = (await t.call(GET_API_KEY, K.GetApiKeyRequest(project_id=project.id, id=key.id))).ok()
    assert carries_no_secret(fetched, secret)
    listed = (await t.call(QUERY_API_KEYS, K.QueryApiKeysRequest(project_id=project.id))).ok()
    assert key.id in {k.id for k in listed.data}, listed
    assert carries_no_secret(listed, secret)


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
U = user_pb2
R = role_pb2
I = iam_pb2  # noqa: E741
K = api_key_pb2
ACTIVE = E.EMPLOYEE_STATUS_ACTIVE
THREE_YEARS = 3 * 366

ERROR_CASES: dict[str, ErrorCase] = {
    "create project with an empty name": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(name="", timezone="UTC", environment=P.ENVIRONMENT_LIVE),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("name",),
    ),
    "create project with a NUL character in the description": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(
            name="Nul", description="a\x00b", timezone="UTC", environment=P.ENVIRONMENT_LIVE
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("description",),
        mentions=("NUL",),
    ),
    "query employees with a NUL character in the keyword": ErrorCase(
        QUERY_EMPLOYEES,
        lambda w: E.QueryEmployeesRequest(project_id=w.project_a.id, query=Q.QueryRequest(keyword="ann\x00")),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("query.keyword",),
        mentions=("NUL",),
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
    "create project with an empty name and a time zone that does not exist: both at once": ErrorCase(
        CREATE_PROJECT,
        lambda w: P.CreateProjectRequest(name="", timezone="Mars/Base", environment=P.ENVIRONMENT_LIVE),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("name", "timezone"),
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
    # --- users, roles, permissions, IAM, API keys ----------------------------------------------
    # Requests are built once per transport: a row that would write if the server wrongly accepted
    # it uses a fresh email/name each time, so no row depends on what another transport did first.
    "create user with an invalid email": ErrorCase(
        CREATE_USER,
        lambda w: U.CreateUserRequest(email=f"not-an-email-{next(_serial)}", first_name="Nobody"),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("email",),
    ),
    "create user whose email differs from an existing one only in case": ErrorCase(
        CREATE_USER,
        lambda w: U.CreateUserRequest(email="MEMBER@Parity.Test", first_name="Member Twin"),
        "already_exists",
        "USER_EMAIL_TAKEN",
        (),
    ),
    "update user with an empty update mask": ErrorCase(
        UPDATE_USER,
        lambda w: U.UpdateUserRequest(id=w.member.id, first_name="Renamed", update_mask=FieldMask(paths=[])),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("update_mask",),
        mentions=("email", "first_name", "last_name"),
    ),
    "get user with an unknown id": ErrorCase(
        GET_USER,
        lambda w: U.GetUserRequest(id=UNKNOWN_ID),
        "not_found",
        "USER_NOT_FOUND",
        (),
    ),
    "create role whose name breaks the pattern": ErrorCase(
        CREATE_ROLE,
        lambda w: R.CreateRoleRequest(name=f"Bad Role {next(_serial)}"),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("name",),
    ),
    "delete the built-in viewer role": ErrorCase(
        DELETE_ROLE,
        lambda w: R.DeleteRoleRequest(id=w.viewer_role.id),
        "failed_precondition",
        "ROLE_BUILTIN",
        (),
    ),
    "assign a user one known and one unknown role": ErrorCase(
        ASSIGN_USER_ROLES,
        lambda w: I.AssignUserRolesRequest(user_id=w.member.id, role_ids=[w.viewer_role.id, UNKNOWN_ID]),
        "not_found",
        "ROLE_NOT_FOUND",
        (),
    ),
    "assign a user the same role twice": ErrorCase(
        ASSIGN_USER_ROLES,
        lambda w: I.AssignUserRolesRequest(user_id=w.member.id, role_ids=[w.viewer_role.id, w.viewer_role.id]),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("role_ids",),
    ),
    "get permission with an unknown id": ErrorCase(
        GET_PERMISSION,
        lambda w: permission_pb2.GetPermissionRequest(id=UNKNOWN_ID),
        "not_found",
        "PERMISSION_NOT_FOUND",
        (),
    ),
    "add the same user to a project twice in one call": ErrorCase(
        ADD_PROJECT_MEMBERS,
        lambda w: I.AddProjectMembersRequest(
            project_id=w.team.id,
            members=[
                I.NewProjectMember(user_id=w.outsider.id, role=I.PROJECT_ROLE_MEMBER),
                I.NewProjectMember(user_id=w.outsider.id, role=I.PROJECT_ROLE_VIEWER),
            ],
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("members",),
    ),
    "add a newcomer together with a user who is already a member (nothing is written)": ErrorCase(
        ADD_PROJECT_MEMBERS,
        lambda w: I.AddProjectMembersRequest(
            project_id=w.team.id,
            members=[
                I.NewProjectMember(user_id=w.newcomer.id, role=I.PROJECT_ROLE_VIEWER),
                I.NewProjectMember(user_id=w.member.id, role=I.PROJECT_ROLE_VIEWER),
            ],
        ),
        "already_exists",
        "MEMBER_EXISTS",
        (),
    ),
    "remove the only owner of a project": ErrorCase(
        REMOVE_PROJECT_MEMBERS,
        lambda w: I.RemoveProjectMembersRequest(project_id=w.team.id, user_ids=[w.admin_id]),
        "failed_precondition",
        "LAST_OWNER",
        (),
    ),
    "change the role of a user who is not a member": ErrorCase(
        UPDATE_PROJECT_MEMBER,
        lambda w: I.UpdateProjectMemberRequest(project_id=w.team.id, user_id=w.outsider.id, role=I.PROJECT_ROLE_VIEWER),
        "not_found",
        "MEMBER_NOT_FOUND",
        (),
    ),
    "create an API key expiring in three years": ErrorCase(
        CREATE_API_KEY,
        lambda w: K.CreateApiKeyRequest(
            project_id=w.project_a.id,
            name=unique("Far key"),
            scopes=["employee:read"],
            expires_at=from_now(THREE_YEARS),
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("expires_at",),
    ),
    "create an API key with a global permission as scope": ErrorCase(
        CREATE_API_KEY,
        lambda w: K.CreateApiKeyRequest(
            project_id=w.project_a.id, name=unique("Global key"), scopes=["user:read"], expires_at=from_now(30)
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("scopes[0]",),
        mentions=("user:read",),
    ),
    "create an API key with no scopes": ErrorCase(
        CREATE_API_KEY,
        lambda w: K.CreateApiKeyRequest(project_id=w.project_a.id, name=unique("Empty key"), expires_at=from_now(30)),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("scopes",),
    ),
    "create employee reusing a request_id of another request": ErrorCase(
        CREATE_EMPLOYEE,
        lambda w: E.CreateEmployeeRequest(
            project_id=w.project_a.id,
            name="Grace Hopper",
            email="another.grace@parity.test",
            role="Admiral",
            department="Navy",
            status=ACTIVE,
            request_id=WORLD_REQUEST_ID,
        ),
        "invalid_argument",
        "REQUEST_ID_REUSED",
        (),
    ),
    "update employee with a stale etag": ErrorCase(
        UPDATE_EMPLOYEE,
        lambda w: E.UpdateEmployeeRequest(
            project_id=w.project_a.id,
            id=w.employee_a.id,
            role="Rear Admiral",
            etag="999999",
            update_mask=FieldMask(paths=["role"]),
        ),
        "aborted",
        "ETAG_MISMATCH",
        (),
    ),
    "get an API key with an unknown id": ErrorCase(
        GET_API_KEY,
        lambda w: K.GetApiKeyRequest(project_id=w.project_a.id, id=UNKNOWN_ID),
        "not_found",
        "API_KEY_NOT_FOUND",
        (),
    ),
    "update an API key with an unknown path in the mask": ErrorCase(
        UPDATE_API_KEY,
        lambda w: K.UpdateApiKeyRequest(
            project_id=w.project_a.id,
            id=w.api_key.id,
            name=unique("Renamed key"),
            update_mask=FieldMask(paths=["secret"]),
        ),
        "invalid_argument",
        "INVALID_ARGUMENT",
        ("update_mask",),
        mentions=("name", "scopes", "expires_at"),
    ),
}


@pytest.mark.parametrize("case_name", list(ERROR_CASES))
async def test_the_same_bad_request_fails_the_same_way_on_every_transport(
    case_name: str, transports: dict[str, Transport], world: World
) -> None:
    case = ERROR_CASES[case_name]
    outcomes: list[Outcome[Any]] = [await t.call(case.rpc, case.request(world)) for t in transports.values()]

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


async def test_a_rejected_batch_writes_nothing(transports: dict[str, Transport], world: World) -> None:
    for t in transports.values():
        fresh = await new_user(t, unique_email(f"batch.{t.name}"))

        failure = (
            await t.call(
                ASSIGN_USER_ROLES,
                I.AssignUserRolesRequest(user_id=fresh.id, role_ids=[world.viewer_role.id, UNKNOWN_ID]),
            )
        ).failed()
        assert (failure.code, failure.reason, dict(failure.metadata)) == (
            "not_found",
            "ROLE_NOT_FOUND",
            {"role_ids": UNKNOWN_ID},
        ), t.name
        roles = (await t.call(LIST_USER_ROLES, I.ListUserRolesRequest(user_id=fresh.id))).ok()
        assert list(roles.roles) == [], (t.name, roles)

        failure = (
            await t.call(
                ADD_PROJECT_MEMBERS,
                I.AddProjectMembersRequest(
                    project_id=world.team.id,
                    members=[
                        I.NewProjectMember(user_id=fresh.id, role=I.PROJECT_ROLE_VIEWER),
                        I.NewProjectMember(user_id=world.member.id, role=I.PROJECT_ROLE_VIEWER),
                    ],
                ),
            )
        ).failed()
        assert (failure.code, failure.reason, failure.metadata.get("user_ids")) == (
            "already_exists",
            "MEMBER_EXISTS",
            world.member.id,
        ), t.name
        members = (await t.call(LIST_PROJECT_MEMBERS, I.ListProjectMembersRequest(project_id=world.team.id))).ok()
        assert {(m.user_id, m.role) for m in members.members} == {
            (world.admin_id, I.PROJECT_ROLE_OWNER),
            (world.member.id, I.PROJECT_ROLE_MEMBER),
        }, (t.name, members)


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
