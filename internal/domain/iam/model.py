"""IAM model: the project-role enum mapping, membership rows and their conversions to the proto.
Roles and permissions are the role and permission domains' own rows (re-exported for the repo)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from altalune.v1 import iam_pb2
from internal.convert import to_etag, to_timestamp
from internal.domain.permission.model import PermissionRow
from internal.domain.role.model import RoleRow
from internal.enums import EnumMapping


class ProjectRole(StrEnum):
    """A membership role; each is the built-in role of the same name."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


PROJECT_ROLES = EnumMapping(
    [
        (ProjectRole.OWNER, iam_pb2.PROJECT_ROLE_OWNER),
        (ProjectRole.ADMIN, iam_pb2.PROJECT_ROLE_ADMIN),
        (ProjectRole.MEMBER, iam_pb2.PROJECT_ROLE_MEMBER),
        (ProjectRole.VIEWER, iam_pb2.PROJECT_ROLE_VIEWER),
    ]
)


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A row of `project_members` joined to its user: the internal user id plus the public one."""

    user_id: int
    user_public_id: str
    email: str
    first_name: str
    last_name: str
    role: str
    # The membership's version (m.version, not the user's): the etag guards the membership's writes.
    version: int
    created_at: datetime
    updated_at: datetime

    def to_proto(self, project_public_id: str) -> iam_pb2.ProjectMember:
        return iam_pb2.ProjectMember(
            project_id=project_public_id,
            user_id=self.user_public_id,
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            role=PROJECT_ROLES.db_to_proto(self.role),
            etag=to_etag(self.version),
            created_at=to_timestamp(self.created_at),
            updated_at=to_timestamp(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class UserProjectRow:
    """A membership joined to its live project."""

    project_public_id: str
    project_name: str
    role: str

    def to_proto(self) -> iam_pb2.UserProject:
        return iam_pb2.UserProject(
            project_id=self.project_public_id,
            project_name=self.project_name,
            role=PROJECT_ROLES.db_to_proto(self.role),
        )


@dataclass(frozen=True, slots=True)
class NewMember:
    """A resolved member to add: the internal user id and the role."""

    user_id: int
    role: ProjectRole


__all__ = [
    "PROJECT_ROLES",
    "MemberRow",
    "NewMember",
    "PermissionRow",
    "ProjectRole",
    "RoleRow",
    "UserProjectRow",
]
