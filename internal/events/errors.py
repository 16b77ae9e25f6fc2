"""Errors of the trusted-write path, the same for every write RPC."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import DomainError


class RequestIdReused(DomainError):
    reason = "REQUEST_ID_REUSED"
    situation = "a write's request_id already answered a different request of the same caller"
    code = Code.INVALID_ARGUMENT
    template = (
        "request_id {request_id!r} was already used for a different request; a retry must repeat its request "
        "exactly, and a new request needs a new request_id"
    )

    request_id: str
