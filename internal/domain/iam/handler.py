"""IamService on the wire: each RPC bound to its IamService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import iam_connect
from internal.auth.handlers import AsCaller, Forward, ServiceHandler
from internal.domain.iam.service import IamService


class IamHandler(ServiceHandler[IamService], iam_connect.IamService):
    assign_user_roles = Forward(IamService.assign_user_roles)
    remove_user_roles = Forward(IamService.remove_user_roles)
    list_user_roles = Forward(IamService.list_user_roles)
    assign_role_permissions = Forward(IamService.assign_role_permissions)
    remove_role_permissions = Forward(IamService.remove_role_permissions)
    list_role_permissions = Forward(IamService.list_role_permissions)
    add_project_members = AsCaller(IamService.add_project_members)
    update_project_member = AsCaller(IamService.update_project_member)
    remove_project_members = AsCaller(IamService.remove_project_members)
    list_project_members = AsCaller(IamService.list_project_members)
    list_user_projects = Forward(IamService.list_user_projects)
    list_my_projects = AsCaller(IamService.list_my_projects)
