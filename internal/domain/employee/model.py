"""Employee model: status enum mapping, the database row and its conversion to the proto (public ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from altalune.v1 import employee_pb2
from internal.convert import to_etag, to_timestamp
from internal.enums import EnumMapping


class EmployeeStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


STATUSES = EnumMapping(
    [
        (EmployeeStatus.ACTIVE, employee_pb2.EMPLOYEE_STATUS_ACTIVE),
        (EmployeeStatus.INACTIVE, employee_pb2.EMPLOYEE_STATUS_INACTIVE),
    ]
)


@dataclass(frozen=True, slots=True)
class EmployeeRow:
    """A row of `employees` as selected: internal ids plus the public id."""

    id: int
    project_id: int
    public_id: str
    name: str
    email: str
    role: str
    department: str
    status: str
    # Bumped by the database on every real change (migration 0007): the etag.
    version: int
    created_at: datetime
    updated_at: datetime

    def to_proto(self, project_public_id: str) -> employee_pb2.Employee:
        return employee_pb2.Employee(
            id=self.public_id,
            project_id=project_public_id,
            name=self.name,
            email=self.email,
            role=self.role,
            department=self.department,
            status=STATUSES.db_to_proto(self.status),
            etag=to_etag(self.version),
            created_at=to_timestamp(self.created_at),
            updated_at=to_timestamp(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class NewEmployee:
    public_id: str
    name: str
    email: str
    role: str
    department: str
    status: EmployeeStatus


@dataclass(frozen=True, slots=True)
class EmployeeChanges:
    """Only the fields named in an update mask; None means unchanged."""

    name: str | None = None
    email: str | None = None
    role: str | None = None
    department: str | None = None
    status: EmployeeStatus | None = None
