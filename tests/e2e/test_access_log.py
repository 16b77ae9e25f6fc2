"""One request, one request id, one access-log line, on both ports: whether the chain served the
call or the port refused it before the chain (unknown procedure, malformed body, wrong content
type, no route), the id in the answer is the id of exactly one line, which says how it ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from tests.e2e.clients import bearer, free_port
from tests.e2e.test_log_pipeline import json_lines
from tests.e2e.test_process import bootstrap_token, serve_env, serving, stopped

pytestmark = pytest.mark.e2e

GET_PROJECT = "/altalune.v1.ProjectService/GetProject"


async def _grpc_call(channel: grpc.aio.Channel, path: str, body: bytes, request_id: str | None) -> str:
    """The request id the gRPC port answered with (it travels in the trailers)."""
    metadata = (("x-request-id", request_id),) if request_id else ()
    call = channel.unary_unary(path)(body, metadata=metadata, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    trailers = dict(await call.trailing_metadata() or ())
    return str(trailers["x-request-id"])


async def test_every_request_has_one_id_and_one_access_line(database_url: str, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(
        database_url,
        tmp_path / "secrets",
        grpc_port,
        http_port,
        ALTALUNE_LOCAL_ISSUER="on",
        ALTALUNE_LOG_FORMAT="json",
        ALTALUNE_TRUSTED_PROXIES="127.0.0.1",
    )
    token, _ = await bootstrap_token(env)
    answered: dict[str, str] = {}  # what the request was -> the id in its answer
    async with serving(env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            ok = await http.post(
                "/api" + "/altalune.v1.ProjectService/CreateProject",
                json={"name": "Logged", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
                headers={"x-request-id": "access-log-connect", **bearer(token)},
            )
            assert ok.status_code == 200, ok.text
            answered["connect served"] = ok.headers["x-request-id"]
            wrong_type = await http.post("/api" + GET_PROJECT, content=b"{}", headers={"content-type": "text/plain"})
            assert wrong_type.status_code == 415
            answered["http wrong content type"] = wrong_type.headers["x-request-id"]
            no_route = await http.get("/nowhere", headers={"x-request-id": "access-log-no-route"})
            assert no_route.status_code == 404
            answered["http no route"] = no_route.headers["x-request-id"]
            forwarded = await http.post(
                "/api" + GET_PROJECT, json={"id": "nope"}, headers={"x-forwarded-for": "203.0.113.5"}
            )
            assert forwarded.status_code == 401
            answered["connect forwarded"] = forwarded.headers["x-request-id"]
            # Probes write no line, as /healthz and health on the gRPC port.
            probe = await http.post(
                "/api/grpc.health.v1.Health/Check", json={}, headers={"x-request-id": "access-log-health"}
            )
            assert probe.status_code == 200, probe.text
            assert probe.headers["x-request-id"] == "access-log-health"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            answered["grpc refused by the chain"] = await _grpc_call(channel, GET_PROJECT, b"", "access-log-grpc")
            answered["grpc unknown procedure"] = await _grpc_call(channel, "/altalune.v1.Nope/Nope", b"", None)
            answered["grpc malformed body"] = await _grpc_call(channel, GET_PROJECT, b"\xff\xff\xff", None)
        _, stderr = await stopped(process)

    assert answered["connect served"] == "access-log-connect"
    assert answered["http no route"] == "access-log-no-route"
    assert answered["grpc refused by the chain"] == "access-log-grpc"
    assert len(set(answered.values())) == len(answered), answered

    lines: dict[str, list[dict[str, Any]]] = {}
    for record in json_lines(stderr.decode()):
        if record["event"] in ("rpc", "http"):
            lines.setdefault(str(record.get("request_id")), []).append(record)
    for request, request_id in answered.items():
        assert len(lines.get(request_id, [])) == 1, (request, lines.get(request_id))
    assert "access-log-health" not in lines, lines["access-log-health"]
    line = {request: lines[request_id][0] for request, request_id in answered.items()}

    def shape(request: str) -> tuple[Any, ...]:
        record = line[request]
        return record["event"], record["transport"], record.get("code"), record.get("reason")

    assert shape("connect served") == ("rpc", "connect", "ok", None)
    # From a trusted proxy: the caller it names, and the proxy; otherwise no `via`.
    assert line["connect forwarded"]["peer"] == "203.0.113.5"
    assert line["connect forwarded"]["via"].startswith("127.0.0.1:")
    assert line["connect served"]["peer"].startswith("127.0.0.1:")
    assert all("via" not in record for request, record in line.items() if request != "connect forwarded")
    assert line["connect served"]["rpc"] == "altalune.v1.ProjectService/CreateProject"
    assert line["connect served"]["caller"].startswith("user:")
    assert shape("http wrong content type") == ("http", "connect", "invalid_argument", "UNSUPPORTED_CONTENT_TYPE")
    assert line["http wrong content type"]["status"] == 415
    assert shape("http no route") == ("http", "connect", "not_found", "NO_ROUTE")
    assert shape("grpc refused by the chain") == ("rpc", "grpc", "unauthenticated", "CREDENTIALS_MISSING")
    assert shape("grpc unknown procedure") == ("rpc", "grpc", "unimplemented", "UNKNOWN_PROCEDURE")
    assert line["grpc unknown procedure"]["rpc"] == "altalune.v1.Nope/Nope"
    assert shape("grpc malformed body") == ("rpc", "grpc", "invalid_argument", "MALFORMED_REQUEST")
    assert line["grpc malformed body"]["rpc"] == "altalune.v1.ProjectService/GetProject"
    # The HTTP port speaks HTTP/1.1 and HTTP/2: its lines say which (httpx spoke 1.1 here).
    for request, record in line.items():
        assert record.get("http") == ("1.1" if record["transport"] == "connect" else None), (request, record)
