"""First run: one administrator, so a newcomer can call the API without an identity provider."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from internal.ids import new_public_id

ADMIN_ROLE = "admin"
DEFAULT_ADMIN_EMAIL = "owner@example.com"


@dataclass(frozen=True, slots=True)
class Admin:
    public_id: str
    email: str
    created: bool  # False: an active administrator already existed, nothing was changed


def ensure_admin(database_url: str, *, email: str = DEFAULT_ADMIN_EMAIL, first_name: str = "Owner") -> Admin:
    """Idempotent: returns the existing active administrator, or creates one in one transaction.

    The advisory lock makes two concurrent bootstraps create one administrator, not two.
    """
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('altalune.bootstrap'))")
        existing = conn.execute(
            "SELECT u.public_id, u.email FROM users u "
            "JOIN user_roles ur ON ur.user_id = u.id JOIN roles r ON r.id = ur.role_id "
            "WHERE r.name = %s AND u.active ORDER BY u.id LIMIT 1",
            (ADMIN_ROLE,),
        ).fetchone()
        if existing is not None:
            return Admin(public_id=str(existing[0]), email=str(existing[1]), created=False)
        row = conn.execute(
            "INSERT INTO users (public_id, email, first_name) VALUES (%s, %s, %s) "
            "ON CONFLICT (email_key) DO UPDATE SET active = true, updated_at = now() "
            "RETURNING id, public_id, email",
            (new_public_id(), email, first_name),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO user_roles (user_id, role_id) SELECT %s, id FROM roles WHERE name = %s ON CONFLICT DO NOTHING",
            (row[0], ADMIN_ROLE),
        )
        return Admin(public_id=str(row[1]), email=str(row[2]), created=True)


def active_user(database_url: str, email: str) -> tuple[str, str] | None:
    """(public id, email) of the active user with this email, for `altalune token`."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT public_id, email FROM users WHERE email_key = lower(%s) AND active", (email,)
        ).fetchone()
    return (str(row[0]), str(row[1])) if row else None
