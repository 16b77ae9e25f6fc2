"""SQL for employees. Every statement names the project (partition pruning at plan time); writes
check in the same statement that the project is still live (internal.tenancy)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from internal.domain.employee.errors import EmployeeEmailTaken
from internal.domain.employee.model import STATUSES, EmployeeChanges, EmployeeRow, NewEmployee
from internal.postgres.rows import EtagGuard, Rows
from internal.postgres.statements import bound_values
from internal.query import CatalogCache, FilterSpec, QueryParams, QueryResult, QuerySpec, run_query
from internal.tenancy import LIVE_PROJECT, ProjectRef

# A clash on a unique key is the caller's mistake: the key, and the domain error it means.
EMPLOYEES = Rows(
    EmployeeRow,
    unique={
        ("project_id", "email_key"): lambda clash: EmployeeEmailTaken(clash.project_public_id, clash.values["email"]),
    },
)

QUERY_SPEC = QuerySpec(
    table="employees",
    columns=EMPLOYEES.columns,
    keyword_columns=("name", "email", "role", "department"),
    filters={
        "status": FilterSpec("status", values=STATUSES),
        "role": FilterSpec("role"),
        "department": FilterSpec("department"),
    },
    sorts=("name", "email", "role", "department", "status", "created_at", "updated_at"),
    default_sort=("created_at", True),
    scope_column="project_id",
)

_KEY = "project_id = %(project_id)s AND public_id = %(public_id)s"
_WHERE_KEY = _KEY + " AND " + LIVE_PROJECT
# The writes a call may guard with the etag it read.
_ETAG = EtagGuard("employee", table="employees", conditions=_WHERE_KEY)

# Composed once at import: the hot path only binds values. _UPDATE is a template: a masked update
# fills in the changed columns per call.
_INSERT = EMPLOYEES.statement(
    "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
    "SELECT %(project_id)s, %(public_id)s, %(name)s, %(email)s, %(role)s, %(department)s, %(status)s "
    "WHERE " + LIVE_PROJECT + " RETURNING {columns}"
)
_GET = EMPLOYEES.statement("SELECT {columns} FROM employees WHERE " + _KEY)
_UPDATE = "UPDATE employees SET {changes} WHERE " + _ETAG.where + " RETURNING {columns}"
_DELETE = EMPLOYEES.statement("DELETE FROM employees WHERE " + _ETAG.where + " RETURNING {columns}")


class EmployeeRepo:
    def __init__(self) -> None:
        # Each write forgets its project's catalogs, so a caller's next page lists what it just wrote.
        self._catalogs = CatalogCache()

    async def insert(self, conn: AsyncConnection[Any], project: ProjectRef, new: NewEmployee) -> EmployeeRow:
        """EmployeeEmailTaken, or ProjectNotFound if the project is gone since authorization found it."""
        row = await EMPLOYEES.insert(conn, _INSERT, {"project_id": project.id, **bound_values(new)}, project=project)
        self._catalogs.forget(project.id)
        return row

    async def get(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> EmployeeRow | None:
        return await EMPLOYEES.one(conn, _GET, {"project_id": project_id, "public_id": public_id})

    async def update(
        self, conn: AsyncConnection[Any], project: ProjectRef, public_id: str, changes: EmployeeChanges, etag: str
    ) -> EmployeeRow | None:
        """None if the employee is missing; EtagMismatch if `etag` is set and stale."""
        row = await EMPLOYEES.update(
            conn,
            _UPDATE,
            changes,
            {"project_id": project.id, "public_id": public_id},
            project=project,
            if_match=_ETAG.expect(etag, public_id),
        )
        self._catalogs.forget(project.id)
        return row

    async def delete(self, conn: AsyncConnection[Any], project_id: int, public_id: str, etag: str) -> bool:
        """False if the employee is missing; EtagMismatch if `etag` is set and stale."""
        row = await EMPLOYEES.write(
            conn, _DELETE, {"project_id": project_id, "public_id": public_id}, if_match=_ETAG.expect(etag, public_id)
        )
        self._catalogs.forget(project_id)
        return row is not None

    async def query(self, conn: AsyncConnection[Any], project_id: int, params: QueryParams) -> QueryResult[EmployeeRow]:
        return await run_query(conn, QUERY_SPEC, params, EMPLOYEES.factory, scope=project_id, catalogs=self._catalogs)
