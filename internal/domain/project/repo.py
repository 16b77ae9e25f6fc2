"""SQL for projects. Every statement runs on the connection of the caller's transaction."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql

from internal.domain.project.errors import ProjectNameTaken
from internal.domain.project.model import ENVIRONMENTS, NewProject, ProjectChanges, ProjectRow
from internal.postgres.partitions import CREATE_FENCE_KEY
from internal.postgres.rows import EtagGuard, Rows
from internal.postgres.statements import bound_values
from internal.query import CatalogCache, FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

PROJECTS = Rows(
    ProjectRow,
    unique={"projects_live_name_key": lambda clash: ProjectNameTaken(clash.values.get("name", ""))},
)

QUERY_SPEC = QuerySpec(
    table="projects",
    columns=PROJECTS.columns,
    keyword_columns=("name", "description"),
    filters={
        "environment": FilterSpec("environment", values=ENVIRONMENTS),
        "timezone": FilterSpec("timezone"),
    },
    sorts=("name", "timezone", "environment", "created_at", "updated_at"),
    default_sort=("name", False),
    extra_where="deleted_at IS NULL",
)

# Composed once at import: the hot path only binds values. The INSERT takes the block-creation fence
# shared before the identity default draws the id (see partitions.CREATE_FENCE_KEY): a subquery
# calling a volatile function is evaluated first and never flattened into the outer query.
_INSERT = PROJECTS.statement(
    "INSERT INTO projects (public_id, name, description, timezone, environment) "
    "SELECT %(public_id)s, %(name)s, %(description)s, %(timezone)s, %(environment)s "
    "FROM (SELECT pg_advisory_xact_lock_shared({fence})) AS fence RETURNING {columns}",
    fence=sql.Literal(CREATE_FENCE_KEY),
)
_GET = PROJECTS.statement("SELECT {columns} FROM projects WHERE public_id = %s AND deleted_at IS NULL")
# The writes a call may guard with the etag it read; a hidden project is missing, whatever the etag.
_ETAG = EtagGuard("project", table="projects", conditions="public_id = %(public_id)s AND deleted_at IS NULL")
_UPDATE = "UPDATE projects SET {changes} WHERE " + _ETAG.where + " RETURNING {columns}"
_MARK_DELETED = PROJECTS.statement(
    "UPDATE projects SET deleted_at = now() WHERE " + _ETAG.where + " RETURNING {columns}"
)


class ProjectRepo:
    def __init__(self) -> None:
        # The catalog (time zones in use) spans every project; this process's writes forget it.
        self._catalogs = CatalogCache()

    async def insert(self, conn: AsyncConnection[Any], new: NewProject) -> ProjectRow:
        """Insert the project row (no DDL: its block partitions are made ahead of need)."""
        row = await PROJECTS.insert(conn, _INSERT, bound_values(new))
        self._catalogs.forget(None)
        return row

    async def add_owner(self, conn: AsyncConnection[Any], project_id: int, user_id: int) -> None:
        await conn.execute(
            "INSERT INTO project_members (project_id, user_id, role) VALUES (%s, %s, 'owner')", (project_id, user_id)
        )

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> ProjectRow | None:
        return await PROJECTS.one(conn, _GET, (public_id,))

    async def update(
        self, conn: AsyncConnection[Any], public_id: str, changes: ProjectChanges, etag: str
    ) -> ProjectRow | None:
        """None if the project is missing; EtagMismatch if `etag` is set and stale."""
        row = await PROJECTS.update(
            conn, _UPDATE, changes, {"public_id": public_id}, if_match=_ETAG.expect(etag, public_id)
        )
        self._catalogs.forget(None)
        return row

    async def mark_deleted(self, conn: AsyncConnection[Any], public_id: str, etag: str) -> int | None:
        """Hide the project at once (its rows are purged later by the background upkeep) and return
        its internal id; None if it is missing, EtagMismatch if `etag` is set and stale."""
        row = await PROJECTS.write(
            conn, _MARK_DELETED, {"public_id": public_id}, if_match=_ETAG.expect(etag, public_id)
        )
        self._catalogs.forget(None)
        return row.id if row else None

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[ProjectRow]:
        return await run_query(conn, QUERY_SPEC, params, PROJECTS.factory, catalogs=self._catalogs)

    async def deleted_ids(self, conn: AsyncConnection[Any], limit: int = 100) -> list[int]:
        cur = await conn.execute(
            "SELECT id FROM projects WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT %s", (limit,)
        )
        return [int(row[0]) for row in await cur.fetchall()]

    async def delete_purged(self, conn: AsyncConnection[Any], project_id: int) -> bool:
        """Remove a hidden project's row once its rows are purged. The foreign keys cascade, so a row
        a racing write committed after the purge goes with it."""
        cur = await conn.execute("DELETE FROM projects WHERE id = %s AND deleted_at IS NOT NULL", (project_id,))
        self._catalogs.forget(None)
        return cur.rowcount > 0
