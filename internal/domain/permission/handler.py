"""PermissionService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import permission_connect, permission_pb2
from internal.domain.permission.service import PermissionService


class PermissionHandler(permission_connect.PermissionService):
    """altalune.v1.PermissionService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: PermissionService) -> None:
        self._service = service

    async def get_permission(
        self, request: permission_pb2.GetPermissionRequest, ctx: RequestContext[Any, Any]
    ) -> permission_pb2.GetPermissionResponse:
        return await self._service.get_permission(request)

    async def query_permissions(
        self, request: permission_pb2.QueryPermissionsRequest, ctx: RequestContext[Any, Any]
    ) -> permission_pb2.QueryPermissionsResponse:
        return await self._service.query_permissions(request)
