"""Etags on real servers: a write naming a stale etag is refused with one error on both ports (gRPC,
and Connect JSON / proto, gRPC-Web and plain HTTP JSON on the HTTP port): code `aborted` (HTTP 409),
reason ETAG_MISMATCH, the same message and the same metadata, the current etag included. The etag a
client reads over one transport guards its write over any other."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from altalune.v1 import employee_pb2, project_pb2, user_pb2
from internal.server.app import AltaluneServer
from tests.e2e.clients import (
    CREATE_EMPLOYEE,
    CREATE_PROJECT,
    DELETE_PROJECT,
    GET_EMPLOYEE,
    GET_PROJECT,
    TRANSPORTS,
    UPDATE_EMPLOYEE,
    UPDATE_PROJECT,
    Rpc,
    Transport,
    open_transport,
)

pytestmark = pytest.mark.e2e

CREATE_USER = Rpc.of("UserService", "CreateUser")
GET_USER = Rpc.of("UserService", "GetUser")
UPDATE_USER = Rpc.of("UserService", "UpdateUser")
_serial = itertools.count(1)


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


async def _project(t: Transport) -> project_pb2.Project:
    request = project_pb2.CreateProjectRequest(
        name=f"Etags {next(_serial)}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
    )
    project: project_pb2.Project = (await t.call(CREATE_PROJECT, request)).ok().project
    return project


@dataclass(frozen=True, slots=True)
class Stale:
    """A resource changed once since it was created: a write naming `etag` (its first etag) is
    refused, and `read` shows it is still at `current`."""

    resource: str
    id: str
    etag: str
    current: str
    write: Message  # the refused write, with the stale etag
    read: Callable[[], Awaitable[Any]]


async def _stale_employee(t: Transport) -> Stale:
    project = await _project(t)
    created = (
        await t.call(
            CREATE_EMPLOYEE,
            employee_pb2.CreateEmployeeRequest(
                project_id=project.id,
                name="Ann Lee",
                email=f"ann.{next(_serial)}@etags.test",
                role="Engineer",
                department="R&D",
                status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
            ),
        )
    ).ok()
    mask = FieldMask(paths=["department"])
    employee = created.employee
    changed = (
        await t.call(
            UPDATE_EMPLOYEE,
            employee_pb2.UpdateEmployeeRequest(
                project_id=project.id, id=employee.id, department="Ops", update_mask=mask
            ),
        )
    ).ok()
    return Stale(
        "employee",
        employee.id,
        employee.etag,
        changed.employee.etag,
        employee_pb2.UpdateEmployeeRequest(
            project_id=project.id, id=employee.id, department="Sales", update_mask=mask, etag=employee.etag
        ),
        lambda: t.call(GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=project.id, id=employee.id)),
    )


async def _stale_project(t: Transport) -> Stale:
    project = await _project(t)
    changed = (
        await t.call(
            UPDATE_PROJECT,
            project_pb2.UpdateProjectRequest(
                id=project.id, description="changed", update_mask=FieldMask(paths=["description"])
            ),
        )
    ).ok()
    return Stale(
        "project",
        project.id,
        project.etag,
        changed.project.etag,
        project_pb2.DeleteProjectRequest(id=project.id, etag=project.etag),
        lambda: t.call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id)),
    )


async def _stale_user(t: Transport) -> Stale:
    created = (
        await t.call(CREATE_USER, user_pb2.CreateUserRequest(email=f"u.{next(_serial)}@etags.test", first_name="A"))
    ).ok()
    user = created.user
    mask = FieldMask(paths=["first_name"])
    changed = (await t.call(UPDATE_USER, user_pb2.UpdateUserRequest(id=user.id, first_name="B", update_mask=mask))).ok()
    return Stale(
        "user",
        user.id,
        user.etag,
        changed.user.etag,
        user_pb2.UpdateUserRequest(id=user.id, first_name="C", update_mask=mask, etag=user.etag),
        lambda: t.call(GET_USER, user_pb2.GetUserRequest(id=user.id)),
    )


STALE: dict[str, tuple[Callable[[Transport], Awaitable[Stale]], Rpc[Any, Any]]] = {
    "update an employee (project-scoped)": (_stale_employee, UPDATE_EMPLOYEE),
    "delete a project": (_stale_project, DELETE_PROJECT),
    "update a user (global)": (_stale_user, UPDATE_USER),
}


@pytest.mark.parametrize("case", list(STALE))
async def test_a_stale_etag_is_the_same_error_on_every_transport_and_writes_nothing(
    case: str, transports: dict[str, Transport]
) -> None:
    make, rpc = STALE[case]
    stale = await make(transports["grpc"])
    before = (await stale.read()).ok()

    failures = {name: (await t.call(rpc, stale.write)).failed() for name, t in transports.items()}

    for name, failure in failures.items():
        assert (failure.code, failure.reason, failure.domain) == ("aborted", "ETAG_MISMATCH", "altalune.v1"), name
        assert dict(failure.metadata) == {"resource": stale.resource, "id": stale.id, "etag": stale.current}, name
        assert failure.detail_types == ("google.rpc.ErrorInfo",), name
    assert len({failure.message for failure in failures.values()}) == 1, failures
    assert stale.etag != stale.current
    assert (await stale.read()).ok() == before


@pytest.mark.parametrize(("reader", "writer"), [("grpc", "connect-json"), ("connect-proto", "grpc")])
async def test_the_etag_read_over_one_transport_guards_a_write_over_another(
    reader: str, writer: str, transports: dict[str, Transport]
) -> None:
    project = await _project(transports["grpc"])
    read = (await transports[reader].call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id))).ok().project

    written = (
        await transports[writer].call(
            UPDATE_PROJECT,
            project_pb2.UpdateProjectRequest(
                id=project.id, description="guarded", update_mask=FieldMask(paths=["description"]), etag=read.etag
            ),
        )
    ).ok()

    assert read.etag == project.etag
    assert written.project.etag != read.etag
    again = (await transports[reader].call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id))).ok()
    assert again.project == written.project
