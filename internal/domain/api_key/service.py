"""API key business rules. Proto in, proto out; owns the transactions; knows no transport.

The whole key leaves the server once, in the CreateApiKey response; only its keyed hash is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from altalune.v1 import api_key_pb2
from internal.auth.credentials import ApiKeyHasher, mint_api_key
from internal.auth.principal import Caller, PrincipalKind
from internal.domain.api_key.errors import ApiKeyNotFound, ApiKeyOutlivesCaller, ApiKeyScopeExceedsCaller
from internal.domain.api_key.model import ApiKeyChanges, ApiKeyRow, NewApiKey
from internal.domain.api_key.repo import QUERY_SPEC, ApiKeyRepo
from internal.errors import FieldViolation, InvalidArgument
from internal.ids import new_public_id
from internal.postgres.database import Database
from internal.query import params_from_proto
from internal.tenancy import ProjectRef

SCOPE_RULE = "scopes.project_permission"


class ApiKeyService:
    """Every method acts in `project`, the live project authorization resolved for the call."""

    def __init__(self, db: Database, repo: ApiKeyRepo, hasher: ApiKeyHasher) -> None:
        self._db = db
        self._repo = repo
        self._hasher = hasher

    async def _check_scopes(
        self, conn: AsyncConnection[Any], project_public_id: str, scopes: Sequence[str], caller: Caller
    ) -> None:
        """Scopes are project permissions of the catalog (one query) that the caller holds itself."""
        known = await self._repo.project_permissions(conn, scopes)
        unknown = [
            FieldViolation(
                field=f"scopes[{index}]",
                description=f"{scope!r} is not a project-scope permission",
                reason=SCOPE_RULE,
            )
            for index, scope in enumerate(scopes)
            if scope not in known
        ]
        if unknown:
            raise InvalidArgument(unknown)
        excess = [scope for scope in scopes if scope not in caller.permissions]
        if excess:
            raise ApiKeyScopeExceedsCaller(project_public_id, excess)

    @staticmethod
    def _check_expiry(project: ProjectRef, expires_at: datetime, caller: Caller) -> None:
        """A key set by an API key ends no later than that key (users are not limited)."""
        limit = caller.principal.key_expires_at
        if caller.principal.kind is PrincipalKind.API_KEY and limit is not None and expires_at > limit:
            raise ApiKeyOutlivesCaller(project.public_id, limit)

    async def create_api_key(
        self, project: ProjectRef, request: api_key_pb2.CreateApiKeyRequest, caller: Caller
    ) -> api_key_pb2.CreateApiKeyResponse:
        scopes = tuple(request.scopes)
        token = mint_api_key(project.public_id, new_public_id())
        new = NewApiKey(
            public_id=token.key_public_id,
            name=request.name,
            secret_hash=self._hasher.hash(token.token),
            secret_hint=token.hint,
            scopes=scopes,
            expires_at=request.expires_at.ToDatetime(tzinfo=UTC),
        )
        self._check_expiry(project, new.expires_at, caller)
        # ApiKeyNameTaken, or ProjectNotFound if the project was deleted after authorization found it.
        async with self._db.connection() as conn:
            await self._check_scopes(conn, project.public_id, scopes, caller)
            row = await self._repo.insert(conn, project, new)
        return api_key_pb2.CreateApiKeyResponse(api_key=row.to_proto(project.public_id), secret=token.token)

    async def get_api_key(
        self, project: ProjectRef, request: api_key_pb2.GetApiKeyRequest
    ) -> api_key_pb2.GetApiKeyResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, project.id, request.id)
        return api_key_pb2.GetApiKeyResponse(api_key=self._found(project.public_id, request.id, row))

    async def update_api_key(
        self, project: ProjectRef, request: api_key_pb2.UpdateApiKeyRequest, caller: Caller
    ) -> api_key_pb2.UpdateApiKeyResponse:
        paths = set(request.update_mask.paths)
        changes = ApiKeyChanges(
            name=request.name if "name" in paths else None,
            scopes=tuple(request.scopes) if "scopes" in paths else None,
            expires_at=request.expires_at.ToDatetime(tzinfo=UTC) if "expires_at" in paths else None,
        )
        if changes.expires_at is not None:
            self._check_expiry(project, changes.expires_at, caller)
        async with self._db.connection() as conn:
            if changes.scopes is not None:
                await self._check_scopes(conn, project.public_id, changes.scopes, caller)
            row = await self._repo.update(conn, project, request.id, changes, request.etag)
        return api_key_pb2.UpdateApiKeyResponse(api_key=self._found(project.public_id, request.id, row))

    async def delete_api_key(
        self, project: ProjectRef, request: api_key_pb2.DeleteApiKeyRequest
    ) -> api_key_pb2.DeleteApiKeyResponse:
        async with self._db.connection() as conn:
            deleted = await self._repo.delete(conn, project.id, request.id, request.etag)
        if not deleted:
            raise ApiKeyNotFound(project.public_id, request.id)
        return api_key_pb2.DeleteApiKeyResponse()

    async def query_api_keys(
        self, project: ProjectRef, request: api_key_pb2.QueryApiKeysRequest
    ) -> api_key_pb2.QueryApiKeysResponse:
        params = params_from_proto(request.query, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, project.id, params)
        return api_key_pb2.QueryApiKeysResponse(
            data=[row.to_proto(project.public_id) for row in result.rows], meta=result.meta()
        )

    async def activate_api_key(
        self, project: ProjectRef, request: api_key_pb2.ActivateApiKeyRequest
    ) -> api_key_pb2.ActivateApiKeyResponse:
        """The expiry is kept: activating an expired key does not revive it."""
        row = await self._set_active(project, request.id, active=True)
        return api_key_pb2.ActivateApiKeyResponse(api_key=self._found(project.public_id, request.id, row))

    async def deactivate_api_key(
        self, project: ProjectRef, request: api_key_pb2.DeactivateApiKeyRequest
    ) -> api_key_pb2.DeactivateApiKeyResponse:
        """The expiry is kept, so reactivating later restores exactly the key that was switched off."""
        row = await self._set_active(project, request.id, active=False)
        return api_key_pb2.DeactivateApiKeyResponse(api_key=self._found(project.public_id, request.id, row))

    async def _set_active(self, project: ProjectRef, key_id: str, *, active: bool) -> ApiKeyRow | None:
        async with self._db.connection() as conn:
            return await self._repo.set_active(conn, project.id, key_id, active)

    @staticmethod
    def _found(project_public_id: str, key_id: str, row: ApiKeyRow | None) -> api_key_pb2.ApiKey:
        if row is None:
            raise ApiKeyNotFound(project_public_id, key_id)
        return row.to_proto(project_public_id)
