"""Errors of the project domain. "Project not found" is the platform's (internal.tenancy)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import DomainError


class ProjectNameTaken(DomainError):
    reason = "PROJECT_NAME_TAKEN"
    situation = "duplicate project name"
    code = Code.ALREADY_EXISTS
    template = "a project named {name!r} already exists"

    name: str
