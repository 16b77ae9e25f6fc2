"""UserService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import user_connect, user_pb2
from internal.auth.principal import current_caller
from internal.domain.user.service import UserService


class UserHandler(user_connect.UserService):
    """altalune.v1.UserService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: UserService) -> None:
        self._service = service

    async def create_user(
        self, request: user_pb2.CreateUserRequest, ctx: RequestContext[Any, Any]
    ) -> user_pb2.CreateUserResponse:
        return await self._service.create_user(request)

    async def get_user(
        self, request: user_pb2.GetUserRequest, ctx: RequestContext[Any, Any]
    ) -> user_pb2.GetUserResponse:
        return await self._service.get_user(request)

    async def update_user(
        self, request: user_pb2.UpdateUserRequest, ctx: RequestContext[Any, Any]
    ) -> user_pb2.UpdateUserResponse:
        return await self._service.update_user(request)

    async def query_users(
        self, request: user_pb2.QueryUsersRequest, ctx: RequestContext[Any, Any]
    ) -> user_pb2.QueryUsersResponse:
        return await self._service.query_users(request)

    async def activate_user(
        self, request: user_pb2.ActivateUserRequest, ctx: RequestContext[Any, Any]
    ) -> user_pb2.ActivateUserResponse:
        return await self._service.activate_user(request)

    async def deactivate_user(
        self, request: user_pb2.DeactivateUserRequest, ctx: RequestContext[Any, Any]
    ) -> user_pb2.DeactivateUserResponse:
        return await self._service.deactivate_user(request, current_caller())
