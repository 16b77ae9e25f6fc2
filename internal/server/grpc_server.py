"""The gRPC port: grpc.aio serving the shared endpoint table, plus health and reflection.

Requests are decoded here (not by grpcio) so a malformed body gets the same INVALID_ARGUMENT as
on the Connect port; the Connect request context is built from gRPC metadata and the deadline,
so the interceptor chain cannot tell the transports apart. Response metadata the chain sets (the
request id) travels in the trailers, beside the status, on success and on error alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from connectrpc.errors import ConnectError
from connectrpc.request import Headers, RequestContext
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from internal.addresses import FORWARDED_FOR_HEADER, IPNetwork, caller_address, split_peer
from internal.auth.policy import check_served_services
from internal.errors import InternalError, MalformedRequest, UnknownProcedure, to_connect_error, to_grpc_status
from internal.logs import get_logger
from internal.rpc.calls import REQUEST_ID_HEADER, CallObserver, call_record
from internal.rpc.endpoints import UnaryRoute
from internal.server.health import ServiceHealth

log = get_logger("altalune.grpc")

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = reflection.SERVICE_NAME


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _status_with(error: ConnectError, extra: Iterable[tuple[str, str]]) -> grpc.Status:
    status = to_grpc_status(error)
    return _Status(status.code, status.details, (*status.trailing_metadata, *extra))


def _address(peer: str) -> str:
    """grpc's `ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` as the HTTP port logs it: `127.0.0.1:5000`."""
    return peer.split(":", 1)[1] if peer.startswith(("ipv4:", "ipv6:")) else peer


def _forwarded_caller(
    context: grpc.aio.ServicerContext, peer: str, trusted: Sequence[IPNetwork]
) -> tuple[str, str | None]:
    """(caller, proxy or None), as the HTTP port finds them (`caller_address`)."""
    host, port = split_peer(peer)
    forwarded = [str(v) for k, v in context.invocation_metadata() or () if k == FORWARDED_FOR_HEADER]
    if port is None or not forwarded:
        return peer, None
    return caller_address(host, port, ",".join(forwarded), trusted)


def _unary_handler(
    route: UnaryRoute, observer: CallObserver | None, trusted: Sequence[IPNetwork]
) -> grpc.RpcMethodHandler:
    input_type = route.method.input
    method = route.method
    rpc_name = f"{method.service_name}/{method.name}"

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        # Binary (-bin) metadata is never read by the chain; everything else is a plain header.
        headers = Headers({key: value for key, value in context.invocation_metadata() or () if key[-4:] != "-bin"})
        peer, via = _address(context.peer()), None
        if trusted:
            peer, via = _forwarded_caller(context, peer, trusted)
        with call_record(
            headers.get(REQUEST_ID_HEADER), transport="grpc", peer=peer, observer=observer, via=via
        ) as record:
            remaining = context.time_remaining()
            ctx: RequestContext[Any, Any] = RequestContext(
                method=method,
                http_method="POST",
                request_headers=headers,
                timeout_ms=int(remaining * 1000) if remaining is not None else None,
                client_address=peer,
            )
            record.request_bytes = len(raw)
            try:
                try:
                    request = input_type.FromString(raw)
                except (DecodeError, RecursionError):
                    record.named(rpc_name)
                    ctx.response_headers()[REQUEST_ID_HEADER] = record.request_id
                    raise to_connect_error(
                        MalformedRequest("malformed request body: not a valid protobuf message")
                    ) from None
                response = await route.function(request, ctx)
            except ConnectError as error:
                record.failed(error)
                await context.abort_with_status(_status_with(error, ctx.response_headers().allitems()))
                raise  # unreachable: abort raises
            except Exception:
                # The chain maps everything; this is a last guard so no text ever leaks.
                log.exception("unhandled error in gRPC bridge")
                record.code = "internal"
                await context.abort_with_status(_status_with(to_connect_error(InternalError()), ()))
                raise
            # With the message and the status in one batch: grpc.aio has no way to attach initial
            # metadata to that batch, and sending it first costs a write and a wake-up per call.
            context.set_trailing_metadata(tuple(ctx.response_headers().allitems()))
            data: bytes = response.SerializeToString()
            record.response_bytes = len(data)
            return data

    return grpc.unary_unary_rpc_method_handler(handle)


