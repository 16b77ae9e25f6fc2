"""Application errors: a stable reason, a status code, and the one mapping onto the wire.

Domains subclass AppError in their own errors.py; nothing else builds ConnectError or gRPC statuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, dataclass_transform

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "altalune.v1"
GRPC_STATUS_BY_CODE: dict[Code, grpc.StatusCode] = {
    c: grpc.StatusCode.CANCELLED if c is Code.CANCELED else grpc.StatusCode[c.name] for c in Code
}


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: a proto-name path like `filters["x"]` or `update_mask`, a message, a rule id."""

    field: str
    description: str
    reason: str


class AppError(Exception):
    """Base of every error a client may see.

    One class per reason: a class a client can receive declares its `reason`, its `code` and the
    exact `metadata_keys` every instance carries (its ErrorInfo shape, listed in the README). A class
    without a reason (Unauthenticated) only groups others and cannot be raised.
    """

    reason: ClassVar[str]
    code: ClassVar[Code]
    metadata_keys: ClassVar[tuple[str, ...]] = ()
    # When a client meets it, in a few words. The README's table of the services' errors is written
    # from the domains' classes (`make generate`), so it cannot drift from them.
    situation: ClassVar[str] = ""
    # The HTTP status of a Connect error follows the code, unless the protocol fixes another one
    # (404 unknown procedure, 405 method, 415 content type).
    http_status: ClassVar[int | None] = None
    _raisable: ClassVar[bool] = False
    _key_set: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._raisable = hasattr(cls, "reason")
        cls._key_set = frozenset(cls.metadata_keys)
        if cls._raisable and not hasattr(cls, "code"):
            raise TypeError(f"{cls.__name__} declares a reason but no code")
        if len(cls._key_set) != len(cls.metadata_keys):
            raise TypeError(f"{cls.__name__} lists a metadata key twice")

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        retry_after_s: float | None = None,
    ) -> None:
        if not self._raisable:
            raise TypeError(f"{type(self).__name__} has no reason of its own: raise one of its subclasses")
        self.metadata = dict(metadata or {})
        if self.metadata.keys() != self._key_set:
            raise TypeError(
                f"{type(self).__name__} carries the metadata keys {sorted(self._key_set)}, not {sorted(self.metadata)}"
            )
        super().__init__(message)
        self.message = message
        self.violations = tuple(violations)
        self.retry_after_s = retry_after_s


@dataclass_transform()
class DomainError(AppError):
    """An error a domain declares rather than writes (internal/domain/employee/errors.py): its
    fields (annotated `str`) are its ErrorInfo metadata keys, in order, and fill its message
    `template`. The type checker sees the constructor the fields make
    (`EmployeeNotFound(project_id, employee_id)`), so a raise site cannot pass another shape."""

    template: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        fields = tuple(
            name for name, kind in vars(cls).get("__annotations__", {}).items() if not str(kind).startswith("ClassVar")
        )
        cls.metadata_keys = fields
        super().__init_subclass__(**kwargs)
        if cls._raisable and "__init__" not in vars(cls):
            cls.__init__ = _fields_init(fields)  # type: ignore[assignment, method-assign]


def _fields_init(fields: tuple[str, ...]) -> Any:
    def __init__(self: DomainError, *args: str, **kwargs: str) -> None:
        values = dict(zip(fields, args, strict=False)) | kwargs
        if len(args) > len(fields) or values.keys() != set(fields):
            raise TypeError(f"{type(self).__name__} takes exactly {', '.join(fields) or 'no arguments'}")
        AppError.__init__(self, self.template.format(**values), metadata=values)
        for name, value in values.items():
            setattr(self, name, value)

    return __init__


class EtagMismatch(DomainError):
    """A write that named an etag, on a resource that changed since the client read it: nothing is
    written, and the current etag comes back so the client can re-read and decide again (AIP-154).
    One class for every resource, so a client handles one shape: which resource (`resource`: its
    kind, e.g. `employee`; `id`: its public id, a member's user id) and its current `etag`."""

    reason = "ETAG_MISMATCH"
    code = Code.ABORTED
    template = "{resource} {id!r} changed since it was read (its current etag is {etag!r}): read it again"

    resource: str
    id: str
    etag: str


class UnknownIds(AppError):
    """Ids a call named that do not exist: all of them, so a client can fix the whole request at
    once, comma-joined under `<noun>_ids` (one id too: one shape per reason)."""

    noun: ClassVar[str]
    code = Code.NOT_FOUND

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "noun" in vars(cls):
            cls.metadata_keys = (f"{cls.noun}_ids",)
        super().__init_subclass__(**kwargs)

    def __init__(self, *ids: str) -> None:
        if not ids:
            raise TypeError(f"{type(self).__name__} needs at least one id")
        joined = ",".join(ids)
        message = f"{self.noun} {ids[0]!r} not found" if len(ids) == 1 else f"{self.noun}s not found: {joined}"
        super().__init__(message, metadata={self.metadata_keys[0]: joined})


