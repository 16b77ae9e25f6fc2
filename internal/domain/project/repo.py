"""SQL for projects. Every statement runs on the connection of the caller's transaction."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from internal.domain.project.errors import ProjectNameTaken
from internal.domain.project.model import NewProject, ProjectChanges, ProjectRow
from internal.postgres.partitions import CREATE_FENCE_KEY
from internal.postgres.statements import column_list, rendered, set_clause
from internal.query import CatalogCache, FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

COLUMNS = ("id", "public_id", "name", "description", "timezone", "environment", "created_at", "updated_at")
_SELECT = column_list(COLUMNS)

QUERY_SPEC = QuerySpec(
    table="projects",
    columns=COLUMNS,
    keyword_columns=("name", "description"),
    filters={
        "environment": FilterSpec("environment", values=("live", "sandbox")),
        "timezone": FilterSpec("timezone"),
    },
    sorts={
        "name": "name",
        "timezone": "timezone",
        "environment": "environment",
        "created_at": "created_at",
        "updated_at": "updated_at",
    },
    default_sort=("name", False),
    extra_where="deleted_at IS NULL",
)

NAME_CONSTRAINT = "projects_live_name_key"

# Composed once at import: the hot path only binds values. The INSERT takes the block-creation fence
# shared before the identity default draws the id (see partitions.CREATE_FENCE_KEY): a subquery
# calling a volatile function is evaluated first and never flattened into the outer query.
_INSERT = rendered(
    sql.SQL(
        "INSERT INTO projects (public_id, name, description, timezone, environment) "
        "SELECT %s, %s, %s, %s, %s FROM (SELECT pg_advisory_xact_lock_shared({fence})) AS fence RETURNING {columns}"
    ).format(fence=sql.Literal(CREATE_FENCE_KEY), columns=_SELECT)
)
_GET = rendered(sql.SQL("SELECT {} FROM projects WHERE public_id = %s AND deleted_at IS NULL").format(_SELECT))


class ProjectRepo:
    def __init__(self) -> None:
        # The catalog (time zones in use) spans every project; this process's writes forget it.
        self._catalogs = CatalogCache()

    async def insert(self, conn: AsyncConnection[Any], new: NewProject) -> ProjectRow:
        """Insert the project row (no DDL: its block partitions are made ahead of need)."""
        try:
            cur = conn.cursor(row_factory=class_row(ProjectRow))
            await cur.execute(
                _INSERT,
                (new.public_id, new.name, new.description, new.timezone, new.environment.value),
            )
            row = await cur.fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == NAME_CONSTRAINT:
                raise ProjectNameTaken(new.name) from None
            raise
        assert row is not None
        self._catalogs.forget(None)
        return row

    async def add_owner(self, conn: AsyncConnection[Any], project_id: int, user_id: int) -> None:
        await conn.execute(
            "INSERT INTO project_members (project_id, user_id, role) VALUES (%s, %s, 'owner')", (project_id, user_id)
        )

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> ProjectRow | None:
        cur = conn.cursor(row_factory=class_row(ProjectRow))
        await cur.execute(
            _GET,
            (public_id,),
        )
        return await cur.fetchone()

    async def update(self, conn: AsyncConnection[Any], public_id: str, changes: ProjectChanges) -> ProjectRow | None:
        columns = changes.as_columns()
        cur = conn.cursor(row_factory=class_row(ProjectRow))
        try:
            await cur.execute(
                sql.SQL(
                    "UPDATE projects SET {} WHERE public_id = %(public_id)s AND deleted_at IS NULL RETURNING {}"
                ).format(set_clause(columns), _SELECT),
                {**columns, "public_id": public_id},
            )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == NAME_CONSTRAINT:
                raise ProjectNameTaken(columns.get("name", "")) from None
            raise
        self._catalogs.forget(None)
        return await cur.fetchone()

    async def mark_deleted(self, conn: AsyncConnection[Any], public_id: str) -> int | None:
        """Hide the project at once; its rows are purged later by the background upkeep."""
        cur = await conn.execute(
            "UPDATE projects SET deleted_at = now() WHERE public_id = %s AND deleted_at IS NULL RETURNING id",
            (public_id,),
        )
        self._catalogs.forget(None)
        row = await cur.fetchone()
        return int(row[0]) if row else None

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[ProjectRow]:
        return await run_query(conn, QUERY_SPEC, params, class_row(ProjectRow), catalogs=self._catalogs)

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
