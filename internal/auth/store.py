"""The SQL behind authentication and authorization: one statement per question, nothing cached,
so a deactivation or a revoked grant holds from the very next request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row


@dataclass(frozen=True, slots=True)
class ApiKeyCredential:
    secret_hash: bytes
    scopes: list[str]
    active: bool
    expired: bool
    stale_last_used: bool


@dataclass(frozen=True, slots=True)
class UserCredential:
    id: int
    public_id: str
    active: bool
    global_permissions: list[str]


@dataclass(frozen=True, slots=True)
class Membership:
    project_id: int
    role: str
    permissions: list[str]


# last_used_at is written at most once a minute per key: a write per request would cost more
# than the request.
LAST_USED_RESOLUTION = "60 seconds"

_API_KEY = f"""
SELECT secret_hash, scopes, active, expires_at <= now() AS expired,
       (last_used_at IS NULL OR last_used_at < now() - interval '{LAST_USED_RESOLUTION}') AS stale_last_used
FROM api_keys
WHERE project_id = %(project_id)s AND public_id = %(key_id)s
  AND EXISTS (SELECT 1 FROM projects p WHERE p.id = %(project_id)s AND p.deleted_at IS NULL)
"""

_GLOBAL_PERMISSIONS = """
ARRAY(SELECT DISTINCT p.name FROM user_roles ur
      JOIN role_permissions rp ON rp.role_id = ur.role_id
      JOIN permissions p ON p.id = rp.permission_id
      WHERE ur.user_id = u.id AND p.scope = 'global') AS global_permissions
"""
_USER_BY_PUBLIC_ID = f"SELECT u.id, u.public_id, u.active, {_GLOBAL_PERMISSIONS} FROM users u WHERE u.public_id = %s"
_USER_BY_EMAIL = f"SELECT u.id, u.public_id, u.active, {_GLOBAL_PERMISSIONS} FROM users u WHERE u.email_key = lower(%s)"

# A membership role is the built-in role of the same name; its project-scope grants apply.
_MEMBERSHIP = """
SELECT pr.id AS project_id, m.role,
       ARRAY(SELECT p.name FROM roles r
             JOIN role_permissions rp ON rp.role_id = r.id
             JOIN permissions p ON p.id = rp.permission_id
             WHERE r.name = m.role AND p.scope = 'project') AS permissions
FROM projects pr
JOIN project_members m ON m.project_id = pr.id AND m.user_id = %s
WHERE pr.public_id = %s AND pr.deleted_at IS NULL
"""


class AccessStore:
    async def api_key(self, conn: AsyncConnection[Any], project_id: int, key_public_id: str) -> ApiKeyCredential | None:
        cur = conn.cursor(row_factory=class_row(ApiKeyCredential))
        await cur.execute(_API_KEY, {"project_id": project_id, "key_id": key_public_id})
        return await cur.fetchone()

    async def touch_api_key(self, conn: AsyncConnection[Any], project_id: int, key_public_id: str) -> None:
        await conn.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE project_id = %s AND public_id = %s",
            (project_id, key_public_id),
        )

    async def user_by_public_id(self, conn: AsyncConnection[Any], public_id: str) -> UserCredential | None:
        cur = conn.cursor(row_factory=class_row(UserCredential))
        await cur.execute(_USER_BY_PUBLIC_ID, (public_id,))
        return await cur.fetchone()

    async def user_by_email(self, conn: AsyncConnection[Any], email: str) -> UserCredential | None:
        cur = conn.cursor(row_factory=class_row(UserCredential))
        await cur.execute(_USER_BY_EMAIL, (email,))
        return await cur.fetchone()

    async def membership(self, conn: AsyncConnection[Any], project_public_id: str, user_id: int) -> Membership | None:
        cur = conn.cursor(row_factory=class_row(Membership))
        await cur.execute(_MEMBERSHIP, (user_id, project_public_id))
        return await cur.fetchone()
