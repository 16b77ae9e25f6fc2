"""The interceptor chain, exercised through the endpoint table both transports serve.

The handler is a small fake implementing the ProjectService surface; the routes, the chain and the
proto descriptors are the real ones.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel
from connectrpc.request import Headers, RequestContext
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from altalune.v1 import project_pb2
from internal import deadlines
from internal.rpc.calls import REQUEST_ID_HEADER
from internal.rpc.endpoints import ServiceBinding, UnaryRoute, build_routes
from internal.rpc.interceptors import Drain, default_chain
from internal.tenancy import ProjectNotFound
from internal.validation import RequestValidator

SERVICE = project_pb2.DESCRIPTOR.services_by_name["ProjectService"]
CREATE = "/altalune.v1.ProjectService/CreateProject"
GET = "/altalune.v1.ProjectService/GetProject"
VALID_ID = "23456789abcdef"
SECRET = "secret dsn=postgresql://app:hunter2@db.internal/prod"


class FakeProjects:
    """Records what reached it; fails or stalls on demand."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.failure: BaseException | None = None
        self.delay_s = 0.0
        self.remaining_ms: int | None = None
        self.entered = asyncio.Event()

    async def _handle(self, request: Message) -> None:
        self.received.append(request)
        self.entered.set()
        self.remaining_ms = deadlines.remaining_ms()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failure is not None:
            raise self.failure

    async def create_project(
        self, request: project_pb2.CreateProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.CreateProjectResponse:
        await self._handle(request)
        return project_pb2.CreateProjectResponse(project=project_pb2.Project(id=VALID_ID, name=request.name))

    async def get_project(
        self, request: project_pb2.GetProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.GetProjectResponse:
        await self._handle(request)
        return project_pb2.GetProjectResponse(project=project_pb2.Project(id=request.id))

    async def update_project(
        self, request: project_pb2.UpdateProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.UpdateProjectResponse:
        await self._handle(request)
        return project_pb2.UpdateProjectResponse()

    async def delete_project(
        self, request: project_pb2.DeleteProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.DeleteProjectResponse:
        await self._handle(request)
        return project_pb2.DeleteProjectResponse()

    async def query_projects(
        self, request: project_pb2.QueryProjectsRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.QueryProjectsResponse:
        await self._handle(request)
        return project_pb2.QueryProjectsResponse()


class MissingQuery:
    """Lacks query_projects."""

    async def create_project(self, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        raise NotImplementedError

    async def get_project(self, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        raise NotImplementedError

    async def update_project(self, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        raise NotImplementedError

    async def delete_project(self, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        raise NotImplementedError


class PassThrough:
    """Stands in for the auth links (covered by tests/unit/test_auth_*.py and the e2e suite)."""

    async def intercept_unary(self, call_next: Any, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        return await call_next(request, ctx)  # type: ignore[no-any-return]


def _routes(handler: object, *, max_deadline_ms: int = 5_000, drain: Drain | None = None) -> dict[str, UnaryRoute]:
    chain = default_chain(
        validator=RequestValidator(),
        max_deadline_ms=max_deadline_ms,
        call_scope=PassThrough(),
        authenticate=PassThrough(),
        authorize=PassThrough(),
        drain=drain or Drain(),
    )
    return build_routes([ServiceBinding(SERVICE, handler)], chain)


def _context(
    route: UnaryRoute, *, timeout_ms: int | None = None, headers: dict[str, str] | None = None
) -> RequestContext[Any, Any]:
    return RequestContext(
        method=route.method, http_method="POST", request_headers=Headers(headers or {}), timeout_ms=timeout_ms
    )


async def _call(route: UnaryRoute, request: Message, ctx: RequestContext[Any, Any]) -> Message:
    # In its own task, like a served request: the deadline and log context stay with the call.
    return await asyncio.ensure_future(route.function(request, ctx))


def _valid_create() -> project_pb2.CreateProjectRequest:
    return project_pb2.CreateProjectRequest(name="Acme", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE)


def _reason(error: ConnectError) -> str:
    [info] = [d for d in error.details if d.TypeName() == "google.rpc.ErrorInfo"]
    unpacked = error_details_pb2.ErrorInfo()
    info.Unpack(unpacked)
    return str(unpacked.reason)


def test_every_rpc_of_the_service_gets_a_route_with_its_idempotency_level() -> None:
    routes = _routes(FakeProjects())

    assert sorted(routes) == sorted(f"/altalune.v1.ProjectService/{m.name}" for m in SERVICE.methods)
    assert routes[GET].method.idempotency_level is IdempotencyLevel.NO_SIDE_EFFECTS
    assert routes[CREATE].method.idempotency_level is IdempotencyLevel.UNKNOWN
    assert routes[CREATE].method.input is project_pb2.CreateProjectRequest


def test_a_handler_missing_a_method_fails_at_start_up_naming_it() -> None:
    with pytest.raises(TypeError, match="query_projects"):
        _routes(MissingQuery())


async def test_a_valid_request_reaches_the_handler_and_its_answer_comes_back() -> None:
    handler = FakeProjects()
    route = _routes(handler)[CREATE]

    response = await _call(route, _valid_create(), _context(route))

    assert response == project_pb2.CreateProjectResponse(project=project_pb2.Project(id=VALID_ID, name="Acme"))
    assert handler.received == [_valid_create()]


async def test_every_response_carries_a_fresh_request_id() -> None:
    route = _routes(FakeProjects())[CREATE]
    first, second = _context(route), _context(route)

    await _call(route, _valid_create(), first)
    await _call(route, _valid_create(), second)

    ids = [ctx.response_headers().get(REQUEST_ID_HEADER) for ctx in (first, second)]
    assert all(i and len(i) >= 16 for i in ids)
    assert ids[0] != ids[1]


async def test_a_plain_client_request_id_is_echoed_and_an_unsafe_one_replaced() -> None:
    route = _routes(FakeProjects())[CREATE]
    kept = _context(route, headers={"X-Request-Id": "client-42.retry:1"})
    replaced = _context(route, headers={"X-Request-Id": "evil\nid with spaces"})

    await _call(route, _valid_create(), kept)
    await _call(route, _valid_create(), replaced)

    assert kept.response_headers()[REQUEST_ID_HEADER] == "client-42.retry:1"
    assert replaced.response_headers()[REQUEST_ID_HEADER] not in ("", "evil\nid with spaces")


async def test_an_unexpected_exception_becomes_internal_without_its_text() -> None:
    handler = FakeProjects()
    handler.failure = RuntimeError(SECRET)
    route = _routes(handler)[CREATE]
    ctx = _context(route)

    with pytest.raises(ConnectError) as caught:
        await _call(route, _valid_create(), ctx)

    assert caught.value.code is Code.INTERNAL
    assert caught.value.message == "internal error"
    assert _reason(caught.value) == "INTERNAL"
    wire = caught.value.message.encode() + b"".join(d.SerializeToString() for d in caught.value.details)
    assert b"hunter2" not in wire
    assert b"dsn" not in wire
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert ctx.response_headers().get(REQUEST_ID_HEADER)


async def test_an_application_error_keeps_its_code_reason_and_metadata() -> None:
    handler = FakeProjects()
    handler.failure = ProjectNotFound(VALID_ID)
    route = _routes(handler)[GET]

    with pytest.raises(ConnectError) as caught:
        await _call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route))

    assert caught.value.code is Code.NOT_FOUND
    assert caught.value.message == f"project {VALID_ID!r} not found"
    assert _reason(caught.value) == "PROJECT_NOT_FOUND"


async def test_a_connect_error_raised_by_a_handler_passes_through_unchanged() -> None:
    handler = FakeProjects()
    original = ConnectError(Code.PERMISSION_DENIED, "no")
    handler.failure = original
    route = _routes(handler)[GET]

    with pytest.raises(ConnectError) as caught:
        await _call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route))

    assert caught.value is original


async def test_a_slow_handler_hits_the_clients_deadline() -> None:
    handler = FakeProjects()
    handler.delay_s = 5.0
    route = _routes(handler)[GET]

    started = time.perf_counter()
    with pytest.raises(ConnectError) as caught:
        await _call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route, timeout_ms=50))

    assert caught.value.code is Code.DEADLINE_EXCEEDED
    assert _reason(caught.value) == "DEADLINE_EXCEEDED"
    assert time.perf_counter() - started < 1.0


async def test_a_call_cut_by_the_drain_answers_unavailable_shutting_down_and_others_are_untouched() -> None:
    drain = Drain()
    stuck, quick = FakeProjects(), FakeProjects()
    stuck.delay_s = 30.0
    routes = _routes(stuck, drain=drain)
    call = asyncio.ensure_future(_call(routes[GET], project_pb2.GetProjectRequest(id=VALID_ID), _context(routes[GET])))
    await stuck.entered.wait()

    assert await drain.cut(settle_s=1.0) == 1
    with pytest.raises(ConnectError) as caught:
        await call
    assert caught.value.code is Code.UNAVAILABLE
    assert _reason(caught.value) == "SHUTTING_DOWN"
    assert drain.in_flight == 0
    # The drain only knows calls in flight: a later call is served normally.
    route = _routes(quick, drain=drain)[GET]
    assert await _call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route))


async def test_a_call_cancelled_by_anyone_else_stays_cancelled() -> None:
    drain = Drain()
    stuck = FakeProjects()
    stuck.delay_s = 30.0
    route = _routes(stuck, drain=drain)[GET]
    call = asyncio.ensure_future(_call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route)))
    await stuck.entered.wait()

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert drain.in_flight == 0


