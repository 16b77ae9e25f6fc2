"""Project model: environment enum mapping, the database row and its conversion to the proto (public ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from altalune.v1 import project_pb2
from internal.convert import to_etag, to_timestamp
from internal.enums import EnumMapping
from internal.validation import FieldRule


class Environment(StrEnum):
    LIVE = "live"
    SANDBOX = "sandbox"


ENVIRONMENTS = EnumMapping(
    [(Environment.LIVE, project_pb2.ENVIRONMENT_LIVE), (Environment.SANDBOX, project_pb2.ENVIRONMENT_SANDBOX)]
)


def timezone_rule(timezones: frozenset[str]) -> FieldRule:
    """A project's time zone is an IANA name this process knows (the contract checks only its length)."""

    def broken(value: str) -> str | None:
        return None if value in timezones else f"{value!r} is not an IANA time zone name (e.g. Europe/Paris)"

    requests = (project_pb2.CreateProjectRequest, project_pb2.UpdateProjectRequest)
    return FieldRule(requests=requests, field="timezone", rule_id="timezone.iana", broken=broken)


@dataclass(frozen=True, slots=True)
class ProjectRow:
    """A row of `projects` as selected: internal id plus public id."""

    id: int
    public_id: str
    name: str
    description: str
    timezone: str
    environment: str
    # Bumped by the database on every real change (migration 0007): the etag.
    version: int
    created_at: datetime
    updated_at: datetime

    def to_proto(self) -> project_pb2.Project:
        return project_pb2.Project(
            id=self.public_id,
            name=self.name,
            description=self.description,
            timezone=self.timezone,
            environment=ENVIRONMENTS.db_to_proto(self.environment),
            etag=to_etag(self.version),
            created_at=to_timestamp(self.created_at),
            updated_at=to_timestamp(self.updated_at),
        )


@dataclass(frozen=True, slots=True)
class NewProject:
    public_id: str
    name: str
    description: str
    timezone: str
    environment: Environment


@dataclass(frozen=True, slots=True)
class ProjectChanges:
    """Only the fields named in an update mask; None means unchanged."""

    name: str | None = None
    description: str | None = None
    timezone: str | None = None
