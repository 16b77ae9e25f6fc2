"""gRPC server reflection (v1 and v1alpha) as Connect bidi-stream endpoints, for the HTTP port.

`buf curl --reflect` asks the address it calls: over HTTP/2 it opens
`/api/grpc.reflection.v1.ServerReflection/ServerReflectionInfo` (then v1alpha) as a Connect
streaming call (`application/connect+proto`). grpcio-reflection's servicer already answers from the
process's descriptor pool and never touches its gRPC context, so the same servicer the gRPC port
uses is mounted here; v1 and v1alpha messages are wire-identical, so one message type serves both.
The list of services is the gRPC port's (internal/server/grpc_server.py), so both ports describe
the same API. Like the gRPC port, reflection needs no credentials and runs outside the chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection, reflection_pb2

from internal.server.grpc_server import REFLECTION_V1, REFLECTION_V1ALPHA

REFLECTION_METHOD = "ServerReflectionInfo"


def reflected_services(service_names: Sequence[str]) -> tuple[str, ...]:
    """What reflection lists: the same names as on the gRPC port."""
    return (*service_names, health.SERVICE_NAME, REFLECTION_V1ALPHA, REFLECTION_V1)


def reflection_endpoints(service_names: Sequence[str]) -> dict[str, Endpoint[Any, Any]]:
    """Both reflection services' one bidi method, keyed by procedure path (`/pkg.Service/Method`)."""
    servicer = reflection.aio.ReflectionServicer(reflected_services(service_names))

    def serve(
        requests: AsyncIterator[reflection_pb2.ServerReflectionRequest],
        _ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        answers: AsyncIterator[reflection_pb2.ServerReflectionResponse] = servicer.ServerReflectionInfo(requests, None)
        return answers

    return {
        f"/{service}/{REFLECTION_METHOD}": Endpoint.bidi_stream(
            method=MethodInfo(
                name=REFLECTION_METHOD,
                service_name=service,
                input=reflection_pb2.ServerReflectionRequest,
                output=reflection_pb2.ServerReflectionResponse,
                idempotency_level=IdempotencyLevel.UNKNOWN,
            ),
            function=serve,
        )
        for service in (REFLECTION_V1, REFLECTION_V1ALPHA)
    }