async def test_without_a_client_deadline_the_server_maximum_applies() -> None:
    handler = FakeProjects()
    handler.delay_s = 5.0
    route = _routes(handler, max_deadline_ms=100)[GET]

    started = time.perf_counter()
    with pytest.raises(ConnectError) as caught:
        await _call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route))

    assert caught.value.code is Code.DEADLINE_EXCEEDED
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("client_ms", "max_ms", "bound_ms"), [(300, 5_000, 300), (60_000, 1_000, 1_000)])
async def test_the_handler_sees_the_deadline_clamped_to_the_server_maximum(
    client_ms: int, max_ms: int, bound_ms: int
) -> None:
    handler = FakeProjects()
    route = _routes(handler, max_deadline_ms=max_ms)[GET]

    await _call(route, project_pb2.GetProjectRequest(id=VALID_ID), _context(route, timeout_ms=client_ms))

    assert handler.remaining_ms is not None
    assert bound_ms * 0.5 < handler.remaining_ms <= bound_ms


async def test_a_request_breaking_the_contract_never_reaches_the_handler() -> None:
    handler = FakeProjects()
    route = _routes(handler)[CREATE]

    with pytest.raises(ConnectError) as caught:
        await _call(route, project_pb2.CreateProjectRequest(name="Acme"), _context(route))

    assert handler.received == []
    assert caught.value.code is Code.INVALID_ARGUMENT
    [detail] = [d for d in caught.value.details if d.TypeName() == "google.rpc.BadRequest"]
    bad_request = error_details_pb2.BadRequest()
    detail.Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["timezone", "environment"]


async def test_an_update_outside_its_mask_is_not_judged_on_unmasked_fields() -> None:
    handler = FakeProjects()
    route = _routes(handler)["/altalune.v1.ProjectService/UpdateProject"]
    request = project_pb2.UpdateProjectRequest(
        id=VALID_ID, description="d", update_mask=FieldMask(paths=["description"])
    )

    await _call(route, request, _context(route))

    assert handler.received == [request]
