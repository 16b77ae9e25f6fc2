"""Real clients for the e2e suite: one call shape over every way a user reaches the service.

* ``grpc``: the generated grpcio stubs on a ``grpc.aio`` channel to the gRPC port; error details
  are read from ``grpc-status-details-bin`` with ``grpc_status.rpc_status``;
* ``connect-json`` / ``connect-proto``: the generated connectrpc clients (Connect protocol, JSON
  or binary codec) against the HTTP port; details come from ``ConnectError.details``;
* ``grpc-web``: the same generated clients speaking gRPC-Web (binary) to the HTTP port, as a
  browser behind no proxy would;
* ``http-json``: a plain ``httpx`` POST of canonical JSON, parsing the Connect error body by hand
  (``details[].type`` + unpadded base64 ``value``), the way a browser or ``curl`` user would.

Each answer becomes an ``Outcome``: the response or an ``RpcFailure`` (code, ErrorInfo reason,
BadRequest violations) plus the request id the server sent back, so tests compare transports.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import re
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import grpc
import grpc.aio
import httpx
import psycopg
from connectrpc.client import ResponseMetadata
from connectrpc.codec import proto_binary_codec, proto_json_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf import any_pb2, descriptor_pool, json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from altalune.v1 import employee_pb2, project_pb2
from internal.container import contract


def _generated(file_name: str, suffix: str) -> Any:
    """The generated module of a proto file: altalune/v1/x.proto -> altalune.v1.x<suffix>."""
    return importlib.import_module(file_name.removesuffix(".proto").replace("/", ".") + suffix)


# Every service of the contract (internal.container.SERVICES): (grpc stub module, connect module).
SERVICE_MODULES: dict[str, tuple[Any, Any]] = {
    service.name: (_generated(service.file.name, "_pb2_grpc"), _generated(service.file.name, "_connect"))
    for service in contract()
}

Req = TypeVar("Req", bound=Message)
Res = TypeVar("Res", bound=Message)

PUBLIC_ID = re.compile(r"^[2-9a-hj-np-z]{14}$")
REQUEST_ID = "x-request-id"
TRANSPORTS = ("grpc", "connect-json", "connect-proto", "grpc-web", "http-json")

# Connect protocol: code -> HTTP status of a unary error response.
HTTP_STATUS_BY_CODE = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}


@dataclass(frozen=True, slots=True)
class Rpc(Generic[Req, Res]):
    """One RPC of the contract: where it lives and what it answers."""

    service: str
    method: str
    response_type: type[Res]

    @property
    def path(self) -> str:
        return f"/altalune.v1.{self.service}/{self.method}"

    @property
    def snake_name(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.method).lower()

    @staticmethod
    def of(service: str, method: str) -> Rpc[Any, Any]:
        """Any RPC of the contract by name, its response type read from the descriptors."""
        found = descriptor_pool.Default().FindMethodByName(f"altalune.v1.{service}.{method}")
        return Rpc(service, method, GetMessageClass(found.output_type))

    def request(self, **fields: Any) -> Message:
        found = descriptor_pool.Default().FindMethodByName(f"altalune.v1.{self.service}.{self.method}")
        return GetMessageClass(found.input_type)(**fields)


CREATE_PROJECT: Rpc[project_pb2.CreateProjectRequest, project_pb2.CreateProjectResponse] = Rpc(
    "ProjectService", "CreateProject", project_pb2.CreateProjectResponse
)
GET_PROJECT: Rpc[project_pb2.GetProjectRequest, project_pb2.GetProjectResponse] = Rpc(
    "ProjectService", "GetProject", project_pb2.GetProjectResponse
)
UPDATE_PROJECT: Rpc[project_pb2.UpdateProjectRequest, project_pb2.UpdateProjectResponse] = Rpc(
    "ProjectService", "UpdateProject", project_pb2.UpdateProjectResponse
)
DELETE_PROJECT: Rpc[project_pb2.DeleteProjectRequest, project_pb2.DeleteProjectResponse] = Rpc(
    "ProjectService", "DeleteProject", project_pb2.DeleteProjectResponse
)
QUERY_PROJECTS: Rpc[project_pb2.QueryProjectsRequest, project_pb2.QueryProjectsResponse] = Rpc(
    "ProjectService", "QueryProjects", project_pb2.QueryProjectsResponse
)
CREATE_EMPLOYEE: Rpc[employee_pb2.CreateEmployeeRequest, employee_pb2.CreateEmployeeResponse] = Rpc(
    "EmployeeService", "CreateEmployee", employee_pb2.CreateEmployeeResponse
)
GET_EMPLOYEE: Rpc[employee_pb2.GetEmployeeRequest, employee_pb2.GetEmployeeResponse] = Rpc(
    "EmployeeService", "GetEmployee", employee_pb2.GetEmployeeResponse
)
UPDATE_EMPLOYEE: Rpc[employee_pb2.UpdateEmployeeRequest, employee_pb2.UpdateEmployeeResponse] = Rpc(
    "EmployeeService", "UpdateEmployee", employee_pb2.UpdateEmployeeResponse
)
DELETE_EMPLOYEE: Rpc[employee_pb2.DeleteEmployeeRequest, employee_pb2.DeleteEmployeeResponse] = Rpc(
    "EmployeeService", "DeleteEmployee", employee_pb2.DeleteEmployeeResponse
)
QUERY_EMPLOYEES: Rpc[employee_pb2.QueryEmployeesRequest, employee_pb2.QueryEmployeesResponse] = Rpc(
    "EmployeeService", "QueryEmployees", employee_pb2.QueryEmployeesResponse
)


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    description: str
    rule: str


@dataclass(frozen=True, slots=True)
class RpcFailure:
    """An error as a client sees it, whatever the transport."""

    code: str  # Connect spelling: "invalid_argument", "not_found", ...
    message: str
    reason: str | None  # google.rpc.ErrorInfo.reason
    domain: str | None  # google.rpc.ErrorInfo.domain
    metadata: Mapping[str, str]
    violations: tuple[Violation, ...]
    detail_types: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(v.field for v in self.violations)

    @property
    def shape(self) -> tuple[str, str | None, tuple[str, ...]]:
        """What must be identical on every transport: code, reason, violated fields (in order)."""
        return (self.code, self.reason, self.fields)


@dataclass(slots=True)
class Outcome(Generic[Res]):
    transport: str
    response: Res | None
    error: RpcFailure | None
    request_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)

    def ok(self) -> Res:
        if self.error is not None or self.response is None:
            raise AssertionError(f"{self.transport}: expected success, got {self.error}")
        return self.response

    def failed(self) -> RpcFailure:
        if self.error is None:
            raise AssertionError(f"{self.transport}: expected an error, got {self.response}")
        return self.error


def failure_from_details(code: str, message: str, details: Sequence[any_pb2.Any]) -> RpcFailure:
    """Unpack google.rpc.ErrorInfo / BadRequest from packed Any details."""
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = {}
    violations: list[Violation] = []
    types: list[str] = []
    for detail in details:
        type_name = detail.type_url.rsplit("/", 1)[-1]
        types.append(type_name)
        if type_name == "google.rpc.ErrorInfo":
            info = error_details_pb2.ErrorInfo.FromString(detail.value)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif type_name == "google.rpc.BadRequest":
            bad = error_details_pb2.BadRequest.FromString(detail.value)
            violations += [Violation(v.field, v.description, v.reason) for v in bad.field_violations]
    return RpcFailure(
        code=code,
        message=message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        violations=tuple(violations),
        detail_types=tuple(types),
    )


def failure_from_connect_body(body: bytes) -> RpcFailure:
    """Parse a Connect unary error body the way connect-es does (unpadded base64 values)."""
    payload = json.loads(body)
    assert isinstance(payload, dict), payload
    assert isinstance(payload.get("code"), str), payload
    assert payload["code"] in HTTP_STATUS_BY_CODE, payload
    details = []
    for entry in payload.get("details", []):
        value = entry["value"]
        assert "=" not in value, f"Connect detail values are unpadded base64: {value!r}"
        raw = base64.b64decode(value + "=" * (-len(value) % 4))
        details.append(any_pb2.Any(type_url=f"type.googleapis.com/{entry['type']}", value=raw))
    return failure_from_details(payload["code"], str(payload.get("message", "")), details)


def grpc_code_name(code: grpc.StatusCode) -> str:
    return "canceled" if code is grpc.StatusCode.CANCELLED else str(code.name).lower()


class Transport(ABC):
    name: str
    # Sent with every call unless the call overrides them (e.g. the test's admin credential).
    default_headers: dict[str, str] = {}

    def merged(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """Default headers plus the call's; a call header set to "" removes the default."""
        merged = {**self.default_headers, **(headers or {})}
        return {k: v for k, v in merged.items() if v != ""}

    @abstractmethod
    async def call(
        self,
        rpc: Rpc[Req, Res],
        request: Req,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Res]: ...

    @abstractmethod
    async def close(self) -> None: ...


