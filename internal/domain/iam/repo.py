"""SQL for user roles, role grants and project membership.

Ids arrive in batches and are resolved with one `= ANY(...)` statement per kind, never one per id.
Every statement on `project_members` checks in the same statement that the project is still live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, sql

from internal.domain.iam.model import MemberRow, NewMember, PermissionRow, RoleRow, UserProjectRow
from internal.postgres.rows import EtagGuard, Rows
from internal.postgres.statements import rendered
from internal.tenancy import LIVE_PROJECT, live_project

ROLES = Rows(RoleRow)
PERMISSIONS = Rows(PermissionRow)
MEMBERS = Rows(MemberRow)
USER_PROJECTS = Rows(UserProjectRow)
# The member row joined to its user, in MemberRow's field order; `m` may be a table or a CTE.
_MEMBER = (
    "m.user_id, u.public_id AS user_public_id, u.email, u.first_name, u.last_name, m.role, m.version, "
    "m.created_at, m.updated_at"
)

# Composed once at import: the hot path only binds values.
# Public ids are char(14): an explicit bpchar[] keeps the comparison on their unique index. With `lock`,
# FOR KEY SHARE: a row about to be referenced by a new grant cannot be deleted before we commit.
_PUBLIC_IDS = {
    (table, lock): sql.SQL(
        "SELECT public_id, id FROM {} WHERE public_id = ANY(%s::bpchar[])" + (" FOR KEY SHARE" if lock else "")
    ).format(sql.Identifier(table))
    for table in ("users", "roles", "permissions")
    for lock in (False, True)
}

_USER_ROLES = rendered(
    sql.SQL(
        "SELECT {} FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = %s ORDER BY r.name"
    ).format(sql.SQL(", ").join(sql.Identifier("r", c) for c in ROLES.columns))
)
_ROLE_PERMISSIONS = rendered(
    sql.SQL(
        "SELECT {} FROM role_permissions rp JOIN permissions p ON p.id = rp.permission_id "
        "WHERE rp.role_id = %s ORDER BY p.name"
    ).format(sql.SQL(", ").join(sql.Identifier("p", c) for c in PERMISSIONS.columns))
)

# SHARE blocks DeleteProject (an UPDATE of the row) until this transaction ends, so the project
# stays live for all of a multi-statement membership change.
_LOCK_LIVE_PROJECT = "SELECT 1 FROM projects WHERE id = %s AND deleted_at IS NULL FOR SHARE"
_IS_LIVE_PROJECT = "SELECT " + live_project("%s")
# Every membership change locks the owner rows first, in user id order: the owner count it checks
# cannot change under it, and two changes never wait for each other in opposite orders.
_LOCK_OWNERS = (
    "SELECT user_id FROM project_members "
    "WHERE project_id = %(project_id)s AND role = 'owner' AND " + LIVE_PROJECT + " ORDER BY user_id FOR UPDATE"
)
_MEMBERS_BY_PUBLIC_ID = (
    "SELECT " + _MEMBER + " FROM project_members m JOIN users u ON u.id = m.user_id "
    "WHERE m.project_id = %(project_id)s AND u.public_id = ANY(%(user_ids)s::bpchar[]) AND " + LIVE_PROJECT + " "
    "ORDER BY m.user_id FOR UPDATE OF m"
)
_LIST_MEMBERS = (
    "SELECT " + _MEMBER + " FROM project_members m JOIN users u ON u.id = m.user_id "
    "WHERE m.project_id = %(project_id)s AND " + LIVE_PROJECT + " ORDER BY u.email_key"
)
_ADD_MEMBERS = (
    "WITH m AS ("
    " INSERT INTO project_members (project_id, user_id, role)"
    " SELECT %(project_id)s, n.user_id, n.role"
    " FROM unnest(%(user_ids)s::bigint[], %(roles)s::text[]) AS n(user_id, role)"
    " WHERE " + LIVE_PROJECT + " ON CONFLICT (project_id, user_id) DO NOTHING"
    " RETURNING user_id, role, version, created_at, updated_at) "
    "SELECT " + _MEMBER + " FROM m JOIN users u ON u.id = m.user_id"
)
# A membership change a call may guard with the etag it read (`m.version`: the user has one too).
_MEMBER_ETAG = EtagGuard(
    "project_member",
    table="project_members m",
    conditions="m.project_id = %(project_id)s AND m.user_id = %(user_id)s AND " + LIVE_PROJECT,
    version_column="m.version",
)
_UPDATE_MEMBER_ROLE = (
    "UPDATE project_members m SET role = %(role)s, updated_at = now() FROM users u "
    "WHERE " + _MEMBER_ETAG.where + " AND u.id = m.user_id RETURNING " + _MEMBER
)
_REMOVE_MEMBERS = (
    "DELETE FROM project_members "
    "WHERE project_id = %(project_id)s AND user_id = ANY(%(user_ids)s::bigint[]) AND " + LIVE_PROJECT
)
_USER_PROJECTS = (
    "SELECT p.public_id AS project_public_id, p.name AS project_name, m.role "
    "FROM project_members m JOIN projects p ON p.id = m.project_id "
    "WHERE m.user_id = %s AND p.deleted_at IS NULL ORDER BY p.name, p.public_id"
)


class IamRepo:
    async def _ids(
        self, conn: AsyncConnection[Any], table: str, public_ids: Sequence[str], *, lock: bool
    ) -> dict[str, int]:
        """public id -> internal id for those that exist, in one statement."""
        cur = await conn.execute(_PUBLIC_IDS[table, lock], (list(public_ids),))
        return {str(row[0]): int(row[1]) for row in await cur.fetchall()}

    async def user_ids(
        self, conn: AsyncConnection[Any], public_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, int]:
        return await self._ids(conn, "users", public_ids, lock=lock)

    async def role_ids(
        self, conn: AsyncConnection[Any], public_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, int]:
        return await self._ids(conn, "roles", public_ids, lock=lock)

    async def permission_ids(
        self, conn: AsyncConnection[Any], public_ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, int]:
        return await self._ids(conn, "permissions", public_ids, lock=lock)

    async def user_roles(self, conn: AsyncConnection[Any], user_id: int) -> list[RoleRow]:
        return await ROLES.all(conn, _USER_ROLES, (user_id,))

    async def add_user_roles(self, conn: AsyncConnection[Any], user_id: int, role_ids: Sequence[int]) -> None:
        """Idempotent: a role the user already holds is left as it is."""
        await conn.execute(
            "INSERT INTO user_roles (user_id, role_id) SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
            (user_id, list(role_ids)),
        )

    async def remove_user_roles(self, conn: AsyncConnection[Any], user_id: int, role_ids: Sequence[int]) -> None:
        await conn.execute(
            "DELETE FROM user_roles WHERE user_id = %s AND role_id = ANY(%s::bigint[])", (user_id, list(role_ids))
        )

    async def role_permissions(self, conn: AsyncConnection[Any], role_id: int) -> list[PermissionRow]:
        return await PERMISSIONS.all(conn, _ROLE_PERMISSIONS, (role_id,))

    async def add_role_permissions(
        self, conn: AsyncConnection[Any], role_id: int, permission_ids: Sequence[int]
    ) -> None:
        """Idempotent: a permission the role already grants is left as it is."""
        await conn.execute(
            "INSERT INTO role_permissions (role_id, permission_id) SELECT %s, unnest(%s::bigint[]) "
            "ON CONFLICT DO NOTHING",
            (role_id, list(permission_ids)),
        )

    async def remove_role_permissions(
        self, conn: AsyncConnection[Any], role_id: int, permission_ids: Sequence[int]
    ) -> None:
        await conn.execute(
            "DELETE FROM role_permissions WHERE role_id = %s AND permission_id = ANY(%s::bigint[])",
            (role_id, list(permission_ids)),
        )

    async def lock_live_project(self, conn: AsyncConnection[Any], project_id: int) -> bool:
        """False if the project is gone; otherwise it stays live until the transaction ends."""
        cur = await conn.execute(_LOCK_LIVE_PROJECT, (project_id,))
        return await cur.fetchone() is not None

    async def is_live_project(self, conn: AsyncConnection[Any], project_id: int) -> bool:
        cur = await conn.execute(_IS_LIVE_PROJECT, (project_id,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def lock_owners(self, conn: AsyncConnection[Any], project_id: int) -> list[int]:
        """Internal user ids of the project's owners, locked until the transaction ends."""
        cur = await conn.execute(_LOCK_OWNERS, {"project_id": project_id})
        return [int(row[0]) for row in await cur.fetchall()]

    async def members(
        self, conn: AsyncConnection[Any], project_id: int, user_public_ids: Sequence[str]
    ) -> list[MemberRow]:
        """Those of the users who are members, their rows locked for a change."""
        return await MEMBERS.all(
            conn, _MEMBERS_BY_PUBLIC_ID, {"project_id": project_id, "user_ids": list(user_public_ids)}
        )

    async def list_members(self, conn: AsyncConnection[Any], project_id: int) -> list[MemberRow]:
        return await MEMBERS.all(conn, _LIST_MEMBERS, {"project_id": project_id})

    async def add_members(
        self, conn: AsyncConnection[Any], project_id: int, members: Sequence[NewMember]
    ) -> list[MemberRow]:
        """The rows actually added: a user who is already a member is skipped (the caller compares)."""
        return await MEMBERS.all(
            conn,
            _ADD_MEMBERS,
            {
                "project_id": project_id,
                "user_ids": [m.user_id for m in members],
                "roles": [m.role.value for m in members],
            },
        )

    async def update_member_role(
        self, conn: AsyncConnection[Any], project_id: int, member: MemberRow, role: str, etag: str
    ) -> MemberRow | None:
        """None if the membership is gone; EtagMismatch if `etag` is set and stale. Setting the role
        it has changes nothing: the row keeps its version and updated_at (migration 0007)."""
        return await MEMBERS.write(
            conn,
            _UPDATE_MEMBER_ROLE,
            {"project_id": project_id, "user_id": member.user_id, "role": role},
            if_match=_MEMBER_ETAG.expect(etag, member.user_public_id),
        )

    async def remove_members(self, conn: AsyncConnection[Any], project_id: int, user_ids: Sequence[int]) -> int:
        cur = await conn.execute(_REMOVE_MEMBERS, {"project_id": project_id, "user_ids": list(user_ids)})
        return cur.rowcount

    async def user_projects(self, conn: AsyncConnection[Any], user_id: int) -> list[UserProjectRow]:
        """The user's memberships in live projects; a deleted project is not there for any purpose."""
        return await USER_PROJECTS.all(conn, _USER_PROJECTS, (user_id,))
