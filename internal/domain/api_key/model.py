"""API key model: the database row and its conversion to the proto (public ids only); neither holds the secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from altalune.v1 import api_key_pb2
from internal.auth.credentials import display_prefix
from internal.convert import to_etag, to_timestamp


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """A row of `api_keys` as selected: internal ids plus the public id; never `secret_hash`."""

    id: int
    project_id: int
    public_id: str
    name: str
    secret_hint: str
    scopes: list[str]
    active: bool
    expires_at: datetime
    last_used_at: datetime | None
    # Bumped by the database on every real change (migration 0007): the etag.
    version: int
    created_at: datetime
    updated_at: datetime

    def to_proto(self, project_public_id: str) -> api_key_pb2.ApiKey:
        message = api_key_pb2.ApiKey(
            id=self.public_id,
            project_id=project_public_id,
            name=self.name,
            prefix=display_prefix(project_public_id, self.public_id, self.secret_hint),
            scopes=tuple(self.scopes),
            active=self.active,
            expires_at=to_timestamp(self.expires_at),
            etag=to_etag(self.version),
            created_at=to_timestamp(self.created_at),
            updated_at=to_timestamp(self.updated_at),
        )
        if self.last_used_at is not None:
            message.last_used_at.CopyFrom(to_timestamp(self.last_used_at))
        return message


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """What is stored of a fresh key: its hash and hint, never the key itself."""

    public_id: str
    name: str
    secret_hash: bytes
    secret_hint: str
    scopes: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyChanges:
    """Only the fields named in an update mask; None means unchanged."""

    name: str | None = None
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
