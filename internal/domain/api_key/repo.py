"""SQL for API keys. Every statement names the project (partition pruning at plan time); writes check
in the same statement that the project is still live (internal.tenancy). `secret_hash` is written,
never read here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from internal.domain.api_key.model import ApiKeyChanges, ApiKeyRow, NewApiKey
from internal.postgres.errors import is_missing_partition, unique_violation_columns
from internal.postgres.statements import column_list, rendered, set_clause
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query
from internal.tenancy import LIVE_PROJECT

COLUMNS = (
    "id",
    "project_id",
    "public_id",
    "name",
    "secret_hint",
    "scopes",
    "active",
    "expires_at",
    "last_used_at",
    "created_at",
    "updated_at",
)
_SELECT = column_list(COLUMNS)
_KEY = "project_id = %(project_id)s AND public_id = %(public_id)s"
_WHERE_KEY = _KEY + " AND " + LIVE_PROJECT

# Status depends on the clock, so it is no column: each value is a fixed predicate that the repo ANDs
# into the builder's extra_where. The builder validates the values against FilterSpec.values and
# lists them in the catalog; the predicates come from this table only, never from the request.
STATUS_FILTER = "status"
STATUS_PREDICATES = {
    "active": "(active AND expires_at > now())",
    "inactive": "(NOT active)",
    "expired": "(active AND expires_at <= now())",
}

QUERY_SPEC = QuerySpec(
    table="api_keys",
    columns=COLUMNS,
    keyword_columns=("name",),
    filters={STATUS_FILTER: FilterSpec(STATUS_FILTER, values=tuple(STATUS_PREDICATES), predicates=STATUS_PREDICATES)},
    sorts={
        "name": "name",
        "expires_at": "expires_at",
        "last_used_at": "last_used_at",
        "created_at": "created_at",
        "updated_at": "updated_at",
    },
    default_sort=("created_at", True),
    scope_column="project_id",
)

NAME_KEY = ("project_id", "name_key")

# Composed once at import: the hot path only binds values.
_INSERT = rendered(
    sql.SQL(
        "INSERT INTO api_keys (project_id, public_id, name, secret_hash, secret_hint, scopes, expires_at) "
        "SELECT %(project_id)s, %(public_id)s, %(name)s, %(secret_hash)s, %(secret_hint)s, %(scopes)s, %(expires_at)s "
        "WHERE " + LIVE_PROJECT + " RETURNING {}"
    ).format(_SELECT)
)
_GET = rendered(sql.SQL("SELECT {} FROM api_keys WHERE " + _KEY).format(_SELECT))
_SET_ACTIVE = rendered(
    sql.SQL("UPDATE api_keys SET {} WHERE " + _WHERE_KEY + " RETURNING {}").format(
        set_clause({"active": None}), _SELECT
    )
)
_DELETE = "DELETE FROM api_keys WHERE " + _WHERE_KEY + " RETURNING id"
_PROJECT_PERMISSIONS = "SELECT name FROM permissions WHERE name = ANY(%(names)s) AND scope = 'project'"


class NameTaken(Exception):
    """Raised by the repo; the service turns it into its domain error (it knows the public ids)."""


class ApiKeyRepo:
    async def project_permissions(self, conn: AsyncConnection[Any], names: Sequence[str]) -> set[str]:
        """Which of `names` are project-scope permissions of the catalog, in one statement."""
        cur = await conn.execute(_PROJECT_PERMISSIONS, {"names": list(names)})
        return {str(row[0]) for row in await cur.fetchall()}

    async def insert(self, conn: AsyncConnection[Any], project_id: int, new: NewApiKey) -> ApiKeyRow | None:
        """None if the project is gone (no live row, or its block partition was already removed)."""
        cur = conn.cursor(row_factory=class_row(ApiKeyRow))
        try:
            await cur.execute(
                _INSERT,
                {
                    "project_id": project_id,
                    "public_id": new.public_id,
                    "name": new.name,
                    "secret_hash": new.secret_hash,
                    "secret_hint": new.secret_hint,
                    "scopes": list(new.scopes),
                    "expires_at": new.expires_at,
                },
            )
        except psycopg.errors.UniqueViolation as exc:
            if unique_violation_columns(exc) == NAME_KEY:
                raise NameTaken() from None
            raise
        except psycopg.errors.CheckViolation as exc:
            if is_missing_partition(exc):
                return None
            raise
        return await cur.fetchone()

    async def get(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> ApiKeyRow | None:
        cur = conn.cursor(row_factory=class_row(ApiKeyRow))
        await cur.execute(_GET, {"project_id": project_id, "public_id": public_id})
        return await cur.fetchone()

    async def update(
        self, conn: AsyncConnection[Any], project_id: int, public_id: str, changes: ApiKeyChanges
    ) -> ApiKeyRow | None:
        columns = changes.as_columns()
        cur = conn.cursor(row_factory=class_row(ApiKeyRow))
        try:
            await cur.execute(
                sql.SQL("UPDATE api_keys SET {} WHERE " + _WHERE_KEY + " RETURNING {}").format(
                    set_clause(columns), _SELECT
                ),
                {**columns, "project_id": project_id, "public_id": public_id},
            )
        except psycopg.errors.UniqueViolation as exc:
            if unique_violation_columns(exc) == NAME_KEY:
                raise NameTaken() from None
            raise
        return await cur.fetchone()

    async def set_active(
        self, conn: AsyncConnection[Any], project_id: int, public_id: str, active: bool
    ) -> ApiKeyRow | None:
        """Only `active` and `updated_at` change: the expiry is the owner's decision, not a side effect."""
        cur = conn.cursor(row_factory=class_row(ApiKeyRow))
        await cur.execute(_SET_ACTIVE, {"active": active, "project_id": project_id, "public_id": public_id})
        return await cur.fetchone()

    async def delete(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> bool:
        cur = await conn.execute(_DELETE, {"project_id": project_id, "public_id": public_id})
        return await cur.fetchone() is not None

    async def query(self, conn: AsyncConnection[Any], project_id: int, params: QueryParams) -> QueryResult[ApiKeyRow]:
        return await run_query(conn, QUERY_SPEC, params, class_row(ApiKeyRow), scope=project_id)
