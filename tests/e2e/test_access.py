"""Authentication and authorization as clients see them, on every transport.

The world: the bootstrap administrator owns projects A and B; in A, `viewer` and `member` users
hold those project roles; `outsider` belongs nowhere. API keys: one of A with every project
permission, one of A that may only read employees, one of B. Every check runs on all five
transports (gRPC, Connect JSON/proto, gRPC-Web, plain HTTP JSON) and must give the same answer.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from altalune.v1 import employee_pb2, iam_pb2, project_pb2
from internal.server.app import AltaluneServer
from tests.e2e.clients import TRANSPORTS, Rpc, RpcFailure, Transport, bearer, open_transport

pytestmark = pytest.mark.e2e

UNKNOWN_PROJECT = "zzzzzzzzzzzzzz"
PROJECT_PERMISSIONS = [
    "project:read",
    "project:write",
    "project:delete",
    "employee:read",
    "employee:write",
    "employee:delete",
    "apikey:read",
    "apikey:write",
    "apikey:delete",
    "member:read",
    "member:write",
]
_serial = itertools.count(1)


def call(service: str, method: str) -> Rpc[Any, Any]:
    return Rpc.of(service, method)


def expiry(days: int = 30) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    return stamp


@dataclass
class World:
    admin: str
    project_a: str
    project_b: str
    employee_b: str
    key_b_id: str
    users: dict[str, str]  # name -> public id
    tokens: dict[str, str]  # name -> bearer token (JWTs and API keys)


async def ok(t: Transport, rpc: Rpc[Any, Any], token: str, **fields: Any) -> Any:
    return (await t.call(rpc, rpc.request(**fields), headers=bearer(token))).ok()


@pytest_asyncio.fixture(scope="module")
async def transports(server: AltaluneServer) -> AsyncIterator[dict[str, Transport]]:
    """Transports that send no credential unless the call adds one."""
    opened = {name: open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port) for name in TRANSPORTS}
    try:
        yield opened
    finally:
        for transport in opened.values():
            await transport.close()


@pytest_asyncio.fixture(scope="module")
async def world(server: AltaluneServer, admin_token: str, transports: dict[str, Transport]) -> World:
    t = transports["grpc"]
    issuer = server.container.issuer
    assert issuer is not None
    env = project_pb2.ENVIRONMENT_LIVE
    create_project = call("ProjectService", "CreateProject")
    a = (await ok(t, create_project, admin_token, name="Access A", timezone="UTC", environment=env)).project.id
    b = (await ok(t, create_project, admin_token, name="Access B", timezone="UTC", environment=env)).project.id
    employee_b = (
        await ok(
            t,
            call("EmployeeService", "CreateEmployee"),
            admin_token,
            project_id=b,
            name="Bea",
            email="bea@b.test",
            role="Engineer",
            department="R&D",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        )
    ).employee.id
    users: dict[str, str] = {}
    tokens: dict[str, str] = {"admin": admin_token}
    for name in ("viewer", "member", "outsider"):
        user = (
            await ok(t, call("UserService", "CreateUser"), admin_token, email=f"{name}@access.test", first_name=name)
        ).user
        users[name] = user.id
        tokens[name] = issuer.mint(user_public_id=user.id, email=user.email, ttl_s=3600)
    await ok(
        t,
        call("IamService", "AddProjectMembers"),
        admin_token,
        project_id=a,
        members=[
            iam_pb2.NewProjectMember(user_id=users["viewer"], role=iam_pb2.PROJECT_ROLE_VIEWER),
            iam_pb2.NewProjectMember(user_id=users["member"], role=iam_pb2.PROJECT_ROLE_MEMBER),
        ],
    )
    create_key = call("ApiKeyService", "CreateApiKey")
    full = await ok(
        t, create_key, admin_token, project_id=a, name="full", scopes=PROJECT_PERMISSIONS, expires_at=expiry()
    )
    read = await ok(
        t, create_key, admin_token, project_id=a, name="read", scopes=["employee:read"], expires_at=expiry()
    )
    key_b = await ok(t, create_key, admin_token, project_id=b, name="b", scopes=["project:read"], expires_at=expiry())
    tokens.update(key_a=full.secret, key_a_read=read.secret, key_b=key_b.secret)
    return World(
        admin=admin_token,
        project_a=a,
        project_b=b,
        employee_b=employee_b,
        key_b_id=key_b.api_key.id,
        users=users,
        tokens=tokens,
    )


def project_scoped_requests(project: str, world: World) -> list[tuple[Rpc[Any, Any], Message]]:
    """A request that passes validation for every project-scoped RPC, aimed at `project`."""
    mask = FieldMask(paths=["name"])
    member = iam_pb2.NewProjectMember(user_id=world.users["outsider"], role=iam_pb2.PROJECT_ROLE_VIEWER)
    table: list[tuple[str, str, dict[str, Any]]] = [
        ("ProjectService", "GetProject", {"id": project}),
        ("ProjectService", "UpdateProject", {"id": project, "name": "Renamed", "update_mask": mask}),
        ("ProjectService", "DeleteProject", {"id": project}),
        ("EmployeeService", "QueryEmployees", {"project_id": project}),
        ("EmployeeService", "GetEmployee", {"project_id": project, "id": world.employee_b}),
        (
            "EmployeeService",
            "CreateEmployee",
            {
                "project_id": project,
                "name": "Eve",
                "email": f"eve{next(_serial)}@x.test",
                "role": "Spy",
                "department": "Ops",
                "status": employee_pb2.EMPLOYEE_STATUS_ACTIVE,
            },
        ),
        (
            "EmployeeService",
            "UpdateEmployee",
            {"project_id": project, "id": world.employee_b, "name": "Eve", "update_mask": mask},
        ),
        ("EmployeeService", "DeleteEmployee", {"project_id": project, "id": world.employee_b}),
        ("ApiKeyService", "QueryApiKeys", {"project_id": project}),
        ("ApiKeyService", "GetApiKey", {"project_id": project, "id": world.key_b_id}),
        (
            "ApiKeyService",
            "CreateApiKey",
            {"project_id": project, "name": f"evil{next(_serial)}", "scopes": ["project:read"], "expires_at": expiry()},
        ),
        (
            "ApiKeyService",
            "UpdateApiKey",
            {"project_id": project, "id": world.key_b_id, "name": "evil", "update_mask": mask},
        ),
        ("ApiKeyService", "DeleteApiKey", {"project_id": project, "id": world.key_b_id}),
        ("ApiKeyService", "ActivateApiKey", {"project_id": project, "id": world.key_b_id}),
        ("ApiKeyService", "DeactivateApiKey", {"project_id": project, "id": world.key_b_id}),
        ("IamService", "ListProjectMembers", {"project_id": project}),
        ("IamService", "AddProjectMembers", {"project_id": project, "members": [member]}),
        (
            "IamService",
            "UpdateProjectMember",
            {"project_id": project, "user_id": world.users["outsider"], "role": iam_pb2.PROJECT_ROLE_OWNER},
        ),
        ("IamService", "RemoveProjectMembers", {"project_id": project, "user_ids": [world.users["outsider"]]}),
    ]
    rpcs = [(call(service, method), fields) for service, method, fields in table]
    return [(rpc, rpc.request(**fields)) for rpc, fields in rpcs]


def assert_not_found_like_a_missing_project(failure: RpcFailure, project: str) -> None:
    assert failure.shape == ("not_found", "PROJECT_NOT_FOUND", ())
    assert failure.message == f"project {project!r} not found"
    assert dict(failure.metadata) == {"project_id": project}


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_rpc_without_credentials_is_unauthenticated(
    server: AltaluneServer, transports: dict[str, Transport], transport: str
) -> None:
    t = transports[transport]
    assert len(server.container.rules) >= 40
    for path in server.container.rules:
        _, service, method = path.split("/")
        rpc = call(service.removeprefix("altalune.v1."), method)
        failure = (await t.call(rpc, rpc.request())).failed()
        assert failure.shape == ("unauthenticated", "CREDENTIALS_MISSING", ()), path


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic YWRtaW46YWRtaW4=", "CREDENTIALS_MALFORMED"),
        ("Bearer not-a-jwt", "TOKEN_INVALID"),
        ("Bearer ak_23456789abcdef_23456789abcdef_" + "2" * 40, "API_KEY_INVALID"),
        ("Bearer ak_short", "API_KEY_INVALID"),
    ],
)
async def test_bad_credentials_are_unauthenticated_and_never_echoed(
    transports: dict[str, Transport], world: World, transport: str, header: str, reason: str
) -> None:
    rpc = call("ProjectService", "GetProject")
    failure = (
        await transports[transport].call(rpc, rpc.request(id=world.project_a), headers={"authorization": header})
    ).failed()
    assert failure.shape == ("unauthenticated", reason, ())
    assert header.split(" ", 1)[1] not in failure.message


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_with_a_wrong_secret_is_refused(
    transports: dict[str, Transport], world: World, transport: str
) -> None:
    real = world.tokens["key_a"]
    forged = real[:-1] + ("2" if real[-1] != "2" else "3")
    rpc = call("ProjectService", "GetProject")
    failure = (await transports[transport].call(rpc, rpc.request(id=world.project_a), headers=bearer(forged))).failed()
    assert failure.shape == ("unauthenticated", "API_KEY_INVALID", ())


# --- tenancy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_of_project_a_sees_nothing_of_project_b_on_any_rpc(
    transports: dict[str, Transport], world: World, transport: str
) -> None:
    t = transports[transport]
    for rpc, request in project_scoped_requests(world.project_b, world):
        failure = (await t.call(rpc, request, headers=bearer(world.tokens["key_a"]))).failed()
        assert_not_found_like_a_missing_project(failure, world.project_b)
    # B is untouched: its owner still reads it and its employee.
    rpc = call("EmployeeService", "GetEmployee")
    await ok(t, rpc, world.admin, project_id=world.project_b, id=world.employee_b)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_non_member_gets_exactly_the_answer_for_a_project_that_does_not_exist(
    transports: dict[str, Transport], world: World, transport: str
) -> None:
    t = transports[transport]
    for rpc, request in project_scoped_requests(world.project_a, world):
        failure = (await t.call(rpc, request, headers=bearer(world.tokens["outsider"]))).failed()
        assert_not_found_like_a_missing_project(failure, world.project_a)
    for rpc, request in project_scoped_requests(UNKNOWN_PROJECT, world):
        failure = (await t.call(rpc, request, headers=bearer(world.admin))).failed()
        assert_not_found_like_a_missing_project(failure, UNKNOWN_PROJECT)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_api_keys_cannot_call_global_rpcs(transports: dict[str, Transport], world: World, transport: str) -> None:
    t = transports[transport]
    for service, method, fields in [
        (
            "ProjectService",
            "CreateProject",
            {"name": "Nope", "timezone": "UTC", "environment": project_pb2.ENVIRONMENT_LIVE},
        ),
        ("ProjectService", "QueryProjects", {}),
        ("UserService", "QueryUsers", {}),
        ("IamService", "ListMyProjects", {}),
    ]:
        rpc = call(service, method)
        failure = (await t.call(rpc, rpc.request(**fields), headers=bearer(world.tokens["key_a"]))).failed()
        assert failure.shape == ("permission_denied", "API_KEY_NOT_ALLOWED", ()), method


# --- project roles and scopes --------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_viewer_reads_but_cannot_write(transports: dict[str, Transport], world: World, transport: str) -> None:
    t = transports[transport]
    viewer = world.tokens["viewer"]
    await ok(t, call("ProjectService", "GetProject"), viewer, id=world.project_a)
    await ok(t, call("EmployeeService", "QueryEmployees"), viewer, project_id=world.project_a)
    await ok(t, call("IamService", "ListProjectMembers"), viewer, project_id=world.project_a)
    create = call("EmployeeService", "CreateEmployee")
    request = create.request(
        project_id=world.project_a,
        name="Vic",
        email=f"vic{next(_serial)}@a.test",
        role="Engineer",
        department="R&D",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    )
    failure = (await t.call(create, request, headers=bearer(viewer))).failed()
    assert failure.shape == ("permission_denied", "PERMISSION_MISSING", ())
    assert failure.metadata["permission"] == "employee:write"
    rename = call("ProjectService", "UpdateProject")
    failure = (
        await t.call(
            rename,
            rename.request(id=world.project_a, name="Mine", update_mask=FieldMask(paths=["name"])),
            headers=bearer(viewer),
        )
    ).failed()
    assert failure.shape == ("permission_denied", "PERMISSION_MISSING", ())
    # The member role may write employees; the viewer's answer was about the role, not the request.
    await ok(t, create, world.tokens["member"], **{f.name: getattr(request, f.name) for f in request.DESCRIPTOR.fields})


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_without_employee_write_cannot_create_employees(
    transports: dict[str, Transport], world: World, transport: str
) -> None:
    t = transports[transport]
    create = call("EmployeeService", "CreateEmployee")
    fields = {
        "project_id": world.project_a,
        "name": "Kay",
        "email": f"kay{next(_serial)}@a.test",
        "role": "Bot",
        "department": "Ops",
        "status": employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    }
    failure = (await t.call(create, create.request(**fields), headers=bearer(world.tokens["key_a_read"]))).failed()
    assert failure.shape == ("permission_denied", "PERMISSION_MISSING", ())
    await ok(t, call("EmployeeService", "QueryEmployees"), world.tokens["key_a_read"], project_id=world.project_a)
    created = await ok(t, create, world.tokens["key_a"], **fields)
    assert created.employee.project_id == world.project_a


async def test_a_member_cannot_mint_a_key_stronger_than_itself(transports: dict[str, Transport], world: World) -> None:
    create = call("ApiKeyService", "CreateApiKey")
    request = create.request(project_id=world.project_a, name="escalate", scopes=["member:write"], expires_at=expiry())
    failure = (await transports["grpc"].call(create, request, headers=bearer(world.tokens["member"]))).failed()
    # The member role lacks apikey:write in the first place.
    assert failure.shape == ("permission_denied", "PERMISSION_MISSING", ())


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_key_cannot_mint_a_key_that_outlives_it(
    transports: dict[str, Transport], world: World, transport: str
) -> None:
    """A leaked key must not be able to keep the project open past its own expiry (30 days here)."""
    t = transports[transport]
    create = call("ApiKeyService", "CreateApiKey")
    name = f"successor {next(_serial)}"
    request = create.request(project_id=world.project_a, name=name, scopes=["employee:read"], expires_at=expiry(60))

    failure = (await t.call(create, request, headers=bearer(world.tokens["key_a"]))).failed()

    assert failure.shape == ("permission_denied", "API_KEY_OUTLIVES_CALLER", ())
    assert failure.metadata["project_id"] == world.project_a
    await ok(
        t,
        create,
        world.tokens["key_a"],
        project_id=world.project_a,
        name=name,
        scopes=["employee:read"],
        expires_at=expiry(10),
    )


# --- revocation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_deactivated_key_fails_on_its_very_next_call(
    transports: dict[str, Transport], world: World, transport: str
) -> None:
    t = transports[transport]
    created = await ok(
        t,
        call("ApiKeyService", "CreateApiKey"),
        world.admin,
        project_id=world.project_a,
        name=f"short-lived {next(_serial)}",
        scopes=["project:read"],
        expires_at=expiry(),
    )
    get = call("ProjectService", "GetProject")
    await ok(t, get, created.secret, id=world.project_a)
    deactivated = await ok(
        t, call("ApiKeyService", "DeactivateApiKey"), world.admin, project_id=world.project_a, id=created.api_key.id
    )
    assert deactivated.api_key.expires_at == created.api_key.expires_at
    failure = (await t.call(get, get.request(id=world.project_a), headers=bearer(created.secret))).failed()
    assert failure.shape == ("unauthenticated", "API_KEY_INACTIVE", ())
    await ok(t, call("ApiKeyService", "ActivateApiKey"), world.admin, project_id=world.project_a, id=created.api_key.id)
    await ok(t, get, created.secret, id=world.project_a)


async def test_a_removed_membership_and_a_deactivated_user_stop_working_at_once(
    server: AltaluneServer, transports: dict[str, Transport], world: World
) -> None:
    t = transports["connect-json"]
    issuer = server.container.issuer
    assert issuer is not None
    user = (
        await ok(t, call("UserService", "CreateUser"), world.admin, email="leaver@access.test", first_name="Lee")
    ).user
    token = issuer.mint(user_public_id=user.id, email=user.email, ttl_s=3600)
    await ok(
        t,
        call("IamService", "AddProjectMembers"),
        world.admin,
        project_id=world.project_a,
        members=[iam_pb2.NewProjectMember(user_id=user.id, role=iam_pb2.PROJECT_ROLE_MEMBER)],
    )
    get = call("ProjectService", "GetProject")
    await ok(t, get, token, id=world.project_a)
    await ok(t, call("IamService", "RemoveProjectMembers"), world.admin, project_id=world.project_a, user_ids=[user.id])
    failure = (await t.call(get, get.request(id=world.project_a), headers=bearer(token))).failed()
    assert_not_found_like_a_missing_project(failure, world.project_a)

    mine = call("IamService", "ListMyProjects")
    assert list((await ok(t, mine, token)).projects) == []
    await ok(t, call("UserService", "DeactivateUser"), world.admin, id=user.id)
    failure = (await t.call(mine, mine.request(), headers=bearer(token))).failed()
    assert failure.shape == ("unauthenticated", "USER_INACTIVE", ())


async def test_a_revoked_role_grant_stops_working_at_once(transports: dict[str, Transport], world: World) -> None:
    t = transports["grpc"]
    roles = (await ok(t, call("RoleService", "QueryRoles"), world.admin)).data
    viewer_role = next(r for r in roles if r.name == "viewer")
    permissions = (await ok(t, call("PermissionService", "QueryPermissions"), world.admin)).data
    employee_read = next(p for p in permissions if p.name == "employee:read")
    query = call("EmployeeService", "QueryEmployees")
    await ok(t, query, world.tokens["viewer"], project_id=world.project_a)
    await ok(
        t,
        call("IamService", "RemoveRolePermissions"),
        world.admin,
        role_id=viewer_role.id,
        permission_ids=[employee_read.id],
    )
    try:
        failure = (
            await t.call(query, query.request(project_id=world.project_a), headers=bearer(world.tokens["viewer"]))
        ).failed()
        assert failure.shape == ("permission_denied", "PERMISSION_MISSING", ())
    finally:
        await ok(
            t,
            call("IamService", "AssignRolePermissions"),
            world.admin,
            role_id=viewer_role.id,
            permission_ids=[employee_read.id],
        )
    await ok(t, query, world.tokens["viewer"], project_id=world.project_a)


# --- secrets -------------------------------------------------------------------------------------


async def test_the_database_holds_no_plaintext_key_and_lists_never_show_secrets(
    server: AltaluneServer, transports: dict[str, Transport], world: World
) -> None:
    secrets = [world.tokens[k] for k in ("key_a", "key_a_read", "key_b")]
    with psycopg.connect(server.container.database_url) as conn:
        dump = "\n".join(str(row) for row in conn.execute("SELECT k.*, k::text FROM api_keys k").fetchall())
    assert dump.count("ak_") == 0
    for secret in secrets:
        assert secret.split("_")[-1] not in dump
    t = transports["http-json"]
    listed = await ok(t, call("ApiKeyService", "QueryApiKeys"), world.admin, project_id=world.project_a)
    assert listed.data
    text = str(listed)
    for secret in secrets:
        assert secret.split("_")[-1] not in text
    for key in listed.data:
        assert key.prefix.startswith(f"ak_{world.project_a}_{key.id}_")
        assert len(key.prefix) == len(f"ak_{world.project_a}_{key.id}_") + 4


async def test_an_api_key_call_updates_last_used_at(transports: dict[str, Transport], world: World) -> None:
    t = transports["grpc"]
    created = await ok(
        t,
        call("ApiKeyService", "CreateApiKey"),
        world.admin,
        project_id=world.project_a,
        name=f"used {next(_serial)}",
        scopes=["project:read"],
        expires_at=expiry(),
    )
    assert not created.api_key.HasField("last_used_at")
    await ok(t, call("ProjectService", "GetProject"), created.secret, id=world.project_a)
    got = await ok(
        t, call("ApiKeyService", "GetApiKey"), world.admin, project_id=world.project_a, id=created.api_key.id
    )
    assert got.api_key.HasField("last_used_at")


async def test_a_connect_get_needs_the_credential_and_is_never_cached(server: AltaluneServer, world: World) -> None:
    url = f"http://127.0.0.1:{server.http_port}/api/altalune.v1.ProjectService/GetProject"
    query = {"connect": "v1", "encoding": "json", "message": json.dumps({"id": world.project_a})}
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(url, params=query)
        allowed = await http.get(url, params=query, headers=bearer(world.admin))
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert allowed.status_code == 200
    assert allowed.json()["project"]["id"] == world.project_a
    assert allowed.headers["cache-control"] == "private, no-store"
