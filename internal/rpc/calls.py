"""One record per request: its id is minted (or the client's kept) once, by the port that received
it, and its access-log line is written once, when that port has answered.

The HTTP gateway and the gRPC bridge open the record before anything can refuse the request, so a
refusal outside the chain (an unknown procedure, a malformed body, a wrong content type) has the
same request id in its answer and in its one log line as a call the chain served. The chain only
fills in what it learns: the RPC, its outcome and the caller.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from connectrpc.errors import ConnectError
from google.rpc import error_details_pb2

from internal.logs import get_logger

log = get_logger("altalune.rpc")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BOUND = ("request_id", "transport", "rpc", "caller", "trace_id", "span_id")


def valid_request_id(value: str | None) -> str | None:
    """A client-sent request id is kept only if it is short and plain (it ends up in logs)."""
    return value if value and _REQUEST_ID_SHAPE.fullmatch(value) else None


def new_request_id() -> str:
    """128 random bits, hex: unique enough to find one call in the logs, cheap to mint."""
    return os.urandom(16).hex()


class CallObserver(Protocol):
    """Told of every request once it is answered (the metrics: internal/observability)."""

    def call_written(self, record: CallRecord, duration_s: float) -> None: ...


@dataclass(slots=True)
class CallRecord:
    """What the access log says about one request. `rpc` is set once the request reached the chain
    or named a procedure; without it the line is an `http` line (method, path, status)."""

    request_id: str
    transport: str
    # The caller's address; `via` is the proxy's when a trusted proxy forwarded the call.
    peer: str | None
    started: float = field(default_factory=time.perf_counter)
    rpc: str | None = None
    code: str = "ok"
    reason: str | None = None
    http_method: str | None = None
    # "1.1" or "2" on the HTTP port (which speaks both); the gRPC port is always HTTP/2.
    http_version: str | None = None
    path: str | None = None
    status: int = 0
    quiet: bool = False
    user_agent: str = ""
    # Who called, once authentication accepted a credential (public ids only), and whether
    # authorization let the call through: the event log records refusals from these.
    actor_kind: str = "anonymous"
    actor_id: str = ""
    authorized: bool = False
    trace_id: str | None = None
    observer: CallObserver | None = None
    # Message bytes as the port received and sent them (the metrics' size histograms).
    request_bytes: int | None = None
    response_bytes: int | None = None
    via: str | None = None

    def failed(self, error: ConnectError) -> None:
        self.code = error.code.name.lower()
        self.reason = reason_of(error)

    def identified(self, kind: str, public_id: str) -> None:
        self.actor_kind = kind
        self.actor_id = public_id

    def named(self, rpc: str) -> None:
        self.rpc = rpc
        structlog.contextvars.bind_contextvars(rpc=rpc)

    def write(self) -> None:
        duration_s = time.perf_counter() - self.started
        if self.observer is not None:
            self.observer.call_written(self, duration_s)
        duration_ms = round(duration_s * 1000, 3)
        if self.rpc is not None:
            fields: dict[str, str] = {"reason": self.reason} if self.reason is not None else {}
            if self.http_version is not None:
                fields["http"] = self.http_version
            if self.via is not None:
                fields["via"] = self.via
            log.info("rpc", code=self.code, **fields, duration_ms=duration_ms, peer=self.peer)
        elif not self.quiet:
            refused = {"code": self.code, "reason": self.reason} if self.reason is not None else {}
            log.info(
                "http",
                method=self.http_method,
                path=self.path,
                status=self.status,
                http=self.http_version,
                **refused,
                duration_ms=duration_ms,
            )


_current: ContextVar[CallRecord | None] = ContextVar("altalune_call", default=None)


def current_call() -> CallRecord | None:
    return _current.get()


@contextmanager
def call_record(
    sent_request_id: str | None,
    *,
    transport: str,
    peer: str | None,
    observer: CallObserver | None = None,
    via: str | None = None,
) -> Iterator[CallRecord]:
    """Open the request's record (binding its id to every log line made meanwhile) and write its
    access-log line when the block ends, however it ends."""
    record = CallRecord(
        request_id=valid_request_id(sent_request_id) or new_request_id(),
        transport=transport,
        peer=peer,
        observer=observer,
        via=via,
    )
    token = _current.set(record)
    structlog.contextvars.bind_contextvars(request_id=record.request_id, transport=transport)
    try:
        yield record
    finally:
        try:
            record.write()
        finally:
            structlog.contextvars.unbind_contextvars(*_BOUND)
            _current.reset(token)


def reason_of(error: ConnectError) -> str | None:
    """The ErrorInfo reason of an error, for the access log."""
    for detail in error.details:
        if detail.type_url.endswith("/google.rpc.ErrorInfo"):
            return str(error_details_pb2.ErrorInfo.FromString(detail.value).reason)
    return None
