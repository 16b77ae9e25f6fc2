"""IamService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import iam_connect, iam_pb2
from internal.auth.principal import current_caller
from internal.domain.iam.service import IamService


class IamHandler(iam_connect.IamService):
    """altalune.v1.IamService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: IamService) -> None:
        self._service = service

    async def assign_user_roles(
        self, request: iam_pb2.AssignUserRolesRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.AssignUserRolesResponse:
        return await self._service.assign_user_roles(request)

    async def remove_user_roles(
        self, request: iam_pb2.RemoveUserRolesRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.RemoveUserRolesResponse:
        return await self._service.remove_user_roles(request)

    async def list_user_roles(
        self, request: iam_pb2.ListUserRolesRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.ListUserRolesResponse:
        return await self._service.list_user_roles(request)

    async def assign_role_permissions(
        self, request: iam_pb2.AssignRolePermissionsRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.AssignRolePermissionsResponse:
        return await self._service.assign_role_permissions(request)

    async def remove_role_permissions(
        self, request: iam_pb2.RemoveRolePermissionsRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.RemoveRolePermissionsResponse:
        return await self._service.remove_role_permissions(request)

    async def list_role_permissions(
        self, request: iam_pb2.ListRolePermissionsRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.ListRolePermissionsResponse:
        return await self._service.list_role_permissions(request)

    async def add_project_members(
        self, request: iam_pb2.AddProjectMembersRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.AddProjectMembersResponse:
        return await self._service.add_project_members(request, current_caller())

    async def update_project_member(
        self, request: iam_pb2.UpdateProjectMemberRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.UpdateProjectMemberResponse:
        return await self._service.update_project_member(request, current_caller())

    async def remove_project_members(
        self, request: iam_pb2.RemoveProjectMembersRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.RemoveProjectMembersResponse:
        return await self._service.remove_project_members(request, current_caller())

    async def list_project_members(
        self, request: iam_pb2.ListProjectMembersRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.ListProjectMembersResponse:
        return await self._service.list_project_members(request, current_caller())

    async def list_user_projects(
        self, request: iam_pb2.ListUserProjectsRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.ListUserProjectsResponse:
        return await self._service.list_user_projects(request)

    async def list_my_projects(
        self, request: iam_pb2.ListMyProjectsRequest, ctx: RequestContext[Any, Any]
    ) -> iam_pb2.ListMyProjectsResponse:
        return await self._service.list_my_projects(request, current_caller())
