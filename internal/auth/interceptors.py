"""The two auth links of the one interceptor chain (see internal/server/interceptors.default_chain).

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
from internal.server.endpoints import UnaryFunction

_authenticated: ContextVar[Authenticated | None] = ContextVar("altalune_authenticated", default=None)


class Authenticate:
    def __init__(self, authenticator: Authenticator, rules: Mapping[str, AccessRule]) -> None:
        self._authenticator = authenticator
        self._rules = dict(rules)

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        authenticated = await self._authenticator.authenticate(ctx.request_headers(), self._project_hint(request, ctx))
        structlog.contextvars.bind_contextvars(caller=authenticated.principal.log_name)
        token = _authenticated.set(authenticated)
        try:
            return await call_next(request, ctx)
        finally:
            _authenticated.reset(token)

    def _project_hint(self, request: Message, ctx: RequestContext[Any, Any]) -> str | None:
        """The (not yet validated) project id of a project-scoped call, if it has the id's shape."""
        method = ctx.method()
        rule = self._rules.get(f"/{method.service_name}/{method.name}")
        if rule is None or rule.project_field is None:
            return None
        value = getattr(request, rule.project_field, None)
        return value if isinstance(value, str) and is_public_id(value) else None


class Authorize:
    def __init__(self, authorizer: Authorizer, rules: Mapping[str, AccessRule]) -> None:
        self._authorizer = authorizer
        self._rules = dict(rules)

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        method = ctx.method()
        rule = self._rules.get(f"/{method.service_name}/{method.name}")
        authenticated = _authenticated.get()
        if rule is None or authenticated is None:
            # Unreachable when wired by the container (start-up checks every route); deny anyway.
            raise InternalError()
        caller = await self._authorizer.authorize(authenticated.principal, rule, request, authenticated.membership_hint)
        set_caller(caller)
        try:
            return await call_next(request, ctx)
        finally:
            set_caller(None)
