"""SQL for users (a global table). Every statement runs on the connection the service hands in."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from internal.domain.user.model import NewUser, UserChanges, UserRow
from internal.postgres.statements import column_list, rendered, set_clause
from internal.query import FilterSpec, QueryParams, QueryResult, QuerySpec, run_query

COLUMNS = ("id", "public_id", "email", "first_name", "last_name", "active", "created_at", "updated_at")
_SELECT = column_list(COLUMNS)

QUERY_SPEC = QuerySpec(
    table="users",
    columns=COLUMNS,
    keyword_columns=("email", "first_name", "last_name"),
    filters={"active": FilterSpec("active", values=("true", "false"))},
    sorts={
        "email": "email",
        "first_name": "first_name",
        "last_name": "last_name",
        "created_at": "created_at",
        "updated_at": "updated_at",
    },
    default_sort=("created_at", True),
)

EMAIL_CONSTRAINT = "users_email_key"

# Composed once at import: the hot path only binds values.
_INSERT = rendered(
    sql.SQL(
        "INSERT INTO users (public_id, email, first_name, last_name) "
        "VALUES (%(public_id)s, %(email)s, %(first_name)s, %(last_name)s) RETURNING {}"
    ).format(_SELECT)
)
_GET = rendered(sql.SQL("SELECT {} FROM users WHERE public_id = %(public_id)s").format(_SELECT))
# Idempotent: a user already in the wanted state keeps its updated_at (nothing changed).
_SET_ACTIVE = rendered(
    sql.SQL(
        "UPDATE users SET active = %(active)s, "
        "updated_at = CASE WHEN active = %(active)s THEN updated_at ELSE now() END "
        "WHERE public_id = %(public_id)s RETURNING {}"
    ).format(_SELECT)
)


class EmailTaken(Exception):
    """Raised by the repo; the service turns it into its domain error."""


class UserRepo:
    async def insert(self, conn: AsyncConnection[Any], new: NewUser) -> UserRow:
        cur = conn.cursor(row_factory=class_row(UserRow))
        try:
            await cur.execute(
                _INSERT,
                {
                    "public_id": new.public_id,
                    "email": new.email,
                    "first_name": new.first_name,
                    "last_name": new.last_name,
                },
            )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == EMAIL_CONSTRAINT:
                raise EmailTaken() from None
            raise
        row = await cur.fetchone()
        assert row is not None
        return row

    async def get(self, conn: AsyncConnection[Any], public_id: str) -> UserRow | None:
        cur = conn.cursor(row_factory=class_row(UserRow))
        await cur.execute(_GET, {"public_id": public_id})
        return await cur.fetchone()

    async def update(self, conn: AsyncConnection[Any], public_id: str, changes: UserChanges) -> UserRow | None:
        columns = changes.as_columns()
        cur = conn.cursor(row_factory=class_row(UserRow))
        try:
            await cur.execute(
                sql.SQL("UPDATE users SET {} WHERE public_id = %(public_id)s RETURNING {}").format(
                    set_clause(columns), _SELECT
                ),
                {**columns, "public_id": public_id},
            )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == EMAIL_CONSTRAINT:
                raise EmailTaken() from None
            raise
        return await cur.fetchone()

    async def set_active(self, conn: AsyncConnection[Any], public_id: str, active: bool) -> UserRow | None:
        cur = conn.cursor(row_factory=class_row(UserRow))
        await cur.execute(_SET_ACTIVE, {"active": active, "public_id": public_id})
        return await cur.fetchone()

    async def query(self, conn: AsyncConnection[Any], params: QueryParams) -> QueryResult[UserRow]:
        return await run_query(conn, QUERY_SPEC, params, class_row(UserRow))
