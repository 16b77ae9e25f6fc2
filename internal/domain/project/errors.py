"""Errors of the project domain."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class ProjectNotFound(AppError):
    reason = "PROJECT_NOT_FOUND"
    code = Code.NOT_FOUND

    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id!r} not found", metadata={"project_id": project_id})


class ProjectNameTaken(AppError):
    reason = "PROJECT_NAME_TAKEN"
    code = Code.ALREADY_EXISTS

    def __init__(self, name: str) -> None:
        super().__init__(f"a project named {name!r} already exists", metadata={"name": name})
