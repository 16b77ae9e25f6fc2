"""One table's rows as one dataclass: reads, and writes whose refusals are the domain's errors.

A repository declares once per table its row class and, for each unique key, the domain error a
clash on that key means (`EMPLOYEES = Rows(EmployeeRow, unique={...})`). Every statement then yields
that row or raises the domain error itself: a service receives the row or its answer, and translates
nothing.

- A unique violation is matched by key (internal.postgres.errors.violates): by the key columns on a
  partitioned table, by the index name on a plain one. A violation of an undeclared key, or any
  other database error, is left as it is (an internal error).
- A write into a project's table is given the call's ProjectRef. If the project is gone (its block
  partition was already removed, or the statement's live-project check let no row through an
  INSERT) it raises internal.tenancy.ProjectNotFound, the one "project not found".
- A write a call may guard with an etag has the WHERE of its resource's EtagGuard and is given the
  call's IfMatch: if it touches no row, a probe on the same connection tells a stale etag
  (internal.errors.EtagMismatch, with the current etag) from a missing row (None: the domain's own
  "not found", as without an etag).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, LiteralString, TypeVar

import psycopg.errors
from psycopg import AsyncConnection, sql
from psycopg.abc import Params, QueryNoTemplate
from psycopg.rows import BaseRowFactory, class_row

from internal.convert import to_etag
from internal.errors import EtagMismatch
from internal.postgres.errors import UniqueKey, is_missing_partition, violates
from internal.postgres.statements import (
    changed_values,
    column_list,
    columns_of,
    expecting,
    matches_etag,
    rendered,
    set_clause,
)
from internal.tenancy import ProjectNotFound, ProjectRef

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class Clash:
    """A write refused for a unique key: the values it bound, and its project (None on a global table)."""

    values: Mapping[str, Any]
    project: ProjectRef | None = None

    @property
    def project_public_id(self) -> str:
        """The project as clients know it (errors never carry internal ids)."""
        if self.project is None:
            raise TypeError("a write to a global table names no project")
        return self.project.public_id


# Builds the domain error a clash on one unique key means.
Refusal = Callable[[Clash], Exception]


class EtagGuard:
    """The writes of one resource that a call may guard with the etag it read, declared once from
    the conditions they share (the key, the live project, a domain rule such as "not built-in").

    `where` is the guarded WHERE: those conditions and statements.matches_etag. `probe` selects the
    version under the same conditions without the etag's, with the write's parameters: a row it
    finds is one that only the etag kept from being written. So a missing row, or one a domain rule
    of the statement refuses, is answered as without an etag; `resource` is the kind EtagMismatch
    names.
    """

    def __init__(
        self,
        resource: str,
        *,
        table: LiteralString,
        conditions: LiteralString,
        version_column: LiteralString = "version",
    ) -> None:
        self.resource = resource
        self.where: LiteralString = conditions + " AND " + matches_etag(version_column)
        self.probe: LiteralString = "SELECT " + version_column + " FROM " + table + " WHERE " + conditions

    def expect(self, etag: str, resource_id: str) -> IfMatch:
        """One write's guard: the etag the call named (empty: none) and the public id it concerns."""
        return IfMatch(self, etag, resource_id)


@dataclass(frozen=True, slots=True)
class IfMatch:
    """The etag one write names, with what EtagMismatch says if it is stale."""

    guard: EtagGuard
    etag: str
    resource_id: str

    @property
    def params(self) -> dict[str, object]:
        """What the guarded WHERE binds, beside the write's own values."""
        return expecting(self.etag)

    async def refuse_stale(self, conn: AsyncConnection[Any], params: Mapping[str, Any]) -> None:
        """After the write touched no row, on its connection: EtagMismatch if the row is there at
        another version. Otherwise nothing: the row is missing, or a condition of the write other
        than the etag refused it, and the caller answers as it does without an etag."""
        if not self.etag:
            return
        cur = await conn.execute(self.guard.probe, params)
        found = await cur.fetchone()
        if found is None:
            return
        current = to_etag(int(found[0]))
        if current != self.etag:
            raise EtagMismatch(self.guard.resource, self.resource_id, current)


