"""SQL fragments every repository needs, composed safely from identifiers it declares."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, LiteralString

from psycopg import sql

from internal.convert import version_of_etag

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def rendered(statement: sql.Composable) -> sql.SQL:
    """A statement composed at import, rendered once: executing it then only binds values (a
    Composed statement is re-rendered on every execution)."""
    return sql.SQL(statement.as_string())


@functools.lru_cache(maxsize=1024)
def quoted(name: str) -> str:
    """An identifier quoted as text, once per name: for statements assembled as plain text on
    every call (identifiers from code only, values always bound), which psycopg parses once."""
    return sql.Identifier(name).as_string()


def column_list(columns: Iterable[str]) -> sql.Composed:
    """`"a", "b", "c"` for SELECT and RETURNING lists."""
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def set_clause(changes: Mapping[str, object]) -> sql.Composed:
    """`"a" = %(a)s, ..., updated_at = now()` for a masked update; the values bind by column name."""
    assignments = [sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in changes]
    return sql.SQL(", ").join([*assignments, sql.SQL("updated_at = now()")])


def columns_of(row: type[DataclassInstance]) -> tuple[str, ...]:
    """The columns a row dataclass is built from (class_row matches them by name), in field order."""
    return tuple(field.name for field in dataclasses.fields(row))


def _bindable(value: object) -> object:
    """A domain value as psycopg binds it: an enum as its DB string, a tuple as an array."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def bound_values(record: DataclassInstance) -> dict[str, object]:
    """Every field of a New* dataclass, by column name, ready to bind."""
    return {field.name: _bindable(getattr(record, field.name)) for field in dataclasses.fields(record)}


def changed_values(changes: DataclassInstance) -> dict[str, object]:
    """The fields of a *Changes dataclass that an update mask named (None means unchanged)."""
    return {name: value for name, value in bound_values(changes).items() if value is not None}


def matches_etag(version_column: LiteralString = "version") -> LiteralString:
    """The condition a write guarded by an etag carries in its WHERE beside its own (see
    rows.EtagGuard): always true when the call named no etag, else true only at the version the
    etag names. `version_column` is qualified where a join makes `version` ambiguous (`m.version`).
    Binds `expecting(etag)`."""
    return "(NOT %(etag_given)s OR " + version_column + " = %(expected_version)s)"


def expecting(etag: str) -> dict[str, object]:
    """The values matches_etag binds. An etag that names no version binds NULL, which equals no row."""
    return {"etag_given": bool(etag), "expected_version": version_of_etag(etag)}
