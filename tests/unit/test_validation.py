"""RequestValidator: buf.validate rules from the contracts, turned into field violations."""

from __future__ import annotations

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.errors import FieldViolation, InvalidArgument
from internal.validation import FieldRule, RequestValidator

VALID_ID = "23456789abcdef"


@pytest.fixture(scope="module")
def validator() -> RequestValidator:
    return RequestValidator()


def _fields(violations: list[FieldViolation]) -> list[tuple[str, str]]:
    return [(v.field, v.reason) for v in violations]


def test_an_empty_create_project_request_names_every_required_field_with_its_rule(
    validator: RequestValidator,
) -> None:
    found = validator.violations(project_pb2.CreateProjectRequest())

    assert _fields(found) == [("name", "required"), ("timezone", "required"), ("environment", "required")]
    assert all(v.description for v in found)


def test_a_required_empty_field_gives_exactly_one_violation(validator: RequestValidator) -> None:
    request = project_pb2.CreateProjectRequest(timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE)

    assert _fields(validator.violations(request)) == [("name", "required")]


def test_a_valid_create_project_request_has_no_violations(validator: RequestValidator) -> None:
    request = project_pb2.CreateProjectRequest(
        name="Acme Corp", description="", timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_SANDBOX
    )

    assert validator.violations(request) == []
    validator.validate(request)  # does not raise


def test_bad_values_are_reported_with_the_rule_they_break(validator: RequestValidator) -> None:
    request = project_pb2.CreateProjectRequest(name="-acme", timezone="UTC", environment=7)  # type: ignore[arg-type]

    assert _fields(validator.violations(request)) == [
        ("name", "string.pattern"),
        ("environment", "enum.defined_only"),
    ]


def test_an_update_validates_only_the_fields_in_its_mask(validator: RequestValidator) -> None:
    request = project_pb2.UpdateProjectRequest(
        id=VALID_ID, name="", timezone="", description="new", update_mask=FieldMask(paths=["description"])
    )

    assert validator.violations(request) == []


def test_an_update_still_checks_the_id_whatever_the_mask(validator: RequestValidator) -> None:
    request = project_pb2.UpdateProjectRequest(id="not-an-id", update_mask=FieldMask(paths=["description"]))

    assert {v.field for v in validator.violations(request)} == {"id"}


def test_an_update_checks_a_masked_field(validator: RequestValidator) -> None:
    request = project_pb2.UpdateProjectRequest(id=VALID_ID, name="", update_mask=FieldMask(paths=["name"]))

    assert _fields(validator.violations(request)) == [("name", "required")]


@pytest.mark.parametrize("paths", [[], ["environment"], ["name", "id"]], ids=["empty", "immutable", "key"])
def test_an_update_mask_outside_the_updatable_fields_is_rejected(validator: RequestValidator, paths: list[str]) -> None:
    request = project_pb2.UpdateProjectRequest(id=VALID_ID, name="Acme", update_mask=FieldMask(paths=paths))

    assert [v.field for v in validator.violations(request)] == ["update_mask"]


def test_nested_map_and_list_paths_are_rendered_with_subscripts(validator: RequestValidator) -> None:
    request = employee_pb2.QueryEmployeesRequest(
        project_id=VALID_ID,
        query=common_pb2.QueryRequest(
            filters={
                "Bad-Key": common_pb2.StringList(values=["x"]),
                "role": common_pb2.StringList(values=["ok", ""]),
            },
            pagination=common_pb2.Pagination(page_size=1000),
        ),
    )

    assert set(_fields(validator.violations(request))) == {
        ("query.pagination.page_size", "int32.gte_lte"),
        ('query.filters["Bad-Key"] (key)', "string.pattern"),
        ('query.filters["role"].values[1]', "string.min_len"),
    }


def test_validate_raises_invalid_argument_listing_every_violation(validator: RequestValidator) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validator.validate(employee_pb2.GetEmployeeRequest(project_id="short"))

    assert {v.field for v in caught.value.violations} == {"project_id", "id"}
    assert caught.value.message.startswith("invalid request: project_id: ")
    assert "more)" in caught.value.message


ZONES = FieldRule(
    requests=(project_pb2.CreateProjectRequest, project_pb2.UpdateProjectRequest),
    field="timezone",
    rule_id="timezone.iana",
    broken=lambda value: None if value in {"UTC", "Europe/Paris"} else f"{value!r} is not a zone",
)


def test_a_domain_rule_is_reported_together_with_the_contracts_rules() -> None:
    request = project_pb2.CreateProjectRequest(name="", timezone="Mars/Base", environment=project_pb2.ENVIRONMENT_LIVE)

    found = RequestValidator([ZONES]).violations(request)

    assert _fields(found) == [("name", "required"), ("timezone", "timezone.iana")]


def test_a_domain_rule_is_not_checked_on_a_field_the_contract_already_refused() -> None:
    found = RequestValidator([ZONES]).violations(project_pb2.CreateProjectRequest(name="Acme", timezone=""))

    assert ("timezone", "required") in _fields(found)
    assert ("timezone", "timezone.iana") not in _fields(found)


def test_a_domain_rule_follows_the_update_mask() -> None:
    validator = RequestValidator([ZONES])
    unmasked = project_pb2.UpdateProjectRequest(id=VALID_ID, name="Acme", timezone="Mars/Base")

    assert (
        validator.violations(
            project_pb2.UpdateProjectRequest(
                id=VALID_ID, name="Acme", timezone="Mars/Base", update_mask=FieldMask(paths=["name"])
            )
        )
        == []
    )
    unmasked.update_mask.paths.append("timezone")
    assert _fields(validator.violations(unmasked)) == [("timezone", "timezone.iana")]


def test_a_domain_rule_applies_only_to_the_requests_it_names() -> None:
    request = employee_pb2.CreateEmployeeRequest()

    assert "timezone.iana" not in [v.reason for v in RequestValidator([ZONES]).violations(request)]


def test_a_nul_character_anywhere_is_an_invalid_argument_naming_the_field(validator: RequestValidator) -> None:
    request = employee_pb2.QueryEmployeesRequest(project_id=VALID_ID)
    request.query.keyword = "ann\x00"
    request.query.filters["department"].values.extend(["R&D", "Ops\x00"])
    request.query.filters["ro\x00le"].values.append("x")

    # The map key breaks the key pattern as well: it is reported once, by that rule.
    assert _fields(validator.violations(request)) == [
        ('query.filters["ro\x00le"] (key)', "string.pattern"),
        ("query.keyword", "string.no_nul"),
        ('query.filters["department"].values[1]', "string.no_nul"),
    ]


def test_a_nul_character_in_a_field_that_breaks_a_rule_too_is_reported_once(validator: RequestValidator) -> None:
    request = employee_pb2.CreateEmployeeRequest(
        project_id=VALID_ID,
        name="Ann\x00",
        email="ann@example.com",
        role="Engineer",
        department="R&D\x00",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
    )

    assert _fields(validator.violations(request)) == [("name", "string.pattern"), ("department", "string.no_nul")]


def test_a_nul_character_outside_the_update_mask_is_ignored_like_any_unmasked_field(
    validator: RequestValidator,
) -> None:
    request = project_pb2.UpdateProjectRequest(
        id=VALID_ID, name="Kept", description="x\x00", update_mask=FieldMask(paths=["name"])
    )
    assert validator.violations(request) == []

    request.update_mask.paths.append("description")
    assert _fields(validator.violations(request)) == [("description", "string.no_nul")]
