"""Project business rules. Proto in, proto out; owns the transactions; knows no transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from altalune.v1 import project_pb2
from internal.auth.principal import Caller
from internal.domain.project.model import ENVIRONMENTS, NewProject, ProjectChanges
from internal.domain.project.repo import QUERY_SPEC, ProjectRepo
from internal.errors import Busy
from internal.ids import new_public_id
from internal.logs import get_logger
from internal.postgres.database import Database
from internal.postgres.partitions import (
    BlockCoverage,
    block_ready,
    ensure_blocks,
    purge_project_rows,
    retire_dead_blocks,
)
from internal.query import params_from_proto
from internal.tenancy import ProjectNotFound

log = get_logger(__name__)

# Block DDL waits at most this long for its locks; a busy table answers UNAVAILABLE + RetryInfo.
PARTITION_LOCK_TIMEOUT_MS = 3000
# CreateProject retries this often when its id outran the blocks made ahead (each retry first makes
# the blocks for the sequence's current position, so one retry is the rule).
MAX_BLOCK_RETRIES = 5


class _BlockMissing(Exception):
    """The new project's id landed in a block without partitions: roll back, make it, retry."""


class ProjectService:
    def __init__(
        self,
        db: Database,
        repo: ProjectRepo,
        *,
        wake_upkeep: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._repo = repo
        # Deleted projects the last purge round left for later (a metrics gauge).
        self.purge_backlog = 0
        # Wakes the background upkeep (blocks ahead, purges) early: after a delete, or when new ids
        # reach the last block made ahead.
        self._wake_upkeep = wake_upkeep
        self._blocks = BlockCoverage()

    async def create_project(
        self, request: project_pb2.CreateProjectRequest, caller: Caller | None = None
    ) -> project_pb2.CreateProjectResponse:
        """A user who creates a project becomes its owner, or nobody could ever act inside it."""
        new = NewProject(
            public_id=new_public_id(),
            name=request.name,
            description=request.description,
            timezone=request.timezone,
            environment=ENVIRONMENTS.from_proto(request.environment),
        )
        for _ in range(MAX_BLOCK_RETRIES):
            try:
                # The row and its owner commit together; the project's block partitions exist already.
                async with self._db.transaction() as conn:
                    row = await self._repo.insert(conn, new)
                    if not self._blocks.covers(row.id) and not await block_ready(conn, row.id):
                        raise _BlockMissing()
                    if caller is not None and caller.principal.user_id is not None:
                        await self._repo.add_owner(conn, row.id, caller.principal.user_id)
            except _BlockMissing:
                # Rare (a burst outran the keeper, or a sequence gap): make the blocks inline, serialised
                # in the database, holding no lock on `projects` meanwhile; then draw a new id.
                await self.prepare_blocks(lock_timeout_ms=PARTITION_LOCK_TIMEOUT_MS)
                continue
            if self._blocks.running_low(row.id):
                self._db.after_commit(self._wake_upkeep)
            return project_pb2.CreateProjectResponse(project=row.to_proto())
        raise Busy("project partitions")

    async def get_project(self, request: project_pb2.GetProjectRequest) -> project_pb2.GetProjectResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, request.id)
        if row is None:
            raise ProjectNotFound(request.id)
        return project_pb2.GetProjectResponse(project=row.to_proto())

    async def update_project(self, request: project_pb2.UpdateProjectRequest) -> project_pb2.UpdateProjectResponse:
        paths = set(request.update_mask.paths)
        changes = ProjectChanges(
            name=request.name if "name" in paths else None,
            description=request.description if "description" in paths else None,
            timezone=request.timezone if "timezone" in paths else None,
        )
        async with self._db.connection() as conn:
            row = await self._repo.update(conn, request.id, changes, request.etag)
        if row is None:
            raise ProjectNotFound(request.id)
        return project_pb2.UpdateProjectResponse(project=row.to_proto())

    async def delete_project(self, request: project_pb2.DeleteProjectRequest) -> project_pb2.DeleteProjectResponse:
        async with self._db.connection() as conn:
            internal = await self._repo.mark_deleted(conn, request.id, request.etag)
        if internal is None:
            raise ProjectNotFound(request.id)
        # The upkeep must see the deletion: wake it once the call's transaction has committed.
        self._db.after_commit(self._wake_upkeep)
        return project_pb2.DeleteProjectResponse()

    async def query_projects(self, request: project_pb2.QueryProjectsRequest) -> project_pb2.QueryProjectsResponse:
        params = params_from_proto(request.query, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, params)
        return project_pb2.QueryProjectsResponse(data=[row.to_proto() for row in result.rows], meta=result.meta())

    async def prepare_blocks(self, *, lock_timeout_ms: int = 2000) -> int:
        """Make the block partitions in use and the next block ahead of need; returns how many."""
        async with self._db.transaction(lock_timeout_ms=lock_timeout_ms) as conn:
            ensured = await ensure_blocks(conn)
        self._blocks.extend(ensured)
        if ensured.created:
            log.info("project blocks made", partitions=ensured.created, covered_through=ensured.covered_through)
        return ensured.created

    async def reap_deleted(self, *, lock_timeout_ms: int = 2000) -> int:
        """Purge hidden projects (rows in bounded batches, then the project row), then retire blocks
        no project can use any more; returns how many projects were purged.

        Each step is idempotent: a round cut short (lock timeout, restart) is finished by a later one.
        """
        async with self._db.connection() as conn:
            pending = await self._repo.deleted_ids(conn)
        purged = 0
        self.purge_backlog = len(pending)
        for project_id in pending:
            try:
                rows = await purge_project_rows(self._db, project_id)
                async with self._db.transaction(lock_timeout_ms=lock_timeout_ms) as conn:
                    await self._repo.delete_purged(conn, project_id)
                purged += 1
                self.purge_backlog -= 1
                log.info("project purged", project_internal_id=project_id, rows=rows)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "project purge postponed",
                    project_internal_id=project_id,
                    error=type(exc).__name__,
                    detail=str(exc)[:200],
                )
        try:
            dropped = await retire_dead_blocks(self._db, lock_timeout_ms=lock_timeout_ms)
            if dropped:
                log.info("project blocks removed", partitions=dropped)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("block removal postponed", error=type(exc).__name__, detail=str(exc)[:200])
        return purged
