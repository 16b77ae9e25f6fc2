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

from internal.auth.access import Authenticator, Authorizer
from internal.auth.policy import AccessRule
from internal.auth.principal import Principal, set_caller
from internal.errors import InternalError
from internal.server.endpoints import UnaryFunction

_principal: ContextVar[Principal | None] = ContextVar("altalune_principal", default=None)


class Authenticate:
    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        principal = await self._authenticator.authenticate(ctx.request_headers())
        structlog.contextvars.bind_contextvars(caller=principal.log_name)
        token = _principal.set(principal)
        try:
            return await call_next(request, ctx)
        finally:
            _principal.reset(token)


class Authorize:
    def __init__(self, authorizer: Authorizer, rules: Mapping[str, AccessRule]) -> None:
        self._authorizer = authorizer
        self._rules = dict(rules)

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        method = ctx.method()
        rule = self._rules.get(f"/{method.service_name}/{method.name}")
        principal = _principal.get()
        if rule is None or principal is None:
            # Unreachable when wired by the container (start-up checks every route); deny anyway.
            raise InternalError()
        caller = await self._authorizer.authorize(principal, rule, request)
        set_caller(caller)
        try:
            return await call_next(request, ctx)
        finally:
            set_caller(None)
