"""One endpoint table for every RPC, built once at start-up from the proto service descriptors.

Both transports serve exactly this table: the Connect ASGI app mounts it, and the gRPC server
bridges onto it, so a request passes through the same interceptor chain whichever port it used.
Only public connectrpc API is used (Endpoint, MethodInfo).

A handler subclasses the service protocol that connectrpc generates (`<name>_connect.py`), so the
type checker holds every handler method to the contract's request and response types.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import Endpoint
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

UnaryFunction = Callable[[Message, RequestContext[Any, Any]], Awaitable[Message]]


class UnaryInterceptor(Protocol):
    """Same shape as connectrpc's UnaryInterceptor, applied by us so both transports share it."""

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message: ...


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """A proto service and the handler implementing its methods (snake_case names)."""

    descriptor: ServiceDescriptor
    handler: object


def _implemented(handler: object, attribute: str) -> Callable[..., Any] | None:
    """The handler's own method, or None when it is missing or only the generated protocol's
    placeholder (which would answer UNIMPLEMENTED at run time instead of failing start-up)."""
    for cls in type(handler).__mro__:
        if attribute in vars(cls):
            if vars(cls).get("_is_protocol", False):
                return None
            function: Callable[..., Any] = getattr(handler, attribute)
            return function
    return None


@dataclass(frozen=True, slots=True)
class UnaryRoute:
    path: str
    method: MethodInfo[Any, Any]
    function: UnaryFunction


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _idempotency(options: descriptor_pb2.MethodOptions) -> IdempotencyLevel:
    level = options.idempotency_level
    if level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS:
        return IdempotencyLevel.NO_SIDE_EFFECTS
    if level == descriptor_pb2.MethodOptions.IDEMPOTENT:
        return IdempotencyLevel.IDEMPOTENT
    return IdempotencyLevel.UNKNOWN


def build_routes(bindings: Sequence[ServiceBinding], interceptors: Sequence[UnaryInterceptor]) -> dict[str, UnaryRoute]:
    """Resolve every RPC to its handler method wrapped in the chain; fail at start-up if a handler
    method is missing. Access rules are checked by the container (internal.auth.policy)."""
    routes: dict[str, UnaryRoute] = {}
    for binding in bindings:
        service = binding.descriptor
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                raise NotImplementedError(f"{service.full_name}/{method.name}: streaming RPCs are not bridged yet")
            attribute = _snake(method.name)
            function = _implemented(binding.handler, attribute)
            if function is None:
                raise TypeError(
                    f"{type(binding.handler).__name__} lacks {attribute}() for {service.full_name}/{method.name}"
                )
            options = descriptor_pb2.MethodOptions()
            if method.has_options:
                options.ParseFromString(method.GetOptions().SerializeToString())
            info: MethodInfo[Any, Any] = MethodInfo(
                name=method.name,
                service_name=service.full_name,
                input=GetMessageClass(method.input_type),
                output=GetMessageClass(method.output_type),
                idempotency_level=_idempotency(options),
            )
            wrapped: UnaryFunction = function
            for interceptor in reversed(interceptors):
                wrapped = functools.partial(interceptor.intercept_unary, wrapped)
            path = f"/{service.full_name}/{method.name}"
            routes[path] = UnaryRoute(path=path, method=info, function=wrapped)
    return routes


def connect_endpoints(routes: Mapping[str, UnaryRoute]) -> dict[str, Any]:
    """The same routes in the form the connectrpc ASGI application serves."""
    return {path: Endpoint.unary(method=r.method, function=r.function) for path, r in routes.items()}
