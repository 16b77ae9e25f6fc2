"""User model: the database row and its conversion to the proto (public ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from altalune.v1 import user_pb2
from internal.convert import to_etag, to_timestamp


@dataclass(frozen=True, slots=True)
class UserRow:
    """A row of `users` as selected: internal id plus public id."""

    id: int
    public_id: str
    email: str
    first_name: str
    last_name: str
    active: bool
    # Bumped by the database on every real change (migration 0007): the etag.
    version: int
    created_at: datetime
    updated_at: datetime

    def to_proto(self) -> user_pb2.User:
        return user_pb2.User(
            id=self.public_id,
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            active=self.active,
            etag=to_etag(self.version),
            created_at=to_timestamp(self.created_at),
            updated_at=to_timestamp(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class NewUser:
    public_id: str
    email: str
    first_name: str
    last_name: str


@dataclass(frozen=True, slots=True)
class UserChanges:
    """Only the fields named in an update mask; None means unchanged."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
