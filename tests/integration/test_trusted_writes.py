"""Trusted writes through the real chain and a real database: idempotent retries, the event of
every attempt and outcome, and the event tables' append-only guard and retention purges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors
import pytest
from connectrpc.errors import ConnectError
from connectrpc.request import Headers, RequestContext
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from altalune.v1 import api_key_pb2, employee_pb2, iam_pb2, project_pb2, role_pb2, user_pb2
from internal.auth.bootstrap import ensure_admin
from internal.container import Container
from internal.events.registry import event_types
from internal.events.store import purge_expired, purge_old_events
from internal.rpc.calls import call_record
from tests.integration.projects import fetch

CREATE = "/altalune.v1.EmployeeService/CreateEmployee"
UPDATE = "/altalune.v1.EmployeeService/UpdateEmployee"


async def _call(
    container: Container,
    path: str,
    request: Message,
    token: str,
    *,
    request_id: str | None = None,
    timeout_ms: int | None = None,
) -> tuple[Message, dict[str, str]]:
    """One call through the route (the whole chain), as a port makes it: in its request record."""
    route = container.routes[path]
    ctx: RequestContext[Any, Any] = RequestContext(
        method=route.method,
        http_method="POST",
        request_headers=Headers({"authorization": f"Bearer {token}"}),
        timeout_ms=timeout_ms,
    )
    with call_record(request_id, transport="direct", peer="test"):
        response = await route.function(request, ctx)
    return response, dict(ctx.response_headers())


async def _admin(container: Container, database_url: str) -> tuple[str, str]:
    """The administrator's JWT and a project they own."""
    admin = ensure_admin(database_url)
    assert container.issuer is not None
    jwt = container.issuer.mint(user_public_id=admin.public_id, email=admin.email, ttl_s=600)
    created, _ = await _call(
        container,
        "/altalune.v1.ProjectService/CreateProject",
        project_pb2.CreateProjectRequest(name="Trusted", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE),
        jwt,
    )
    assert isinstance(created, project_pb2.CreateProjectResponse)
    return jwt, created.project.id


def _hire(project: str, email: str, request_id: str = "", name: str = "Ann Lee") -> employee_pb2.CreateEmployeeRequest:
    return employee_pb2.CreateEmployeeRequest(
        project_id=project,
        name=name,
        email=email,
        role="Engineer",
        department="R&D",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        request_id=request_id,
    )


async def _events(container: Container, table: str, where: str = "TRUE", *args: Any) -> list[dict[str, Any]]:
    async with container.db.connection() as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY sequence", args)  # type: ignore[arg-type]
        return await cur.fetchall()


async def _employee_count(container: Container, email: str) -> int:
    rows = await fetch(container, "SELECT count(*) FROM employees WHERE email = %s", email)
    return int(rows[0][0])


