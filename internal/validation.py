"""Request validation with protovalidate, turned into field violations.

Update requests validate only what they change: a violation on a field that is not named in the
request's `update_mask` is dropped. Key fields (`id`, `*_id`) and the mask itself always count.
"""

from __future__ import annotations

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from internal.errors import FieldViolation, InvalidArgument

UPDATE_MASK_FIELD = "update_mask"


def _render_path(path: validate_pb2.FieldPath) -> str:
    parts: list[str] = []
    for element in path.elements:
        segment = element.field_name
        subscript = element.WhichOneof("subscript")
        if subscript == "index":
            segment += f"[{element.index}]"
        elif subscript == "string_key":
            segment += f'["{element.string_key}"]'
        elif subscript is not None:
            segment += f"[{getattr(element, subscript)}]"
        parts.append(segment)
    return ".".join(parts)


def _is_key_field(name: str) -> bool:
    return name == "id" or name.endswith("_id") or name == UPDATE_MASK_FIELD


class RequestValidator:
    """Validates requests against the buf.validate rules compiled into their descriptors."""

    def __init__(self) -> None:
        self._validator = protovalidate.Validator()

    def violations(self, message: Message) -> list[FieldViolation]:
        found = self._validator.collect_violations(message)
        if not found:
            return []
        mask = self._update_mask(message)
        result: list[FieldViolation] = []
        for violation in found:
            proto = validate_pb2.Violation.FromString(violation.proto.to_binary())
            top_field = proto.field.elements[0].field_name if proto.field.elements else ""
            if mask is not None and top_field and not _is_key_field(top_field) and top_field not in mask:
                continue
            field = _render_path(proto.field)
            if proto.for_key:
                field += " (key)"
            result.append(FieldViolation(field=field, description=proto.message, reason=proto.rule_id))
        return result

    def validate(self, message: Message) -> None:
        """Raise InvalidArgument listing every violation (not just the first)."""
        found = self.violations(message)
        if found:
            raise InvalidArgument(found)

    @staticmethod
    def _update_mask(message: Message) -> set[str] | None:
        if UPDATE_MASK_FIELD not in message.DESCRIPTOR.fields_by_name:
            return None
        mask = getattr(message, UPDATE_MASK_FIELD)
        if not isinstance(mask, FieldMask):
            return None
        return {path.split(".", 1)[0] for path in mask.paths}


def violation(field: str, description: str, reason: str) -> InvalidArgument:
    """A single-field InvalidArgument for rules that need code (e.g. a real time zone name)."""
    return InvalidArgument([FieldViolation(field=field, description=description, reason=reason)])
