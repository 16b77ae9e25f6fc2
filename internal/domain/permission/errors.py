"""Errors of the permission domain; IAM raises its PermissionNotFound too (one class per reason)."""

from __future__ import annotations

from internal.errors import UnknownIds


class PermissionNotFound(UnknownIds):
    reason = "PERMISSION_NOT_FOUND"
    situation = "unknown permission(s) (every unknown id of the call)"
    noun = "permission"
