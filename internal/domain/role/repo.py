"""SQL for roles (a global table). Builtin rules are enforced inside the writing statement itself, so a
refusal never depends on a separate read that could go stale. A call's etag is checked there too,
after them: a built-in role is refused as built-in, whatever the etag."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from psycopg import AsyncConnection

from internal.domain.role.errors import RoleInUse, RoleNameTaken
from internal.domain.role.model import NewRole, RoleChanges, RoleRow
from internal.postgres.rows import EtagGuard, Rows
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
# The writes a call may guard with the etag it read, one guard per set of conditions. A built-in role
# may keep its name (or change only its description), never take another one, and is never deleted.
_ETAG = EtagGuard("role", table="roles", conditions="public_id = %(public_id)s")
_ETAG_NAME = EtagGuard(
    "role", table="roles", conditions="public_id = %(public_id)s AND (NOT builtin OR name = %(name)s)"
)
_ETAG_DELETE = EtagGuard("role", table="roles", conditions="public_id = %(public_id)s AND NOT builtin")
_UPDATE = "UPDATE roles SET {changes} WHERE " + _ETAG.where + " RETURNING {columns}"
_UPDATE_NAME = "UPDATE roles SET {changes} WHERE " + _ETAG_NAME.where + " RETURNING {columns}"
_DELETE = ROLES.statement("DELETE FROM roles WHERE " + _ETAG_DELETE.where + " RETURNING {columns}")


class RoleRepo:
    async def insert(self, conn: AsyncConnection[Any], new: NewRole) -> RoleRow:
        """RoleNameTaken if another role has the name."""
        return await ROLES.insert(conn, _INSERT, bound_values(new))

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> RoleRow | None:
        return await ROLES.one(conn, _GET, {"public_id": public_id})

    async def update(
        self, conn: AsyncConnection[Any], public_id: str, changes: RoleChanges, etag: str
    ) -> RoleRow | None:
        """None if the role is missing, or if it is built-in and the change would rename it;
        EtagMismatch if neither and `etag` is set and stale."""
        statement, guard = (_UPDATE, _ETAG) if changes.name is None else (_UPDATE_NAME, _ETAG_NAME)
        return await ROLES.update(
            conn, statement, changes, {"public_id": public_id}, if_match=guard.expect(etag, public_id)
        )

    async def delete(self, conn: AsyncConnection[Any], public_id: str, etag: str) -> bool:
        """False if the role is missing or built-in; EtagMismatch if neither and `etag` is set and
        stale; RoleInUse while a user holds it. Its grants (role_permissions) go with it."""
        try:
            row = await ROLES.write(
                conn, _DELETE, {"public_id": public_id}, if_match=_ETAG_DELETE.expect(etag, public_id)
            )
        # ON DELETE RESTRICT raises RestrictViolation (23001); NO ACTION would raise ForeignKeyViolation.
        except (psycopg.errors.RestrictViolation, psycopg.errors.ForeignKeyViolation):
            raise RoleInUse(public_id) from None
        return row is not None

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[RoleRow]:
        return await run_query(conn, QUERY_SPEC, params, ROLES.factory)
