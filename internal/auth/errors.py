"""Errors of authentication and authorization. Messages say what is wrong, never the credential."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class Unauthenticated(AppError):
    """No usable credential. Each subclass is one reason, telling a client what to fix."""

    code = Code.UNAUTHENTICATED

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TokenRejected(Unauthenticated):
    """A bearer token the verifier does not accept; the message is safe to show (never the token)."""


class CredentialsMissing(Unauthenticated):
    """No `authorization` header."""

    reason = "CREDENTIALS_MISSING"


class CredentialsMalformed(Unauthenticated):
    """An `authorization` header that is not `Bearer <credential>`."""

    reason = "CREDENTIALS_MALFORMED"


class ApiKeyInvalid(Unauthenticated):
    """An unknown API key, a malformed one, or one of a deleted project."""

    reason = "API_KEY_INVALID"


class ApiKeyInactive(Unauthenticated):
    reason = "API_KEY_INACTIVE"


class ApiKeyExpired(Unauthenticated):
    reason = "API_KEY_EXPIRED"


class TokenInvalid(TokenRejected):
    """A JWT that does not verify: issuer, key, algorithm, audience, signature or claims."""

    reason = "TOKEN_INVALID"


class TokenExpired(TokenRejected):
    reason = "TOKEN_EXPIRED"


class UserUnknown(Unauthenticated):
    """A valid token that names no user of this service."""

    reason = "USER_UNKNOWN"


class UserInactive(Unauthenticated):
    reason = "USER_INACTIVE"


class PermissionDenied(AppError):
    reason = "PERMISSION_MISSING"
    code = Code.PERMISSION_DENIED
    metadata_keys = ("permission",)

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
