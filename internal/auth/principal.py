"""Who is calling, and what they may do in this call. Set by the auth interceptors per request."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from internal.tenancy import ProjectRef


class PrincipalKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user (signed in with a JWT) or an API key of one project."""

    kind: PrincipalKind
    user_id: int | None = None  # internal id
    user_public_id: str | None = None
    api_key_public_id: str | None = None
    key_project: ProjectRef | None = None  # the key's project, live when the key was checked
    key_expires_at: datetime | None = None  # nothing an API key creates or changes may outlive it
    # API key: its scopes. User: the global permissions of their roles.
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def public_id(self) -> str:
        """The user's or the API key's public id: how events name the actor."""
        return (self.user_public_id if self.kind is PrincipalKind.USER else self.api_key_public_id) or ""

    @property
    def log_name(self) -> str:
        """How the access log names the caller (never a secret)."""
        if self.kind is PrincipalKind.USER:
            return f"user:{self.user_public_id}"
        project = self.key_project.public_id if self.key_project else "?"
        return f"api_key:{project}/{self.api_key_public_id}"

    @classmethod
    def user(cls, user_id: int, public_id: str, global_permissions: frozenset[str] = frozenset()) -> Principal:
        return cls(PrincipalKind.USER, user_id=user_id, user_public_id=public_id, permissions=global_permissions)

    @classmethod
    def api_key(
        cls, key_public_id: str, project: ProjectRef, scopes: frozenset[str], expires_at: datetime | None = None
    ) -> Principal:
        return cls(
            PrincipalKind.API_KEY,
            api_key_public_id=key_public_id,
            key_project=project,
            permissions=scopes,
            key_expires_at=expires_at,
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal plus what authorization granted for this call.

    For a project-scoped RPC, `project` is the project the call acts in (live, resolved once by
    authorization) and `permissions` are the caller's permissions there (the member's project role
    grants, or the key's scopes). For a global RPC, `permissions` are the user's global permissions
    and `project` is None.
    """

    principal: Principal
    permissions: frozenset[str]
    project: ProjectRef | None = None
    project_role: str | None = None  # the user's membership role; None for API keys

    @property
    def is_project_owner(self) -> bool:
        return self.project_role == "owner"


_caller: ContextVar[Caller | None] = ContextVar("altalune_caller", default=None)


class NoCaller(RuntimeError):
    """A handler ran without the auth interceptors: a wiring bug, never a client error."""


def current_caller() -> Caller:
    caller = _caller.get()
    if caller is None:
        raise NoCaller("no authorized caller in this context")
    return caller


def current_project() -> ProjectRef:
    """The project of the current project-scoped call, as authorization resolved it."""
    project = current_caller().project
    if project is None:
        raise NoCaller("the current call is not scoped to a project")
    return project


def set_caller(caller: Caller | None) -> None:
    _caller.set(caller)
