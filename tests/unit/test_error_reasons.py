"""One class per reason, one metadata shape per reason, and the README's error tables say exactly that.

Every error class a client can receive (an AppError subclass with a `reason` of its own) is
listed here from the code, and checked against the tables of README.md, section Errors: each reason
is documented with its code and its metadata keys, and nothing is documented that no class has.
Two classes with one reason (a subclass inherits its parent's) fail too.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

import pytest
from connectrpc.code import Code

import internal
from internal.auth.errors import CredentialsMissing, Unauthenticated
from internal.config import REPO_ROOT
from internal.domain.employee.errors import EmployeeNotFound
from internal.domain.user.errors import UserNotFound
from internal.errors import AppError, RequestTooLarge

_REASON = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_METADATA_KEY = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
# Rule ids of field violations are lower-case and settings start with ALTALUNE_; reasons are UPPER_SNAKE.
_DOCUMENTED_REASON = re.compile(r"`(?!ALTALUNE_)([A-Z][A-Z0-9_]{2,})`")
_TICKED = re.compile(r"`([^`]+)`")


def _error_classes() -> list[type[AppError]]:
    """Every AppError subclass of the application, raisable or grouping."""
    for module in pkgutil.walk_packages(internal.__path__, prefix="internal."):
        importlib.import_module(module.name)
    found: list[type[AppError]] = []
    pending: list[type[AppError]] = [AppError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__.startswith("internal.") and subclass not in found:
                found.append(subclass)
                pending.append(subclass)
    return found


def _raisable() -> list[type[AppError]]:
    """The classes a client can receive: those with a reason (others only group them)."""
    return [cls for cls in _error_classes() if hasattr(cls, "reason")]


@dataclass(frozen=True)
class _Row:
    line: str
    code: str
    reasons: tuple[str, ...]
    metadata_keys: frozenset[str]


def _readme_error_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("### Errors")
    return text[start : text.index("\n## ", start)]


def _cells(line: str) -> list[str]:
    # `\|` inside a cell is a literal bar, not a column separator.
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _documented_rows() -> list[_Row]:
    """Every row of the section's tables that has code, reason and metadata columns."""
    rows: list[_Row] = []
    header: list[str] | None = None
    for line in _readme_error_section().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-: "):
            continue
        if not {"code", "reason"} <= set(header):
            continue
        assert "metadata" in header, f"a README error table has no metadata column: {header}"
        row = dict(zip(header, cells, strict=True))
        [code] = _TICKED.findall(row["code"])
        rows.append(
            _Row(
                line=line,
                code=code,
                reasons=tuple(_DOCUMENTED_REASON.findall(row["reason"])),
                metadata_keys=frozenset(_TICKED.findall(row["metadata"])),
            )
        )
    return rows


def test_every_error_class_declares_a_well_formed_reason_code_and_metadata_shape() -> None:
    classes = _raisable()

    assert len(classes) > 45, "the error classes were not all found"
    for cls in classes:
        assert _REASON.fullmatch(cls.reason), cls
        assert isinstance(cls.code, Code), cls
        assert all(_METADATA_KEY.fullmatch(key) for key in cls.metadata_keys), cls


def test_each_reason_belongs_to_exactly_one_class() -> None:
    owners: dict[str, list[str]] = {}
    for cls in _raisable():
        owners.setdefault(cls.reason, []).append(f"{cls.__module__}.{cls.__qualname__}")

    shared = {reason: names for reason, names in owners.items() if len(names) > 1}
    assert shared == {}, "one class per reason: these reasons have several"


def test_a_class_without_a_reason_only_groups_raisable_ones() -> None:
    for cls in _error_classes():
        if not hasattr(cls, "reason"):
            assert any(hasattr(sub, "reason") for sub in cls.__subclasses__()), cls


def test_every_reason_is_documented_with_its_code_and_metadata_keys_and_nothing_else_is() -> None:
    classes = {cls.reason: cls for cls in _raisable()}
    rows = _documented_rows()
    documented: set[str] = set()
    for row in rows:
        assert row.reasons, f"a README error row names no reason: {row.line}"
        for reason in row.reasons:
            documented.add(reason)
            cls = classes.get(reason)
            assert cls is not None, f"README.md documents {reason}, which no error class has"
            assert row.code == cls.code.name.lower(), f"{reason} is documented with code {row.code}"
            assert row.metadata_keys == frozenset(cls.metadata_keys), (
                f"{reason} is documented with metadata {sorted(row.metadata_keys)}, "
                f"its class carries {sorted(cls.metadata_keys)}"
            )

    assert sorted(set(classes) - documented) == [], "reasons missing from the tables of README.md, section Errors"
    # Prose of the section may name a reason too, but only one that exists.
    assert sorted(set(_DOCUMENTED_REASON.findall(_readme_error_section())) - set(classes)) == []


def test_metadata_that_differs_from_the_declared_shape_is_a_programming_error() -> None:
    class Drifting(RequestTooLarge):
        def __init__(self) -> None:
            super(RequestTooLarge, self).__init__("too large", metadata={"limit": "1"})

    with pytest.raises(TypeError, match="limit_bytes"):
        Drifting()
    assert RequestTooLarge(10).metadata == {"limit_bytes": "10"}


def test_a_grouping_class_cannot_be_raised() -> None:
    with pytest.raises(TypeError):
        Unauthenticated("no reason of its own")
    assert CredentialsMissing("send a credential").reason == "CREDENTIALS_MISSING"


@pytest.mark.parametrize(
    ("ids", "metadata", "message"),
    [
        (("u2345678abcdef",), {"user_ids": "u2345678abcdef"}, "user 'u2345678abcdef' not found"),
        (("a2345678abcdef", "b2345678abcdef"), {"user_ids": "a2345678abcdef,b2345678abcdef"}, "users not found: "),
    ],
)
def test_a_not_found_of_ids_has_one_shape_for_one_id_or_many(
    ids: tuple[str, ...], metadata: dict[str, str], message: str
) -> None:
    error = UserNotFound(*ids)

    assert error.metadata == metadata
    assert error.message.startswith(message)
    with pytest.raises(TypeError):
        UserNotFound()


def test_a_declared_error_takes_its_fields_as_metadata_and_message() -> None:
    error = EmployeeNotFound("p2345678abcdef", "e2345678abcdef")

    assert EmployeeNotFound.metadata_keys == ("project_id", "employee_id")
    assert error.metadata == {"project_id": "p2345678abcdef", "employee_id": "e2345678abcdef"}
    assert error.message == "employee 'e2345678abcdef' not found in project 'p2345678abcdef'"
    assert (error.project_id, error.employee_id) == ("p2345678abcdef", "e2345678abcdef")
    assert EmployeeNotFound(employee_id="e", project_id="p").metadata == {"project_id": "p", "employee_id": "e"}
    for wrong in (("p",), ("p", "e", "x")):
        with pytest.raises(TypeError, match="takes exactly project_id, employee_id"):
            EmployeeNotFound(*wrong)  # type: ignore[call-arg]