class GrpcTransport(Transport):
    """grpcio aio stubs generated from the contract."""

    def __init__(self, port: int, *, own_connection: bool = False) -> None:
        self.name = "grpc"
        # grpcio shares one connection among channels to the same target unless told otherwise.
        options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        self._stubs: dict[str, Any] = {
            name: getattr(stubs, f"{name}Stub")(self.channel) for name, (stubs, _) in SERVICE_MODULES.items()
        }

    async def call(
        self,
        rpc: Rpc[Req, Res],
        request: Req,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Res]:
        method = getattr(self._stubs[rpc.service], rpc.method)
        call = method(request, metadata=tuple(self.merged(headers).items()), timeout=timeout_s)
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            trailing = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
            status = rpc_status.from_call(exc)
            details = list(status.details) if status is not None else []
            failure = failure_from_details(grpc_code_name(exc.code()), exc.details() or "", details)
            return Outcome(self.name, None, failure, trailing.get(REQUEST_ID), trailing)
        # The server sends its response metadata with the status, in the trailers, on success too.
        trailing = {k: v for k, v in (await call.trailing_metadata() or ()) if isinstance(v, str)}
        return Outcome(self.name, cast(Res, response), None, trailing.get(REQUEST_ID), trailing)

    async def close(self) -> None:
        await self.channel.close()


