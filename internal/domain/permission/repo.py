"""SQL for the permission catalog: reads only, the rows come from migrations."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from internal.domain.permission.model import SCOPES, PermissionRow
from internal.postgres.statements import column_list, rendered
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

COLUMNS = ("id", "public_id", "name", "description", "scope", "created_at")
_SELECT = column_list(COLUMNS)

QUERY_SPEC = QuerySpec(
    table="permissions",
    columns=COLUMNS,
    keyword_columns=("name", "description"),
    filters={"scope": FilterSpec("scope", values=SCOPES.db_values())},
    sorts={"name": "name", "created_at": "created_at"},
    default_sort=("name", False),
)

# Composed once at import: the hot path only binds values.
_GET = rendered(sql.SQL("SELECT {} FROM permissions WHERE public_id = %(public_id)s").format(_SELECT))


class PermissionRepo:
    async def get(self, conn: AsyncConnection[Any], public_id: str) -> PermissionRow | None:
        cur = conn.cursor(row_factory=class_row(PermissionRow))
        await cur.execute(_GET, {"public_id": public_id})
        return await cur.fetchone()

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[PermissionRow]:
        return await run_query(conn, QUERY_SPEC, params, class_row(PermissionRow))
