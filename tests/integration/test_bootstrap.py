"""`altalune bootstrap`'s core: one administrator, created once, whatever runs it twice or at once."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from internal.auth.bootstrap import active_user, ensure_admin

pytestmark = pytest.mark.integration


def _admins(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT u.public_id, u.email FROM users u JOIN user_roles ur ON ur.user_id = u.id "
            "JOIN roles r ON r.id = ur.role_id WHERE r.name = 'admin'"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_bootstrap_creates_one_admin_and_then_changes_nothing(database_url: str) -> None:
    first = ensure_admin(database_url, email="Root@Example.com")
    again = ensure_admin(database_url, email="someone-else@example.com")
    assert first.created
    assert not again.created
    assert again.public_id == first.public_id
    assert _admins(database_url) == [(first.public_id, "Root@Example.com")]
    assert active_user(database_url, "root@example.com") == (first.public_id, "Root@Example.com")


async def test_concurrent_bootstraps_create_a_single_admin(database_url: str) -> None:
    results = await asyncio.gather(
        *(asyncio.to_thread(ensure_admin, database_url, email=f"admin{i}@example.com") for i in range(4))
    )
    assert sum(r.created for r in results) == 1
    assert len({r.public_id for r in results}) == 1
    assert len(_admins(database_url)) == 1


def test_bootstrap_reactivates_a_deactivated_user_with_that_email_rather_than_failing(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO users (public_id, email, first_name, active) "
            "VALUES ('23456789abcdef', 'owner@example.com', 'O', false)"
        )
    admin = ensure_admin(database_url)
    assert admin.created
    assert admin.public_id == "23456789abcdef"
    assert active_user(database_url, "owner@example.com") == ("23456789abcdef", "owner@example.com")
