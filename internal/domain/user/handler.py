"""UserService on the wire: each RPC bound to its UserService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import user_connect
from internal.auth.handlers import AsCaller, Forward, ServiceHandler
from internal.domain.user.service import UserService


class UserHandler(ServiceHandler[UserService], user_connect.UserService):
    create_user = Forward(UserService.create_user)
    get_user = Forward(UserService.get_user)
    update_user = Forward(UserService.update_user)
    query_users = Forward(UserService.query_users)
    activate_user = Forward(UserService.activate_user)
    deactivate_user = AsCaller(UserService.deactivate_user)
