"""Errors of the permission domain."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class PermissionNotFound(AppError):
    reason = "PERMISSION_NOT_FOUND"
    code = Code.NOT_FOUND

    def __init__(self, permission_id: str) -> None:
        super().__init__(f"permission {permission_id!r} not found", metadata={"permission_id": permission_id})
