"""The event registry is derived from the contract, and refuses a contract that lets a write slip
past the event log."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import employee_pb2, event_pb2
from internal.auth.policy import AccessRule, access_rules
from internal.container import contract
from internal.events.registry import (
    CALL_REFUSED,
    EVENT_OPTION,
    EventDeclarationError,
    EventOutcome,
    event_types,
    write_rpcs,
)

WRITES = write_rpcs(contract(), access_rules(contract()))


def test_every_rpc_with_side_effects_is_a_declared_write_and_no_read_is() -> None:
    for service in contract():
        for method in service.methods:
            reads = method.GetOptions().idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
            assert (f"/{service.full_name}/{method.name}" in WRITES) is not reads, method.full_name
    assert len(WRITES) == 25


def test_each_write_has_four_event_types_and_refusals_have_one() -> None:
    types = event_types(WRITES)

    assert len(types) == 4 * len(WRITES) + 1
    assert CALL_REFUSED in types
    assert {
        "CreateEmployeeAttempted",
        "CreateEmployeeSucceeded",
        "CreateEmployeeFailed",
        "CreateEmployeeReplayed",
    } <= types


def test_project_data_goes_to_its_project_stream_and_the_project_itself_to_the_global_one() -> None:
    stream = {w.name: w.project_stream for w in WRITES.values()}

    in_projects = {"CreateEmployee", "AddProjectMembers", "UpdateApiKey"}
    global_ = {"CreateProject", "UpdateProject", "DeleteProject", "CreateUser", "AssignUserRoles"}
    assert {name for name in in_projects | global_ if stream[name]} == in_projects


def test_a_create_names_its_resource_from_the_response_and_a_change_from_the_request() -> None:
    create = WRITES["/altalune.v1.EmployeeService/CreateEmployee"]
    update = WRITES["/altalune.v1.EmployeeService/UpdateEmployee"]
    response = employee_pb2.CreateEmployeeResponse(employee=employee_pb2.Employee(id="abc", etag="1"))

    assert (create.resource, create.resource_id(employee_pb2.CreateEmployeeRequest(), response)) == ("employee", "abc")
    assert create.new_etag(response) == "1"
    assert update.resource_id(employee_pb2.UpdateEmployeeRequest(id="xyz"), None) == "xyz"


def test_changed_fields_are_the_update_mask_or_the_fields_a_create_sets_never_ids_or_keys() -> None:
    create = WRITES["/altalune.v1.EmployeeService/CreateEmployee"]
    update = WRITES["/altalune.v1.EmployeeService/UpdateEmployee"]

    hire = employee_pb2.CreateEmployeeRequest(project_id="p", name="Ann", email="a@b.c", request_id="r")
    change = employee_pb2.UpdateEmployeeRequest(
        project_id="p", id="i", name="Ann", email="a@b.c", etag="3", update_mask=FieldMask(paths=["name"])
    )

    assert create.changed_fields(hire) == ["email", "name"]
    assert update.changed_fields(change) == ["name"]


def test_the_fingerprint_follows_the_request_not_its_encoding() -> None:
    create = WRITES["/altalune.v1.EmployeeService/CreateEmployee"]
    hire = employee_pb2.CreateEmployeeRequest(project_id="p", name="Ann", email="a@b.c", request_id="r")
    via_json = json_format.Parse(json_format.MessageToJson(hire), employee_pb2.CreateEmployeeRequest())
    other = employee_pb2.CreateEmployeeRequest(project_id="p", name="Bob", email="a@b.c", request_id="r")

    assert create.fingerprint(via_json) == create.fingerprint(hire)
    assert create.fingerprint(other) != create.fingerprint(hire)


def _service(*, side_effects: bool, event: event_pb2.EventOption | None, request_id: bool) -> ServiceDescriptor:
    """A one-RPC contract built on the fly, to break one declaration at a time."""
    pool = descriptor_pool.DescriptorPool()
    proto = descriptor_pb2.FileDescriptorProto(name="probe.proto", package="probe", syntax="proto3")
    string, optional = (
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    fields = [descriptor_pb2.FieldDescriptorProto(name="id", number=1, type=string, label=optional)]
    if request_id:
        fields.append(descriptor_pb2.FieldDescriptorProto(name="request_id", number=90, type=string, label=optional))
    proto.message_type.add(name="Req", field=fields)
    proto.message_type.add(name="Res")
    method = proto.service.add(name="Probe").method.add(name="Do", input_type=".probe.Req", output_type=".probe.Res")
    if not side_effects:
        method.options.idempotency_level = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    if event is not None:
        method.options.Extensions[EVENT_OPTION].CopyFrom(event)
    pool.Add(proto)
    return pool.FindServiceByName("probe.Probe")


RULES: dict[str, Any] = {"/probe.Probe/Do": AccessRule(permission="probe:do", project_field=None)}


@pytest.mark.parametrize(
    ("side_effects", "event", "request_id", "complaint"),
    [
        (True, None, True, "declares no"),
        (False, event_pb2.EventOption(resource="probe", id_field="id"), True, "no side effects"),
        (True, event_pb2.EventOption(resource="probe", id_field="id"), False, "request_id"),
        (True, event_pb2.EventOption(resource="probe", id_field="nope"), True, "id_field"),
        (True, event_pb2.EventOption(id_field="id"), True, "resource"),
    ],
)
def test_a_contract_that_lets_a_write_slip_past_the_log_stops_start_up(
    side_effects: bool, event: event_pb2.EventOption | None, request_id: bool, complaint: str
) -> None:
    service = _service(side_effects=side_effects, event=event, request_id=request_id)

    with pytest.raises(EventDeclarationError, match=complaint):
        write_rpcs([service], RULES)


def test_a_well_declared_probe_is_accepted() -> None:
    service = _service(side_effects=True, event=event_pb2.EventOption(resource="probe", id_field="id"), request_id=True)

    (probe,) = write_rpcs([service], RULES).values()
    assert probe.event_type(EventOutcome.SUCCEEDED) == "DoSucceeded"
