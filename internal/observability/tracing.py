"""OpenTelemetry traces: a server span per RPC (both ports), a client span per database statement.

Off unless the standard environment asks for an exporter (`OTEL_TRACES_EXPORTER=otlp|console`, or
an `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`); `OTEL_SDK_DISABLED=true` wins. Off, a call pays one
attribute test, and a `traceparent` it carries still puts its trace id in the call's log lines so
they can be matched with the caller's trace. On, the rest of the `OTEL_*` variables apply as the
SDK reads them (sampler, batch processor, resource, OTLP endpoint, headers, protocol).

Span attributes follow the OpenTelemetry RPC conventions: `rpc.system` is `grpc` on the gRPC port
and `connect_rpc` on the HTTP port, with `rpc.grpc.status_code` or `rpc.connect_rpc.error_code`.
Statement spans carry the operation only, never the text: the write path binds values into the
text client-side (internal/postgres/database.py), and values may be secret.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import structlog
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from internal.addresses import split_peer
from internal.config import ConfigError


class CallOutcome(Protocol):
    """What the span needs of the request's record (internal/rpc/calls.CallRecord)."""

    transport: str
    peer: str | None
    via: str | None
    code: str
    reason: str | None
    trace_id: str | None


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32

# gRPC status numbers by Connect code name, for rpc.grpc.status_code.
_GRPC_STATUS = {
    "ok": 0,
    "canceled": 1,
    "unknown": 2,
    "invalid_argument": 3,
    "deadline_exceeded": 4,
    "not_found": 5,
    "already_exists": 6,
    "permission_denied": 7,
    "resource_exhausted": 8,
    "failed_precondition": 9,
    "aborted": 10,
    "out_of_range": 11,
    "unimplemented": 12,
    "internal": 13,
    "unavailable": 14,
    "data_loss": 15,
    "unauthenticated": 16,
}
# The server-side error codes of the semantic conventions: the others are the caller's doing.
_SERVER_ERRORS = frozenset({"unknown", "deadline_exceeded", "unimplemented", "internal", "unavailable", "data_loss"})


def trace_ids_from_header(traceparent: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a valid W3C traceparent, else None."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or match.group(1) == _ZERO_TRACE:
        return None
    return match.group(1), match.group(2)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def exporter_choice(env: Mapping[str, str]) -> str | None:
    """Which exporter the OTEL_* variables ask for: None (off), `console`, `otlp-http` or
    `otlp-grpc`; a ConfigError naming the variable for what this service does not ship."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return None
    named = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if named == "none" or (named == "" and not endpoint):
        return None
    if named == "console":
        return "console"
    if named not in ("", "otlp"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER must be otlp, console or none, got {named!r}")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).strip()
    if protocol not in ("http/protobuf", "grpc"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, got {protocol!r}")
    return "otlp-grpc" if protocol == "grpc" else "otlp-http"


def exporter_from_environment(env: Mapping[str, str]) -> SpanExporter | None:
    """The span exporter the OTEL_* variables name (it reads its own endpoint, headers, timeout)."""
    choice = exporter_choice(env)
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if choice == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    return None


class Tracing:
    """The process's tracer, or none. Built once (container); the chain and the database use it."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self._tracer = provider.get_tracer("altalune") if provider is not None else None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Tracing:
        env = os.environ if env is None else env
        exporter = exporter_from_environment(env)
        if exporter is None:
            return cls()
        provider = TracerProvider(resource=Resource.create({"service.name": "altalune"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def shutdown(self) -> None:
        """Export what is buffered (bounded by the SDK's export timeout)."""
        if self.provider is not None:
            self.provider.shutdown()

    @contextlib.contextmanager
    def rpc(self, record: CallOutcome, headers: Mapping[str, str], service: str, method: str) -> Iterator[None]:
        """The call's server span (when on), child of the caller's `traceparent`; its trace id is
        bound to every log line of the call, the access-log line included."""
        if self._tracer is None:
            ids = trace_ids_from_header(headers.get("traceparent"))
            if ids is not None:
                record.trace_id = ids[0]
                structlog.contextvars.bind_contextvars(trace_id=ids[0])
            yield
            return
        rpc_system = "grpc" if record.transport == "grpc" else "connect_rpc"
        attributes: dict[str, Any] = {"rpc.system": rpc_system, "rpc.service": service, "rpc.method": method}
        if record.peer:
            address, port = split_peer(record.peer)
            attributes["client.address"] = address
            if port is not None:
                attributes["client.port"] = port
        if record.via:  # a trusted proxy forwarded the call: the socket's peer is the proxy
            address, port = split_peer(record.via)
            attributes["network.peer.address"] = address
            if port is not None:
                attributes["network.peer.port"] = port
        with self._tracer.start_as_current_span(
            f"{service}/{method}",
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            context = span.get_span_context()
            record.trace_id = trace.format_trace_id(context.trace_id)
            structlog.contextvars.bind_contextvars(
                trace_id=record.trace_id, span_id=trace.format_span_id(context.span_id)
            )
            try:
                yield
            finally:
                _end_rpc(span, record, rpc_system)

    @contextlib.contextmanager
    def statement(self, operation: str) -> Iterator[None]:
        """A database client span, only inside a recorded call (background work is not traced)."""
        if self._tracer is None or not trace.get_current_span().is_recording():
            yield
            return
        with self._tracer.start_as_current_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": "postgresql", "db.operation.name": operation},
        ):
            yield


def _end_rpc(span: Span, record: CallOutcome, rpc_system: str) -> None:
    code = record.code
    if rpc_system == "grpc":
        span.set_attribute("rpc.grpc.status_code", _GRPC_STATUS.get(code, 2))
    elif code != "ok":
        span.set_attribute("rpc.connect_rpc.error_code", code)
    if record.reason:
        span.set_attribute("error.type", record.reason)
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code))
