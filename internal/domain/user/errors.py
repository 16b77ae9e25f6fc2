"""Errors of the user domain."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class UserNotFound(AppError):
    reason = "USER_NOT_FOUND"
    code = Code.NOT_FOUND

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} not found", metadata={"user_id": user_id})


class UserEmailTaken(AppError):
    reason = "USER_EMAIL_TAKEN"
    code = Code.ALREADY_EXISTS

    def __init__(self, email: str) -> None:
        super().__init__(f"a user with email {email!r} already exists", metadata={"email": email})


class CannotDeactivateSelf(AppError):
    """Deactivating oneself could lock the last administrator out for good."""

    reason = "CANNOT_DEACTIVATE_SELF"
    code = Code.FAILED_PRECONDITION

    def __init__(self, user_id: str) -> None:
        super().__init__("a user cannot deactivate themselves", metadata={"user_id": user_id})
