"""RoleService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import role_connect, role_pb2
from internal.domain.role.service import RoleService


class RoleHandler(role_connect.RoleService):
    """altalune.v1.RoleService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: RoleService) -> None:
        self._service = service

    async def create_role(
        self, request: role_pb2.CreateRoleRequest, ctx: RequestContext[Any, Any]
    ) -> role_pb2.CreateRoleResponse:
        return await self._service.create_role(request)

    async def get_role(
        self, request: role_pb2.GetRoleRequest, ctx: RequestContext[Any, Any]
    ) -> role_pb2.GetRoleResponse:
        return await self._service.get_role(request)

    async def update_role(
        self, request: role_pb2.UpdateRoleRequest, ctx: RequestContext[Any, Any]
    ) -> role_pb2.UpdateRoleResponse:
        return await self._service.update_role(request)

    async def delete_role(
        self, request: role_pb2.DeleteRoleRequest, ctx: RequestContext[Any, Any]
    ) -> role_pb2.DeleteRoleResponse:
        return await self._service.delete_role(request)

    async def query_roles(
        self, request: role_pb2.QueryRolesRequest, ctx: RequestContext[Any, Any]
    ) -> role_pb2.QueryRolesResponse:
        return await self._service.query_roles(request)