class RouteTable(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Looks RPCs up in the prebuilt handler table (built once, not per call)."""

    def __init__(
        self, routes: Mapping[str, UnaryRoute], observer: CallObserver | None, trusted: Sequence[IPNetwork]
    ) -> None:
        self._handlers = {path: _unary_handler(route, observer, trusted) for path, route in routes.items()}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)


class _UnknownProcedure(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Consulted last: a method nothing else serves gets UNIMPLEMENTED with the same
    `UNKNOWN_PROCEDURE` reason (and a request id) as on the Connect port, not grpcio's bare status."""

    def __init__(self, observer: CallObserver | None, trusted: Sequence[IPNetwork]) -> None:
        self._observer = observer
        self._trusted = trusted

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        procedure = str(handler_call_details.method)
        error = to_connect_error(UnknownProcedure(procedure))

        async def refuse(_request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            sent = dict(context.invocation_metadata() or ())
            peer, via = _address(context.peer()), None
            if self._trusted:
                peer, via = _forwarded_caller(context, peer, self._trusted)
            with call_record(
                str(sent.get(REQUEST_ID_HEADER, "")), transport="grpc", peer=peer, observer=self._observer, via=via
            ) as record:
                record.named(procedure.lstrip("/")[:200])
                record.failed(error)
                await context.abort_with_status(_status_with(error, ((REQUEST_ID_HEADER, record.request_id),)))
            raise AssertionError("unreachable: abort raises")

        return grpc.unary_unary_rpc_method_handler(refuse)


class _ReflectionV1(grpc.GenericRpcHandler):  # type: ignore[misc]
    """grpcio-reflection serves v1alpha only; v1 is wire-identical, so it shares the servicer."""

    def __init__(self, servicer: Any) -> None:
        self._handler = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method == f"/{REFLECTION_V1}/ServerReflectionInfo":
            return self._handler
        return None


GRPC_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_connection_idle_ms", 15 * 60_000),
)


class GrpcServer:
    """grpc.aio server with our routes, grpc.health.v1 and reflection (v1 and v1alpha)."""

    def __init__(
        self,
        routes: Mapping[str, UnaryRoute],
        service_names: Sequence[str],
        *,
        share_port: bool = False,
        max_connections: int = 1000,
        handshake_timeout_s: float = 10.0,
        longest_call_s: float = 30.0,
        max_connection_age_s: float = 120.0,
        observer: CallObserver | None = None,
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        # Also answers grpc.health.v1 on the HTTP port (internal/server/health.py): one status table.
        self.health = ServiceHealth()
        self._service_names = list(service_names)
        # A lone process must fail loudly when the port is taken, not silently share it; the workers
        # of one supervisor share it (the supervisor made sure no one else holds it).
        options = (
            *GRPC_OPTIONS,
            ("grpc.so_reuseport", 1 if share_port else 0),
            ("grpc.max_allowed_incoming_connections", max_connections),
            ("grpc.server_handshake_timeout_ms", int(handshake_timeout_s * 1000)),
            # grpcio never dispatches (nor answers) a call whose request ends inside a message or
            # holds none; the only bound on that wait is the connection's age: then GOAWAY, and
            # after the grace the connection closes. Well-behaved clients reconnect transparently.
            ("grpc.max_connection_age_ms", int(max_connection_age_s * 1000)),
            # A call admitted before GOAWAY may still run to its longest deadline.
            ("grpc.max_connection_age_grace_ms", int(longest_call_s * 1000) + 5_000),
        )
        self._server = grpc.aio.server(options=options)
        self._server.add_generic_rpc_handlers((RouteTable(routes, observer, trusted_proxies),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = (*service_names, health.SERVICE_NAME, REFLECTION_V1ALPHA, REFLECTION_V1)
        # Health and reflection are served outside the chain: they must be declared public.
        check_served_services(names, {path.split("/")[1] for path in routes})
        servicer = reflection.aio.ReflectionServicer(names)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, self._server)
        self._server.add_generic_rpc_handlers((_ReflectionV1(servicer),))
        self._server.add_generic_rpc_handlers(
            (_UnknownProcedure(observer, trusted_proxies),)
        )  # last: only what nothing serves
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        try:
            bound = int(self._server.add_insecure_port(f"{host}:{port}"))
        except RuntimeError:  # grpcio 1.85 raises "Failed to bind" instead of returning 0
            bound = 0
        if bound == 0:
            raise OSError(f"cannot bind the gRPC port {host}:{port} (already in use?)")
        await self._server.start()
        self.port = bound
        return bound

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self._service_names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
