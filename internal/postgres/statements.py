"""SQL fragments every repository needs, composed safely from identifiers it declares."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from psycopg import sql


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
