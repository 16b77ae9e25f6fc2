"""grpc.health.v1 on both ports, answered from one status table.

grpcio-health's servicer keeps the table (the server as a whole under "", then each served
service) and its Watch streams; the gRPC port mounts it as it is, and the HTTP port serves the same
servicer's Check and Watch as Connect endpoints, so `buf curl`, connect clients and gRPC probes all
read one truth, and reflection on either port lists only what that port answers.

A Check of a service with no status is NOT_FOUND on both ports, with the reason
HEALTH_SERVICE_UNKNOWN like every other refusal (grpcio-health would answer a bare NOT_FOUND).
Like /healthz, health runs outside the interceptor chain: no credentials, never limited, not counted.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from grpc_health.v1 import health
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from internal.errors import UnknownHealthService, to_connect_error, to_grpc_status

HEALTH_SERVICE = health.SERVICE_NAME
CHECK_PATH = f"/{HEALTH_SERVICE}/Check"
WATCH_PATH = f"/{HEALTH_SERVICE}/Watch"


class _Refusing:
    """The one thing grpcio-health's Check asks of its gRPC context: to abort (only NOT_FOUND)."""

    def __init__(self, service: str) -> None:
        self._service = service

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise UnknownHealthService(self._service)


class _Mark(enum.Enum):
    """What ends a Connect watch besides an answer."""

    WATCH_ENDED = enum.auto()
    SHUTTING_DOWN = enum.auto()


class _Writing:
    """The one thing grpcio-health's Watch asks of its gRPC context: to write an answer."""

    def __init__(self, answers: asyncio.Queue[HealthCheckResponse | _Mark]) -> None:
        self._answers = answers

    async def write(self, answer: HealthCheckResponse) -> None:
        self._answers.put_nowait(answer)


class ServiceHealth(health.aio.HealthServicer):  # type: ignore[misc]
    """grpcio-health's servicer, with Check's refusal carrying our reason, and the Connect endpoints
    of the HTTP port."""

    def __init__(self) -> None:
        super().__init__()
        self._shutting_down = asyncio.Event()

    async def status_of(self, service: str) -> HealthCheckResponse:
        """The service's status; UnknownHealthService when it has none."""
        answer: HealthCheckResponse = await super().Check(HealthCheckRequest(service=service), _Refusing(service))
        return answer

    async def Check(self, request: HealthCheckRequest, context: grpc.aio.ServicerContext) -> HealthCheckResponse:
        try:
            return await self.status_of(request.service)
        except UnknownHealthService as unknown:
            await context.abort_with_status(to_grpc_status(to_connect_error(unknown)))
            raise AssertionError("unreachable: abort raises") from None

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        self._shutting_down.set()

    async def _check_over_connect(
        self, request: HealthCheckRequest, _ctx: RequestContext[Any, Any]
    ) -> HealthCheckResponse:
        try:
            return await self.status_of(request.service)
        except UnknownHealthService as unknown:  # outside the chain: no interceptor maps it
            raise to_connect_error(unknown) from None

    async def _watch_over_connect(
        self, request: HealthCheckRequest, _ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[HealthCheckResponse]:
        """grpcio-health's Watch, its writes turned into the stream's messages. Once the server is
        shutting down the stream ends after it said NOT_SERVING (or the service's unknown status), so
        an open watch does not hold the HTTP port's shutdown for the whole grace period."""
        answers: asyncio.Queue[HealthCheckResponse | _Mark] = asyncio.Queue()
        watching = asyncio.ensure_future(self.Watch(request, _Writing(answers)))
        ending = asyncio.ensure_future(self._shutting_down.wait())
        watching.add_done_callback(lambda _: answers.put_nowait(_Mark.WATCH_ENDED))
        ending.add_done_callback(lambda _: answers.put_nowait(_Mark.SHUTTING_DOWN))
        said: int | None = None
        try:
            while True:
                answer = await answers.get()
                if answer is _Mark.WATCH_ENDED:
                    return
                if answer is _Mark.SHUTTING_DOWN:
                    if said is not None and said != HealthCheckResponse.SERVING:
                        return
                    continue  # Watch is about to write the new status
                yield answer
                said = answer.status
                if self._shutting_down.is_set() and said != HealthCheckResponse.SERVING:
                    return
        finally:
            watching.cancel()
            ending.cancel()

    def connect_endpoints(self) -> tuple[dict[str, Endpoint[Any, Any]], dict[str, Endpoint[Any, Any]]]:
        """(unary, streaming) endpoints of the HTTP port, keyed by procedure path."""

        def info(name: str) -> MethodInfo[HealthCheckRequest, HealthCheckResponse]:
            return MethodInfo(
                name=name,
                service_name=HEALTH_SERVICE,
                input=HealthCheckRequest,
                output=HealthCheckResponse,
                idempotency_level=IdempotencyLevel.UNKNOWN,
            )

        return (
            {CHECK_PATH: Endpoint.unary(method=info("Check"), function=self._check_over_connect)},
            {WATCH_PATH: Endpoint.server_stream(method=info("Watch"), function=self._watch_over_connect)},
        )
