"""Event model: the outcome and actor enum mappings, the row of either stream, and its proto."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from altalune.v1 import event_pb2
from internal.convert import to_timestamp
from internal.enums import EnumMapping
from internal.events.registry import EventOutcome


class ActorKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    ANONYMOUS = "anonymous"


OUTCOMES = EnumMapping(
    [
        (EventOutcome.ATTEMPTED, event_pb2.EVENT_OUTCOME_ATTEMPTED),
        (EventOutcome.SUCCEEDED, event_pb2.EVENT_OUTCOME_SUCCEEDED),
        (EventOutcome.FAILED, event_pb2.EVENT_OUTCOME_FAILED),
        (EventOutcome.REPLAYED, event_pb2.EVENT_OUTCOME_REPLAYED),
        (EventOutcome.REFUSED, event_pb2.EVENT_OUTCOME_REFUSED),
    ]
)
ACTOR_KINDS = EnumMapping(
    [
        (ActorKind.USER, event_pb2.ACTOR_KIND_USER),
        (ActorKind.API_KEY, event_pb2.ACTOR_KIND_API_KEY),
        (ActorKind.ANONYMOUS, event_pb2.ACTOR_KIND_ANONYMOUS),
    ]
)


@dataclass(frozen=True, slots=True)
class EventRow:
    """A row of `project_events` or `global_events` as selected (the internal project id is not)."""

    sequence: int
    type: str
    outcome: str
    occurred_at: datetime
    actor_kind: str
    actor_id: str
    peer: str
    user_agent: str
    rpc: str
    transport: str
    resource_type: str
    resource_id: str
    project_public_id: str
    call_request_id: str
    idempotency_key: str
    code: str
    reason: str
    changed_fields: list[str]
    etag: str

    def to_proto(self) -> event_pb2.Event:
        return event_pb2.Event(
            sequence=self.sequence,
            type=self.type,
            outcome=OUTCOMES.db_to_proto(self.outcome),
            time=to_timestamp(self.occurred_at),
            actor_kind=ACTOR_KINDS.db_to_proto(self.actor_kind),
            actor_id=self.actor_id,
            peer=self.peer,
            user_agent=self.user_agent,
            rpc=self.rpc,
            transport=self.transport,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            project_id=self.project_public_id,
            call_request_id=self.call_request_id,
            idempotency_key=self.idempotency_key,
            code=self.code,
            reason=self.reason,
            changed_fields=self.changed_fields,
            etag=self.etag,
        )