async def test_a_retry_with_the_same_request_id_answers_the_first_answer_and_writes_nothing(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    key = str(uuid.uuid4())

    first, first_headers = await _call(container, CREATE, _hire(project, "ann@example.com", key), jwt)
    again, again_headers = await _call(container, CREATE, _hire(project, "ann@example.com", key), jwt)

    assert again == first
    assert "idempotent-replayed" not in first_headers
    assert again_headers["idempotent-replayed"] == "true"
    assert await _employee_count(container, "ann@example.com") == 1
    types = [e["type"] for e in await _events(container, "project_events", "idempotency_key = %s", key)]
    assert types == [
        "CreateEmployeeAttempted",
        "CreateEmployeeSucceeded",
        "CreateEmployeeAttempted",
        "CreateEmployeeReplayed",
    ]


async def test_the_same_request_id_with_another_request_is_refused_and_writes_nothing(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    key = str(uuid.uuid4())
    await _call(container, CREATE, _hire(project, "ann@example.com", key), jwt)

    with pytest.raises(ConnectError) as other_fields:
        await _call(container, CREATE, _hire(project, "bob@example.com", key), jwt)
    update = employee_pb2.UpdateEmployeeRequest(project_id=project, id="23456789abcdef", request_id=key, name="X")
    update.update_mask.paths.append("name")
    with pytest.raises(ConnectError) as other_rpc:
        await _call(container, UPDATE, update, jwt)

    for refused in (other_fields.value, other_rpc.value):
        assert refused.code.name == "INVALID_ARGUMENT"
        assert "REQUEST_ID_REUSED" in str(refused.details[0].value)
    assert await _employee_count(container, "bob@example.com") == 0
    failed = await _events(container, "project_events", "idempotency_key = %s AND outcome = 'failed'", key)
    assert [(e["type"], e["code"], e["reason"]) for e in failed] == [
        ("CreateEmployeeFailed", "invalid_argument", "REQUEST_ID_REUSED"),
        ("UpdateEmployeeFailed", "invalid_argument", "REQUEST_ID_REUSED"),
    ]


async def test_concurrent_calls_with_one_request_id_make_one_write_and_get_one_answer(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    key = str(uuid.uuid4())

    answers = await asyncio.gather(
        *(_call(container, CREATE, _hire(project, "ann@example.com", key), jwt) for _ in range(20))
    )

    bodies = [body for body, _ in answers]
    assert all(body == bodies[0] for body in bodies)
    assert sum(1 for _, headers in answers if headers.get("idempotent-replayed") == "true") == 19
    assert await _employee_count(container, "ann@example.com") == 1


async def test_a_failed_first_call_stores_no_answer_so_its_retry_runs_again(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    await _call(container, CREATE, _hire(project, "taken@example.com"), jwt)
    key = str(uuid.uuid4())

    with pytest.raises(ConnectError) as clash:
        await _call(container, CREATE, _hire(project, "taken@example.com", key), jwt)
    async with container.db.connection() as conn:
        await conn.execute("DELETE FROM employees WHERE email = 'taken@example.com'")
    retried, headers = await _call(container, CREATE, _hire(project, "taken@example.com", key), jwt)

    assert clash.value.code.name == "ALREADY_EXISTS"
    assert "idempotent-replayed" not in headers
    assert isinstance(retried, employee_pb2.CreateEmployeeResponse)
    assert await _employee_count(container, "taken@example.com") == 1


async def test_an_expired_request_id_is_a_new_request_and_the_purge_removes_expired_records(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    key = str(uuid.uuid4())
    await _call(container, CREATE, _hire(project, "ann@example.com", key), jwt)
    async with container.db.connection() as conn:
        await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")

    second, headers = await _call(container, CREATE, _hire(project, "ann2@example.com", key), jwt)
    async with container.db.connection() as conn:
        await conn.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    purged = await purge_expired(container.db)

    assert "idempotent-replayed" not in headers
    assert isinstance(second, employee_pb2.CreateEmployeeResponse)
    assert await _employee_count(container, "ann2@example.com") == 1
    assert purged == 1
    assert await fetch(container, "SELECT count(*) FROM idempotency_keys") == [(0,)]


async def test_every_write_records_its_attempt_then_its_outcome_with_names_of_changes_never_values(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    created, _ = await _call(container, CREATE, _hire(project, "ann@example.com"), jwt)
    assert isinstance(created, employee_pb2.CreateEmployeeResponse)
    with pytest.raises(ConnectError):
        await _call(container, CREATE, _hire(project, "ann@example.com", name="Bob Ray"), jwt)

    events = await _events(container, "project_events")

    assert [(e["sequence"], e["type"], e["outcome"]) for e in events] == [
        (1, "CreateEmployeeAttempted", "attempted"),
        (2, "CreateEmployeeSucceeded", "succeeded"),
        (3, "CreateEmployeeAttempted", "attempted"),
        (4, "CreateEmployeeFailed", "failed"),
    ]
    succeeded, failed = events[1], events[3]
    assert succeeded["resource_type"] == "employee"
    assert succeeded["resource_id"] == created.employee.id
    assert succeeded["changed_fields"] == ["department", "email", "name", "role", "status"]
    assert succeeded["etag"] == created.employee.etag
    assert (failed["code"], failed["reason"]) == ("already_exists", "EMPLOYEE_EMAIL_TAKEN")
    assert all(e["actor_kind"] == "user" and e["project_public_id"] == project for e in events)
    assert all("ann@example.com" not in str(value) for e in events for value in e.values())
    # The project itself is a global resource: its creation is in the global stream (the id is
    # known once it is made, so only the Succeeded event names it).
    project_created = await _events(container, "global_events", "rpc = 'altalune.v1.ProjectService/CreateProject'")
    assert [(e["type"], e["resource_id"]) for e in project_created] == [
        ("CreateProjectAttempted", ""),
        ("CreateProjectSucceeded", project),
    ]


async def test_a_refused_call_records_one_security_event_and_nothing_else(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)

    with pytest.raises(ConnectError):
        await _call(container, CREATE, _hire(project, "ann@example.com"), "not-a-token", request_id="refused-1")
    with pytest.raises(ConnectError):
        await _call(container, CREATE, _hire("23456789abcdef", "ann@example.com"), jwt, request_id="refused-2")

    await container.refusals.flush()  # written off the request path
    refused = await _events(container, "global_events", "outcome = 'refused'")
    assert [(e["call_request_id"], e["type"], e["code"], e["reason"], e["actor_kind"]) for e in refused] == [
        ("refused-1", "CallRefused", "unauthenticated", "TOKEN_INVALID", "anonymous"),
        ("refused-2", "CallRefused", "not_found", "PROJECT_NOT_FOUND", "user"),
    ]
    assert refused[1]["project_public_id"] == "23456789abcdef"
    assert await _events(container, "project_events") == []


async def test_sequences_are_gapless_and_in_commit_order_under_concurrent_writes(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)

    await asyncio.gather(*(_call(container, CREATE, _hire(project, f"e{i}@example.com"), jwt) for i in range(16)))

    events = await _events(container, "project_events")
    assert [e["sequence"] for e in events] == list(range(1, 33))
    # Every Succeeded follows its own Attempted in the stream.
    attempted_at = {e["call_request_id"]: e["sequence"] for e in events if e["outcome"] == "attempted"}
    assert all(attempted_at[e["call_request_id"]] < e["sequence"] for e in events if e["outcome"] == "succeeded")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE project_events SET reason = 'forged'",
        "DELETE FROM project_events",
        "UPDATE global_events SET actor_id = 'someone-else'",
        "DELETE FROM global_events",
        "TRUNCATE global_events",
        "TRUNCATE project_events",
    ],
)
async def test_events_cannot_be_changed_or_removed_but_by_the_purges(
    container: Container, database_url: str, statement: str
) -> None:
    jwt, project = await _admin(container, database_url)
    await _call(container, CREATE, _hire(project, "ann@example.com"), jwt)

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        async with container.db.connection() as conn:
            await conn.execute(statement)  # type: ignore[arg-type]


async def test_the_retention_purge_removes_old_events_only(container: Container, database_url: str) -> None:
    jwt, project = await _admin(container, database_url)
    await _call(container, CREATE, _hire(project, "ann@example.com"), jwt)
    async with container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO global_events (sequence, type, outcome, actor_kind, rpc, occurred_at) "
            "VALUES (next_event_sequence(0), 'CallRefused', 'refused', 'anonymous', 'x/Y', now() - interval '400 days')"
        )
    before = len(await _events(container, "global_events")) + len(await _events(container, "project_events"))

    removed = await purge_old_events(container.db, retention_days=365)

    after = len(await _events(container, "global_events")) + len(await _events(container, "project_events"))
    assert (removed, after) == (1, before - 1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the purge's permission stayed with it
        async with container.db.connection() as conn:
            await conn.execute("DELETE FROM global_events")


def _in_a_year() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(days=365))
    return stamp


async def test_every_write_rpc_of_the_contract_records_exactly_its_declared_events(
    container: Container, database_url: str
) -> None:
    """A tour of all the contract's write RPCs, one successful call each: each call has exactly
    `<Rpc>Attempted` then `<Rpc>Succeeded`, in the stream its declaration says, and the tour covers
    the registry, so a new write RPC fails here until it is toured too."""
    jwt, _ = await _admin(container, database_url)
    done: dict[str, str] = {}  # route path -> the call's request id

    async def write(path: str, request: Message) -> Any:
        call_id = f"tour-{len(done)}"
        response, _ = await _call(container, path, request, jwt, request_id=call_id)
        done[path] = call_id
        return response

    mask = FieldMask
    p = (
        await write(
            "/altalune.v1.ProjectService/CreateProject",
            project_pb2.CreateProjectRequest(name="Tour", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE),
        )
    ).project.id
    await write(
        "/altalune.v1.ProjectService/UpdateProject",
        project_pb2.UpdateProjectRequest(id=p, name="Tour 2", update_mask=mask(paths=["name"])),
    )
    e = (await write(CREATE, _hire(p, "tour@example.com"))).employee.id
    await write(
        UPDATE, employee_pb2.UpdateEmployeeRequest(project_id=p, id=e, role="Lead", update_mask=mask(paths=["role"]))
    )
    await write("/altalune.v1.EmployeeService/DeleteEmployee", employee_pb2.DeleteEmployeeRequest(project_id=p, id=e))
    k = (
        await write(
            "/altalune.v1.ApiKeyService/CreateApiKey",
            api_key_pb2.CreateApiKeyRequest(
                project_id=p, name="Tour key", scopes=["employee:read"], expires_at=_in_a_year()
            ),
        )
    ).api_key.id
    await write(
        "/altalune.v1.ApiKeyService/UpdateApiKey",
        api_key_pb2.UpdateApiKeyRequest(project_id=p, id=k, name="Tour key 2", update_mask=mask(paths=["name"])),
    )
    await write("/altalune.v1.ApiKeyService/DeactivateApiKey", api_key_pb2.DeactivateApiKeyRequest(project_id=p, id=k))
    await write("/altalune.v1.ApiKeyService/ActivateApiKey", api_key_pb2.ActivateApiKeyRequest(project_id=p, id=k))
    await write("/altalune.v1.ApiKeyService/DeleteApiKey", api_key_pb2.DeleteApiKeyRequest(project_id=p, id=k))
    u = (
        await write(
            "/altalune.v1.UserService/CreateUser",
            user_pb2.CreateUserRequest(email="toured@example.com", first_name="Toured"),
        )
    ).user.id
    await write(
        "/altalune.v1.UserService/UpdateUser",
        user_pb2.UpdateUserRequest(id=u, first_name="Toured 2", update_mask=mask(paths=["first_name"])),
    )
    await write("/altalune.v1.UserService/DeactivateUser", user_pb2.DeactivateUserRequest(id=u))
    await write("/altalune.v1.UserService/ActivateUser", user_pb2.ActivateUserRequest(id=u))
    r = (await write("/altalune.v1.RoleService/CreateRole", role_pb2.CreateRoleRequest(name="tourist"))).role.id
    await write(
        "/altalune.v1.RoleService/UpdateRole",
        role_pb2.UpdateRoleRequest(id=r, description="On tour", update_mask=mask(paths=["description"])),
    )
    permission = (await fetch(container, "SELECT public_id FROM permissions WHERE name = 'user:read'"))[0][0]
    await write(
        "/altalune.v1.IamService/AssignRolePermissions",
        iam_pb2.AssignRolePermissionsRequest(role_id=r, permission_ids=[permission]),
    )
    await write(
        "/altalune.v1.IamService/RemoveRolePermissions",
        iam_pb2.RemoveRolePermissionsRequest(role_id=r, permission_ids=[permission]),
    )
    await write("/altalune.v1.IamService/AssignUserRoles", iam_pb2.AssignUserRolesRequest(user_id=u, role_ids=[r]))
    await write("/altalune.v1.IamService/RemoveUserRoles", iam_pb2.RemoveUserRolesRequest(user_id=u, role_ids=[r]))
    await write(
        "/altalune.v1.IamService/AddProjectMembers",
        iam_pb2.AddProjectMembersRequest(
            project_id=p, members=[iam_pb2.NewProjectMember(user_id=u, role=iam_pb2.PROJECT_ROLE_MEMBER)]
        ),
    )
    await write(
        "/altalune.v1.IamService/UpdateProjectMember",
        iam_pb2.UpdateProjectMemberRequest(project_id=p, user_id=u, role=iam_pb2.PROJECT_ROLE_VIEWER),
    )
    await write(
        "/altalune.v1.IamService/RemoveProjectMembers", iam_pb2.RemoveProjectMembersRequest(project_id=p, user_ids=[u])
    )
    await write("/altalune.v1.RoleService/DeleteRole", role_pb2.DeleteRoleRequest(id=r))
    await write("/altalune.v1.ProjectService/DeleteProject", project_pb2.DeleteProjectRequest(id=p))

    registry = container.writes
    assert set(done) == set(registry), "every write RPC of the contract is toured"
    declared = event_types(registry)
    for path, call_id in done.items():
        write_rpc = registry[path]
        stream = "project_events" if write_rpc.project_stream else "global_events"
        other = "global_events" if write_rpc.project_stream else "project_events"
        events = await _events(container, stream, "call_request_id = %s", call_id)
        assert [(e["type"], e["rpc"]) for e in events] == [
            (f"{write_rpc.name}Attempted", write_rpc.rpc),
            (f"{write_rpc.name}Succeeded", write_rpc.rpc),
        ], path
        assert {e["type"] for e in events} <= declared
        assert events[1]["resource_type"] == write_rpc.resource, path
        assert events[1]["resource_id"], path
        assert await _events(container, other, "call_request_id = %s", call_id) == [], path


async def test_an_api_key_secret_is_never_stored_so_a_replay_answers_the_key_without_it(
    container: Container, database_url: str
) -> None:
    jwt, project = await _admin(container, database_url)
    key = str(uuid.uuid4())
    request = api_key_pb2.CreateApiKeyRequest(
        project_id=project, name="Once", scopes=["employee:read"], expires_at=_in_a_year(), request_id=key
    )

    first, _ = await _call(container, "/altalune.v1.ApiKeyService/CreateApiKey", request, jwt)
    again, headers = await _call(container, "/altalune.v1.ApiKeyService/CreateApiKey", request, jwt)

    assert isinstance(first, api_key_pb2.CreateApiKeyResponse)
    assert isinstance(again, api_key_pb2.CreateApiKeyResponse)
    assert first.secret
    assert headers["idempotent-replayed"] == "true"
    assert (again.api_key, again.secret) == (first.api_key, "")
    stored = await fetch(container, "SELECT response FROM idempotency_keys")
    secret_part = first.secret.rsplit("_", 1)[-1].encode()
    assert len(stored) == 1
    assert secret_part not in bytes(stored[0][0])


async def test_a_write_with_a_short_deadline_carries_it_into_its_transaction(
    container: Container, database_url: str
) -> None:
    """A client deadline shorter than the server's lowers the write transaction's statement
    timeout (sent with its BEGIN); the write and its events behave as without one."""
    jwt, project = await _admin(container, database_url)
    key = str(uuid.uuid4())

    first, _ = await _call(container, CREATE, _hire(project, "ann@example.com", key), jwt, timeout_ms=5000)
    again, headers = await _call(container, CREATE, _hire(project, "ann@example.com", key), jwt, timeout_ms=5000)

    assert again == first
    assert headers["idempotent-replayed"] == "true"
    types = [e["type"] for e in await _events(container, "project_events", "idempotency_key = %s", key)]
    assert types == [
        "CreateEmployeeAttempted",
        "CreateEmployeeSucceeded",
        "CreateEmployeeAttempted",
        "CreateEmployeeReplayed",
    ]
