"""Who is calling (Authenticator) and may they make this call (Authorizer).

Cross-tenant rule, applied everywhere: a caller with no access to a project gets exactly the
answer a caller gets for a project that does not exist (NOT_FOUND, PROJECT_NOT_FOUND), so
project ids cannot be probed. A member who lacks a permission gets PERMISSION_DENIED (they know
the project exists).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from internal.auth.credentials import (
    ApiKeyHasher,
    BadAuthorizationHeader,
    bearer_token,
    looks_like_api_key,
    parse_api_key,
)
from internal.auth.errors import (
    ApiKeyExpired,
    ApiKeyInactive,
    ApiKeyInvalid,
    ApiKeyNotAllowed,
    CredentialsMalformed,
    CredentialsMissing,
    IdentityProviderUnavailable,
    PermissionDenied,
    UserInactive,
    UserUnknown,
)
from internal.auth.oidc import IssuerUnavailable, TokenVerifier, UserMatch
from internal.auth.policy import AccessRule
from internal.auth.principal import Caller, Principal, PrincipalKind
from internal.auth.store import AccessStore, Membership
from internal.errors import AppError
from internal.postgres.database import Database
from internal.tenancy import ProjectNotFound, ProjectRef

# Compared against when a key id is unknown, so both paths cost one HMAC.
_NO_HASH = bytes(32)


@dataclass(frozen=True, slots=True)
class MembershipHint:
    """A user's membership in one project (None: not a member), read while authenticating."""

    project_public_id: str
    membership: Membership | None


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    membership_hint: MembershipHint | None = None


class Authenticator:
    def __init__(self, db: Database, store: AccessStore, verifier: TokenVerifier, hasher: ApiKeyHasher) -> None:
        self._db = db
        self._store = store
        self._verifier = verifier
        self._hasher = hasher

    async def authenticate(self, headers: Mapping[str, str], project_hint: str | None = None) -> Authenticated:
        """Who is calling. `project_hint` (the call's project id, if well-formed) lets a user's
        membership there come back in the same round trip; Authorizer uses it if it still applies."""
        try:
            token = bearer_token(headers)
        except BadAuthorizationHeader as exc:
            raise CredentialsMalformed(str(exc)) from None
        if token is None:
            raise CredentialsMissing("send 'authorization: Bearer <API key or JWT>'")
        if looks_like_api_key(token):
            return Authenticated(await self._api_key(token))
        return await self._user(token, project_hint)

    async def _api_key(self, token: str) -> Principal:
        invalid = ApiKeyInvalid("the API key is not valid")
        parsed = parse_api_key(token)
        if parsed is None:
            raise invalid
        async with self._db.connection() as conn:
            # A key of a deleted project is as invalid as an unknown key.
            row = await self._store.api_key(conn, parsed.project_public_id, parsed.key_public_id)
            if not self._hasher.matches(token, row.secret_hash if row else _NO_HASH) or row is None:
                raise invalid
            if not row.active:
                raise ApiKeyInactive("the API key has been deactivated")
            if row.expired:
                raise ApiKeyExpired("the API key has expired")
            if row.stale_last_used:
                await self._store.touch_api_key(conn, row.project_id, parsed.key_public_id)
        project = ProjectRef(parsed.project_public_id, row.project_id)
        return Principal.api_key(parsed.key_public_id, project, frozenset(row.scopes), row.expires_at)

    async def _user(self, token: str, project_hint: str | None) -> Authenticated:
        try:
            verified = await self._verifier.verify(token)
        except IssuerUnavailable:
            raise IdentityProviderUnavailable() from None
        async with self._db.connection() as conn:
            if verified.match is UserMatch.PUBLIC_ID:
                user = await self._store.user(conn, public_id=verified.subject, project_public_id=project_hint)
            else:
                user = await self._store.user(conn, email=verified.email or "", project_public_id=project_hint)
        if user is None:
            raise UserUnknown("the token is valid but names no user of this service")
        if not user.active:
            raise UserInactive("the user has been deactivated")
        principal = Principal.user(user.id, user.public_id, frozenset(user.global_permissions))
        hint = MembershipHint(project_hint, user.membership()) if project_hint is not None else None
        return Authenticated(principal, hint)


class Authorizer:
    def __init__(self, db: Database, store: AccessStore) -> None:
        self._db = db
        self._store = store

    async def authorize(
        self, principal: Principal, rule: AccessRule, request: Message, hint: MembershipHint | None = None
    ) -> Caller:
        is_key = principal.kind is PrincipalKind.API_KEY
        if rule.authenticated_only or not rule.project_scoped:
            if is_key:
                raise ApiKeyNotAllowed()
            if rule.permission is not None and rule.permission not in principal.permissions:
                raise PermissionDenied(rule.permission)
            return Caller(principal=principal, permissions=principal.permissions)
        assert rule.permission is not None
        assert rule.project_field is not None
        project = str(getattr(request, rule.project_field))
        if is_key:
            key_project = principal.key_project
            if key_project is None or project != key_project.public_id:
                raise self._no_such_project(project)
            if rule.permission not in principal.permissions:
                raise PermissionDenied(rule.permission)
            return Caller(principal=principal, permissions=principal.permissions, project=key_project)
        assert principal.user_id is not None
        if hint is not None and hint.project_public_id == project:
            membership = hint.membership
        else:
            async with self._db.connection() as conn:
                membership = await self._store.membership(conn, project, principal.user_id)
        if membership is None:
            raise self._no_such_project(project)
        permissions = frozenset(membership.permissions)
        if rule.permission not in permissions:
            raise PermissionDenied(rule.permission)
        return Caller(
            principal=principal,
            permissions=permissions,
            project=ProjectRef(project, membership.project_id),
            project_role=membership.role,
        )

    @staticmethod
    def _no_such_project(project_public_id: str) -> AppError:
        """Byte for byte what a missing project answers: existence must not leak."""
        return ProjectNotFound(project_public_id)
