"""Calls scoped to one project (tenant): the reference authorization hands to every project-scoped
call, the one "project not found" error, and the one SQL test of a live project.

Authorization resolves the call's project once (in the same statement as the credential); services
take the ProjectRef it produced and never resolve a project again.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectrpc.code import Code

from internal.errors import DomainError


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """A live project as authorization found it: the id clients use and the one partitions use."""

    public_id: str
    id: int


class ProjectNotFound(DomainError):
    """A missing project, a deleted one, and one the caller may not see all answer exactly this."""

    reason = "PROJECT_NOT_FOUND"
    code = Code.NOT_FOUND
    template = "project {project_id!r} not found"

    project_id: str


def live_project(project_id_sql: str) -> str:
    """SQL true while the project whose internal id `project_id_sql` yields exists and is not deleted.

    Writes into a project's tables carry it in the same statement, so a write racing DeleteProject
    either lands before the delete (and is purged with the project) or does nothing. Reads do not:
    authorization checked the project in the same call.
    """
    return f"EXISTS (SELECT 1 FROM projects live WHERE live.id = {project_id_sql} AND live.deleted_at IS NULL)"


# The usual form: the statement binds the internal id as %(project_id)s.
LIVE_PROJECT = live_project("%(project_id)s")
