"""SQL for reading the event log. A project's events are read by its internal id (its block
partition only); the global stream has no scope. Newest first, tie-broken by the sequence, which
is unique in a stream, so pages are stable while events are appended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection

from internal.domain.event.model import ACTOR_KINDS, OUTCOMES, EventRow
from internal.postgres.rows import Rows
from internal.query import Condition, FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

EVENTS = Rows(EventRow)


def query_spec(table: str, *, event_types: Iterable[str], rpcs: Iterable[str], resources: Iterable[str]) -> QuerySpec:
    """The filter keys of both streams; the closed sets come from the contract's registry."""
    return QuerySpec(
        table=table,
        columns=EVENTS.columns,
        keyword_columns=("type", "resource_id", "actor_id", "reason"),
        filters={
            "type": FilterSpec("type", values=sorted(event_types), case_insensitive=False),
            "outcome": FilterSpec("outcome", values=OUTCOMES),
            "rpc": FilterSpec("rpc", values=sorted(rpcs), case_insensitive=False),
            "resource_type": FilterSpec("resource_type", values=sorted(resources), case_insensitive=False),
            "resource_id": FilterSpec("resource_id", case_insensitive=False),
            "actor_id": FilterSpec("actor_id", case_insensitive=False),
            "actor_kind": FilterSpec("actor_kind", values=ACTOR_KINDS),
        },
        sorts=("sequence", "occurred_at"),
        default_sort=("sequence", True),
        tie_breaker="sequence",
        scope_column="project_id" if table == "project_events" else None,
    )


class EventRepo:
    def __init__(self, *, event_types: Iterable[str], rpcs: Iterable[str], resources: Iterable[str]) -> None:
        names = {"event_types": tuple(event_types), "rpcs": tuple(rpcs), "resources": tuple(resources)}
        self.project_spec = query_spec("project_events", **names)
        self.global_spec = query_spec("global_events", **names)

    async def last_sequence(self, conn: AsyncConnection[Any], stream: int) -> int:
        """The newest committed sequence of a stream (a project's internal id, 0 for the global
        one): its counter commits with the event that took it."""
        cur = await conn.execute("SELECT last_sequence FROM event_streams WHERE stream = %s", (stream,))
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def query_project(
        self, conn: AsyncConnection[Any], project_id: int, params: QueryParams, extra: Sequence[Condition]
    ) -> QueryResult[EventRow]:
        return await run_query(conn, self.project_spec, params, EVENTS.factory, scope=project_id, extra=extra)

    async def query_global(
        self, conn: AsyncConnection[Any], params: QueryParams, extra: Sequence[Condition]
    ) -> QueryResult[EventRow]:
        return await run_query(conn, self.global_spec, params, EVENTS.factory, extra=extra)
