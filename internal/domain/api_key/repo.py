"""SQL for API keys. Every statement names the project (partition pruning at plan time); writes check
in the same statement that the project is still live (internal.tenancy). `secret_hash` is written,
never read here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from internal.domain.api_key.errors import ApiKeyNameTaken
from internal.domain.api_key.model import ApiKeyChanges, ApiKeyRow, NewApiKey
from internal.postgres.rows import EtagGuard, Rows
from internal.postgres.statements import bound_values, set_clause
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query
from internal.tenancy import LIVE_PROJECT, ProjectRef

API_KEYS = Rows(
    ApiKeyRow,
    unique={
        ("project_id", "name_key"): lambda clash: ApiKeyNameTaken(clash.project_public_id, clash.values["name"]),
    },
)
_KEY = "project_id = %(project_id)s AND public_id = %(public_id)s"
_WHERE_KEY = _KEY + " AND " + LIVE_PROJECT
# The writes a call may guard with the etag it read.
_ETAG = EtagGuard("api_key", table="api_keys", conditions=_WHERE_KEY)

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
    columns=API_KEYS.columns,
    keyword_columns=("name",),
    filters={STATUS_FILTER: FilterSpec(STATUS_FILTER, predicates=STATUS_PREDICATES)},
    sorts=("name", "expires_at", "last_used_at", "created_at", "updated_at"),
    default_sort=("created_at", True),
    scope_column="project_id",
)

# Composed once at import: the hot path only binds values.
_INSERT = API_KEYS.statement(
    "INSERT INTO api_keys (project_id, public_id, name, secret_hash, secret_hint, scopes, expires_at) "
    "SELECT %(project_id)s, %(public_id)s, %(name)s, %(secret_hash)s, %(secret_hint)s, %(scopes)s, %(expires_at)s "
    "WHERE " + LIVE_PROJECT + " RETURNING {columns}"
)
_GET = API_KEYS.statement("SELECT {columns} FROM api_keys WHERE " + _KEY)
_UPDATE = "UPDATE api_keys SET {changes} WHERE " + _ETAG.where + " RETURNING {columns}"
_SET_ACTIVE = API_KEYS.statement(
    "UPDATE api_keys SET {changes} WHERE " + _WHERE_KEY + " RETURNING {columns}", changes=set_clause({"active": None})
)
_DELETE = API_KEYS.statement("DELETE FROM api_keys WHERE " + _ETAG.where + " RETURNING {columns}")
_PROJECT_PERMISSIONS = "SELECT name FROM permissions WHERE name = ANY(%(names)s) AND scope = 'project'"


class ApiKeyRepo:
    async def project_permissions(self, conn: AsyncConnection[Any], names: Sequence[str]) -> set[str]:
        """Which of `names` are project-scope permissions of the catalog, in one statement."""
        cur = await conn.execute(_PROJECT_PERMISSIONS, {"names": list(names)})
        return {str(row[0]) for row in await cur.fetchall()}

    async def insert(self, conn: AsyncConnection[Any], project: ProjectRef, new: NewApiKey) -> ApiKeyRow:
        """ApiKeyNameTaken, or ProjectNotFound if the project is gone since authorization found it."""
        return await API_KEYS.insert(conn, _INSERT, {"project_id": project.id, **bound_values(new)}, project=project)

    async def get(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> ApiKeyRow | None:
        return await API_KEYS.one(conn, _GET, {"project_id": project_id, "public_id": public_id})

    async def update(
        self, conn: AsyncConnection[Any], project: ProjectRef, public_id: str, changes: ApiKeyChanges, etag: str
    ) -> ApiKeyRow | None:
        """None if the key is missing; EtagMismatch if `etag` is set and stale."""
        return await API_KEYS.update(
            conn,
            _UPDATE,
            changes,
            {"project_id": project.id, "public_id": public_id},
            project=project,
            if_match=_ETAG.expect(etag, public_id),
        )

    async def set_active(
        self, conn: AsyncConnection[Any], project_id: int, public_id: str, active: bool
    ) -> ApiKeyRow | None:
        """Only `active` and `updated_at` change: the expiry is the owner's decision, not a side effect."""
        return await API_KEYS.one(
            conn, _SET_ACTIVE, {"active": active, "project_id": project_id, "public_id": public_id}
        )

    async def delete(self, conn: AsyncConnection[Any], project_id: int, public_id: str, etag: str) -> bool:
        """False if the key is missing; EtagMismatch if `etag` is set and stale."""
        row = await API_KEYS.write(
            conn, _DELETE, {"project_id": project_id, "public_id": public_id}, if_match=_ETAG.expect(etag, public_id)
        )
        return row is not None

    async def query(self, conn: AsyncConnection[Any], project_id: int, params: QueryParams) -> QueryResult[ApiKeyRow]:
        return await run_query(conn, QUERY_SPEC, params, API_KEYS.factory, scope=project_id)