class ConnectTransport(Transport):
    """The generated connectrpc clients: Connect protocol (JSON or binary protobuf) or gRPC-Web."""

    def __init__(self, port: int, *, json_codec: bool, protocol: ProtocolType = ProtocolType.CONNECT) -> None:
        if protocol is ProtocolType.GRPC_WEB:
            self.name = "grpc-web"
        else:
            self.name = "connect-json" if json_codec else "connect-proto"
        base_url = f"http://127.0.0.1:{port}/api"
        codec = proto_json_codec() if json_codec else proto_binary_codec()
        self._clients: dict[str, Any] = {
            name: getattr(connect, f"{name}Client")(base_url, codec=codec, protocol=protocol)
            for name, (_, connect) in SERVICE_MODULES.items()
        }

    async def call(
        self,
        rpc: Rpc[Req, Res],
        request: Req,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Res]:
        method = getattr(self._clients[rpc.service], rpc.snake_name)
        timeout_ms = int(timeout_s * 1000) if timeout_s is not None else None
        with ResponseMetadata() as meta:
            try:
                response = await method(request, headers=self.merged(headers), timeout_ms=timeout_ms)
            except ConnectError as exc:
                got = {k.lower(): v for k, v in meta.headers().items()}
                failure = failure_from_details(exc.code.name.lower(), exc.message, exc.details)
                return Outcome(self.name, None, failure, got.get(REQUEST_ID), got)
            got = {k.lower(): v for k, v in meta.headers().items()}
        return Outcome(self.name, cast(Res, response), None, got.get(REQUEST_ID), got)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


