"""Errors of the API key domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from connectrpc.code import Code

from internal.errors import AppError, DomainError


class ApiKeyNotFound(DomainError):
    reason = "API_KEY_NOT_FOUND"
    situation = "unknown key"
    code = Code.NOT_FOUND
    template = "API key {api_key_id!r} not found in project {project_id!r}"

    project_id: str
    api_key_id: str


class ApiKeyNameTaken(DomainError):
    reason = "API_KEY_NAME_TAKEN"
    situation = "duplicate key name in the project"
    code = Code.ALREADY_EXISTS
    template = "an API key named {name!r} already exists in project {project_id!r}"

    project_id: str
    name: str


class ApiKeyScopeExceedsCaller(AppError):
    """A key may not do more than the caller who mints it: no escalation through keys."""

    reason = "API_KEY_SCOPE_EXCEEDS_CALLER"
    situation = "a key with scopes its creator lacks"
    code = Code.PERMISSION_DENIED
    metadata_keys = ("project_id", "scopes")

    def __init__(self, project_id: str, scopes: Sequence[str]) -> None:
        joined = ",".join(scopes)
        super().__init__(
            f"the caller does not hold the scope(s) {joined} in project {project_id!r}",
            metadata={"project_id": project_id, "scopes": joined},
        )


class ApiKeyOutlivesCaller(AppError):
    """An API key may not give a key a longer life than its own: a leaked key could otherwise keep
    itself alive, or mint a successor that outlives its revocation date."""

    reason = "API_KEY_OUTLIVES_CALLER"
    situation = "an API key setting an expiry past its own"
    code = Code.PERMISSION_DENIED
    metadata_keys = ("project_id", "max_expires_at")

    def __init__(self, project_id: str, limit: datetime) -> None:
        stamp = limit.astimezone(UTC).isoformat().replace("+00:00", "Z")
        super().__init__(
            f"an API key can set expiries up to its own ({stamp}) and no later",
            metadata={"project_id": project_id, "max_expires_at": stamp},
        )
