"""Permission catalog reads. Proto in, proto out; knows no transport."""

from __future__ import annotations

from altalune.v1 import permission_pb2
from internal.domain.permission.errors import PermissionNotFound
from internal.domain.permission.repo import QUERY_SPEC, PermissionRepo
from internal.postgres.database import Database
from internal.query import params_from_proto


class PermissionService:
    def __init__(self, db: Database, repo: PermissionRepo) -> None:
        self._db = db
        self._repo = repo

    async def get_permission(
        self, request: permission_pb2.GetPermissionRequest
    ) -> permission_pb2.GetPermissionResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, request.id)
        if row is None:
            raise PermissionNotFound(request.id)
        return permission_pb2.GetPermissionResponse(permission=row.to_proto())

    async def query_permissions(
        self, request: permission_pb2.QueryPermissionsRequest
    ) -> permission_pb2.QueryPermissionsResponse:
        params = params_from_proto(request.query, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, params)
        return permission_pb2.QueryPermissionsResponse(data=[row.to_proto() for row in result.rows], meta=result.meta())
