"""Errors of the role domain; IAM raises its RoleNotFound too (one class per reason)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class RoleNotFound(AppError):
    """Unknown role(s): every id a call named that does not exist, comma-joined (one id too)."""

    reason = "ROLE_NOT_FOUND"
    situation = "unknown role(s) (every unknown id of the call)"
    code = Code.NOT_FOUND
    metadata_keys = ("role_ids",)

    def __init__(self, *role_ids: str) -> None:
        if not role_ids:
            raise TypeError("RoleNotFound needs at least one id")
        joined = ",".join(role_ids)
        message = f"role {role_ids[0]!r} not found" if len(role_ids) == 1 else f"roles not found: {joined}"
        super().__init__(message, metadata={"role_ids": joined})


class RoleNameTaken(AppError):
    reason = "ROLE_NAME_TAKEN"
    situation = "duplicate role name"
    code = Code.ALREADY_EXISTS
    metadata_keys = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(f"a role named {name!r} already exists", metadata={"name": name})


class RoleBuiltin(AppError):
    """Memberships refer to the built-in roles by name, so those are never renamed or deleted."""

    reason = "ROLE_BUILTIN"
    situation = "changing or deleting a built-in role"
    code = Code.FAILED_PRECONDITION
    metadata_keys = ("role_id", "name")

    def __init__(self, role_id: str, name: str) -> None:
        super().__init__(
            f"built-in role {name!r} cannot be renamed or deleted", metadata={"role_id": role_id, "name": name}
        )


class RoleInUse(AppError):
    """Deleting a role someone holds would silently take their permissions away."""

    reason = "ROLE_IN_USE"
    situation = "deleting a role someone holds"
    code = Code.FAILED_PRECONDITION
    metadata_keys = ("role_id",)

    def __init__(self, role_id: str) -> None:
        super().__init__(f"role {role_id!r} is assigned to users; unassign it first", metadata={"role_id": role_id})
