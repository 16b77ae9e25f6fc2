"""Errors of the permission domain; IAM raises its PermissionNotFound too (one class per reason)."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class PermissionNotFound(AppError):
    """Unknown permission(s): every id a call named that does not exist, comma-joined (one id too)."""

    reason = "PERMISSION_NOT_FOUND"
    situation = "unknown permission(s) (every unknown id of the call)"
    code = Code.NOT_FOUND
    metadata_keys = ("permission_ids",)

    def __init__(self, *permission_ids: str) -> None:
        if not permission_ids:
            raise TypeError("PermissionNotFound needs at least one id")
        joined = ",".join(permission_ids)
        message = (
            f"permission {permission_ids[0]!r} not found"
            if len(permission_ids) == 1
            else f"permissions not found: {joined}"
        )
        super().__init__(message, metadata={"permission_ids": joined})
