"""README's table of the services' errors, written from the error classes of internal/domain/.

`make generate` writes it (after gen/, which the domains import); `make generate-check` fails
when it is stale. Each row is one class: its `situation`, code, reason and metadata keys, so a new
domain's errors are documented by declaring them. tests/unit/test_error_reasons.py checks every
table of the section, this one included, against the classes.

    python tools/codegen/error_table.py write | check
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from internal.errors import AppError

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BEGIN = "<!-- services' errors: written by `make generate` from internal/domain/*/errors.py -->"
END = "<!-- end of the services' errors -->"


def _domain_errors() -> list[type[AppError]]:
    """Every class a client can receive, domain by domain, in the order each errors.py declares them."""
    sys.path[:0] = [str(ROOT), str(ROOT / "gen")]  # this checkout's code, also in a copy of the repository
    base: type[AppError] = importlib.import_module("internal.errors").AppError
    domains = importlib.import_module("internal.domain")
    found: list[type[AppError]] = []
    for package in pkgutil.iter_modules(domains.__path__):
        module = importlib.import_module(f"internal.domain.{package.name}.errors")
        for value in vars(module).values():
            own = isinstance(value, type) and issubclass(value, base) and value.__module__ == module.__name__
            if own and "reason" in vars(value):
                if not value.situation:
                    raise SystemExit(f"{value.__module__}.{value.__name__} has no `situation` for the README")
                found.append(value)
    return found


def table() -> str:
    rows = ["| situation | code | reason | metadata |", "|---|---|---|---|"]
    for cls in _domain_errors():
        keys = ", ".join(f"`{key}`" for key in cls.metadata_keys) or "—"
        rows.append(f"| {cls.situation} | `{cls.code.name.lower()}` | `{cls.reason}` | {keys} |")
    return "\n".join(rows)


def rendered(readme: str) -> str:
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"README.md lacks the markers of the services' errors table:\n{BEGIN}\n{END}")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(command: str) -> int:
    current = README.read_text()
    fresh = rendered(current)
    if command == "check":
        if fresh != current:
            print("README.md: the services' errors table is stale; run `make generate`", file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        README.write_text(fresh)
        print("README.md: the services' errors table rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "write"))
