"""IAM business rules. Proto in, proto out; owns the transactions; knows no transport.

Every batch write is one transaction that resolves all its ids first and writes nothing unless all
of them are valid. Membership changes lock the project's owner rows before counting them, so two
concurrent changes can never leave a project without an owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from altalune.v1 import iam_pb2
from internal.auth.errors import ApiKeyNotAllowed
from internal.auth.principal import Caller, NoCaller, PrincipalKind
from internal.domain.iam.errors import LastOwner, MemberExists, MemberNotFound, OwnerRequired
from internal.domain.iam.model import PROJECT_ROLES, NewMember, ProjectRole
from internal.domain.iam.repo import IamRepo
from internal.domain.permission.errors import PermissionNotFound
from internal.domain.role.errors import RoleNotFound
from internal.domain.user.errors import UserNotFound
from internal.postgres.database import Database
from internal.tenancy import ProjectNotFound


def _missing(wanted: Sequence[str], found: dict[str, int]) -> list[str]:
    """The requested ids that did not resolve, in request order."""
    return [public_id for public_id in wanted if public_id not in found]


def _project_id(caller: Caller) -> int:
    """The internal id of the project the authorizer admitted this call to."""
    if caller.project is None:
        raise NoCaller("a project-scoped RPC ran without a project in its caller")
    return caller.project.id


class IamService:
    def __init__(self, db: Database, repo: IamRepo) -> None:
        self._db = db
        self._repo = repo

    # -- users' global roles -------------------------------------------------------------------

    async def _user_id(self, conn: AsyncConnection[Any], public_id: str, *, lock: bool = False) -> int:
        found = await self._repo.user_ids(conn, [public_id], lock=lock)
        if public_id not in found:
            raise UserNotFound(public_id)
        return found[public_id]

    async def _role_id(self, conn: AsyncConnection[Any], public_id: str, *, lock: bool = False) -> int:
        found = await self._repo.role_ids(conn, [public_id], lock=lock)
        if public_id not in found:
            raise RoleNotFound(public_id)
        return found[public_id]

    async def _role_ids(self, conn: AsyncConnection[Any], public_ids: Sequence[str], *, lock: bool) -> list[int]:
        found = await self._repo.role_ids(conn, public_ids, lock=lock)
        if missing := _missing(public_ids, found):
            raise RoleNotFound(*missing)
        return [found[public_id] for public_id in public_ids]

    async def _permission_ids(self, conn: AsyncConnection[Any], public_ids: Sequence[str], *, lock: bool) -> list[int]:
        found = await self._repo.permission_ids(conn, public_ids, lock=lock)
        if missing := _missing(public_ids, found):
            raise PermissionNotFound(*missing)
        return [found[public_id] for public_id in public_ids]

    async def assign_user_roles(self, request: iam_pb2.AssignUserRolesRequest) -> iam_pb2.AssignUserRolesResponse:
        """Idempotent: roles already held stay; one unknown role and nothing is assigned."""
        async with self._db.transaction() as conn:
            user_id = await self._user_id(conn, request.user_id, lock=True)
            role_ids = await self._role_ids(conn, list(request.role_ids), lock=True)
            await self._repo.add_user_roles(conn, user_id, role_ids)
            rows = await self._repo.user_roles(conn, user_id)
        return iam_pb2.AssignUserRolesResponse(roles=[row.to_proto() for row in rows])

    async def remove_user_roles(self, request: iam_pb2.RemoveUserRolesRequest) -> iam_pb2.RemoveUserRolesResponse:
        """Removing a role the user does not hold is a no-op; an unknown role removes nothing."""
        async with self._db.transaction() as conn:
            user_id = await self._user_id(conn, request.user_id)
            role_ids = await self._role_ids(conn, list(request.role_ids), lock=False)
            await self._repo.remove_user_roles(conn, user_id, role_ids)
            rows = await self._repo.user_roles(conn, user_id)
        return iam_pb2.RemoveUserRolesResponse(roles=[row.to_proto() for row in rows])

    async def list_user_roles(self, request: iam_pb2.ListUserRolesRequest) -> iam_pb2.ListUserRolesResponse:
        async with self._db.connection() as conn:
            user_id = await self._user_id(conn, request.user_id)
            rows = await self._repo.user_roles(conn, user_id)
        return iam_pb2.ListUserRolesResponse(roles=[row.to_proto() for row in rows])

    # -- roles' permissions --------------------------------------------------------------------

    async def assign_role_permissions(
        self, request: iam_pb2.AssignRolePermissionsRequest
    ) -> iam_pb2.AssignRolePermissionsResponse:
        """Idempotent: grants already present stay; one unknown permission and nothing is granted."""
        async with self._db.transaction() as conn:
            role_id = await self._role_id(conn, request.role_id, lock=True)
            permission_ids = await self._permission_ids(conn, list(request.permission_ids), lock=True)
            await self._repo.add_role_permissions(conn, role_id, permission_ids)
            rows = await self._repo.role_permissions(conn, role_id)
        return iam_pb2.AssignRolePermissionsResponse(permissions=[row.to_proto() for row in rows])

    async def remove_role_permissions(
        self, request: iam_pb2.RemoveRolePermissionsRequest
    ) -> iam_pb2.RemoveRolePermissionsResponse:
        """Removing a grant the role does not have is a no-op; an unknown permission removes nothing."""
        async with self._db.transaction() as conn:
            role_id = await self._role_id(conn, request.role_id)
            permission_ids = await self._permission_ids(conn, list(request.permission_ids), lock=False)
            await self._repo.remove_role_permissions(conn, role_id, permission_ids)
            rows = await self._repo.role_permissions(conn, role_id)
        return iam_pb2.RemoveRolePermissionsResponse(permissions=[row.to_proto() for row in rows])

    async def list_role_permissions(
        self, request: iam_pb2.ListRolePermissionsRequest
    ) -> iam_pb2.ListRolePermissionsResponse:
        async with self._db.connection() as conn:
            role_id = await self._role_id(conn, request.role_id)
            rows = await self._repo.role_permissions(conn, role_id)
        return iam_pb2.ListRolePermissionsResponse(permissions=[row.to_proto() for row in rows])

    # -- project membership --------------------------------------------------------------------

    async def _lock_live_project(self, conn: AsyncConnection[Any], project_id: int, public_id: str) -> None:
        if not await self._repo.lock_live_project(conn, project_id):
            raise ProjectNotFound(public_id)

    async def add_project_members(
        self, request: iam_pb2.AddProjectMembersRequest, caller: Caller
    ) -> iam_pb2.AddProjectMembersResponse:
        """All or nothing: one unknown user or one existing member and nobody is added.

        Inactive users may be added; they simply cannot sign in. Members come back in request order.
        """
        project_id = _project_id(caller)
        wanted = [(m.user_id, PROJECT_ROLES.from_proto(m.role)) for m in request.members]
        if not caller.is_project_owner and any(role is ProjectRole.OWNER for _, role in wanted):
            raise OwnerRequired(request.project_id)
        public_ids = [user_id for user_id, _ in wanted]
        async with self._db.transaction() as conn:
            await self._lock_live_project(conn, project_id, request.project_id)
            found = await self._repo.user_ids(conn, public_ids, lock=True)
            if missing := _missing(public_ids, found):
                raise UserNotFound(*missing)
            rows = await self._repo.add_members(
                conn, project_id, [NewMember(user_id=found[u], role=role) for u, role in wanted]
            )
            added = {row.user_public_id for row in rows}
            if existing := [u for u in public_ids if u not in added]:
                raise MemberExists(request.project_id, existing)
        position = {public_id: i for i, public_id in enumerate(public_ids)}
        rows.sort(key=lambda row: position[row.user_public_id])
        return iam_pb2.AddProjectMembersResponse(members=[row.to_proto(request.project_id) for row in rows])

    async def update_project_member(
        self, request: iam_pb2.UpdateProjectMemberRequest, caller: Caller
    ) -> iam_pb2.UpdateProjectMemberResponse:
        """Only an owner may make an owner or change an owner's role; the last owner stays one. These
        rules answer first; a stale etag is refused by the write itself."""
        project_id = _project_id(caller)
        role = PROJECT_ROLES.from_proto(request.role)
        async with self._db.transaction() as conn:
            await self._lock_live_project(conn, project_id, request.project_id)
            owners = await self._repo.lock_owners(conn, project_id)
            found = await self._repo.members(conn, project_id, [request.user_id])
            if not found:
                raise MemberNotFound(request.project_id, [request.user_id])
            member = found[0]
            was_owner = member.role == ProjectRole.OWNER
            if (was_owner or role is ProjectRole.OWNER) and not caller.is_project_owner:
                raise OwnerRequired(request.project_id)
            if member.role != role and was_owner and all(owner == member.user_id for owner in owners):
                raise LastOwner(request.project_id)
            # Written even when the role stays: the etag is checked in the write, and an unchanged
            # row keeps its version and updated_at.
            row = await self._repo.update_member_role(conn, project_id, member, role.value, request.etag)
            if row is None:
                raise MemberNotFound(request.project_id, [request.user_id])
        return iam_pb2.UpdateProjectMemberResponse(member=row.to_proto(request.project_id))

    async def remove_project_members(
        self, request: iam_pb2.RemoveProjectMembersRequest, caller: Caller
    ) -> iam_pb2.RemoveProjectMembersResponse:
        """All or nothing: one non-member and nobody is removed; the last owner cannot be removed."""
        project_id = _project_id(caller)
        public_ids = list(request.user_ids)
        async with self._db.transaction() as conn:
            await self._lock_live_project(conn, project_id, request.project_id)
            owners = set(await self._repo.lock_owners(conn, project_id))
            members = await self._repo.members(conn, project_id, public_ids)
            found = {row.user_public_id for row in members}
            if missing := [u for u in public_ids if u not in found]:
                raise MemberNotFound(request.project_id, missing)
            removed_owners = {row.user_id for row in members if row.role == ProjectRole.OWNER}
            if removed_owners and not caller.is_project_owner:
                raise OwnerRequired(request.project_id)
            if removed_owners and not owners - removed_owners:
                raise LastOwner(request.project_id)
            await self._repo.remove_members(conn, project_id, [row.user_id for row in members])
        return iam_pb2.RemoveProjectMembersResponse()

    async def list_project_members(
        self, request: iam_pb2.ListProjectMembersRequest, caller: Caller
    ) -> iam_pb2.ListProjectMembersResponse:
        """Sorted by email."""
        project_id = _project_id(caller)
        async with self._db.connection() as conn:
            rows = await self._repo.list_members(conn, project_id)
            # No rows: either no members or a deleted project; only the second is an error.
            if not rows and not await self._repo.is_live_project(conn, project_id):
                raise ProjectNotFound(request.project_id)
        return iam_pb2.ListProjectMembersResponse(members=[row.to_proto(request.project_id) for row in rows])

    async def list_user_projects(self, request: iam_pb2.ListUserProjectsRequest) -> iam_pb2.ListUserProjectsResponse:
        """The user's live projects with their role, sorted by project name."""
        async with self._db.connection() as conn:
            user_id = await self._user_id(conn, request.user_id)
            rows = await self._repo.user_projects(conn, user_id)
        return iam_pb2.ListUserProjectsResponse(projects=[row.to_proto() for row in rows])

    async def list_my_projects(
        self, request: iam_pb2.ListMyProjectsRequest, caller: Caller
    ) -> iam_pb2.ListMyProjectsResponse:
        """The signed-in user's own projects. An API key belongs to one project and has no "my"."""
        if caller.principal.kind is PrincipalKind.API_KEY or caller.principal.user_id is None:
            raise ApiKeyNotAllowed()
        async with self._db.connection() as conn:
            rows = await self._repo.user_projects(conn, caller.principal.user_id)
        return iam_pb2.ListMyProjectsResponse(projects=[row.to_proto() for row in rows])
