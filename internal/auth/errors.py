"""Errors of authentication and authorization. Messages say what is wrong, never the credential."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError

# Every reason an UNAUTHENTICATED answer can carry (the README's error table lists them all).
UNAUTHENTICATED_REASONS = frozenset(
    {
        "CREDENTIALS_MISSING",
        "CREDENTIALS_MALFORMED",
        "API_KEY_INVALID",
        "API_KEY_INACTIVE",
        "API_KEY_EXPIRED",
        "TOKEN_INVALID",
        "TOKEN_EXPIRED",
        "USER_UNKNOWN",
        "USER_INACTIVE",
    }
)


class Unauthenticated(AppError):
    """No usable credential. `reason` tells a client what to fix (one of UNAUTHENTICATED_REASONS)."""

    code = Code.UNAUTHENTICATED

    def __init__(self, reason: str, message: str) -> None:
        if reason not in UNAUTHENTICATED_REASONS:
            raise ValueError(f"{reason!r} is not one of UNAUTHENTICATED_REASONS")
        super().__init__(message)
        self.reason = reason


class PermissionDenied(AppError):
    reason = "PERMISSION_MISSING"
    code = Code.PERMISSION_DENIED

    def __init__(self, permission: str) -> None:
        super().__init__(f"the caller lacks the {permission!r} permission", metadata={"permission": permission})


class ApiKeyNotAllowed(AppError):
    """API keys act only inside their own project: global and per-user RPCs refuse them."""

    reason = "API_KEY_NOT_ALLOWED"
    code = Code.PERMISSION_DENIED

    def __init__(self) -> None:
        super().__init__("API keys may only call RPCs inside their own project; sign in as a user")


class IdentityProviderUnavailable(AppError):
    reason = "IDENTITY_PROVIDER_UNAVAILABLE"
    code = Code.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("the token issuer's signing keys cannot be fetched right now", retry_after_s=5.0)
