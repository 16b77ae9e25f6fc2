"""Project business rules. Proto in, proto out; owns the transactions; knows no transport."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from altalune.v1 import project_pb2
from internal.auth.principal import Caller
from internal.domain.project.errors import ProjectNotFound
from internal.domain.project.model import ENVIRONMENTS, NewProject, ProjectChanges
from internal.domain.project.repo import QUERY_SPEC, ProjectRepo
from internal.errors import AppError
from internal.ids import new_public_id
from internal.logs import get_logger
from internal.postgres.database import Database
from internal.query import params_from_proto
from internal.validation import violation

log = get_logger(__name__)

# Partition DDL waits at most this long for its lock; a busy table answers UNAVAILABLE + RetryInfo.
PARTITION_LOCK_TIMEOUT_MS = 3000


class ProjectIdCache:
    """public id -> internal id. The mapping never changes (ids are never reused), so entries stay
    valid; callers still check the project is live in the same statement that uses the id."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, int] = OrderedDict()

    def get(self, public_id: str) -> int | None:
        internal = self._entries.get(public_id)
        if internal is not None:
            self._entries.move_to_end(public_id)
        return internal

    def put(self, public_id: str, internal: int) -> None:
        self._entries[public_id] = internal
        self._entries.move_to_end(public_id)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def evict(self, public_id: str) -> None:
        self._entries.pop(public_id, None)


class ProjectResolver(Protocol):
    """What project-scoped domains need from projects (ProjectService is one): the internal id of a
    live project, or ProjectNotFound."""

    async def resolve_project_id(self, public_id: str) -> int: ...

    def project_missing(self, public_id: str) -> AppError: ...


class ProjectService:
    def __init__(
        self,
        db: Database,
        repo: ProjectRepo,
        *,
        timezones: frozenset[str],
        on_deleted: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._repo = repo
        self._timezones = timezones
        self._on_deleted = on_deleted
        self._ids = ProjectIdCache()

    def _check_timezone(self, timezone: str) -> None:
        if timezone not in self._timezones:
            raise violation(
                "timezone", f"{timezone!r} is not an IANA time zone name (e.g. Europe/Paris)", "timezone.iana"
            )

    async def create_project(
        self, request: project_pb2.CreateProjectRequest, caller: Caller | None = None
    ) -> project_pb2.CreateProjectResponse:
        """A user who creates a project becomes its owner, or nobody could ever act inside it."""
        self._check_timezone(request.timezone)
        new = NewProject(
            public_id=new_public_id(),
            name=request.name,
            description=request.description,
            timezone=request.timezone,
            environment=ENVIRONMENTS.from_proto(request.environment),
        )
        # The project row and one partition per partitioned table commit together or not at all.
        async with self._db.transaction(lock_timeout_ms=PARTITION_LOCK_TIMEOUT_MS) as conn:
            row = await self._repo.insert(conn, new)
            if caller is not None and caller.principal.user_id is not None:
                await self._repo.add_owner(conn, row.id, caller.principal.user_id)
        self._ids.put(row.public_id, row.id)
        return project_pb2.CreateProjectResponse(project=row.to_entity().to_proto())

    async def get_project(self, request: project_pb2.GetProjectRequest) -> project_pb2.GetProjectResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, request.id)
        if row is None:
            raise ProjectNotFound(request.id)
        return project_pb2.GetProjectResponse(project=row.to_entity().to_proto())

    async def update_project(self, request: project_pb2.UpdateProjectRequest) -> project_pb2.UpdateProjectResponse:
        paths = set(request.update_mask.paths)
        if "timezone" in paths:
            self._check_timezone(request.timezone)
        changes = ProjectChanges(
            name=request.name if "name" in paths else None,
            description=request.description if "description" in paths else None,
            timezone=request.timezone if "timezone" in paths else None,
        )
        async with self._db.connection() as conn:
            row = await self._repo.update(conn, request.id, changes)
        if row is None:
            raise ProjectNotFound(request.id)
        return project_pb2.UpdateProjectResponse(project=row.to_entity().to_proto())

    async def delete_project(self, request: project_pb2.DeleteProjectRequest) -> project_pb2.DeleteProjectResponse:
        async with self._db.connection() as conn:
            internal = await self._repo.mark_deleted(conn, request.id)
        if internal is None:
            raise ProjectNotFound(request.id)
        self._ids.evict(request.id)
        self._on_deleted()
        return project_pb2.DeleteProjectResponse()

    async def query_projects(self, request: project_pb2.QueryProjectsRequest) -> project_pb2.QueryProjectsResponse:
        params = params_from_proto(request.query if request.HasField("query") else None, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, params)
        return project_pb2.QueryProjectsResponse(
            data=[row.to_entity().to_proto() for row in result.rows], meta=result.meta()
        )

    async def resolve_project_id(self, public_id: str) -> int:
        """Internal id of a live project, for project-scoped domains; ProjectNotFound otherwise."""
        cached = self._ids.get(public_id)
        if cached is not None:
            return cached
        async with self._db.connection() as conn:
            internal = await self._repo.live_id(conn, public_id)
        if internal is None:
            raise ProjectNotFound(public_id)
        self._ids.put(public_id, internal)
        return internal

    def project_missing(self, public_id: str) -> ProjectNotFound:
        """A cached id turned out to belong to a deleted project: forget it, report not found."""
        self._ids.evict(public_id)
        return ProjectNotFound(public_id)

    async def reap_deleted(self, *, lock_timeout_ms: int = 2000) -> int:
        """Drop partitions and rows of hidden projects; returns how many were purged.

        A project whose DDL cannot get its lock in time is left for the next round.
        """
        async with self._db.connection() as conn:
            pending = await self._repo.deleted_ids(conn)
        purged = 0
        for project_id in pending:
            try:
                async with self._db.autocommit() as conn:
                    dropped = await self._repo.purge(conn, project_id, lock_timeout_ms=lock_timeout_ms)
                purged += 1
                log.info("project purged", project_internal_id=project_id, partitions=len(dropped))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "project purge postponed",
                    project_internal_id=project_id,
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                )
        return purged