class HttpJsonTransport(Transport):
    """Hand-written HTTP: canonical JSON POST, Connect error bodies parsed by hand."""

    def __init__(self, port: int) -> None:
        self.name = "http-json"
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0)

    async def call(
        self,
        rpc: Rpc[Req, Res],
        request: Req,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> Outcome[Res]:
        sent = {"content-type": "application/json", "connect-protocol-version": "1", **self.merged(headers)}
        if timeout_s is not None:
            sent["connect-timeout-ms"] = str(int(timeout_s * 1000))
        reply = await self.http.post("/api" + rpc.path, content=json_format.MessageToJson(request), headers=sent)
        got = {k.lower(): v for k, v in reply.headers.items()}
        assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
        if reply.status_code == 200:
            response = rpc.response_type()
            json_format.Parse(reply.content, response)  # strict: the server must send only known fields
            return Outcome(self.name, response, None, got.get(REQUEST_ID), got)
        failure = failure_from_connect_body(reply.content)
        assert reply.status_code == HTTP_STATUS_BY_CODE[failure.code], (reply.status_code, failure)
        return Outcome(self.name, None, failure, got.get(REQUEST_ID), got)

    async def close(self) -> None:
        await self.http.aclose()


def open_transport(name: str, *, grpc_port: int, http_port: int, token: str | None = None) -> Transport:
    """A transport that sends `authorization: Bearer <token>` on every call when a token is given."""
    transport: Transport
    if name == "grpc":
        transport = GrpcTransport(grpc_port)
    elif name == "connect-json":
        transport = ConnectTransport(http_port, json_codec=True)
    elif name == "connect-proto":
        transport = ConnectTransport(http_port, json_codec=False)
    elif name == "grpc-web":
        transport = ConnectTransport(http_port, json_codec=False, protocol=ProtocolType.GRPC_WEB)
    elif name == "http-json":
        transport = HttpJsonTransport(http_port)
    else:
        raise ValueError(name)
    transport.default_headers = {"authorization": f"Bearer {token}"} if token else {}
    return transport


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- PostgreSQL side-channel: what the service's database sees --------------------------------


@asynccontextmanager
async def project_row_locked(database_url: str, public_id: str) -> AsyncIterator[None]:
    """Hold `SELECT ... FOR UPDATE` on one project row in an open transaction of our own."""
    conn = await psycopg.AsyncConnection.connect(database_url)
    try:
        cur = await conn.execute("SELECT id FROM projects WHERE public_id = %s FOR UPDATE", (public_id,))
        assert await cur.fetchone() is not None, f"project {public_id} not in the database"
        yield
    finally:
        await conn.rollback()
        await conn.close()


async def active_project_updates(database_url: str) -> list[tuple[int, str, str | None]]:
    """Other sessions currently running an UPDATE on projects: (pid, state, wait_event_type)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'active' AND query ILIKE 'UPDATE projects%%'"
        )
        return [(int(pid), str(state), wait) for pid, state, wait in await cur.fetchall()]


async def wait_for_blocked_project_updates(database_url: str, count: int, *, within_s: float = 5.0) -> None:
    """Wait until `count` UPDATEs on projects are waiting for a lock (the calls are in flight)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        blocked = [a for a in await active_project_updates(database_url) if a[2] == "Lock"]
        if len(blocked) >= count:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"expected {count} blocked UPDATEs, saw {blocked}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A loopback port nobody listens on right now (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def project_and_employee(http_port: int, token: str, project_name: str) -> tuple[str, str]:
    """A new project with one employee (Ann Lee), made over Connect JSON: (project id, employee id)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/api") as http:
        created = await http.post(
            "/altalune.v1.ProjectService/CreateProject",
            json={"name": project_name, "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
            headers=bearer(token),
        )
        assert created.status_code == 200, created.text
        project = created.json()["project"]["id"]
        hired = await http.post(
            "/altalune.v1.EmployeeService/CreateEmployee",
            json={
                "projectId": project,
                "name": "Ann Lee",
                "email": "ann@example.com",
                "role": "Engineer",
                "department": "R&D",
                "status": "EMPLOYEE_STATUS_ACTIVE",
            },
            headers=bearer(token),
        )
        assert hired.status_code == 200, hired.text
        return project, hired.json()["employee"]["id"]
