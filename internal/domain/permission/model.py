"""Permission model: scope enum mapping, the database row and its conversion to the proto (public ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from altalune.v1 import permission_pb2
from internal.convert import to_timestamp
from internal.enums import EnumMapping


class PermissionScope(StrEnum):
    GLOBAL = "global"
    PROJECT = "project"


SCOPES = EnumMapping(
    [
        (PermissionScope.GLOBAL, permission_pb2.PERMISSION_SCOPE_GLOBAL),
        (PermissionScope.PROJECT, permission_pb2.PERMISSION_SCOPE_PROJECT),
    ]
)


@dataclass(frozen=True, slots=True)
class PermissionRow:
    """A row of `permissions` as selected: internal id plus public id."""

    id: int
    public_id: str
    name: str
    description: str
    scope: str
    created_at: datetime

    def to_proto(self) -> permission_pb2.Permission:
        return permission_pb2.Permission(
            id=self.public_id,
            name=self.name,
            description=self.description,
            scope=SCOPES.db_to_proto(self.scope),
            created_at=to_timestamp(self.created_at),
        )
