"""Errors of the role domain; IAM raises its RoleNotFound too (one class per reason)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import DomainError, UnknownIds


class RoleNotFound(UnknownIds):
    reason = "ROLE_NOT_FOUND"
    situation = "unknown role(s) (every unknown id of the call)"
    noun = "role"


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
