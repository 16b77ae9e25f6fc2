"""ApiKeyService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import api_key_connect, api_key_pb2
from internal.auth.principal import current_caller, current_project
from internal.domain.api_key.service import ApiKeyService


class ApiKeyHandler(api_key_connect.ApiKeyService):
    """altalune.v1.ApiKeyService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: ApiKeyService) -> None:
        self._service = service

    async def create_api_key(
        self, request: api_key_pb2.CreateApiKeyRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.CreateApiKeyResponse:
        return await self._service.create_api_key(current_project(), request, current_caller())

    async def get_api_key(
        self, request: api_key_pb2.GetApiKeyRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.GetApiKeyResponse:
        return await self._service.get_api_key(current_project(), request)

    async def update_api_key(
        self, request: api_key_pb2.UpdateApiKeyRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.UpdateApiKeyResponse:
        return await self._service.update_api_key(current_project(), request, current_caller())

    async def delete_api_key(
        self, request: api_key_pb2.DeleteApiKeyRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.DeleteApiKeyResponse:
        return await self._service.delete_api_key(current_project(), request)

    async def query_api_keys(
        self, request: api_key_pb2.QueryApiKeysRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.QueryApiKeysResponse:
        return await self._service.query_api_keys(current_project(), request)

    async def activate_api_key(
        self, request: api_key_pb2.ActivateApiKeyRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.ActivateApiKeyResponse:
        return await self._service.activate_api_key(current_project(), request)

    async def deactivate_api_key(
        self, request: api_key_pb2.DeactivateApiKeyRequest, ctx: RequestContext[Any, Any]
    ) -> api_key_pb2.DeactivateApiKeyResponse:
        return await self._service.deactivate_api_key(current_project(), request)
