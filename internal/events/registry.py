"""The event types, derived from the contract: each write RPC's `(altalune.v1.event)` option.

A write RPC is every RPC without `idempotency_level = NO_SIDE_EFFECTS`. Each must declare the
resource it writes, and carry the optional `request_id` field; a read must declare nothing. The
server refuses to start otherwise, so a new write RPC cannot slip past the event log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, cast

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from altalune.v1 import event_pb2
from internal.auth.policy import AccessRule, is_string_field

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

EVENT_OPTION = cast("_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, event_pb2.EventOption]", event_pb2.event)
REQUEST_ID_FIELD = "request_id"
# The single-state security event of a call refused by authentication or authorization.
CALL_REFUSED = "CallRefused"
# Fields that identify or steer a write rather than change the resource: never "changed fields".
_NOT_CHANGES = frozenset({REQUEST_ID_FIELD, "etag", "update_mask"})


class EventDeclarationError(RuntimeError):
    """The contract's event declarations are missing or inconsistent: the server must not start."""


class EventOutcome(StrEnum):
    ATTEMPTED = "attempted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REPLAYED = "replayed"
    REFUSED = "refused"


WRITE_OUTCOMES = (EventOutcome.ATTEMPTED, EventOutcome.SUCCEEDED, EventOutcome.FAILED, EventOutcome.REPLAYED)


@dataclass(frozen=True, slots=True)
class WriteRpc:
    """One write RPC as the event log and the idempotency records see it."""

    rpc: str  # "altalune.v1.EmployeeService/CreateEmployee"
    name: str  # "CreateEmployee"
    resource: str
    id_field: str | None  # request field with the resource's public id; None: read it from the response
    resource_field: str | None  # response field holding the written resource, if the response has one
    project_field: str | None  # the project of a project-scoped call
    response_class: type[Message]
    secret_fields: tuple[str, ...] = ()  # response fields marked debug_redact: never stored

    def storable_answer(self, response: Message) -> bytes:
        """The answer as the idempotency record keeps it: without its secrets (an API key's
        secret is shown once and stored nowhere in the clear), so a replay answers without them."""
        if not self.secret_fields:
            return response.SerializeToString()
        kept = self.response_class()
        kept.CopyFrom(response)
        for name in self.secret_fields:
            kept.ClearField(name)
        return kept.SerializeToString()

    @property
    def project_stream(self) -> bool:
        """A project-scoped write records into its project's stream; the project's own writes
        (and every global RPC) into the global stream, so they outlive the project's purge."""
        return self.project_field is not None and self.resource != "project"

    def event_type(self, outcome: EventOutcome) -> str:
        return f"{self.name}{outcome.value.capitalize()}"

    def resource_id(self, request: Message, response: Message | None) -> str:
        if self.id_field is not None:
            return str(getattr(request, self.id_field))
        resource = self.resource_of(response)
        return str(getattr(resource, "id", "")) if resource is not None else ""

    def resource_of(self, response: Message | None) -> Message | None:
        if response is None or self.resource_field is None:
            return None
        resource: Message = getattr(response, self.resource_field)
        return resource

    def new_etag(self, response: Message) -> str:
        resource = self.resource_of(response)
        return str(getattr(resource, "etag", "")) if resource is not None else ""

    def changed_fields(self, request: Message) -> list[str]:
        """The names of the fields the write sets (never their values): the update mask's paths,
        or the request's populated fields but those that only identify the resource."""
        mask = getattr(request, "update_mask", None)
        if mask is not None and mask.paths:
            return sorted(mask.paths)
        skip = _NOT_CHANGES | {self.project_field, self.id_field}
        return sorted(field.name for field, _ in request.ListFields() if field.name not in skip)

    def fingerprint(self, request: Message) -> bytes:
        """Equal for the same request whichever port and encoding it came in with."""
        return hashlib.sha256(self.rpc.encode() + b"\0" + request.SerializeToString(deterministic=True)).digest()


def _resource_field(output: Descriptor) -> str | None:
    for field in output.fields:
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated
        if is_message and field.message_type is not None and "id" in field.message_type.fields_by_name:
            return str(field.name)
    return None


def _is_write(method: MethodDescriptor) -> bool:
    options = method.GetOptions()
    return options.idempotency_level != descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS


def write_rpcs(services: Sequence[ServiceDescriptor], rules: Mapping[str, AccessRule]) -> dict[str, WriteRpc]:
    """Every write RPC by route path (/pkg.Service/Method), checked against the contract's rules."""
    writes: dict[str, WriteRpc] = {}
    for service in services:
        for method in service.methods:
            name = f"{service.full_name}/{method.name}"
            options = method.GetOptions()
            declared = options.HasExtension(EVENT_OPTION)
            if not _is_write(method):
                if declared:
                    raise EventDeclarationError(f"{name} has no side effects but declares (altalune.v1.event)")
                continue
            if not declared:
                raise EventDeclarationError(
                    f"{name} writes (no idempotency_level = NO_SIDE_EFFECTS) but declares no (altalune.v1.event)"
                )
            option: event_pb2.EventOption = options.Extensions[EVENT_OPTION]
            if not option.resource:
                raise EventDeclarationError(f"{name}: (altalune.v1.event) must name its resource")
            if option.id_field and not is_string_field(method.input_type, option.id_field):
                raise EventDeclarationError(f"{name}: id_field {option.id_field!r} is not a request string field")
            if not is_string_field(method.input_type, REQUEST_ID_FIELD):
                raise EventDeclarationError(f"{name} writes but its request has no `string request_id` field")
            resource_field = _resource_field(method.output_type)
            if not option.id_field and resource_field is None:
                raise EventDeclarationError(f"{name}: no id_field, and the response holds no resource with an id")
            writes[f"/{name}"] = WriteRpc(
                rpc=name,
                name=method.name,
                resource=option.resource,
                id_field=option.id_field or None,
                resource_field=resource_field,
                project_field=rules[f"/{name}"].project_field,
                response_class=GetMessageClass(method.output_type),
                secret_fields=tuple(f.name for f in method.output_type.fields if f.GetOptions().debug_redact),
            )
    return writes


def event_types(writes: Mapping[str, WriteRpc]) -> frozenset[str]:
    """Every event type the service can record: the registry the log is checked against."""
    return frozenset({CALL_REFUSED} | {w.event_type(o) for w in writes.values() for o in WRITE_OUTCOMES})
