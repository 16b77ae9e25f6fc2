"""ApiKeyService on the wire: each RPC bound to its ApiKeyService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import api_key_connect
from internal.auth.handlers import InProject, InProjectAsCaller, ServiceHandler
from internal.domain.api_key.service import ApiKeyService


class ApiKeyHandler(ServiceHandler[ApiKeyService], api_key_connect.ApiKeyService):
    create_api_key = InProjectAsCaller(ApiKeyService.create_api_key)
    get_api_key = InProject(ApiKeyService.get_api_key)
    update_api_key = InProjectAsCaller(ApiKeyService.update_api_key)
    delete_api_key = InProject(ApiKeyService.delete_api_key)
    query_api_keys = InProject(ApiKeyService.query_api_keys)
    activate_api_key = InProject(ApiKeyService.activate_api_key)
    deactivate_api_key = InProject(ApiKeyService.deactivate_api_key)
