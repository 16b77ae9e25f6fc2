"""The one interceptor chain, outermost first: request scope + access log, error mapping,
the drain (calls in flight, for shutdown), concurrency limit, deadline, the call's database
connection, refusal events, the peer rate limit, authentication, the credential rate limit
(internal/ratelimit), validation, authorization (internal/auth), trusted writes (internal/events).
It runs for every RPC on both ports (see endpoints.build_routes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf.message import Message

from internal import deadlines
from internal.errors import AppError, DeadlineExceeded, InternalError, Overloaded, ShuttingDown, to_connect_error
from internal.logs import get_logger
from internal.observability.metrics import Metrics
from internal.observability.tracing import Tracing
from internal.rpc.calls import REQUEST_ID_HEADER, CallRecord, call_record, current_call
from internal.rpc.endpoints import UnaryFunction, UnaryInterceptor
from internal.validation import RequestValidator

log = get_logger("altalune.rpc")


class RequestScope:
    """Names the RPC on the request's record (internal.rpc.calls), echoes its request id, and
    records the outcome for the one access-log line, the metrics and the call's server span. The
    port that received the request opened the record; a route called without one (a test, a tool)
    opens its own here."""

    def __init__(self, metrics: Metrics | None = None, tracing: Tracing | None = None) -> None:
        self._metrics = metrics
        self._tracing = tracing or Tracing()

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        record = current_call()
        if record is not None:
            return await self._in_record(record, call_next, request, ctx)
        sent = ctx.request_headers().get(REQUEST_ID_HEADER)
        with call_record(sent, transport="direct", peer=ctx.client_address(), observer=self._metrics) as record:
            return await self._in_record(record, call_next, request, ctx)

    async def _in_record(
        self, record: CallRecord, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        method = ctx.method()
        service, name = method.service_name, method.name
        record.named(f"{service}/{name}")
        headers = ctx.request_headers()
        record.user_agent = headers.get("user-agent", "")[:256]
        ctx.response_headers()[REQUEST_ID_HEADER] = record.request_id
        metrics = self._metrics
        if metrics is not None:
            metrics.call_started(service, name, record.transport)
        try:
            with self._tracing.rpc(record, headers, service, name):
                try:
                    return await call_next(request, ctx)
                except ConnectError as error:
                    record.failed(error)
                    if metrics is not None and record.reason in _REFUSED_REASONS:
                        metrics.call_refused(record.reason, _credential_kind(record))
                    raise
                except asyncio.CancelledError:
                    record.code = "canceled"  # the client went away or its deadline passed on the gRPC side
                    raise
        finally:
            if metrics is not None:
                metrics.call_ended()


# Refusals counted apart (altalune_rpc_refused_total): load shedding, not the caller's mistake.
_REFUSED_REASONS = frozenset({"OVERLOADED", "RATE_LIMITED"})


def _credential_kind(record: CallRecord) -> str:
    """Whose limit refused the call: a rate limit is per credential (or per peer address without
    one); the in-flight cap is the process's, nobody's."""
    if record.reason != "RATE_LIMITED":
        return ""
    return "peer" if record.actor_kind == "anonymous" else record.actor_kind


class ErrorMapping:
    """AppError -> Connect/gRPC error with details; anything unexpected -> INTERNAL "internal error"."""

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        try:
            return await call_next(request, ctx)
        except AppError as error:
            raise to_connect_error(error) from None
        except ConnectError:
            raise
        except Exception:
            # The cause goes to the log only (with the request id bound by RequestScope).
            log.exception("unhandled error")
            raise to_connect_error(InternalError()) from None


class Drain:
    """Knows every call in flight, so shutdown can end the ones still running after the grace
    period: each is cancelled (its database statement with it) and answers UNAVAILABLE
    `SHUTTING_DOWN` in its own protocol, instead of being cut off without an answer."""

    def __init__(self) -> None:
        self._calls: set[asyncio.Task[Any]] = set()
        self._cut: set[asyncio.Task[Any]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await call_next(request, ctx)
        except asyncio.CancelledError:
            if task not in self._cut:
                raise
            task.uncancel()
            raise ShuttingDown() from None
        finally:
            self._calls.discard(task)
            self._cut.discard(task)

    async def cut(self, *, settle_s: float) -> int:
        """Cancel every call still in flight; wait up to `settle_s` for their answers to be made."""
        calls = list(self._calls)
        for task in calls:
            self._cut.add(task)
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=settle_s)
        return len(calls)


class ConcurrencyLimit:
    """At most `limit` calls in flight per process, whichever port they came in on."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._in_flight = 0

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        if self._in_flight >= self._limit:
            raise Overloaded(self._limit)
        self._in_flight += 1
        try:
            return await call_next(request, ctx)
        finally:
            self._in_flight -= 1


class Deadline:
    """Enforce the client's deadline (clamped to a server maximum) and hand it to the database."""

    def __init__(self, max_deadline_ms: int) -> None:
        self._max_ms = max_deadline_ms

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        requested = ctx.timeout_ms()
        budget_ms = self._max_ms if requested is None else min(max(requested, 0.0), self._max_ms)
        deadlines.set_deadline(budget_ms / 1000)
        try:
            async with asyncio.timeout(budget_ms / 1000):
                return await call_next(request, ctx)
        except TimeoutError:
            raise DeadlineExceeded() from None


class CallScope:
    """One database checkout for the whole call: authentication, authorization and the handler
    share it (and whatever later joins the write path). Inside the deadline, so waiting for the
    pool obeys it."""

    def __init__(self, scope: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        self._scope = scope

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        async with self._scope():
            return await call_next(request, ctx)


class Validation:
    """buf.validate rules from the contract, checked before any handler runs."""

    def __init__(self, validator: RequestValidator) -> None:
        self._validator = validator

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        self._validator.validate(request)
        return await call_next(request, ctx)


def default_chain(
    *,
    validator: RequestValidator,
    max_deadline_ms: int,
    call_scope: UnaryInterceptor,
    authenticate: UnaryInterceptor,
    authorize: UnaryInterceptor,
    drain: Drain,
    refusal_events: UnaryInterceptor | None = None,
    trusted_writes: UnaryInterceptor | None = None,
    peer_limit: UnaryInterceptor | None = None,
    credential_limit: UnaryInterceptor | None = None,
    max_concurrent_calls: int = 512,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> list[UnaryInterceptor]:
    """Outermost first. Every RPC on both ports passes through exactly this list.

    Authentication comes before validation (an anonymous caller learns nothing but
    UNAUTHENTICATED) and inside the deadline (its database lookups obey it); authorization comes
    after validation because it reads the project id from the request. The event log's two links
    (internal/events) wrap them: refusals are recorded outside authentication, writes inside
    authorization (which knows the caller and the project). The rate limits
    (internal/ratelimit) wrap authentication (a peer's refused credentials) and follow it (a
    credential's calls), inside the refusal events so a limited call is recorded.
    """
    chain: list[UnaryInterceptor | None] = [
        RequestScope(metrics, tracing),
        ErrorMapping(),
        drain,
        ConcurrencyLimit(max_concurrent_calls),
        Deadline(max_deadline_ms),
        call_scope,
        refusal_events,
        peer_limit,
        authenticate,
        credential_limit,
        Validation(validator),
        authorize,
        trusted_writes,
    ]
    return [link for link in chain if link is not None]


__all__ = [
    "CallScope",
    "Code",
    "ConcurrencyLimit",
    "Deadline",
    "Drain",
    "ErrorMapping",
    "RequestScope",
    "Validation",
    "default_chain",
]
