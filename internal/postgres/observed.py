"""Cursors that time every statement (Prometheus) and trace it (OpenTelemetry, when on).

The pool's connections make every cursor from `cursor_factory`, so `conn.execute`, `conn.cursor`
and the write path's client-side cursor are all covered by one class each, and no repository
knows about it."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from psycopg import AsyncClientCursor, AsyncCursor, sql
from psycopg.abc import Params, Query

from internal.observability.metrics import Metrics
from internal.observability.tracing import Tracing


def operation_of(query: Query | sql.Composable) -> str:
    """The statement's first keyword (SELECT, INSERT, ...; a joined write envelope starts with its
    first statement), the label of its latency and the name of its span. Never raises: a statement
    must not fail because it could not be named."""
    try:
        while isinstance(query, sql.Composed):  # the query builder's: its first part leads
            query = next(iter(query), sql.SQL(""))
        if isinstance(query, sql.SQL):
            query = query.as_string()
        if isinstance(query, bytes):
            query = query.decode(errors="replace")
        if not isinstance(query, str):
            return "OTHER"
        head = query.lstrip()[:16].split(None, 1)
        return head[0].upper().rstrip(";(") if head else "EMPTY"
    except Exception:
        return "OTHER"


class _Observed:
    metrics: ClassVar[Metrics | None] = None
    tracing: ClassVar[Tracing] = Tracing()


class ObservedCursor(_Observed, AsyncCursor[Any]):
    async def execute(self, query: Query, params: Params | None = None, **kwargs: Any) -> ObservedCursor:
        return await _observed(self, super().execute, query, params, kwargs)  # type: ignore[no-any-return]


class ObservedClientCursor(_Observed, AsyncClientCursor[Any]):
    async def execute(self, query: Query, params: Params | None = None, **kwargs: Any) -> ObservedClientCursor:
        return await _observed(self, super().execute, query, params, kwargs)  # type: ignore[no-any-return]


async def _observed(cursor: _Observed, execute: Any, query: Query, params: Params | None, kwargs: Any) -> Any:
    operation = operation_of(query)
    started = time.perf_counter()
    try:
        if cursor.tracing.enabled:
            with cursor.tracing.statement(operation):
                return await execute(query, params, **kwargs)
        return await execute(query, params, **kwargs)
    finally:
        if cursor.metrics is not None:
            cursor.metrics.statement_done(operation, time.perf_counter() - started)


def observed_cursors(
    metrics: Metrics | None, tracing: Tracing
) -> tuple[type[AsyncCursor[Any]], type[AsyncClientCursor[Any]]]:
    """The two cursor classes bound to one container's metrics and tracing; psycopg's own when
    there is nothing to observe (ALTALUNE_METRICS=off, tracing off)."""
    if metrics is None and not tracing.enabled:
        return AsyncCursor, AsyncClientCursor
    bound = {"metrics": metrics, "tracing": tracing}
    return (
        type("ObservedCursor", (ObservedCursor,), bound),
        type("ObservedClientCursor", (ObservedClientCursor,), bound),
    )
