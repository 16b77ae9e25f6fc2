"""SQL for users (a global table). Every statement runs on the connection the service hands in."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from internal.domain.user.errors import UserEmailTaken
from internal.domain.user.model import NewUser, UserChanges, UserRow
from internal.postgres.rows import EtagGuard, Rows
from internal.postgres.statements import bound_values
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

USERS = Rows(UserRow, unique={"users_email_key": lambda clash: UserEmailTaken(clash.values["email"])})

QUERY_SPEC = QuerySpec(
    table="users",
    columns=USERS.columns,
    keyword_columns=("email", "first_name", "last_name"),
    filters={"active": FilterSpec("active", values=("true", "false"))},
    sorts=("email", "first_name", "last_name", "created_at", "updated_at"),
    default_sort=("created_at", True),
)

# Composed once at import: the hot path only binds values.
_INSERT = USERS.statement(
    "INSERT INTO users (public_id, email, first_name, last_name) "
    "VALUES (%(public_id)s, %(email)s, %(first_name)s, %(last_name)s) RETURNING {columns}"
)
_GET = USERS.statement("SELECT {columns} FROM users WHERE public_id = %(public_id)s")
# The writes a call may guard with the etag it read.
_ETAG = EtagGuard("user", table="users", conditions="public_id = %(public_id)s")
_UPDATE = "UPDATE users SET {changes} WHERE " + _ETAG.where + " RETURNING {columns}"
# Idempotent: a user already in the wanted state keeps its updated_at (nothing changed).
_SET_ACTIVE = USERS.statement(
    "UPDATE users SET active = %(active)s, "
    "updated_at = CASE WHEN active = %(active)s THEN updated_at ELSE now() END "
    "WHERE public_id = %(public_id)s RETURNING {columns}"
)


class UserRepo:
    async def insert(self, conn: AsyncConnection[Any], new: NewUser) -> UserRow:
        """UserEmailTaken if another user has the email (case-insensitively)."""
        return await USERS.insert(conn, _INSERT, bound_values(new))

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> UserRow | None:
        return await USERS.one(conn, _GET, {"public_id": public_id})

    async def update(
        self, conn: AsyncConnection[Any], public_id: str, changes: UserChanges, etag: str
    ) -> UserRow | None:
        """None if the user is missing; EtagMismatch if `etag` is set and stale."""
        return await USERS.update(
            conn, _UPDATE, changes, {"public_id": public_id}, if_match=_ETAG.expect(etag, public_id)
        )

    async def set_active(self, conn: AsyncConnection[Any], public_id: str, active: bool) -> UserRow | None:
        return await USERS.one(conn, _SET_ACTIVE, {"active": active, "public_id": public_id})

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[UserRow]:
        return await run_query(conn, QUERY_SPEC, params, USERS.factory)
