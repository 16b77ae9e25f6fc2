"""The two rate-limit links of the one chain (internal/rpc/interceptors.default_chain).

`PeerLimit` wraps authentication: a call from a peer address whose bucket is empty is refused
before any credential is looked at, and a call authentication refuses is charged to its peer, so
guessing keys or tokens is limited per address. Calls with a valid credential never spend it.

`CredentialLimit` sits inside authentication, which knows the caller: the call spends one from
its API key's or user's bucket (internal/ratelimit/limiter.py) before validation, authorization
or the handler cost anything.

Both set the RateLimit fields (and Retry-After on a refusal) as response headers: the HTTP port
sends them as headers on every answer, error or not; the gRPC port as trailing metadata.
"""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext
from google.protobuf.message import Message

from internal.auth.errors import Unauthenticated
from internal.auth.interceptors import authenticated_call, project_hint
from internal.ratelimit.limiter import RateLimiter, headers
from internal.rpc.calls import current_call
from internal.rpc.endpoints import UnaryFunction


class PeerLimit:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        # The port's name for the peer (connectrpc's own client_address leaves IPv6 unbracketed).
        record = current_call()
        bucket = self._limiter.peer_bucket(record.peer if record is not None else ctx.client_address())
        if bucket is None:
            return await call_next(request, ctx)
        decision = self._limiter.peek(bucket)
        if not decision.allowed:
            ctx.response_headers().update(headers(bucket, decision))
            raise self._limiter.refused(bucket, decision)
        try:
            return await call_next(request, ctx)
        except Unauthenticated:
            self._limiter.charge(bucket)
            raise


class CredentialLimit:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        found = authenticated_call()
        if found is None:  # unreachable when wired by the container (Authenticate runs first)
            return await call_next(request, ctx)
        authenticated, rule = found
        bucket = self._limiter.credential_bucket(authenticated.principal, project_hint(request, rule))
        if bucket is None:
            return await call_next(request, ctx)
        decision = self._limiter.take(bucket)
        ctx.response_headers().update(headers(bucket, decision))
        if not decision.allowed:
            raise self._limiter.refused(bucket, decision)
        return await call_next(request, ctx)
