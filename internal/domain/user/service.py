"""User business rules. Proto in, proto out; owns the transactions; knows no transport."""

from __future__ import annotations

from altalune.v1 import user_pb2
from internal.auth.principal import Caller
from internal.domain.user.errors import CannotDeactivateSelf, UserNotFound
from internal.domain.user.model import NewUser, UserChanges, UserRow
from internal.domain.user.repo import QUERY_SPEC, UserRepo
from internal.ids import new_public_id
from internal.postgres.database import Database
from internal.query import params_from_proto


class UserService:
    def __init__(self, db: Database, repo: UserRepo) -> None:
        self._db = db
        self._repo = repo

    async def create_user(self, request: user_pb2.CreateUserRequest) -> user_pb2.CreateUserResponse:
        new = NewUser(
            public_id=new_public_id(),
            email=request.email,
            first_name=request.first_name,
            last_name=request.last_name,
        )
        async with self._db.connection() as conn:
            row = await self._repo.insert(conn, new)
        return user_pb2.CreateUserResponse(user=row.to_proto())

    async def get_user(self, request: user_pb2.GetUserRequest) -> user_pb2.GetUserResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, request.id)
        return user_pb2.GetUserResponse(user=_found(request.id, row))

    async def update_user(self, request: user_pb2.UpdateUserRequest) -> user_pb2.UpdateUserResponse:
        paths = set(request.update_mask.paths)
        changes = UserChanges(
            email=request.email if "email" in paths else None,
            first_name=request.first_name if "first_name" in paths else None,
            last_name=request.last_name if "last_name" in paths else None,
        )
        async with self._db.connection() as conn:
            row = await self._repo.update(conn, request.id, changes, request.etag)
        return user_pb2.UpdateUserResponse(user=_found(request.id, row))

    async def query_users(self, request: user_pb2.QueryUsersRequest) -> user_pb2.QueryUsersResponse:
        params = params_from_proto(request.query, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, params)
        return user_pb2.QueryUsersResponse(data=[row.to_proto() for row in result.rows], meta=result.meta())

    async def activate_user(self, request: user_pb2.ActivateUserRequest) -> user_pb2.ActivateUserResponse:
        """Idempotent: an active user is returned unchanged."""
        async with self._db.connection() as conn:
            row = await self._repo.set_active(conn, request.id, True)
        return user_pb2.ActivateUserResponse(user=_found(request.id, row))

    async def deactivate_user(
        self, request: user_pb2.DeactivateUserRequest, caller: Caller
    ) -> user_pb2.DeactivateUserResponse:
        """Idempotent; refused for the caller's own account, which could lock the last administrator out."""
        if caller.principal.user_public_id == request.id:
            raise CannotDeactivateSelf(request.id)
        async with self._db.connection() as conn:
            row = await self._repo.set_active(conn, request.id, False)
        return user_pb2.DeactivateUserResponse(user=_found(request.id, row))


def _found(user_id: str, row: UserRow | None) -> user_pb2.User:
    if row is None:
        raise UserNotFound(user_id)
    return row.to_proto()
