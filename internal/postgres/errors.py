"""Reading PostgreSQL errors without depending on index names.

On a partitioned table a unique violation names the partition's own index
(`employees_p7_project_id_email_key_idx`), so repositories match the key columns instead.
"""

from __future__ import annotations

import re

import psycopg.errors

_KEY_DETAIL = re.compile(r"^Key \((?P<columns>[^)]*)\)=")

# A unique key as a repository declares it: the index name (a plain table), or the key columns (a
# partitioned table, whose violations name the partition's index).
UniqueKey = str | tuple[str, ...]


def unique_violation_columns(exc: psycopg.errors.UniqueViolation) -> tuple[str, ...]:
    """The key columns named in the error detail, e.g. ("project_id", "email_key")."""
    match = _KEY_DETAIL.match(exc.diag.message_detail or "")
    if match is None:
        return ()
    return tuple(column.strip() for column in match.group("columns").split(","))


def violates(exc: psycopg.errors.UniqueViolation, key: UniqueKey) -> bool:
    """True if the violation is of `key` (an index name, or a tuple of key columns)."""
    if isinstance(key, str):
        return exc.diag.constraint_name == key
    return unique_violation_columns(exc) == key


def is_missing_partition(exc: psycopg.errors.CheckViolation) -> bool:
    """True for 'no partition of relation ... found for row' (the project's partition is gone)."""
    return (exc.diag.message_primary or "").startswith("no partition of relation")
