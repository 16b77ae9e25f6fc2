"""Errors of the IAM domain. Batch errors list every offending id (comma-joined) so a client can fix
the whole request at once. Unknown users, roles and permissions are their own domains' errors
(UserNotFound, RoleNotFound, PermissionNotFound); a missing project is internal.tenancy's ProjectNotFound."""

from __future__ import annotations

from collections.abc import Sequence

from connectrpc.code import Code

from internal.errors import AppError, DomainError


def _joined(ids: Sequence[str]) -> str:
    return ",".join(ids)


class MemberNotFound(AppError):
    reason = "MEMBER_NOT_FOUND"
    situation = "user(s) not members of the project"
    code = Code.NOT_FOUND
    metadata_keys = ("project_id", "user_ids")

    def __init__(self, project_id: str, user_ids: Sequence[str]) -> None:
        super().__init__(
            f"user(s) {_joined(user_ids)} are not members of project {project_id!r}",
            metadata={"project_id": project_id, "user_ids": _joined(user_ids)},
        )


class MemberExists(AppError):
    reason = "MEMBER_EXISTS"
    situation = "already a member"
    code = Code.ALREADY_EXISTS
    metadata_keys = ("project_id", "user_ids")

    def __init__(self, project_id: str, user_ids: Sequence[str]) -> None:
        super().__init__(
            f"user(s) {_joined(user_ids)} are already members of project {project_id!r}",
            metadata={"project_id": project_id, "user_ids": _joined(user_ids)},
        )


class OwnerRequired(DomainError):
    """Only an owner may create owners or change or remove one: an admin must not take over a project."""

    reason = "OWNER_REQUIRED"
    situation = "an admin granting, changing or removing an owner"
    code = Code.PERMISSION_DENIED
    template = "only an owner of project {project_id!r} may grant, change or remove the owner role"

    project_id: str


class LastOwner(DomainError):
    """A project without an owner could never be deleted or handed over again."""

    reason = "LAST_OWNER"
    situation = "removing or demoting the last owner"
    code = Code.FAILED_PRECONDITION
    template = "project {project_id!r} must keep at least one owner"

    project_id: str
