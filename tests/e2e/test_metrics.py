"""GET /metrics with two worker processes: every call on either port is counted once, with its
code and transport, whichever worker served it and whichever worker answers the scrape; figures
read with Prometheus's own text parser."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from altalune.v1 import employee_pb2, employee_pb2_grpc
from tests.conftest import running_server
from tests.e2e.clients import bearer
from tests.e2e.test_workers import Service, _project_and_employee, service

pytestmark = pytest.mark.e2e

__all__ = ["service"]  # the two-worker fixture, shared with test_workers

EMPLOYEE = "altalune.v1.EmployeeService"
# Each worker writes its counts for the others to read once a second (internal/observability).
FLUSHED_S = 1.5
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include these (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(http_port: int, **headers: str) -> Samples:
    # A new connection each time: with two workers, either may answer.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5.0) as http:
        reply = await http.get("/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return parse(reply.text)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def _connect_calls(service: Service, requests: Iterable[dict[str, str]], token: str | None) -> list[int]:
    statuses = []
    for body in requests:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}/api", timeout=5.0) as http:
            reply = await http.post(f"/{EMPLOYEE}/GetEmployee", json=body, headers=bearer(token) if token else {})
            statuses.append(reply.status_code)
    return statuses


async def _grpc_calls(service: Service, requests: Iterable[dict[str, str]]) -> list[grpc.StatusCode]:
    codes = []
    for body in requests:
        # One channel per call (own subchannel pool), so the kernel spreads them over the workers.
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            stub = employee_pb2_grpc.EmployeeServiceStub(channel)
            try:
                await stub.GetEmployee(
                    employee_pb2.GetEmployeeRequest(project_id=body["projectId"], id=body["id"]),
                    metadata=tuple(bearer(service.token).items()),
                    timeout=5,
                )
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
    return codes


async def test_calls_on_both_ports_are_counted_across_workers(service: Service) -> None:
    project, employee = await _project_and_employee(service)
    found = {"projectId": project, "id": employee}
    missing = {"projectId": project, "id": employee[:-1] + ("a" if employee[-1] != "a" else "b")}
    await asyncio.sleep(FLUSHED_S)  # the set-up's calls are counted before `before`
    before = await scrape(service.http_port)

    assert await _connect_calls(service, [found] * 12 + [missing] * 3, service.token) == [200] * 12 + [404] * 3
    assert await _connect_calls(service, [found] * 2, None) == [401] * 2
    assert (
        await _grpc_calls(service, [found] * 10 + [missing] * 4)
        == [grpc.StatusCode.OK] * 10 + [grpc.StatusCode.NOT_FOUND] * 4
    )
    await asyncio.sleep(FLUSHED_S)  # the other worker's counts reach the scrape within a second
    after = await scrape(service.http_port)

    get = {"grpc_service": EMPLOYEE, "grpc_method": "GetEmployee", "grpc_type": "unary"}
    handled = "grpc_server_handled_total"
    assert delta(after, before, handled, **get, transport="connect", grpc_code="OK") == 12
    assert delta(after, before, handled, **get, transport="connect", grpc_code="NotFound") == 3
    assert delta(after, before, handled, **get, transport="connect", grpc_code="Unauthenticated") == 2
    assert delta(after, before, handled, **get, transport="grpc", grpc_code="OK") == 10
    assert delta(after, before, handled, **get, transport="grpc", grpc_code="NotFound") == 4
    assert delta(after, before, "grpc_server_started_total", **get, transport="connect") == 17
    assert delta(after, before, "grpc_server_started_total", **get, transport="grpc") == 14
    histogram = "grpc_server_handling_seconds"
    assert delta(after, before, f"{histogram}_count", **get, transport="connect") == 17
    assert delta(after, before, f"{histogram}_count", **get, transport="grpc") == 14
    assert delta(after, before, f"{histogram}_bucket", **get, transport="grpc", le="+Inf") == 14
    assert delta(after, before, f"{histogram}_sum", **get, transport="grpc") > 0
    # Sizes: every request is measured; responses of successful calls.
    assert delta(after, before, "altalune_rpc_request_bytes_count", **get) == 31
    assert delta(after, before, "altalune_rpc_response_bytes_count", **get) == 22
    assert delta(after, before, "altalune_rpc_response_bytes_sum", **get) > 22 * 20
    # Each served call ran at least one statement and waited for its connection once.
    assert delta(after, before, "altalune_db_statement_seconds_count", operation="SELECT") >= 22
    assert delta(after, before, "altalune_db_pool_wait_seconds_count") >= 22
    # The calls really were spread over both workers.
    served_by = {r.get("worker") for r in service.records() if r.get("event") == "rpc"}
    assert served_by == {0, 1}


async def test_gauges_add_up_the_workers(service: Service) -> None:
    await asyncio.sleep(1.5)  # each worker samples its gauges every second
    samples = await scrape(service.http_port)
    # Two workers, each with its pool of ALTALUNE_DB_POOL_MAX (default 8) connections.
    assert value(samples, "altalune_db_pool_max_connections") == 16
    assert value(samples, "altalune_db_pool_connections", state="idle") >= 2
    assert value(samples, "altalune_rpc_in_flight") == 0
    assert value(samples, "altalune_db_pool_waiting") == 0
    # The upkeep ran (in the worker holding its lease) and says when it last succeeded.
    assert value(samples, "altalune_background_last_success_timestamp_seconds", task="purge_expired") > 0
    assert value(samples, "altalune_background_last_success_timestamp_seconds", task="prepare_blocks") > 0
    assert ("altalune_background_backlog", frozenset({("task", "project_purge")})) in samples


async def test_names_made_up_by_clients_are_not_labels(service: Service) -> None:
    before = await scrape(service.http_port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}/api", timeout=5.0) as http:
        reply = await http.post("/altalune.v1.Invented/Thing", json={})
    assert reply.status_code == 404
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary("/made.up.Service/Method")(b"", timeout=5)
    await asyncio.sleep(FLUSHED_S)
    after = await scrape(service.http_port)
    assert not any("Invented" in str(labels) or "made.up" in str(labels) for _, labels in after)
    assert delta(after, before, "grpc_server_handled_total", grpc_service="unknown", grpc_code="Unimplemented") == 1


async def test_a_metrics_token_restricts_the_scrape(database_url: str) -> None:
    token = "scrape-token-0123456789"
    async with (
        running_server(database_url, ALTALUNE_METRICS_TOKEN=token) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=5.0) as http,
    ):
        refused = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"authorization": "Bearer not-the-token-at-all"})
        allowed = await http.get("/metrics", headers={"authorization": f"Bearer {token}"})
        openmetrics = await http.get(
            "/metrics",
            headers={"authorization": f"Bearer {token}", "accept": "application/openmetrics-text; version=1.0.0"},
        )
    for answer in (refused, wrong):
        assert answer.status_code == 401
        assert answer.json()["code"] == "unauthenticated"
        assert answer.json()["details"][0]["debug"]["reason"] == "METRICS_TOKEN_REQUIRED"
    assert allowed.status_code == 200
    assert "grpc_server_handled_total" in allowed.text or "altalune_db_pool_max_connections" in allowed.text
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_metrics_can_be_turned_off(database_url: str) -> None:
    async with (
        running_server(database_url, ALTALUNE_METRICS="off") as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=5.0) as http,
    ):
        answer = await http.get("/metrics")
    assert answer.status_code == 404
    assert answer.json()["details"][0]["debug"]["reason"] == "NO_ROUTE"
