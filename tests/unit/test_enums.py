"""Every domain's enum table is complete both ways, and filter keys take their values from it."""

from __future__ import annotations

import importlib
import pkgutil
from enum import StrEnum
from typing import Any

import pytest

import internal.domain
from altalune.v1 import common_pb2
from internal.domain.employee.model import STATUSES, EmployeeStatus
from internal.enums import EnumMapping
from internal.errors import InvalidArgument
from internal.query import FilterSpec, QuerySpec, params_from_proto


def _mappings() -> list[tuple[str, EnumMapping[Any, Any]]]:
    found = []
    for module_info in pkgutil.iter_modules(internal.domain.__path__):
        model = importlib.import_module(f"internal.domain.{module_info.name}.model")
        for name, value in vars(model).items():
            if isinstance(value, EnumMapping):
                found.append((f"{module_info.name}.{name}", value))
    return found


def _proto_enum(domain_enum: type[StrEnum]) -> dict[str, int]:
    """The generated enum of the same name, as name -> number."""
    for module_info in pkgutil.iter_modules(importlib.import_module("altalune.v1").__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"altalune.v1.{module_info.name}")
        enum = module.DESCRIPTOR.enum_types_by_name.get(domain_enum.__name__)
        if enum is not None:
            return {value.name: value.number for value in enum.values}
    raise AssertionError(f"no proto enum named {domain_enum.__name__}")


MAPPINGS = _mappings()


def test_the_domains_declare_their_enum_tables() -> None:
    assert {name for name, _ in MAPPINGS} >= {
        "employee.STATUSES",
        "project.ENVIRONMENTS",
        "permission.SCOPES",
        "iam.PROJECT_ROLES",
    }


@pytest.mark.parametrize(("name", "mapping"), MAPPINGS, ids=[name for name, _ in MAPPINGS])
def test_an_enum_table_maps_every_member_and_every_proto_value_but_unspecified(
    name: str, mapping: EnumMapping[Any, Any]
) -> None:
    members = mapping.members()
    domain_enum: type[StrEnum] = type(members[0])
    proto = _proto_enum(domain_enum)

    assert set(members) == set(domain_enum)
    assert sorted(mapping.to_proto(m) for m in members) == sorted(n for n in proto.values() if n != 0)
    for member in members:
        assert mapping.from_proto(mapping.to_proto(member)) is member
        assert mapping.from_db(member.value) is member
    with pytest.raises(KeyError):
        mapping.from_proto(0)


def test_a_filter_key_takes_its_allowed_values_from_the_enum_table_as_plain_strings() -> None:
    from_mapping = FilterSpec("status", values=STATUSES)
    from_enum = FilterSpec("status", values=EmployeeStatus)

    assert from_mapping.values == from_enum.values == ("active", "inactive")
    assert all(type(v) is str for v in from_enum.values or ())


def test_an_unknown_enum_value_is_refused_naming_the_enum_tables_values() -> None:
    spec = QuerySpec(
        table="employees",
        columns=("id", "status"),
        keyword_columns=(),
        filters={"status": FilterSpec("status", values=STATUSES)},
        sorts={},
        default_sort=("id", False),
    )
    request = common_pb2.QueryRequest(filters={"status": common_pb2.StringList(values=["retired"])})

    with pytest.raises(InvalidArgument) as caught:
        params_from_proto(request, spec)

    assert caught.value.violations[0].description == "unknown value(s) 'retired'; allowed: active, inactive"


def test_a_computed_filter_key_allows_exactly_its_predicates_keys() -> None:
    spec = FilterSpec("state", predicates={"on": "(a)", "off": "(NOT a)"})

    assert spec.values == ("on", "off")
    with pytest.raises(ValueError, match="predicates must cover exactly"):
        FilterSpec("state", values=("on",), predicates={"on": "(a)", "off": "(NOT a)"})


def test_a_single_string_is_no_list_of_values() -> None:
    with pytest.raises(TypeError):
        FilterSpec("status", values="active")
