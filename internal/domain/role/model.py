"""Role model: the database row and its conversion to the proto (public ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from altalune.v1 import role_pb2
from internal.convert import to_etag, to_timestamp


@dataclass(frozen=True, slots=True)
class RoleRow:
    """A row of `roles` as selected: internal id plus public id."""

    id: int
    public_id: str
    name: str
    description: str
    builtin: bool
    # Bumped by the database on every real change (migration 0007): the etag.
    version: int
    created_at: datetime
    updated_at: datetime

    def to_proto(self) -> role_pb2.Role:
        return role_pb2.Role(
            id=self.public_id,
            name=self.name,
            description=self.description,
            builtin=self.builtin,
            etag=to_etag(self.version),
            created_at=to_timestamp(self.created_at),
            updated_at=to_timestamp(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class NewRole:
    public_id: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class RoleChanges:
    """Only the fields named in an update mask; None means unchanged."""

    name: str | None = None
    description: str | None = None
