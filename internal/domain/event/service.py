"""Reading the event log: a project's stream (its owners and admins) and the global one
(administrators). Proto in, proto out."""

from __future__ import annotations

from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from altalune.v1 import event_pb2
from internal.domain.event.repo import EventRepo
from internal.events.store import GLOBAL_STREAM
from internal.postgres.database import Database
from internal.query import Condition, params_from_proto
from internal.tenancy import ProjectRef


def _bounds(request: event_pb2.QueryEventsRequest | event_pb2.QueryGlobalEventsRequest, as_of: int) -> list[Condition]:
    """The stream as of one sequence (so pages do not shift while events are appended), and
    `since` (inclusive) and `until` (exclusive), each when set."""
    conditions = [Condition("sequence <= %(as_of)s", {"as_of": as_of})]
    bounds: tuple[tuple[str, str, Timestamp], ...] = (
        ("since", ">=", request.since),
        ("until", "<", request.until),
    )
    for name, operator, bound in bounds:
        if request.HasField(name):
            conditions.append(Condition(f"occurred_at {operator} %({name})s", {name: bound.ToDatetime(tzinfo=UTC)}))
    return conditions


class EventService:
    def __init__(self, db: Database, repo: EventRepo) -> None:
        self._db = db
        self._repo = repo

    async def query_events(
        self, project: ProjectRef, request: event_pb2.QueryEventsRequest
    ) -> event_pb2.QueryEventsResponse:
        params = params_from_proto(request.query, self._repo.project_spec)
        async with self._db.connection() as conn:
            as_of = request.as_of_sequence or await self._repo.last_sequence(conn, project.id)
            result = await self._repo.query_project(conn, project.id, params, _bounds(request, as_of))
        return event_pb2.QueryEventsResponse(
            data=[row.to_proto() for row in result.rows], meta=result.meta(), as_of_sequence=as_of
        )

    async def query_global_events(
        self, request: event_pb2.QueryGlobalEventsRequest
    ) -> event_pb2.QueryGlobalEventsResponse:
        params = params_from_proto(request.query, self._repo.global_spec)
        async with self._db.connection() as conn:
            as_of = request.as_of_sequence or await self._repo.last_sequence(conn, GLOBAL_STREAM)
            result = await self._repo.query_global(conn, params, _bounds(request, as_of))
        return event_pb2.QueryGlobalEventsResponse(
            data=[row.to_proto() for row in result.rows], meta=result.meta(), as_of_sequence=as_of
        )
