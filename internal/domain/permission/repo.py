"""SQL for the permission catalog: reads only, the rows come from migrations."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from internal.domain.permission.model import SCOPES, PermissionRow
from internal.postgres.rows import Rows
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

PERMISSIONS = Rows(PermissionRow)

QUERY_SPEC = QuerySpec(
    table="permissions",
    columns=PERMISSIONS.columns,
    keyword_columns=("name", "description"),
    filters={"scope": FilterSpec("scope", values=SCOPES)},
    sorts=("name", "created_at"),
    default_sort=("name", False),
)

# Composed once at import: the hot path only binds values.
_GET = PERMISSIONS.statement("SELECT {columns} FROM permissions WHERE public_id = %(public_id)s")


class PermissionRepo:
    async def get(self, conn: AsyncConnection[Any], public_id: str) -> PermissionRow | None:
        return await PERMISSIONS.one(conn, _GET, {"public_id": public_id})

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[PermissionRow]:
        return await run_query(conn, QUERY_SPEC, params, PERMISSIONS.factory)
