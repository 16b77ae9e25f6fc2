"""SQL for employees. Every statement names the project (partition pruning at plan time); writes
check in the same statement that the project is still live (internal.tenancy)."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from internal.domain.employee.model import EmployeeChanges, EmployeeRow, NewEmployee
from internal.postgres.errors import is_missing_partition, unique_violation_columns
from internal.postgres.statements import column_list, rendered, set_clause
from internal.query import CatalogCache, FilterSpec, QueryParams, QueryResult, QuerySpec, run_query
from internal.tenancy import LIVE_PROJECT

COLUMNS = (
    "id",
    "project_id",
    "public_id",
    "name",
    "email",
    "role",
    "department",
    "status",
    "created_at",
    "updated_at",
)
_SELECT = column_list(COLUMNS)

QUERY_SPEC = QuerySpec(
    table="employees",
    columns=COLUMNS,
    keyword_columns=("name", "email", "role", "department"),
    filters={
        "status": FilterSpec("status", values=("active", "inactive")),
        "role": FilterSpec("role"),
        "department": FilterSpec("department"),
    },
    sorts={
        "name": "name",
        "email": "email",
        "role": "role",
        "department": "department",
        "status": "status",
        "created_at": "created_at",
        "updated_at": "updated_at",
    },
    default_sort=("created_at", True),
    scope_column="project_id",
)

EMAIL_KEY = ("project_id", "email_key")

# Composed once at import: the hot path only binds values.
_INSERT = rendered(
    sql.SQL(
        "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
        "SELECT %(project_id)s, %(public_id)s, %(name)s, %(email)s, %(role)s, %(department)s, %(status)s "
        "WHERE " + LIVE_PROJECT + " RETURNING {}"
    ).format(_SELECT)
)
_GET = rendered(
    sql.SQL("SELECT {} FROM employees WHERE project_id = %(project_id)s AND public_id = %(public_id)s").format(_SELECT)
)


class EmailTaken(Exception):
    """Raised by the repo; the service turns it into its domain error (it knows the public ids)."""


class EmployeeRepo:
    def __init__(self) -> None:
        # Each write forgets its project's catalogs, so a caller's next page lists what it just wrote.
        self._catalogs = CatalogCache()

    async def insert(self, conn: AsyncConnection[Any], project_id: int, new: NewEmployee) -> EmployeeRow | None:
        """None if the project is gone (no live row, or its block partition was already removed)."""
        cur = conn.cursor(row_factory=class_row(EmployeeRow))
        try:
            await cur.execute(
                _INSERT,
                {
                    "project_id": project_id,
                    "public_id": new.public_id,
                    "name": new.name,
                    "email": new.email,
                    "role": new.role,
                    "department": new.department,
                    "status": new.status.value,
                },
            )
        except psycopg.errors.UniqueViolation as exc:
            if unique_violation_columns(exc) == EMAIL_KEY:
                raise EmailTaken() from None
            raise
        except psycopg.errors.CheckViolation as exc:
            if is_missing_partition(exc):
                return None
            raise
        self._catalogs.forget(project_id)
        return await cur.fetchone()

    async def get(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> EmployeeRow | None:
        cur = conn.cursor(row_factory=class_row(EmployeeRow))
        await cur.execute(
            _GET,
            {"project_id": project_id, "public_id": public_id},
        )
        return await cur.fetchone()

    async def update(
        self, conn: AsyncConnection[Any], project_id: int, public_id: str, changes: EmployeeChanges
    ) -> EmployeeRow | None:
        columns = changes.as_columns()
        cur = conn.cursor(row_factory=class_row(EmployeeRow))
        try:
            await cur.execute(
                sql.SQL(
                    "UPDATE employees SET {} "
                    "WHERE project_id = %(project_id)s AND public_id = %(public_id)s AND "
                    + LIVE_PROJECT
                    + " RETURNING {}"
                ).format(set_clause(columns), _SELECT),
                {**columns, "project_id": project_id, "public_id": public_id},
            )
        except psycopg.errors.UniqueViolation as exc:
            if unique_violation_columns(exc) == EMAIL_KEY:
                raise EmailTaken() from None
            raise
        self._catalogs.forget(project_id)
        return await cur.fetchone()

    async def delete(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> bool:
        cur = await conn.execute(
            "DELETE FROM employees WHERE project_id = %(project_id)s AND public_id = %(public_id)s AND "
            + LIVE_PROJECT
            + " RETURNING id",
            {"project_id": project_id, "public_id": public_id},
        )
        self._catalogs.forget(project_id)
        return await cur.fetchone() is not None

    async def query(self, conn: AsyncConnection[Any], project_id: int, params: QueryParams) -> QueryResult[EmployeeRow]:
        return await run_query(
            conn, QUERY_SPEC, params, class_row(EmployeeRow), scope=project_id, catalogs=self._catalogs
        )
