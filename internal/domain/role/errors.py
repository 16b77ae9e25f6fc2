"""Errors of the role domain; IAM raises its RoleNotFound too (one class per reason)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError, DomainError


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


class RoleNameTaken(DomainError):
    reason = "ROLE_NAME_TAKEN"
    situation = "duplicate role name"
    code = Code.ALREADY_EXISTS
    template = "a role named {name!r} already exists"

    name: str


class RoleBuiltin(DomainError):
    """Memberships refer to the built-in roles by name, so those are never renamed or deleted."""

    reason = "ROLE_BUILTIN"
    situation = "changing or deleting a built-in role"
    code = Code.FAILED_PRECONDITION
    template = "built-in role {name!r} cannot be renamed or deleted"

    role_id: str
    name: str


class RoleInUse(DomainError):
    """Deleting a role someone holds would silently take their permissions away."""

    reason = "ROLE_IN_USE"
    situation = "deleting a role someone holds"
    code = Code.FAILED_PRECONDITION
    template = "role {role_id!r} is assigned to users; unassign it first"

    role_id: str
