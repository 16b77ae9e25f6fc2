"""Errors of the user domain; IAM raises its UserNotFound too (one class per reason)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import DomainError, UnknownIds


class UserNotFound(UnknownIds):
    reason = "USER_NOT_FOUND"
    situation = "unknown user(s) (every unknown id of the call)"
    noun = "user"


class UserEmailTaken(DomainError):
    reason = "USER_EMAIL_TAKEN"
    situation = "duplicate user email"
    code = Code.ALREADY_EXISTS
    template = "a user with email {email!r} already exists"

    email: str


class CannotDeactivateSelf(DomainError):
    """Deactivating oneself could lock the last administrator out for good."""

    reason = "CANNOT_DEACTIVATE_SELF"
    situation = "deactivating oneself"
    code = Code.FAILED_PRECONDITION
    template = "a user cannot deactivate themselves"

    user_id: str
