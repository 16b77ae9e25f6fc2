"""ProjectService on the wire: each RPC bound to its ProjectService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import project_connect
from internal.auth.handlers import AsCaller, Forward, ServiceHandler
from internal.domain.project.service import ProjectService


class ProjectHandler(ServiceHandler[ProjectService], project_connect.ProjectService):
    create_project = AsCaller(ProjectService.create_project)
    get_project = Forward(ProjectService.get_project)
    update_project = Forward(ProjectService.update_project)
    delete_project = Forward(ProjectService.delete_project)
    query_projects = Forward(ProjectService.query_projects)
