"""The migrations' CHECK lists of enum columns are the one copy of an enum outside its EnumMapping:
every `column IN (...)` CHECK in the schema must list exactly the values of the domain's enum table."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from internal.domain.employee.model import STATUSES
from internal.domain.event.model import ACTOR_KINDS, OUTCOMES
from internal.domain.iam.model import PROJECT_ROLES
from internal.domain.permission.model import SCOPES
from internal.domain.project.model import ENVIRONMENTS
from internal.enums import EnumMapping

pytestmark = pytest.mark.integration

# (table, column) -> the enum table whose DB strings the column holds.
ENUM_COLUMNS: dict[tuple[str, str], EnumMapping[Any, Any]] = {
    ("employees", "status"): STATUSES,
    ("projects", "environment"): ENVIRONMENTS,
    ("permissions", "scope"): SCOPES,
    ("project_members", "role"): PROJECT_ROLES,
    ("project_events", "outcome"): OUTCOMES,
    ("global_events", "outcome"): OUTCOMES,
    ("project_events", "actor_kind"): ACTOR_KINDS,
    ("global_events", "actor_kind"): ACTOR_KINDS,
}

# `CHECK ((status = ANY (ARRAY['active'::text, 'inactive'::text])))`, as pg_get_constraintdef prints
# a `status IN ('active', 'inactive')`.
_IN_LIST = re.compile(r"^CHECK \(\((?P<column>\w+) = ANY \(ARRAY\[(?P<values>.*)\]\)\)\)$")
_LITERAL = re.compile(r"'((?:[^']|'')*)'::text")

# Every CHECK declared on a table itself (not inherited by a partition), in the public schema.
_CHECKS = """
SELECT c.relname, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'c' AND k.conislocal AND n.nspname = 'public' AND NOT c.relispartition
ORDER BY 1, 2
"""


def _value_lists(database_url: str) -> dict[tuple[str, str], set[str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(_CHECKS).fetchall()
    found: dict[tuple[str, str], set[str]] = {}
    for table, definition in rows:
        match = _IN_LIST.match(str(definition))
        if match is None:
            continue  # a CHECK of another shape (a pattern, a length)
        values = {v.replace("''", "'") for v in _LITERAL.findall(match.group("values"))}
        found[str(table), match.group("column")] = values
    return found


def test_every_enum_check_lists_exactly_its_enum_tables_values(database_url: str) -> None:
    found = _value_lists(database_url)

    assert set(found) == set(ENUM_COLUMNS), "an enum CHECK without an EnumMapping here, or one gone"
    for column, mapping in ENUM_COLUMNS.items():
        assert found[column] == set(mapping.db_values()), column
