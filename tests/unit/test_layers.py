"""The layers of docs/architecture.md, enforced: a package imports only from its own layer or
below, and no two packages import each other (directly or around a loop)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from internal.config import REPO_ROOT

# Lowest first. A module directly under internal/ is its own package; each domain is one package.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "internal.addresses",
            "internal.config",
            "internal.convert",
            "internal.deadlines",
            "internal.enums",
            "internal.errors",
            "internal.ids",
            "internal.logs",
            "internal.observability",
            "internal.tenancy",
            "internal.validation",
        }
    ),
    frozenset({"internal.postgres", "internal.query"}),
    frozenset({"internal.rpc"}),
    frozenset({"internal.auth"}),
    frozenset({"internal.ratelimit"}),
    frozenset({"internal.events"}),
    frozenset({"internal.domain"}),
    frozenset({"internal.container"}),
    frozenset({"internal.server"}),
    frozenset({"internal.cli"}),
)


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "internal" or len(parts) < 2:
        return None
    return ".".join(parts[:3]) if parts[1] == "domain" and len(parts) > 2 else ".".join(parts[:2])


def _rank(package: str) -> int:
    key = "internal.domain" if package.startswith("internal.domain.") else package
    for rank, layer in enumerate(LAYERS):
        if key in layer:
            return rank
    raise AssertionError(f"{package} belongs to no layer: add it to LAYERS and to docs/architecture.md")


def _imports() -> Iterator[tuple[str, str, str]]:
    """(importing file, importing package, imported package) for every import inside internal/."""
    for path in sorted((REPO_ROOT / "internal").rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        source = _package(module)
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
                if node.module == "internal":  # from internal import deadlines
                    targets = [f"internal.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                package = _package(target)
                if package is not None and package != source:
                    yield str(path.relative_to(REPO_ROOT)), source, package


def test_every_import_points_to_the_same_layer_or_below() -> None:
    upward = sorted(
        f"{file}: {source} imports {target}" for file, source, target in _imports() if _rank(target) > _rank(source)
    )
    assert upward == []


def test_no_packages_import_each_other() -> None:
    edges: dict[str, set[str]] = {}
    for _, source, target in _imports():
        edges.setdefault(source, set()).add(target)
    assert len(edges) > 10, "the imports were not all found"

    def reaches(start: str, goal: str) -> bool:
        seen, pending = set(), [start]
        while pending:
            node = pending.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                pending.extend(edges.get(node, ()))
        return False

    loops = sorted(f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a))
    assert loops == []