class InvalidArgument(AppError):
    """The request breaks a rule of the contract; `violations` says which fields."""

    reason = "INVALID_ARGUMENT"
    code = Code.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        if message is None:
            first = violations[0]
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            message = f"invalid request: {first.field}: {first.description}{more}"
        super().__init__(message, violations=violations)


class MalformedRequest(AppError):
    """The body could not be decoded at all."""

    reason = "MALFORMED_REQUEST"
    code = Code.INVALID_ARGUMENT


class RequestTooLarge(AppError):
    reason = "REQUEST_TOO_LARGE"
    code = Code.RESOURCE_EXHAUSTED
    metadata_keys = ("limit_bytes",)

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the {limit} byte limit", metadata={"limit_bytes": str(limit)})


class Overloaded(AppError):
    """Too many calls in flight; shed load early rather than queue until every call times out."""

    reason = "OVERLOADED"
    code = Code.RESOURCE_EXHAUSTED
    metadata_keys = ("max_concurrent_calls",)

    def __init__(self, limit: int) -> None:
        super().__init__(
            "server is busy, retry later", metadata={"max_concurrent_calls": str(limit)}, retry_after_s=0.5
        )


class RateLimited(AppError):
    """A credential (or, without one, a peer address) called faster than its rate limit
    (internal/ratelimit). `retry_after_s` is the real wait until the next call would be accepted.
    `scope` says whose bucket is empty: `api_key`, `user` or `peer`; `limit` is the rate as
    configured (`100/s`) and `burst` how many calls it allows at once."""

    reason = "RATE_LIMITED"
    code = Code.RESOURCE_EXHAUSTED
    metadata_keys = ("scope", "limit", "burst")

    def __init__(self, scope: str, limit: str, burst: int, retry_after_s: float) -> None:
        super().__init__(
            f"rate limit exceeded ({scope}: {limit}, burst {burst}), retry later",
            metadata={"scope": scope, "limit": limit, "burst": str(burst)},
            retry_after_s=retry_after_s,
        )
        # Whether this refusal is recorded as a CallRefused event (at most one per bucket per
        # second and process; internal/ratelimit), not part of what a client sees.
        self.record_event = True


class DeadlineExceeded(AppError):
    reason = "DEADLINE_EXCEEDED"
    code = Code.DEADLINE_EXCEEDED

    def __init__(self) -> None:
        super().__init__("deadline exceeded")


class DatabaseUnavailable(AppError):
    """The database refused or dropped us; the call may succeed if retried."""

    reason = "DATABASE_UNAVAILABLE"
    code = Code.UNAVAILABLE

    def __init__(self, retry_after_s: float = 1.0) -> None:
        super().__init__("database temporarily unavailable, retry later", retry_after_s=retry_after_s)


class Busy(AppError):
    """A lock could not be taken within its timeout (e.g. partition DDL contention)."""

    reason = "BUSY"
    code = Code.UNAVAILABLE

    def __init__(self, what: str, retry_after_s: float = 1.0) -> None:
        super().__init__(f"{what} is busy, retry later", retry_after_s=retry_after_s)


class ShuttingDown(AppError):
    """The process is stopping and the call did not finish within the grace period."""

    reason = "SHUTTING_DOWN"
    code = Code.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("server is shutting down, retry on another connection", retry_after_s=0.5)


# Transport-level refusals on the HTTP port: raised by the gateway before connectrpc reads the
# request, so each carries a precise reason instead of the library's bare message.


class NoRoute(AppError):
    """A path outside the RPC prefix and the health endpoints."""

    reason = "NO_ROUTE"
    code = Code.NOT_FOUND
    metadata_keys = ("path",)

    def __init__(self, path: str) -> None:
        shown = path if len(path) <= 200 else path[:200] + "..."
        super().__init__(f"no route for {shown}: RPCs are served under /api/", metadata={"path": shown})


class UnknownProcedure(AppError):
    reason = "UNKNOWN_PROCEDURE"
    code = Code.UNIMPLEMENTED
    metadata_keys = ("procedure",)
    http_status = 404

    def __init__(self, path: str) -> None:
        shown = path if len(path) <= 200 else path[:200] + "..."
        super().__init__(f"no such procedure: {shown}", metadata={"procedure": shown})


