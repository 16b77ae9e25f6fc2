"""The SQL behind authentication and authorization: one statement per call, nothing cached, so a
deactivation or a revoked grant holds from the very next request. Each statement also finds the
call's project (live) and its internal id, which the call then carries (internal.tenancy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row


@dataclass(frozen=True, slots=True)
class ApiKeyCredential:
    project_id: int  # internal id of the key's project, live at the time of the lookup
    secret_hash: bytes
    scopes: list[str]
    active: bool
    expires_at: datetime
    expired: bool
    stale_last_used: bool


@dataclass(frozen=True, slots=True)
class UserCredential:
    id: int
    public_id: str
    active: bool
    global_permissions: list[str]
    # The membership in the project the call names, fetched in the same statement (None: not a member).
    member_project_id: int | None
    member_role: str | None
    member_permissions: list[str] | None

    def membership(self) -> Membership | None:
        if self.member_project_id is None or self.member_role is None:
            return None
        return Membership(self.member_project_id, self.member_role, self.member_permissions or [])


@dataclass(frozen=True, slots=True)
class Membership:
    project_id: int
    role: str
    permissions: list[str]


# last_used_at is written at most once a minute per key: a write per request would cost more
# than the request.
LAST_USED_RESOLUTION = "60 seconds"

# The key's live project and the key row in one round trip (migrations/0005_credential_lookups.sql).
_API_KEY = f"""
SELECT project_id, secret_hash, scopes, active, expires_at, expired, stale_last_used
FROM api_key_credential(%(project)s, %(key_id)s, interval '{LAST_USED_RESOLUTION}')
"""

# The user, their global permissions and their membership in the call's project: one round trip
# (migrations/0005_credential_lookups.sql; planned once per connection, not once per call).
_USER = """
SELECT id, public_id, active, global_permissions, member_project_id, member_role, member_permissions
FROM user_credential(%(public_id)s, %(email)s, %(project)s)
"""
# The same rule as inside user_credential(), for a user already known (migration 0005).
_MEMBERSHIP_ONLY = """
SELECT project_id, role, permissions FROM project_membership(%(user)s, %(project)s)
"""


class AccessStore:
    async def api_key(
        self, conn: AsyncConnection[Any], project_public_id: str, key_public_id: str
    ) -> ApiKeyCredential | None:
        """None when the key or its live project does not exist."""
        cur = conn.cursor(row_factory=class_row(ApiKeyCredential))
        await cur.execute(_API_KEY, {"project": project_public_id, "key_id": key_public_id})
        return await cur.fetchone()

    async def touch_api_key(self, conn: AsyncConnection[Any], project_id: int, key_public_id: str) -> None:
        await conn.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE project_id = %s AND public_id = %s",
            (project_id, key_public_id),
        )

    async def user(
        self,
        conn: AsyncConnection[Any],
        *,
        public_id: str | None = None,
        email: str | None = None,
        project_public_id: str | None = None,
    ) -> UserCredential | None:
        """By public id or by email; with the membership in `project_public_id` when given."""
        cur = conn.cursor(row_factory=class_row(UserCredential))
        await cur.execute(
            _USER, {"public_id": public_id, "email": email if public_id is None else None, "project": project_public_id}
        )
        return await cur.fetchone()

    async def membership(self, conn: AsyncConnection[Any], project_public_id: str, user_id: int) -> Membership | None:
        cur = conn.cursor(row_factory=class_row(Membership))
        await cur.execute(_MEMBERSHIP_ONLY, {"user": user_id, "project": project_public_id})
        return await cur.fetchone()
