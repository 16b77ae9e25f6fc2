"""Role business rules. Proto in, proto out; owns the transactions; knows no transport."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from altalune.v1 import role_pb2
from internal.domain.role.errors import RoleBuiltin, RoleNotFound
from internal.domain.role.model import NewRole, RoleChanges
from internal.domain.role.repo import QUERY_SPEC, RoleRepo
from internal.errors import AppError
from internal.ids import new_public_id
from internal.postgres.database import Database
from internal.query import params_from_proto


class RoleService:
    def __init__(self, db: Database, repo: RoleRepo) -> None:
        self._db = db
        self._repo = repo

    async def create_role(self, request: role_pb2.CreateRoleRequest) -> role_pb2.CreateRoleResponse:
        new = NewRole(public_id=new_public_id(), name=request.name, description=request.description)
        async with self._db.connection() as conn:
            row = await self._repo.insert(conn, new)
        return role_pb2.CreateRoleResponse(role=row.to_proto())

    async def get_role(self, request: role_pb2.GetRoleRequest) -> role_pb2.GetRoleResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, request.id)
        if row is None:
            raise RoleNotFound(request.id)
        return role_pb2.GetRoleResponse(role=row.to_proto())

    async def update_role(self, request: role_pb2.UpdateRoleRequest) -> role_pb2.UpdateRoleResponse:
        """A built-in role's description may change; its name may not (memberships refer to it)."""
        paths = set(request.update_mask.paths)
        changes = RoleChanges(
            name=request.name if "name" in paths else None,
            description=request.description if "description" in paths else None,
        )
        async with self._db.connection() as conn:
            row = await self._repo.update(conn, request.id, changes, request.etag)
            if row is None:
                raise await self._refusal(conn, request.id)
        return role_pb2.UpdateRoleResponse(role=row.to_proto())

    async def delete_role(self, request: role_pb2.DeleteRoleRequest) -> role_pb2.DeleteRoleResponse:
        """Refused while a user holds the role; its grants are deleted with it."""
        async with self._db.connection() as conn:
            if not await self._repo.delete(conn, request.id, request.etag):
                raise await self._refusal(conn, request.id)
        return role_pb2.DeleteRoleResponse()

    async def query_roles(self, request: role_pb2.QueryRolesRequest) -> role_pb2.QueryRolesResponse:
        params = params_from_proto(request.query, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, params)
        return role_pb2.QueryRolesResponse(data=[row.to_proto() for row in result.rows], meta=result.meta())

    async def _refusal(self, conn: AsyncConnection[Any], role_id: str) -> AppError:
        """Why a guarded write touched no row: the role is missing, or it is built-in."""
        row = await self._repo.get(conn, role_id)
        if row is None:
            return RoleNotFound(role_id)
        return RoleBuiltin(role_id, row.name)
