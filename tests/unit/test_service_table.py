"""The service table (internal.container.SERVICES) is the one list of services: every handler it
builds implements its generated protocol in full, and the routes cover exactly the contract."""

from __future__ import annotations

import importlib
from typing import Any, cast

import pytest
from connectrpc.request import RequestContext

from altalune.v1 import permission_connect, permission_pb2
from internal.container import SERVICES, Shared, contract
from internal.rpc.endpoints import ServiceBinding, build_routes


def _handlers() -> list[tuple[Any, object]]:
    # The builders only store their dependencies: nothing is called on them here.
    shared = Shared(db=cast(Any, None), hasher=cast(Any, None), projects=cast(Any, None), writes={}, rpcs=())
    return [(registration.descriptor, registration.build(shared)) for registration in SERVICES]


def test_each_service_module_holds_exactly_one_service_and_the_table_has_no_repeats() -> None:
    names = [service.full_name for service in contract()]
    assert len(names) == len(set(names)) == len(SERVICES)
    assert all(name.startswith("altalune.v1.") for name in names)


def test_every_handler_subclasses_the_generated_protocol_of_its_service() -> None:
    for descriptor, handler in _handlers():
        connect = importlib.import_module(descriptor.file.name.removesuffix(".proto").replace("/", ".") + "_connect")
        assert getattr(connect, descriptor.name) in type(handler).__mro__, type(handler).__name__


def test_the_routes_cover_every_rpc_of_the_contract_and_nothing_else() -> None:
    routes = build_routes([ServiceBinding(d, h) for d, h in _handlers()], [])
    assert set(routes) == {f"/{s.full_name}/{m.name}" for s in contract() for m in s.methods}


class _Partial(permission_connect.PermissionService):
    """Inherits the generated placeholder for query_permissions (it would answer UNIMPLEMENTED)."""

    async def get_permission(
        self, request: permission_pb2.GetPermissionRequest, ctx: RequestContext[Any, Any]
    ) -> permission_pb2.GetPermissionResponse:
        return permission_pb2.GetPermissionResponse()


class _Unrelated:
    async def get_permission(self, request: Any, ctx: Any) -> Any:
        return None


@pytest.mark.parametrize("handler", [_Partial(), _Unrelated()], ids=["protocol-placeholder", "missing"])
def test_a_handler_without_its_own_method_for_an_rpc_refuses_to_start(handler: object) -> None:
    service = permission_pb2.DESCRIPTOR.services_by_name["PermissionService"]
    with pytest.raises(TypeError, match=r"lacks query_permissions\(\) for altalune\.v1\.PermissionService"):
        build_routes([ServiceBinding(service, handler)], [])