class MethodNotAllowed(AppError):
    """Connect GET is only for RPCs the contract marks free of side effects."""

    reason = "METHOD_NOT_ALLOWED"
    code = Code.UNIMPLEMENTED
    metadata_keys = ("method", "allowed")
    http_status = 405

    def __init__(self, method: str, allowed: str) -> None:
        shown = method[:20]
        super().__init__(
            f"HTTP method {shown} is not allowed for this procedure (allowed: {allowed})",
            metadata={"method": shown, "allowed": allowed},
        )


class UnsupportedContentType(AppError):
    reason = "UNSUPPORTED_CONTENT_TYPE"
    code = Code.INVALID_ARGUMENT
    metadata_keys = ("content_type",)
    http_status = 415

    def __init__(self, content_type: str, hint: str) -> None:
        shown = content_type[:100]
        super().__init__(f"unsupported content-type {shown!r}: {hint}", metadata={"content_type": shown})


class UnsupportedEncoding(AppError):
    reason = "UNSUPPORTED_ENCODING"
    code = Code.UNIMPLEMENTED
    metadata_keys = ("header", "encoding", "supported")

    def __init__(self, header: str, encoding: str) -> None:
        shown = encoding[:40]
        super().__init__(
            f"{header} {shown!r} is not supported: use gzip or identity",
            metadata={"header": header, "encoding": shown, "supported": "gzip,identity"},
        )


class InvalidHeader(AppError):
    """A protocol header (timeout, protocol version) that cannot be read as the protocol says."""

    reason = "INVALID_HEADER"
    code = Code.INVALID_ARGUMENT
    metadata_keys = ("header",)

    def __init__(self, header: str, description: str) -> None:
        super().__init__(f"invalid {header} header: {description}", metadata={"header": header})


class MalformedHttp(AppError):
    """Bytes that are not an HTTP/1.1 request; the connection is closed after the answer."""

    reason = "MALFORMED_HTTP"
    code = Code.INVALID_ARGUMENT

    def __init__(self) -> None:
        super().__init__("malformed HTTP request")


class HeaderTimeout(AppError):
    """The request headers did not arrive in time (slow or stalled client); the connection is closed."""

    reason = "HEADER_TIMEOUT"
    code = Code.DEADLINE_EXCEEDED
    metadata_keys = ("timeout_s",)
    http_status = 408

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"request headers not received within {timeout_s:g} s", metadata={"timeout_s": f"{timeout_s:g}"}
        )


class TooManyConnections(AppError):
    reason = "TOO_MANY_CONNECTIONS"
    code = Code.UNAVAILABLE
    metadata_keys = ("max_connections",)

    def __init__(self, limit: int) -> None:
        super().__init__(
            "too many open connections, retry later", metadata={"max_connections": str(limit)}, retry_after_s=1.0
        )


class MetricsTokenRequired(AppError):
    """GET /metrics without the bearer token ALTALUNE_METRICS_TOKEN asks for."""

    reason = "METRICS_TOKEN_REQUIRED"
    code = Code.UNAUTHENTICATED

    def __init__(self) -> None:
        super().__init__("GET /metrics needs `Authorization: Bearer <ALTALUNE_METRICS_TOKEN>`")


class UnknownHealthService(AppError):
    """grpc.health.v1 Check of a service that has no health status (both ports)."""

    reason = "HEALTH_SERVICE_UNKNOWN"
    code = Code.NOT_FOUND
    metadata_keys = ("service",)

    def __init__(self, service: str) -> None:
        shown = service if len(service) <= 200 else service[:200] + "..."
        super().__init__(
            f"no health status for service {shown!r}: ask for '' (the whole server) or a served service",
            metadata={"service": shown},
        )


class InternalError(AppError):
    """Anything unexpected; the text a client sees never carries the cause."""

    reason = "INTERNAL"
    code = Code.INTERNAL

    def __init__(self) -> None:
        super().__init__("internal error")


def error_details(
    error: AppError,
) -> list[error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo]:
    """The google.rpc detail messages that describe an error, identical on both transports."""
    details: list[error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    ]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in error.violations
                ]
            )
        )
    if error.retry_after_s is not None:
        seconds = int(error.retry_after_s)
        nanos = int((error.retry_after_s - seconds) * 1e9)
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)))
    return details


def to_connect_error(error: AppError) -> ConnectError:
    """The Connect form; connectrpc renders details into the JSON body (with `debug`)."""
    return ConnectError(error.code, error.message, details=error_details(error))


def to_grpc_status(error: ConnectError) -> grpc.Status:
    """The gRPC form of a ConnectError: details travel in grpc-status-details-bin."""
    code = GRPC_STATUS_BY_CODE[error.code]
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=error.message, details=list(error.details))
    )
