"""An error connectrpc writes itself (without our ErrorInfo) reaches the client as one of our error
classes, with that class's reason and metadata, or as our internal error: never a reason no class
declares."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from connectrpc.method import IdempotencyLevel, MethodInfo
from google.protobuf import empty_pb2

from internal.server.http_gateway import CorsPolicy, HttpGateway

PATH = "/altalune.v1.Test/Do"
LIMIT = 1234


def _library_error(status: int, code: str, message: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps({"code": code, "message": message}).encode()
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


async def _call(app: Any) -> tuple[int, dict[str, Any]]:
    async def ready() -> bool:
        return True

    method: MethodInfo[Any, Any] = MethodInfo(
        name="Do",
        service_name="altalune.v1.Test",
        input=empty_pb2.Empty,
        output=empty_pb2.Empty,
        idempotency_level=IdempotencyLevel.UNKNOWN,
    )
    gateway = HttpGateway(
        app, max_request_bytes=LIMIT, cors=CorsPolicy(frozenset()), readiness=ready, procedures={PATH: method}
    )
    sent: list[MutableMapping[str, Any]] = []
    requests = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return requests.pop(0) if requests else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api" + PATH,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
        "client": ("127.0.0.1", 5000),
    }
    await gateway(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def _error_info(body: dict[str, Any]) -> dict[str, Any]:
    [info] = [d for d in body["details"] if d["type"] == "google.rpc.ErrorInfo"]
    return dict(info["debug"])


@pytest.mark.parametrize(
    ("code", "status", "reason", "metadata"),
    [
        ("invalid_argument", 400, "MALFORMED_REQUEST", None),
        ("resource_exhausted", 429, "REQUEST_TOO_LARGE", {"limit_bytes": str(LIMIT)}),
        ("deadline_exceeded", 504, "DEADLINE_EXCEEDED", None),
        ("unimplemented", 500, "INTERNAL", None),
        ("unknown", 500, "INTERNAL", None),
        ("permission_denied", 500, "INTERNAL", None),
    ],
)
async def test_a_library_error_becomes_one_of_our_classes(
    code: str, status: int, reason: str, metadata: dict[str, str] | None
) -> None:
    answered, body = await _call(_library_error(400, code, "the library's words"))

    info = _error_info(body)
    assert (answered, info["reason"], info.get("metadata")) == (status, reason, metadata)
    if reason == "INTERNAL":
        assert body["message"] == "internal error"
