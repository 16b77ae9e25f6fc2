"""RoleService on the wire: each RPC bound to its RoleService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import role_connect
from internal.auth.handlers import Forward, ServiceHandler
from internal.domain.role.service import RoleService


class RoleHandler(ServiceHandler[RoleService], role_connect.RoleService):
    create_role = Forward(RoleService.create_role)
    get_role = Forward(RoleService.get_role)
    update_role = Forward(RoleService.update_role)
    delete_role = Forward(RoleService.delete_role)
    query_roles = Forward(RoleService.query_roles)
