"""docs/adding-a-domain.md is exact: its code blocks, applied to a copy of the repository the way the
recipe says, add a working domain. The copy then passes code generation, lint, types, its own tests
and the contract checks derived from the service table, and the domain touched no file outside its
folder and its tests but its proto, its migration and the container's registration.

A block the recipe means to be applied starts with a fence like ```python file=internal/...```; the
block for internal/container.py holds the imports and the one SERVICES line to add.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from internal.config import REPO_ROOT

pytestmark = pytest.mark.e2e

RECIPE = REPO_ROOT / "docs" / "adding-a-domain.md"
_BLOCK = re.compile(r"^```\w+ file=(?P<path>\S+)\n(?P<body>.*?)^```$", re.M | re.S)
REGISTRATION = "internal/container.py"
SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build"}
_BIN = Path(sys.executable).parent


def recipe_files() -> dict[str, str]:
    files = {m["path"]: m["body"] for m in _BLOCK.finditer(RECIPE.read_text())}
    assert REGISTRATION in files, "the recipe shows no registration block"
    return files


def _copy_repository(target: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source = REPO_ROOT / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _register(container: Path, block: str) -> None:
    """The recipe's step: add the block's imports beside the others and its line to SERVICES."""
    lines = block.strip().splitlines()
    imports = [line for line in lines if line.startswith(("from ", "import "))]
    entries = [line for line in lines if line not in imports and line.strip()]
    assert len(entries) == 1, f"registration should be one line, the recipe shows {entries}"
    text = container.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep, "internal/container.py changed shape: update this test and the recipe"
    table_start = rest.index("SERVICES: tuple[Registration, ...] = (\n")
    table_end = rest.index("\n)\n", table_start)
    rest = rest[:table_end] + "\n    " + entries[0].strip() + rest[table_end:]
    container.write_text(head + sep + "\n".join(imports) + "\n" + rest)  # `make format` sorts them


def _changed_files(copy: Path) -> list[str]:
    """Files of the copy that are new or differ from this checkout (caches left out)."""
    changed = []
    for path in copy.rglob("*"):
        relative = path.relative_to(copy)
        if path.is_dir() or SKIPPED_DIRS.intersection(relative.parts):
            continue
        original = REPO_ROOT / relative
        if not original.is_file() or original.read_bytes() != path.read_bytes():
            changed.append(relative.as_posix())
    return sorted(changed)


def _without_generated_table(readme: str) -> str:
    """README less the table `make generate` writes (between the two markers of tools/codegen/error_table.py)."""
    head, _, rest = readme.partition("<!-- services' errors: ")
    return head + rest.partition("<!-- end of the services' errors -->")[2]


def _run(copy: Path, *command: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{copy / 'gen'}"}
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_the_recipe_adds_a_domain_that_passes_everything(tmp_path: Path) -> None:
    files = recipe_files()
    copy = tmp_path / "repo"
    _copy_repository(copy)
    for path, body in files.items():
        if path == REGISTRATION:
            _register(copy / path, body)
        else:
            target = copy / path
            assert not target.exists(), f"the recipe overwrites {path}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)

    python = str(_BIN / "python")
    _run(copy, python, "tools/codegen/codegen.py", "generate")  # after the domain exists: its errors go in README
    _run(copy, str(_BIN / "ruff"), "check", "--fix", REGISTRATION)  # the recipe's `make format`
    _run(copy, str(_BIN / "ruff"), "format", REGISTRATION)
    _run(copy, str(_BIN / "ruff"), "check", ".")
    _run(copy, str(_BIN / "ruff"), "format", "--check", ".")
    _run(copy, python, "tools/codegen/codegen.py", "lint")
    _run(copy, str(_BIN / "mypy"), "--cache-dir", str(tmp_path / "mypy-cache"))
    # The copy's code, not the installed checkout's, is what runs (PYTHONPATH comes first).
    located = _run(copy, python, "-c", "import internal, altalune.v1; print(internal.__file__, *altalune.v1.__path__)")
    assert all(path.startswith(str(copy)) for path in located.split()[:2]), located

    own_tests = sorted(path for path in files if path.startswith("tests/"))
    assert own_tests, "the recipe's domain brings no tests"
    derived = [
        "tests/unit/test_service_table.py",
        "tests/unit/test_access_policy.py",
        "tests/unit/test_error_reasons.py",
        "tests/unit/test_layers.py",
        "tests/integration/test_permission_catalog.py",
    ]
    _run(copy, python, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *own_tests, *derived)

    # Outside the domain's folder and its tests: its proto, its migration, the registration, and
    # what `make generate` writes (gen/, README's table of the services' errors).
    changed = _changed_files(copy)
    assert any(path.startswith("internal/domain/team/") for path in changed), changed
    readme = (copy / "README.md").read_text()
    assert "`TEAM_NOT_FOUND`" in readme, "make generate did not document the new errors"
    assert _without_generated_table(readme) == _without_generated_table((REPO_ROOT / "README.md").read_text())
    outside = [
        path
        for path in changed
        if not path.startswith(("tests/", "gen/", "internal/domain/team/")) and path != "README.md"
    ]
    assert len(outside) == 3, outside
    assert REGISTRATION in outside, outside
    assert any(re.fullmatch(r"migrations/\d{4}_\w+\.sql", path) for path in outside), outside
    assert any(re.fullmatch(r"proto/altalune/v1/\w+\.proto", path) for path in outside), outside
