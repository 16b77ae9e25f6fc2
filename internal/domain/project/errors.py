"""Errors of the project domain. "Project not found" is the platform's (internal.tenancy)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class ProjectNameTaken(AppError):
    reason = "PROJECT_NAME_TAKEN"
    situation = "duplicate project name"
    code = Code.ALREADY_EXISTS
    metadata_keys = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(f"a project named {name!r} already exists", metadata={"name": name})
