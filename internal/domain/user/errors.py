"""Errors of the user domain; IAM raises its UserNotFound too (one class per reason)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError, DomainError


class UserNotFound(AppError):
    """Unknown user(s): every id a call named that does not exist, comma-joined (one id too)."""

    reason = "USER_NOT_FOUND"
    situation = "unknown user(s) (every unknown id of the call)"
    code = Code.NOT_FOUND
    metadata_keys = ("user_ids",)

    def __init__(self, *user_ids: str) -> None:
        if not user_ids:
            raise TypeError("UserNotFound needs at least one id")
        joined = ",".join(user_ids)
        message = f"user {user_ids[0]!r} not found" if len(user_ids) == 1 else f"users not found: {joined}"
        super().__init__(message, metadata={"user_ids": joined})


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
