"""The public-id rule, declared once in altalune/v1/rules.proto as the predefined rule
`(altalune.v1.public_id)` and set on every public-id field of the contract."""

from __future__ import annotations

import importlib
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import protovalidate
import pytest
from buf.validate import validate_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from altalune.v1 import api_key_pb2, employee_pb2, iam_pb2, project_pb2, rules_pb2
from internal.ids import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH, new_public_id
from internal.validation import RequestValidator

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

GOOD = "23456789abcdef"
OTHER = "zyxwvutsrqpnmk"
LEN = "public_id.len"
ALPHABET = "public_id.alphabet"
FIELD_RULES = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.FieldOptions, validate_pb2.FieldRules]", validate_pb2.field
)
PUBLIC_ID = cast("_ExtensionFieldDescriptor[validate_pb2.StringRules, bool]", rules_pb2.public_id)
# Every file of the contract: the generated modules next to rules_pb2.
CONTRACT = sorted(p.stem for p in Path(rules_pb2.__file__).parent.glob("*_pb2.py"))


@pytest.fixture(scope="module")
def validator() -> RequestValidator:
    return RequestValidator()


# One public-id field of a few request types: how to build a request whose only wrong value is the
# one given, the path its violations carry, and whether the field is `required` (a single id) or an
# item of a list (no `required`: an empty item breaks the length).
FieldCase = tuple[Callable[[str], Message], str, bool]
FIELDS: dict[str, FieldCase] = {
    "GetEmployeeRequest.id": (lambda v: employee_pb2.GetEmployeeRequest(project_id=GOOD, id=v), "id", True),
    "GetEmployeeRequest.project_id": (
        lambda v: employee_pb2.GetEmployeeRequest(project_id=v, id=GOOD),
        "project_id",
        True,
    ),
    "UpdateProjectRequest.id (key field, not in the mask)": (
        lambda v: project_pb2.UpdateProjectRequest(id=v, description="x", update_mask={"paths": ["description"]}),
        "id",
        True,
    ),
    "DeleteApiKeyRequest.id": (lambda v: api_key_pb2.DeleteApiKeyRequest(project_id=GOOD, id=v), "id", True),
    "AssignUserRolesRequest.role_ids[1]": (
        lambda v: iam_pb2.AssignUserRolesRequest(user_id=GOOD, role_ids=[OTHER, v]),
        "role_ids[1]",
        False,
    ),
    "AddProjectMembersRequest.members[0].user_id": (
        lambda v: iam_pb2.AddProjectMembersRequest(
            project_id=GOOD, members=[iam_pb2.NewProjectMember(user_id=v, role=iam_pb2.PROJECT_ROLE_MEMBER)]
        ),
        "members[0].user_id",
        True,
    ),
}

# Each kind of bad id and the rule ids it breaks (besides the empty id, see below).
BAD: dict[str, tuple[str, list[str]]] = {
    "too short, good characters": ("bad", [LEN]),
    "one character too long": (GOOD + "a", [LEN]),
    "14 characters with look-alikes 0 1 i o": ("0o1i23456789ab", [ALPHABET]),
    "14 upper-case characters": (GOOD.upper(), [ALPHABET]),
    "14 non-ASCII code points (length is counted in code points)": ("é" * PUBLIC_ID_LENGTH, [ALPHABET]),
    "14 characters with a space": ("23456789abcde ", [ALPHABET]),
    "too short and bad characters: one violation per rule": ("not-an-id", [LEN, ALPHABET]),
}


def _found(validator: RequestValidator, request: Message) -> list[tuple[str, str]]:
    return [(v.field, v.reason) for v in validator.violations(request)]


@pytest.mark.parametrize("case", FIELDS)
def test_a_real_public_id_is_accepted(validator: RequestValidator, case: str) -> None:
    build, _, _ = FIELDS[case]

    assert validator.violations(build(new_public_id())) == []
    assert validator.violations(build(GOOD)) == []


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("case", FIELDS)
def test_each_kind_of_bad_id_is_refused_with_its_rules(validator: RequestValidator, case: str, bad: str) -> None:
    build, path, _ = FIELDS[case]
    value, rules = BAD[bad]

    assert _found(validator, build(value)) == [(path, rule) for rule in rules]


@pytest.mark.parametrize("case", FIELDS)
def test_an_empty_id_is_required_or_too_short(validator: RequestValidator, case: str) -> None:
    build, path, required = FIELDS[case]

    assert _found(validator, build("")) == [(path, "required" if required else LEN)]


def test_the_alphabet_is_exactly_the_public_id_alphabet(validator: RequestValidator) -> None:
    for symbol in string.printable:
        value = symbol * PUBLIC_ID_LENGTH
        found = _found(validator, employee_pb2.GetEmployeeRequest(project_id=GOOD, id=value))
        assert found == ([] if symbol in PUBLIC_ID_ALPHABET else [("id", ALPHABET)]), repr(symbol)


def test_the_descriptions_name_the_expected_shape(validator: RequestValidator) -> None:
    found = validator.violations(employee_pb2.GetEmployeeRequest(project_id=GOOD, id="not-an-id"))

    assert [v.description for v in found] == [
        "must be a public id of 14 characters",
        "must be a public id: only the characters 2-9 and a-z except i and o (^[2-9a-hj-np-z]{14}$)",
    ]


def test_the_violation_points_at_the_predefined_rule() -> None:
    (violation,) = protovalidate.collect_violations(employee_pb2.GetEmployeeRequest(project_id=GOOD, id="0" * 14))
    proto = validate_pb2.Violation.FromString(violation.proto.to_binary())

    assert [e.field_name for e in proto.field.elements] == ["id"]
    assert [(e.field_name, e.field_number) for e in proto.rule.elements] == [
        ("string", 14),
        ("[altalune.v1.public_id]", rules_pb2.PUBLIC_ID_FIELD_NUMBER),
    ]
    assert proto.rule_id == ALPHABET


# --- the rule is declared once --------------------------------------------------------------------


def _string_rules(field: FieldDescriptor) -> Iterator[validate_pb2.StringRules]:
    rules = field.GetOptions().Extensions[FIELD_RULES]
    if rules.HasField("string"):
        yield rules.string
    if rules.HasField("repeated") and rules.repeated.items.HasField("string"):
        yield rules.repeated.items.string


def _fields(message: Descriptor) -> Iterator[FieldDescriptor]:
    yield from message.fields
    for nested in message.nested_types:
        yield from _fields(nested)


def _contract_fields() -> Iterator[FieldDescriptor]:
    for name in CONTRACT:
        module = importlib.import_module(f"altalune.v1.{name}")
        for message in module.DESCRIPTOR.message_types_by_name.values():
            yield from _fields(message)


def test_no_field_spells_the_public_id_rule_out_any_more() -> None:
    spelled = [
        f.full_name
        for f in _contract_fields()
        for rules in _string_rules(f)
        if rules.pattern == "^[2-9a-hj-np-z]{14}$" or rules.len == PUBLIC_ID_LENGTH
    ]

    assert spelled == []


def test_every_single_public_id_field_is_also_required() -> None:
    public = [f for f in _contract_fields() if any(r.Extensions[PUBLIC_ID] for r in _string_rules(f))]
    single = [f for f in public if not f.is_repeated]

    assert len(public) >= 49  # every public-id field of the contract when the rule was introduced
    assert [f.full_name for f in single if not f.GetOptions().Extensions[FIELD_RULES].required] == []
