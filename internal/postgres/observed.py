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
    if not isinstance(query, str):
        try:
            while isinstance(query, sql.Composed):  # the query builder's: its first part leads
                query = next(iter(query), sql.SQL(""))
            if isinstance(query, sql.SQL):
                query = query.as_string()
            if isinstance(query, bytes):
                query = query.decode(errors="replace")
        except Exception:
            return "OTHER"
        if not isinstance(query, str):
            return "OTHER"
    # Statement texts are the repositories' constants: each is named once.
    operation = _named.get(query)
    if operation is None:
        head = query.lstrip()[:16].split(None, 1)
        operation = head[0].upper().rstrip(";(") if head else "EMPTY"
        if len(_named) < _NAMED_MAX:
            _named[query] = operation
    return operation


# Bounded: a statement text built per call (none today) must not grow the process.
_NAMED_MAX = 4096
_named: dict[str, str] = {}


class _Observed:
    """Times (and traces) each statement. A mixin placed before psycopg's cursor class, so the
    statement goes through one extra frame, not two: every query of every call pays for it."""

    metrics: ClassVar[Metrics | None] = None
    tracing: ClassVar[Tracing] = Tracing()

    async def execute(self, query: Query, params: Params | None = None, **kwargs: Any) -> Any:
        operation = operation_of(query)
        started = time.perf_counter()
        try:
            if self.tracing.enabled:
                with self.tracing.statement(operation):
                    return await super().execute(query, params, **kwargs)  # type: ignore[misc]
            return await super().execute(query, params, **kwargs)  # type: ignore[misc]
        finally:
            if self.metrics is not None:
                self.metrics.statement_done(operation, time.perf_counter() - started)


class ObservedCursor(_Observed, AsyncCursor[Any]):
    pass


class ObservedClientCursor(_Observed, AsyncClientCursor[Any]):
    pass


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
