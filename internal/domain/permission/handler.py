"""PermissionService on the wire: each RPC bound to its PermissionService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import permission_connect
from internal.auth.handlers import Forward, ServiceHandler
from internal.domain.permission.service import PermissionService


class PermissionHandler(ServiceHandler[PermissionService], permission_connect.PermissionService):
    get_permission = Forward(PermissionService.get_permission)
    query_permissions = Forward(PermissionService.query_permissions)
