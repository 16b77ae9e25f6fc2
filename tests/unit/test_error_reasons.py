"""Every reason a client can receive is in the README's error tables, and every reason the tables
name exists: a new error class cannot ship undocumented, nor a removed one stay documented."""

from __future__ import annotations

import importlib
import pkgutil
import re

import internal
from internal.auth.errors import UNAUTHENTICATED_REASONS, Unauthenticated
from internal.config import REPO_ROOT
from internal.errors import AppError

# Rule ids of field violations are lower-case and settings start with ALTALUNE_; reasons are UPPER_SNAKE.
_DOCUMENTED_REASON = re.compile(r"`(?!ALTALUNE_)([A-Z][A-Z0-9_]{2,})`")


def _error_classes() -> set[type[AppError]]:
    for module in pkgutil.walk_packages(internal.__path__, prefix="internal."):
        importlib.import_module(module.name)
    found: set[type[AppError]] = set()
    pending = [AppError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            found.add(subclass)
            pending.append(subclass)
    return found


def _readme_error_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("### Errors")
    return text[start : text.index("\n## ", start)]


def test_every_reason_the_code_can_return_is_documented_and_nothing_else_is() -> None:
    # Unauthenticated takes its reason per instance, from a closed set.
    reasons = {cls.reason for cls in _error_classes() if cls is not Unauthenticated} | UNAUTHENTICATED_REASONS
    documented = set(_DOCUMENTED_REASON.findall(_readme_error_section()))

    assert len(reasons) > 40, "the error classes were not all found"
    assert sorted(reasons - documented) == [], "reasons missing from README.md, section Errors"
    assert sorted(documented - reasons) == [], "README.md documents reasons no error class has"
