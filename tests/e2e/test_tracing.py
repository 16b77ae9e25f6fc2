"""OpenTelemetry traces: a caller's `traceparent` on either port gives a server span of the same
trace, with database statements as its children, and the trace id in the call's log lines; off by
default, on when the standard OTEL_* variables name an exporter."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from altalune.v1 import employee_pb2, employee_pb2_grpc
from internal.observability.tracing import Tracing
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import bearer, free_port, project_and_employee
from tests.e2e.test_log_pipeline import json_lines
from tests.e2e.test_process import bootstrap_token, serve_env, serving, stopped

pytestmark = pytest.mark.e2e

EMPLOYEE = "altalune.v1.EmployeeService"


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


class Traced:
    def __init__(self, server: AltaluneServer, spans: InMemorySpanExporter, token: str) -> None:
        self.server, self.spans, self.token = server, spans, token

    def of_trace(self, trace_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)]


@pytest_asyncio.fixture
async def traced(database_url: str) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Behind a proxy on this machine: a call that says X-Forwarded-For came through it.
    settings = conftest.test_settings(ALTALUNE_TRUSTED_PROXIES="127.0.0.1")
    server = AltaluneServer(settings, database_url, tracing=Tracing(provider))
    await server.start()
    try:
        yield Traced(server, exporter, admin_token_for(server))
    finally:
        await server.stop()


async def _employee(traced: Traced) -> tuple[str, str]:
    return await project_and_employee(traced.server.http_port, traced.token, "Traced")


def _server_span(spans: list[ReadableSpan]) -> ReadableSpan:
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    return server


def _check_statements(spans: list[ReadableSpan], server: ReadableSpan) -> None:
    statements = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert statements, "no database span"
    for span in statements:
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
        assert span.attributes is not None
        assert span.attributes["db.system.name"] == "postgresql"
        assert span.attributes["db.operation.name"] in ("SELECT", "WITH")
        assert "db.query.text" not in span.attributes  # values may be bound into the text


async def test_a_connect_call_continues_the_callers_trace(traced: Traced) -> None:
    project, employee = await _employee(traced)
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced.server.http_port}/api") as http:
        reply = await http.post(
            f"/{EMPLOYEE}/GetEmployee",
            json={"projectId": project, "id": employee},
            headers={**bearer(traced.token), "traceparent": traceparent(trace_id, parent), "tracestate": "vendor=1"},
        )
    assert reply.status_code == 200
    spans = traced.of_trace(trace_id)
    server = _server_span(spans)
    assert server.name == f"{EMPLOYEE}/GetEmployee"
    assert server.parent is not None
    assert server.parent.span_id == int(parent, 16)
    assert server.parent.is_remote
    assert server.context.trace_state.to_header() == "vendor=1"
    assert server.attributes is not None
    assert server.attributes["rpc.system"] == "connect_rpc"
    assert server.attributes["rpc.service"] == EMPLOYEE
    assert server.attributes["rpc.method"] == "GetEmployee"
    assert server.attributes["client.address"] == "127.0.0.1"
    assert "network.peer.address" not in server.attributes  # no proxy named another caller
    assert "rpc.connect_rpc.error_code" not in server.attributes
    _check_statements(spans, server)


async def test_a_grpc_call_continues_the_callers_trace_and_records_its_code(traced: Traced) -> None:
    project, employee = await _employee(traced)
    missing = employee[:-1] + ("a" if employee[-1] != "a" else "b")
    calls = {
        "found": ("0af7651916cd43dd8448eb211c80319c", employee),
        "missing": ("1af7651916cd43dd8448eb211c80319c", missing),
    }
    codes = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.server.grpc_port}") as channel:
        stub = employee_pb2_grpc.EmployeeServiceStub(channel)
        for trace_id, employee_id in calls.values():
            metadata = (*bearer(traced.token).items(), ("traceparent", traceparent(trace_id, "b7ad6b7169203331")))
            call = stub.GetEmployee(
                employee_pb2.GetEmployeeRequest(project_id=project, id=employee_id), metadata=metadata, timeout=5
            )
            codes.append(await call.code())
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND]
    found = _server_span(traced.of_trace(calls["found"][0]))
    assert found.attributes is not None
    assert found.attributes["rpc.system"] == "grpc"
    assert found.attributes["rpc.grpc.status_code"] == 0
    assert found.parent is not None
    assert found.parent.span_id == int("b7ad6b7169203331", 16)
    _check_statements(traced.of_trace(calls["found"][0]), found)
    missed = _server_span(traced.of_trace(calls["missing"][0]))
    assert missed.attributes is not None
    assert missed.attributes["rpc.grpc.status_code"] == 5
    assert missed.attributes["error.type"] == "EMPLOYEE_NOT_FOUND"
    # NOT_FOUND is the caller's doing, not a server error (semantic conventions).
    assert missed.status.status_code is StatusCode.UNSET


async def test_a_call_without_traceparent_starts_a_trace(traced: Traced) -> None:
    project, employee = await _employee(traced)
    traced.spans.clear()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced.server.http_port}/api") as http:
        await http.post(
            f"/{EMPLOYEE}/GetEmployee", json={"projectId": project, "id": employee}, headers=bearer(traced.token)
        )
    server = _server_span(list(traced.spans.get_finished_spans()))
    assert server.parent is None


@pytest.mark.parametrize("exporting", [False, True], ids=["tracing off", "console exporter"])
async def test_the_trace_id_is_in_the_calls_log_lines(database_url: str, tmp_path: Path, exporting: bool) -> None:
    """Off, a caller's trace id still marks the call's log lines; on (OTEL_TRACES_EXPORTER), the
    spans leave through the exporter with that trace id."""
    grpc_port, http_port = free_port(), free_port()
    otel = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"} if exporting else {}
    env = serve_env(
        database_url,
        tmp_path / "secrets",
        grpc_port,
        http_port,
        ALTALUNE_WORKERS="1",
        ALTALUNE_LOG_FORMAT="json",
        **{k: v for k, v in os.environ.items() if k.startswith("OTEL_")},
    )
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")} | otel
    token, _ = await bootstrap_token(env)
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    async with serving(env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/api") as http:
            reply = await http.post(
                "/altalune.v1.ProjectService/CreateProject",
                json={"name": "Logged", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"},
                headers={**bearer(token), "traceparent": traceparent(trace_id, "00f067aa0ba902b7")},
            )
            assert reply.status_code == 200, reply.text
        stdout, stderr = await stopped(process)
    lines = [r for r in json_lines(stderr.decode()) if r.get("rpc") == "altalune.v1.ProjectService/CreateProject"]
    assert lines
    assert all(r.get("trace_id") == trace_id for r in lines)
    access = [r for r in lines if r["event"] == "rpc"]
    assert len(access) == 1
    if exporting:
        exported = [json.loads(block) for block in _json_blocks(stdout.decode())]
        ours = [s for s in exported if s["context"]["trace_id"] == f"0x{trace_id}"]
        assert {s["kind"] for s in ours} == {"SpanKind.SERVER", "SpanKind.CLIENT"}
        assert access[0]["span_id"] in {s["context"]["span_id"].removeprefix("0x") for s in ours}
    else:
        assert "span_id" not in access[0]
        assert stdout.decode().strip() == ""


def _json_blocks(text: str) -> list[str]:
    """The console exporter prints one indented JSON object per span."""
    blocks, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                blocks.append(text[start : index + 1])
    return blocks


async def test_a_call_through_a_trusted_proxy_names_the_client_and_the_proxy(traced: Traced) -> None:
    project, employee = await _employee(traced)
    trace_id = "2af7651916cd43dd8448eb211c80319c"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.server.grpc_port}") as channel:
        metadata = (
            *bearer(traced.token).items(),
            ("traceparent", traceparent(trace_id, "b7ad6b7169203331")),
            ("x-forwarded-for", "203.0.113.5"),
        )
        await employee_pb2_grpc.EmployeeServiceStub(channel).GetEmployee(
            employee_pb2.GetEmployeeRequest(project_id=project, id=employee), metadata=metadata, timeout=5
        )
    server = _server_span(traced.of_trace(trace_id))
    assert server.attributes is not None
    assert server.attributes["client.address"] == "203.0.113.5"
    assert "client.port" not in server.attributes  # the proxy names no port
    assert server.attributes["network.peer.address"] == "127.0.0.1"
    assert isinstance(server.attributes["network.peer.port"], int)
