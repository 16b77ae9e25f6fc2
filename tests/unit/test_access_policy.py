"""Deny by default: access rules come from the contract, and a gap stops start-up."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from connectrpc.request import RequestContext
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from altalune.v1 import access_pb2
from internal.auth.policy import (
    ACCESS_OPTION,
    PUBLIC_GRPC_SERVICES,
    AccessRule,
    PolicyError,
    access_rules,
    check_served_services,
    permission_catalog,
)
from internal.container import contract
from internal.rpc.endpoints import ServiceBinding, build_routes

CONTRACT = contract()
_files = itertools.count(1)


def _service(*methods: tuple[str, access_pb2.Access | None], request_fields: tuple[str, ...] = ()) -> ServiceDescriptor:
    """A throw-away service in the default pool, with or without access options per method."""
    n = next(_files)
    file = descriptor_pb2.FileDescriptorProto(
        name=f"policy_test_{n}.proto",
        package=f"policytest{n}",
        syntax="proto3",
        dependency=["google/protobuf/empty.proto", "altalune/v1/access.proto"],
    )
    request = file.message_type.add(name="Request")
    for number, field_name in enumerate(request_fields, start=1):
        request.field.add(
            name=field_name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    service = file.service.add(name="Bare")
    for name, access in methods:
        method = service.method.add(
            name=name, input_type=f".policytest{n}.Request", output_type=".google.protobuf.Empty"
        )
        if access is not None:
            method.options.Extensions[ACCESS_OPTION].CopyFrom(access)
    pool = descriptor_pool.Default()
    pool.Add(file)
    return pool.FindServiceByName(f"policytest{n}.Bare")


class Handler:
    async def do(self, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        return empty_pb2.Empty()

    async def other(self, request: Message, ctx: RequestContext[Any, Any]) -> Message:
        return empty_pb2.Empty()


def test_every_rpc_of_the_contract_declares_its_access() -> None:
    rules = access_rules(CONTRACT)
    expected = {f"/{s.full_name}/{m.name}" for s in CONTRACT for m in s.methods}
    assert set(rules) == expected
    assert len(rules) >= 40


def test_an_rpc_without_an_access_option_refuses_to_start() -> None:
    service = _service(("Do", access_pb2.Access(permission="thing:read")), ("Other", None))
    with pytest.raises(PolicyError, match=r"policytest\d+\.Bare/Other has no \(altalune\.v1\.access\) option"):
        access_rules([service])


def test_an_rpc_with_an_access_option_gets_its_route() -> None:
    service = _service(("Do", access_pb2.Access(permission="thing:read")))
    routes = build_routes([ServiceBinding(service, Handler())], [])
    assert list(routes) == [f"/{service.full_name}/Do"]
    assert access_rules([service])[f"/{service.full_name}/Do"] == AccessRule("thing:read", None)


@pytest.mark.parametrize(
    ("access", "fields", "message"),
    [
        (access_pb2.Access(), (), "is not a 'resource:action' name"),
        (access_pb2.Access(permission="Thing:Read"), (), "is not a 'resource:action' name"),
        (access_pb2.Access(permission="thing:read", project_field="project_id"), (), "is not a string field"),
        (access_pb2.Access(authenticated=True, permission="thing:read"), (), "excludes"),
    ],
)
def test_malformed_access_options_refuse_to_start(
    access: access_pb2.Access, fields: tuple[str, ...], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        access_rules([_service(("Do", access), request_fields=fields)])


def test_a_permission_used_both_globally_and_inside_projects_refuses_to_start() -> None:
    service = _service(
        ("Do", access_pb2.Access(permission="thing:read")),
        ("Other", access_pb2.Access(permission="thing:read", project_field="project_id")),
        request_fields=("project_id",),
    )
    with pytest.raises(PolicyError, match="both globally and inside projects"):
        access_rules([service])


def test_only_health_and_reflection_may_be_served_without_rules() -> None:
    ruled = ["altalune.v1.ProjectService"]
    check_served_services([*ruled, *PUBLIC_GRPC_SERVICES], ruled)
    with pytest.raises(PolicyError, match=r"grpc\.channelz\.v1\.Channelz"):
        check_served_services([*ruled, "grpc.channelz.v1.Channelz"], ruled)


def test_project_scoped_rules_name_the_request_field_carrying_the_project() -> None:
    rules = access_rules(CONTRACT)
    assert rules["/altalune.v1.ProjectService/GetProject"] == AccessRule("project:read", "id")
    assert rules["/altalune.v1.EmployeeService/CreateEmployee"] == AccessRule("employee:write", "project_id")
    assert rules["/altalune.v1.ProjectService/CreateProject"] == AccessRule("project:create", None)
    assert rules["/altalune.v1.IamService/ListMyProjects"].authenticated_only


def test_the_catalog_gives_each_permission_one_scope() -> None:
    catalog = permission_catalog(access_rules(CONTRACT).values())
    assert catalog["project:create"] == "global"
    assert catalog["employee:write"] == "project"
    # Each permission's one scope is the scope of every RPC naming it.
    for rule in access_rules(CONTRACT).values():
        if rule.permission is not None:
            assert catalog[rule.permission] == ("project" if rule.project_scoped else "global"), rule
