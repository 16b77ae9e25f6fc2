"""The two auth links of the one interceptor chain (see internal/rpc/interceptors.default_chain).

Authenticate runs before request validation, so a caller without a valid credential learns
nothing but UNAUTHENTICATED. Authorize runs after it, because it reads the (validated) project
id from the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import structlog
from connectrpc.request import RequestContext
from google.protobuf.message import Message

from internal.auth.access import Authenticated, Authenticator, Authorizer
from internal.auth.policy import AccessRule
from internal.auth.principal import set_caller
from internal.errors import InternalError
from internal.ids import is_public_id
from internal.rpc.calls import current_call
from internal.rpc.endpoints import UnaryFunction

# Set by Authenticate for the links inside it: who called, and the rule of the RPC (looked up once).
_authenticated: ContextVar[tuple[Authenticated, AccessRule] | None] = ContextVar("altalune_authenticated", default=None)


class Authenticate:
    def __init__(self, authenticator: Authenticator, rules: Mapping[str, AccessRule]) -> None:
        self._authenticator = authenticator
        self._rules = dict(rules)

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        method = ctx.method()
        rule = self._rules.get(f"/{method.service_name}/{method.name}")
        if rule is None:
            # Unreachable when wired by the container (start-up checks every route); deny anyway.
            raise InternalError()
        authenticated = await self._authenticator.authenticate(ctx.request_headers(), project_hint(request, rule))
        principal = authenticated.principal
        structlog.contextvars.bind_contextvars(caller=principal.log_name)
        record = current_call()
        if record is not None:
            record.identified(principal.kind.value, principal.public_id)
        token = _authenticated.set((authenticated, rule))
        try:
            return await call_next(request, ctx)
        finally:
            _authenticated.reset(token)


def authenticated_call() -> tuple[Authenticated, AccessRule] | None:
    """Who Authenticate accepted and the RPC's rule, for the links inside it (the rate limit)."""
    return _authenticated.get()


def project_hint(request: Message, rule: AccessRule) -> str | None:
    """The (not yet validated) project id of a project-scoped call, if it has the id's shape."""
    if rule.project_field is None:
        return None
    value = getattr(request, rule.project_field, None)
    return value if isinstance(value, str) and is_public_id(value) else None


class Authorize:
    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        found = _authenticated.get()
        if found is None:
            # Unreachable when wired by the container (Authenticate runs first); deny anyway.
            raise InternalError()
        authenticated, rule = found
        caller = await self._authorizer.authorize(authenticated.principal, rule, request, authenticated.membership_hint)
        set_caller(caller)
        record = current_call()
        if record is not None:
            record.authorized = True
        try:
            return await call_next(request, ctx)
        finally:
            set_caller(None)
