"""The README's "Operating" section, run as written: its curl line, its Prometheus scrape job
(the request Prometheus makes from it, read with Prometheus's text parser) and its tracing set-up
(spans exported over OTLP/HTTP to a collector listening where the README says, here a receiver in
this process)."""

from __future__ import annotations

import asyncio
import re
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from internal.config import REPO_ROOT
from tests.e2e.clients import bearer, free_port
from tests.e2e.test_process import bootstrap_token, serve_env, serving, stopped

pytestmark = pytest.mark.e2e

# What Prometheus sends when it scrapes (scrape.go's acceptHeader, text format preferred).
PROMETHEUS_ACCEPT = "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def _section(title: str) -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index(f"### {title}\n")
    end = readme.find("\n## ", start)
    following = readme.find("\n### ", start + 1)
    return readme[start : min(e for e in (end, following) if e != -1)]


def _block(text: str, marker: str | None, language: str) -> str:
    if marker is not None:
        text = text[text.index(f"<!-- {marker} -->") :]
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert match is not None, f"no {language} block"
    return match.group(1)


async def test_the_curl_line_and_the_scrape_job(database_url: str, tmp_path: Path) -> None:
    metrics = _section("Metrics")
    job = yaml.safe_load(_block(metrics, "scrape config", "yaml"))["scrape_configs"][0]
    credentials = job["authorization"]["credentials"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8080"]  # the default HTTP port
    curl = _block(metrics, None, "sh").strip()
    assert curl.startswith("curl -s localhost:8080/metrics")

    grpc_port, http_port = free_port(), free_port()
    open_env = serve_env(database_url, tmp_path / "secrets", grpc_port, http_port, ALTALUNE_WORKERS="2")
    token, _ = await bootstrap_token(open_env)
    async with serving(open_env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/api") as http:
            listed = await http.post("/altalune.v1.ProjectService/QueryProjects", json={}, headers=bearer(token))
            assert listed.status_code == 200, listed.text
        await asyncio.sleep(1.5)  # with two workers, the one that served it may not be the one scraped
        shell = await asyncio.create_subprocess_shell(
            curl.replace("localhost:8080", f"127.0.0.1:{http_port}"), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await shell.communicate()
        await stopped(process)
    lines = out.decode().splitlines()
    assert any(
        'grpc_method="QueryProjects"' in line and 'grpc_code="OK"' in line and line.endswith(" 1.0") for line in lines
    ), lines
    assert all(line.startswith("grpc_server_handled_total{") for line in lines)

    locked_env = open_env | {"ALTALUNE_METRICS_TOKEN": credentials}
    async with serving(locked_env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            listed = await http.post("/api/altalune.v1.ProjectService/QueryProjects", json={}, headers=bearer(token))
            assert listed.status_code == 200, listed.text
            scraped = await http.get(
                job["metrics_path"], headers={"authorization": f"Bearer {credentials}", "accept": PROMETHEUS_ACCEPT}
            )
            anonymous = await http.get(job["metrics_path"])
        await stopped(process)
    assert scraped.status_code == 200
    names = {family.name for family in text_string_to_metric_families(scraped.text)}
    assert {"grpc_server_handled", "altalune_db_pool_max_connections", "altalune_rpc_in_flight"} <= names
    assert anonymous.status_code == 401


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    """An OTLP/HTTP receiver: what reaches it, by path."""
    received: list[tuple[str, bytes]] = []
    handler: type[_Collector] = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), received
    finally:
        server.shutdown()
        server.server_close()


async def test_the_tracing_set_up(
    database_url: str, tmp_path: Path, collector: tuple[int, list[tuple[str, bytes]]]
) -> None:
    port, received = collector
    words = shlex.split(_block(_section("Traces"), "tracing set-up", "sh"))
    assert words[-2:] == ["make", "run"]
    readme_env = dict(word.split("=", 1) for word in words[:-2])
    assert readme_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    readme_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(database_url, tmp_path / "secrets", grpc_port, http_port, ALTALUNE_WORKERS="1")
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")} | readme_env
    env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # the test's only addition: export within 0.1 s
    token, _ = await bootstrap_token(env)
    trace_id = "6bf92f3577b34da6a3ce929d0e0e4736"
    async with serving(env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/api") as http:
            reply = await http.post(
                "/altalune.v1.ProjectService/QueryProjects",
                json={},
                headers={**bearer(token), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
            assert reply.status_code == 200
        for _ in range(100):
            if _spans(received, trace_id):
                break
            await asyncio.sleep(0.05)
        await stopped(process)
    spans = _spans(received, trace_id)
    assert {(name, kind) for name, kind, _ in spans} >= {("altalune.v1.ProjectService/QueryProjects", 2)}
    assert any(kind == 3 for _, kind, _ in spans)  # a database statement (SPAN_KIND_CLIENT)
    assert {service for _, _, service in spans} == {"altalune"}
    assert {path for path, _ in received} == {"/v1/traces"}


def _spans(received: list[tuple[str, bytes]], trace_id: str) -> list[tuple[str, int, str]]:
    """(name, kind, service.name) of the exported spans of this trace."""
    found: list[tuple[str, int, str]] = []
    for _, body in list(received):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if span.trace_id.hex() == trace_id:
                        found.append((span.name, span.kind, attributes.get("service.name", "")))
    return found


async def test_the_rate_limit_example(database_url: str, tmp_path: Path) -> None:
    words = shlex.split(_block(_section("Rate limits"), "rate limits", "sh"))
    assert words[-2:] == ["make", "run"]
    readme_env = dict(word.split("=", 1) for word in words[:-2])
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(database_url, tmp_path / "secrets", grpc_port, http_port, ALTALUNE_WORKERS="2") | readme_env
    token, _ = await bootstrap_token(env)
    async with serving(env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            # Eleven calls at once from one credential: the burst of ten, then a refusal.
            answers = await asyncio.gather(
                *(
                    http.post("/api/altalune.v1.ProjectService/QueryProjects", json={}, headers=bearer(token))
                    for _ in range(11)
                )
            )
            probes = [await http.get(path) for path in ("/healthz", "/readyz", "/metrics")]
        await stopped(process)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 10 + [429]
    refused = next(a for a in answers if a.status_code == 429)
    reason = refused.json()["details"][0]["debug"]
    assert reason["reason"] == "RATE_LIMITED"
    assert reason["metadata"] == {"scope": "user", "limit": "5/s", "burst": "10"}
    assert any(d["type"] == "google.rpc.RetryInfo" for d in refused.json()["details"])
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == '"user";q=5;w=1'
    assert "ratelimit" in next(a for a in answers if a.status_code == 200).headers
    assert [p.status_code for p in probes] == [200, 200, 200]