class Rows(Generic[R]):
    """The rows of one table (or join) as `row`, and what its unique keys' violations mean."""

    def __init__(self, row: type[R], *, unique: Mapping[UniqueKey, Refusal] | None = None) -> None:
        self.columns: tuple[str, ...] = columns_of(row)
        # `"id", "public_id", ...` for SELECT and RETURNING lists, in the row's field order.
        self.select_list: sql.Composed = column_list(self.columns)
        self.factory: BaseRowFactory[R] = class_row(row)
        self._unique = dict(unique or {})

    def statement(self, template: LiteralString, **parts: sql.Composable) -> sql.SQL:
        """A statement composed once, at import: `{columns}` is the row's column list, other
        `{names}` are the given parts (identifiers or literals from code)."""
        return rendered(sql.SQL(template).format(columns=self.select_list, **parts))

    async def one(
        self, conn: AsyncConnection[Any], statement: QueryNoTemplate, params: Params | None = None
    ) -> R | None:
        cur = conn.cursor(row_factory=self.factory)
        await cur.execute(statement, params)
        return await cur.fetchone()

    async def all(
        self, conn: AsyncConnection[Any], statement: QueryNoTemplate, params: Params | None = None
    ) -> list[R]:
        cur = conn.cursor(row_factory=self.factory)
        await cur.execute(statement, params)
        return await cur.fetchall()

    async def write(
        self,
        conn: AsyncConnection[Any],
        statement: QueryNoTemplate,
        params: Mapping[str, Any],
        *,
        project: ProjectRef | None = None,
        if_match: IfMatch | None = None,
    ) -> R | None:
        """The row a `... RETURNING` write returned, or None if it touched none; with `if_match`
        (the statement's WHERE is its guard's), EtagMismatch if only a stale etag kept it from the row."""
        if if_match is not None:
            params = {**params, **if_match.params}
        cur = conn.cursor(row_factory=self.factory)
        with self._refusals(params, project):
            await cur.execute(statement, params)
        row = await cur.fetchone()
        if row is None and if_match is not None:
            await if_match.refuse_stale(conn, params)
        return row

    async def insert(
        self,
        conn: AsyncConnection[Any],
        statement: QueryNoTemplate,
        params: Mapping[str, Any],
        *,
        project: ProjectRef | None = None,
    ) -> R:
        """The inserted row; in a project's table, ProjectNotFound if the project is gone."""
        row = await self.write(conn, statement, params, project=project)
        if row is not None:
            return row
        if project is None:
            raise AssertionError("INSERT ... RETURNING returned no row")
        raise ProjectNotFound(project.public_id)

    async def update(
        self,
        conn: AsyncConnection[Any],
        template: LiteralString,
        changes: DataclassInstance,
        params: Mapping[str, Any],
        *,
        project: ProjectRef | None = None,
        if_match: IfMatch | None = None,
    ) -> R | None:
        """A masked update: `template` names `{changes}` (the changed columns, and updated_at) and
        `{columns}` (the RETURNING list); the changed values bind by column name, beside `params`."""
        values = changed_values(changes)
        statement = sql.SQL(template).format(changes=set_clause(values), columns=self.select_list)
        return await self.write(conn, statement, {**values, **params}, project=project, if_match=if_match)

    @contextmanager
    def _refusals(self, values: Mapping[str, Any], project: ProjectRef | None) -> Iterator[None]:
        try:
            yield
        except psycopg.errors.UniqueViolation as exc:
            for key, refusal in self._unique.items():
                if violates(exc, key):
                    raise refusal(Clash(values, project)) from None
            raise
        except psycopg.errors.CheckViolation as exc:
            if project is not None and is_missing_partition(exc):
                raise ProjectNotFound(project.public_id) from None
            raise
