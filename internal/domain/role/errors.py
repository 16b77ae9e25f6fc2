"""Errors of the role domain."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class RoleNotFound(AppError):
    reason = "ROLE_NOT_FOUND"
    code = Code.NOT_FOUND

    def __init__(self, role_id: str) -> None:
        super().__init__(f"role {role_id!r} not found", metadata={"role_id": role_id})


class RoleNameTaken(AppError):
    reason = "ROLE_NAME_TAKEN"
    code = Code.ALREADY_EXISTS

    def __init__(self, name: str) -> None:
        super().__init__(f"a role named {name!r} already exists", metadata={"name": name})


class RoleBuiltin(AppError):
    """Memberships refer to the built-in roles by name, so those are never renamed or deleted."""

    reason = "ROLE_BUILTIN"
    code = Code.FAILED_PRECONDITION

    def __init__(self, role_id: str, name: str) -> None:
        super().__init__(
            f"built-in role {name!r} cannot be renamed or deleted", metadata={"role_id": role_id, "name": name}
        )


class RoleInUse(AppError):
    """Deleting a role someone holds would silently take their permissions away."""

    reason = "ROLE_IN_USE"
    code = Code.FAILED_PRECONDITION

    def __init__(self, role_id: str) -> None:
        super().__init__(f"role {role_id!r} is assigned to users; unassign it first", metadata={"role_id": role_id})
