"""The seeded permission catalog is exactly what the contract's access options name."""

from __future__ import annotations

import psycopg
import pytest

from internal.auth.policy import access_rules, permission_catalog
from internal.container import contract

pytestmark = pytest.mark.integration


def _rows(database_url: str, query: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        return [(str(a), str(b)) for a, b in conn.execute(query).fetchall()]


def test_the_database_catalog_equals_the_permissions_the_rpcs_require(database_url: str) -> None:
    seeded = dict(_rows(database_url, "SELECT name, scope FROM permissions"))
    assert seeded == permission_catalog(access_rules(contract()).values())


def test_builtin_roles_grant_what_their_names_promise(database_url: str) -> None:
    grants: dict[str, set[str]] = {}
    for role, permission in _rows(
        database_url,
        "SELECT r.name, p.name FROM roles r JOIN role_permissions rp ON rp.role_id = r.id "
        "JOIN permissions p ON p.id = rp.permission_id",
    ):
        grants.setdefault(role, set()).add(permission)
    project_permissions = {
        name for name, scope in _rows(database_url, "SELECT name, scope FROM permissions") if scope == "project"
    }
    assert grants["owner"] == project_permissions
    assert "project:delete" not in grants["admin"]
    assert {"project:create", "iam:write", "user:write", "employee:write"} <= grants["admin"]
    assert all(p.endswith(":read") for p in grants["viewer"])
    assert "employee:write" in grants["member"]
    assert not any(p.startswith(("apikey:write", "member:write")) for p in grants["member"])


def test_grant_permissions_grants_once_and_refuses_unknown_names(database_url: str) -> None:
    """The function a domain's migration uses to grant its new permissions to built-in roles."""
    with psycopg.connect(database_url) as conn:
        try:
            conn.execute("INSERT INTO permissions (name, scope, description) VALUES ('gadget:read', 'project', 'x')")
            conn.execute("SELECT grant_permissions('viewer', 'gadget:read')")
            conn.execute("SELECT grant_permissions('viewer', 'gadget:read')")  # restating is a no-op
            granted = conn.execute(
                "SELECT count(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
                "JOIN permissions p ON p.id = rp.permission_id WHERE r.name = 'viewer' AND p.name = 'gadget:read'"
            ).fetchone()
            assert granted == (1,)
            with (
                pytest.raises(psycopg.errors.RaiseException, match="no permission named gadgt:read"),
                conn.transaction(),
            ):
                conn.execute("SELECT grant_permissions('viewer', 'gadget:read', 'gadgt:read')")
            with pytest.raises(psycopg.errors.RaiseException, match="no role named viewr"), conn.transaction():
                conn.execute("SELECT grant_permissions('viewr', 'gadget:read')")
        finally:
            conn.rollback()
