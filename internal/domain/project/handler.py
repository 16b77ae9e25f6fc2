"""ProjectService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import project_connect, project_pb2
from internal.auth.principal import current_caller
from internal.domain.project.service import ProjectService


class ProjectHandler(project_connect.ProjectService):
    """altalune.v1.ProjectService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: ProjectService) -> None:
        self._service = service

    async def create_project(
        self, request: project_pb2.CreateProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.CreateProjectResponse:
        return await self._service.create_project(request, current_caller())

    async def get_project(
        self, request: project_pb2.GetProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.GetProjectResponse:
        return await self._service.get_project(request)

    async def update_project(
        self, request: project_pb2.UpdateProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.UpdateProjectResponse:
        return await self._service.update_project(request)

    async def delete_project(
        self, request: project_pb2.DeleteProjectRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.DeleteProjectResponse:
        return await self._service.delete_project(request)

    async def query_projects(
        self, request: project_pb2.QueryProjectsRequest, ctx: RequestContext[Any, Any]
    ) -> project_pb2.QueryProjectsResponse:
        return await self._service.query_projects(request)
