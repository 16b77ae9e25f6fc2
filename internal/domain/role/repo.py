"""SQL for roles (a global table). Builtin rules are enforced inside the writing statement itself, so a
refusal never depends on a separate read that could go stale."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from psycopg import AsyncConnection

from internal.domain.role.errors import RoleInUse, RoleNameTaken
from internal.domain.role.model import NewRole, RoleChanges, RoleRow
from internal.postgres.rows import Rows
from internal.postgres.statements import bound_values
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

ROLES = Rows(RoleRow, unique={"roles_name_key": lambda clash: RoleNameTaken(clash.values["name"])})

QUERY_SPEC = QuerySpec(
    table="roles",
    columns=ROLES.columns,
    keyword_columns=("name", "description"),
    filters={"builtin": FilterSpec("builtin", values=("true", "false"))},
    sorts=("name", "created_at", "updated_at"),
    default_sort=("name", False),
)

# Composed once at import: the hot path only binds values.
_INSERT = ROLES.statement(
    "INSERT INTO roles (public_id, name, description) VALUES (%(public_id)s, %(name)s, %(description)s) "
    "RETURNING {columns}"
)
_GET = ROLES.statement("SELECT {columns} FROM roles WHERE public_id = %(public_id)s")
_UPDATE = "UPDATE roles SET {changes} WHERE public_id = %(public_id)s RETURNING {columns}"
# A built-in role may keep its name (or change only its description), never take another one.
_UPDATE_NAME = (
    "UPDATE roles SET {changes} WHERE public_id = %(public_id)s AND (NOT builtin OR name = %(name)s) "
    "RETURNING {columns}"
)
_DELETE = "DELETE FROM roles WHERE public_id = %(public_id)s AND NOT builtin RETURNING id"


class RoleRepo:
    async def insert(self, conn: AsyncConnection[Any], new: NewRole) -> RoleRow:
        """RoleNameTaken if another role has the name."""
        return await ROLES.insert(conn, _INSERT, bound_values(new))

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> RoleRow | None:
        return await ROLES.one(conn, _GET, {"public_id": public_id})

    async def update(self, conn: AsyncConnection[Any], public_id: str, changes: RoleChanges) -> RoleRow | None:
        """None if the role is missing, or if it is built-in and the change would rename it."""
        statement = _UPDATE if changes.name is None else _UPDATE_NAME
        return await ROLES.update(conn, statement, changes, {"public_id": public_id})

    async def delete(self, conn: AsyncConnection[Any], public_id: str) -> bool:
        """False if the role is missing or built-in; RoleInUse while a user holds it. Its grants
        (role_permissions) go with it."""
        try:
            cur = await conn.execute(_DELETE, {"public_id": public_id})
        # ON DELETE RESTRICT raises RestrictViolation (23001); NO ACTION would raise ForeignKeyViolation.
        except (psycopg.errors.RestrictViolation, psycopg.errors.ForeignKeyViolation):
            raise RoleInUse(public_id) from None
        return await cur.fetchone() is not None

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[RoleRow]:
        return await run_query(conn, QUERY_SPEC, params, ROLES.factory)
