"""SQL for roles (a global table). Builtin rules are enforced inside the writing statement itself, so a
refusal never depends on a separate read that could go stale."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from internal.domain.role.model import NewRole, RoleChanges, RoleRow
from internal.postgres.statements import column_list, rendered, set_clause
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

COLUMNS = ("id", "public_id", "name", "description", "builtin", "created_at", "updated_at")
_SELECT = column_list(COLUMNS)

QUERY_SPEC = QuerySpec(
    table="roles",
    columns=COLUMNS,
    keyword_columns=("name", "description"),
    filters={"builtin": FilterSpec("builtin", values=("true", "false"))},
    sorts={"name": "name", "created_at": "created_at", "updated_at": "updated_at"},
    default_sort=("name", False),
)

NAME_CONSTRAINT = "roles_name_key"

# Composed once at import: the hot path only binds values.
_INSERT = rendered(
    sql.SQL(
        "INSERT INTO roles (public_id, name, description) "
        "VALUES (%(public_id)s, %(name)s, %(description)s) RETURNING {}"
    ).format(_SELECT)
)
_GET = rendered(sql.SQL("SELECT {} FROM roles WHERE public_id = %(public_id)s").format(_SELECT))
# A built-in role may keep its name (or change only its description), never take another one.
_NOT_RENAMING_BUILTIN = "(NOT builtin OR name = %(name)s)"
_DELETE = "DELETE FROM roles WHERE public_id = %(public_id)s AND NOT builtin RETURNING id"


class NameTaken(Exception):
    """Raised by the repo; the service turns it into its domain error."""


class InUse(Exception):
    """Raised by the repo when user_roles still references the role (its foreign key restricts deletes)."""


class RoleRepo:
    async def insert(self, conn: AsyncConnection[Any], new: NewRole) -> RoleRow:
        cur = conn.cursor(row_factory=class_row(RoleRow))
        try:
            await cur.execute(_INSERT, {"public_id": new.public_id, "name": new.name, "description": new.description})
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == NAME_CONSTRAINT:
                raise NameTaken() from None
            raise
        row = await cur.fetchone()
        assert row is not None
        return row

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> RoleRow | None:
        cur = conn.cursor(row_factory=class_row(RoleRow))
        await cur.execute(_GET, {"public_id": public_id})
        return await cur.fetchone()

    async def update(self, conn: AsyncConnection[Any], public_id: str, changes: RoleChanges) -> RoleRow | None:
        """None if the role is missing, or if it is built-in and the change would rename it."""
        columns = changes.as_columns()
        guard = sql.SQL(" AND " + _NOT_RENAMING_BUILTIN if "name" in columns else "")
        cur = conn.cursor(row_factory=class_row(RoleRow))
        try:
            await cur.execute(
                sql.SQL("UPDATE roles SET {} WHERE public_id = %(public_id)s{} RETURNING {}").format(
                    set_clause(columns), guard, _SELECT
                ),
                {**columns, "public_id": public_id},
            )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == NAME_CONSTRAINT:
                raise NameTaken() from None
            raise
        return await cur.fetchone()

    async def delete(self, conn: AsyncConnection[Any], public_id: str) -> bool:
        """False if the role is missing or built-in; its grants (role_permissions) go with it."""
        try:
            cur = await conn.execute(_DELETE, {"public_id": public_id})
        # ON DELETE RESTRICT raises RestrictViolation (23001); NO ACTION would raise ForeignKeyViolation.
        except (psycopg.errors.RestrictViolation, psycopg.errors.ForeignKeyViolation):
            raise InUse() from None
        return await cur.fetchone() is not None

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[RoleRow]:
        return await run_query(conn, QUERY_SPEC, params, class_row(RoleRow))
