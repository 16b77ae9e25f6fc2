import datetime

from altalune.v1 import access_pb2 as _access_pb2
from altalune.v1 import common_pb2 as _common_pb2
from altalune.v1 import rules_pb2 as _rules_pb2
from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_OUTCOME_UNSPECIFIED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_ATTEMPTED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_SUCCEEDED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_FAILED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_REPLAYED: _ClassVar[EventOutcome]
    EVENT_OUTCOME_REFUSED: _ClassVar[EventOutcome]

class ActorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_KIND_UNSPECIFIED: _ClassVar[ActorKind]
    ACTOR_KIND_USER: _ClassVar[ActorKind]
    ACTOR_KIND_API_KEY: _ClassVar[ActorKind]
    ACTOR_KIND_ANONYMOUS: _ClassVar[ActorKind]
EVENT_OUTCOME_UNSPECIFIED: EventOutcome
EVENT_OUTCOME_ATTEMPTED: EventOutcome
EVENT_OUTCOME_SUCCEEDED: EventOutcome
EVENT_OUTCOME_FAILED: EventOutcome
EVENT_OUTCOME_REPLAYED: EventOutcome
EVENT_OUTCOME_REFUSED: EventOutcome
ACTOR_KIND_UNSPECIFIED: ActorKind
ACTOR_KIND_USER: ActorKind
ACTOR_KIND_API_KEY: ActorKind
ACTOR_KIND_ANONYMOUS: ActorKind
EVENT_FIELD_NUMBER: _ClassVar[int]
event: _descriptor.FieldDescriptor

class EventOption(_message.Message):
    __slots__ = ("resource", "id_field")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_FIELD_NUMBER: _ClassVar[int]
    resource: str
    id_field: str
    def __init__(self, resource: _Optional[str] = ..., id_field: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "type", "outcome", "time", "actor_kind", "actor_id", "peer", "user_agent", "rpc", "transport", "resource_type", "resource_id", "project_id", "call_request_id", "idempotency_key", "code", "reason", "changed_fields", "etag")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: str
    outcome: EventOutcome
    time: _timestamp_pb2.Timestamp
    actor_kind: ActorKind
    actor_id: str
    peer: str
    user_agent: str
    rpc: str
    transport: str
    resource_type: str
    resource_id: str
    project_id: str
    call_request_id: str
    idempotency_key: str
    code: str
    reason: str
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    etag: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[str] = ..., outcome: _Optional[_Union[EventOutcome, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_kind: _Optional[_Union[ActorKind, str]] = ..., actor_id: _Optional[str] = ..., peer: _Optional[str] = ..., user_agent: _Optional[str] = ..., rpc: _Optional[str] = ..., transport: _Optional[str] = ..., resource_type: _Optional[str] = ..., resource_id: _Optional[str] = ..., project_id: _Optional[str] = ..., call_request_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., changed_fields: _Optional[_Iterable[str]] = ..., etag: _Optional[str] = ...) -> None: ...

class QueryEventsRequest(_message.Message):
    __slots__ = ("project_id", "query", "since", "until", "as_of_sequence")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    query: _common_pb2.QueryRequest
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    as_of_sequence: int
    def __init__(self, project_id: _Optional[str] = ..., query: _Optional[_Union[_common_pb2.QueryRequest, _Mapping]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of_sequence: _Optional[int] = ...) -> None: ...

class QueryEventsResponse(_message.Message):
    __slots__ = ("data", "meta", "as_of_sequence")
    DATA_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Event]
    meta: _common_pb2.QueryMeta
    as_of_sequence: int
    def __init__(self, data: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., meta: _Optional[_Union[_common_pb2.QueryMeta, _Mapping]] = ..., as_of_sequence: _Optional[int] = ...) -> None: ...

class QueryGlobalEventsRequest(_message.Message):
    __slots__ = ("query", "since", "until", "as_of_sequence")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    query: _common_pb2.QueryRequest
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    as_of_sequence: int
    def __init__(self, query: _Optional[_Union[_common_pb2.QueryRequest, _Mapping]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of_sequence: _Optional[int] = ...) -> None: ...

class QueryGlobalEventsResponse(_message.Message):
    __slots__ = ("data", "meta", "as_of_sequence")
    DATA_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Event]
    meta: _common_pb2.QueryMeta
    as_of_sequence: int
    def __init__(self, data: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., meta: _Optional[_Union[_common_pb2.QueryMeta, _Mapping]] = ..., as_of_sequence: _Optional[int] = ...) -> None: ...
