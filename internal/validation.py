"""Request validation with protovalidate, turned into field violations.

Rules the contract cannot state (they need code or data, e.g. a real time zone name) are declared
by their domain as FieldRules and checked in the same pass, so a request hears of every broken
field at once, not one stage at a time.

Update requests validate only what they change: a violation on a field that is not named in the
request's `update_mask` is dropped. Key fields (`id`, `*_id`) and the mask itself always count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import protovalidate
from buf.validate import validate_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from internal.errors import FieldViolation, InvalidArgument

UPDATE_MASK_FIELD = "update_mask"
NUL_RULE = "string.no_nul"
_NUL = "\x00"


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


def _top(path: str) -> str:
    """The request's own field a violation path starts with: `query` of `query.keyword`."""
    return path.split(".", 1)[0].split("[", 1)[0]


def _is_key_field(name: str) -> bool:
    return name == "id" or name.endswith("_id") or name == UPDATE_MASK_FIELD


def _counts(top_field: str, mask: set[str] | None) -> bool:
    """Whether a violation on this top-level field counts: always, unless an update mask leaves the
    field out (key fields and the mask itself always count)."""
    return mask is None or not top_field or _is_key_field(top_field) or top_field in mask


@dataclass(frozen=True, slots=True)
class FieldRule:
    """A rule on one top-level string field of some request types: `broken(value)` returns the
    description of the violation, or None. Checked only when the contract's own rules pass on the
    field (an empty name is reported as required, not also as unknown)."""

    requests: tuple[type[Message], ...]
    field: str
    rule_id: str
    broken: Callable[[str], str | None]


class RequestValidator:
    """Validates requests against the buf.validate rules compiled into their descriptors, and the
    FieldRules the domains declare."""

    def __init__(self, rules: Sequence[FieldRule] = ()) -> None:
        self._validator = protovalidate.Validator()
        self._rules: dict[str, list[FieldRule]] = {}
        for rule in rules:
            for request in rule.requests:
                self._rules.setdefault(request.DESCRIPTOR.full_name, []).append(rule)

    def violations(self, message: Message) -> list[FieldViolation]:
        found = self._validator.collect_violations(message)
        nul = nul_violations(message)
        rules = self._rules.get(message.DESCRIPTOR.full_name, ())
        if not found and not nul and not rules:
            return []
        mask = self._update_mask(message)
        nul = [v for v in nul if _counts(_top(v.field), mask)]
        result: list[FieldViolation] = []
        for violation in found:
            proto = validate_pb2.Violation.FromString(violation.proto.to_binary())
            top_field = proto.field.elements[0].field_name if proto.field.elements else ""
            if not _counts(top_field, mask):
                continue
            field = _render_path(proto.field)
            if proto.for_key:
                field += " (key)"
            result.append(FieldViolation(field=field, description=proto.message, reason=proto.rule_id))
        named = {v.field for v in result}
        result += [v for v in nul if v.field not in named]
        named |= {v.field for v in nul}
        for rule in rules:
            if rule.field in named or not _counts(rule.field, mask):
                continue
            description = rule.broken(getattr(message, rule.field))
            if description is not None:
                result.append(FieldViolation(field=rule.field, description=description, reason=rule.rule_id))
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


def nul_violations(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every string anywhere in the request that holds a NUL character: PostgreSQL cannot store one,
    and no field of the contract means to carry one. Paths are written as protovalidate writes them."""
    found: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                entry = f'{path}["{key}"]' if isinstance(key, str) else f"{path}[{key}]"
                if isinstance(key, str) and _NUL in key:
                    found.append(_nul(f"{entry} (key)"))
                if value_field.type == FieldDescriptor.TYPE_STRING and _NUL in item:
                    found.append(_nul(entry))
                elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    found += nul_violations(item, entry + ".")
        elif field.type == FieldDescriptor.TYPE_STRING:
            items = enumerate(value) if field.is_repeated else [(None, value)]
            found += [_nul(path if i is None else f"{path}[{i}]") for i, text in items if _NUL in text]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            items = enumerate(value) if field.is_repeated else [(None, value)]
            for i, item in items:
                found += nul_violations(item, (path if i is None else f"{path}[{i}]") + ".")
    return found


def _nul(field: str) -> FieldViolation:
    return FieldViolation(field=field, description="must not contain a NUL (U+0000) character", reason=NUL_RULE)
