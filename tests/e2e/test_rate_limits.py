"""Per-credential rate limits (docs/rate-limits.md) on real servers over real sockets.

* Two worker processes: one API key calling as fast as it can over both ports gets the configured
  rate plus the burst (within 10 %), whichever worker answers; each refusal carries RetryInfo and
  the rate-limit headers; another key of the same project is never limited meanwhile.
* A peer sending bad credentials is limited, and then refused before authentication.
* A rate-limited call is recorded as one CallRefused event.
* The refusal is the same on every transport.

Counts are asserted against bounds derived from the settings and the elapsed time, never timings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from altalune.v1 import api_key_pb2, common_pb2, employee_pb2, project_pb2
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import (
    CREATE_PROJECT,
    QUERY_EMPLOYEES,
    TRANSPORTS,
    GrpcTransport,
    Outcome,
    Rpc,
    Transport,
    bearer,
    open_transport,
)
from tests.e2e.test_workers import Service, two_workers

pytestmark = pytest.mark.e2e

CREATE_API_KEY = Rpc.of("ApiKeyService", "CreateApiKey")
RATE = 50  # per second, both ports and both workers together
RUN_S = 3.0


def _in_days(days: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    return stamp


async def _project_and_keys(t: Transport, keys: int) -> tuple[str, list[str]]:
    created = await t.call(
        CREATE_PROJECT,
        project_pb2.CreateProjectRequest(name="Limited", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE),
    )
    project: str = created.ok().project.id
    secrets = []
    for i in range(keys):
        made = await t.call(
            CREATE_API_KEY,
            api_key_pb2.CreateApiKeyRequest(
                project_id=project, name=f"key {i}", scopes=["employee:read"], expires_at=_in_days(30)
            ),
        )
        secrets.append(made.ok().secret)
    return project, secrets


def _query(project: str) -> employee_pb2.QueryEmployeesRequest:
    return employee_pb2.QueryEmployeesRequest(project_id=project, query=common_pb2.QueryRequest())


def _assert_limited(outcome: Outcome[Any], scope: str, limit: str, burst: int) -> None:
    failure = outcome.failed()
    assert (failure.code, failure.reason) == ("resource_exhausted", "RATE_LIMITED"), (outcome.transport, failure)
    assert dict(failure.metadata) == {"scope": scope, "limit": limit, "burst": str(burst)}, outcome.transport
    assert "google.rpc.RetryInfo" in failure.detail_types, outcome.transport
    # HTTP headers on the HTTP port, trailing metadata on the gRPC port: the same fields.
    headers = outcome.headers
    count, unit = limit.split("/")
    window = {"s": 1, "m": 60, "h": 3600}[unit]
    assert headers.get("ratelimit-policy") == f'"{scope}";q={count};w={window}', (outcome.transport, headers)
    assert headers.get("ratelimit", "").startswith(f'"{scope}";r=0;t='), (outcome.transport, headers)
    wait = int(headers["ratelimit"].rsplit("=", 1)[1])
    assert int(headers.get("retry-after", "0")) == max(wait, 1) >= 1, (outcome.transport, headers)


# --- two worker processes ----------------------------------------------------------------------


@pytest.fixture
async def service(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    async with two_workers(database_url, tmp_path, ALTALUNE_RATE_LIMIT=f"{RATE}/s") as served:
        yield served


async def test_one_key_over_both_ports_and_both_workers_gets_its_rate_and_another_key_is_not_limited(
    service: Service,
) -> None:
    admin = open_transport("http-json", grpc_port=service.grpc_port, http_port=service.http_port, token=service.token)
    try:
        project, (busy_key, quiet_key) = await _project_and_keys(admin, 2)
    finally:
        await admin.close()
    # Twelve connections: the kernel spreads them over both workers (on the gRPC port by hashing
    # each connection, on the HTTP port by whichever worker accepts first).
    busy: list[Transport] = []
    for _ in range(8):
        grpc_transport = GrpcTransport(service.grpc_port, own_connection=True)
        grpc_transport.default_headers = bearer(busy_key)
        busy.append(grpc_transport)
    for _ in range(4):
        busy.append(open_transport("http-json", grpc_port=0, http_port=service.http_port, token=busy_key))
    quiet = open_transport("grpc", grpc_port=service.grpc_port, http_port=service.http_port, token=quiet_key)
    outcomes: list[Outcome[Any]] = []
    quiet_outcomes: list[Outcome[Any]] = []

    async def hammer(t: Transport, until: float) -> None:
        while time.monotonic() < until:
            outcomes.append(await t.call(QUERY_EMPLOYEES, _query(project)))

    async def now_and_then(until: float) -> None:
        while time.monotonic() < until:
            quiet_outcomes.append(await quiet.call(QUERY_EMPLOYEES, _query(project)))
            await asyncio.sleep(0.3)

    try:
        started = time.monotonic()
        until = started + RUN_S
        await asyncio.gather(*(hammer(t, until) for t in busy), now_and_then(until))
        elapsed = time.monotonic() - started  # the server saw every call within this
    finally:
        for t in [*busy, quiet]:
            await t.close()

    accepted = [o for o in outcomes if o.error is None]
    refused = [o for o in outcomes if o.error is not None]
    expected = RATE + RATE * elapsed  # the burst (one second's worth) plus the steady rate
    assert 0.9 * expected <= len(accepted) <= 1.1 * expected, (len(accepted), expected, len(refused))
    assert len(refused) > len(accepted), "the client did call faster than the limit"
    for outcome in refused:
        _assert_limited(outcome, "api_key", f"{RATE}/s", RATE)
    assert {o.transport for o in accepted} == {"grpc", "http-json"}
    assert {o.transport for o in refused} == {"grpc", "http-json"}
    # Accepted calls carry the fields too: what is left right now.
    assert all(o.headers.get("ratelimit-policy") == f'"api_key";q={RATE};w=1' for o in accepted)

    assert len(quiet_outcomes) >= 3
    assert all(o.error is None for o in quiet_outcomes), [o.error for o in quiet_outcomes]

    # Both workers answered the busy key: the limit held across processes, not per worker.
    calls = [r for r in service.records() if r["event"] == "rpc" and r.get("rpc", "").endswith("/QueryEmployees")]
    assert {r["worker"] for r in calls} == {0, 1}


# --- one process -------------------------------------------------------------------------------


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[AltaluneServer]:
    """6 calls a minute after a burst of 10 per credential; a peer gets 3 bad credentials at once."""
    async with conftest.running_server(
        database_url,
        ALTALUNE_RATE_LIMIT="6/m",
        ALTALUNE_RATE_LIMIT_BURST="10",
        ALTALUNE_RATE_LIMIT_PEER="6/m:3",
    ) as running:
        yield running


async def _spent_key(server: AltaluneServer) -> tuple[str, str]:
    """A project and an API key of it whose bucket is empty."""
    admin = open_transport(
        "grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=admin_token_for(server)
    )
    try:
        project, (key,) = await _project_and_keys(admin, 1)
    finally:
        await admin.close()
    t = open_transport("grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=key)
    try:
        allowed = [(await t.call(QUERY_EMPLOYEES, _query(project))).error is None for _ in range(11)]
    finally:
        await t.close()
    assert allowed == [True] * 10 + [False]
    return project, key


async def test_a_rate_limited_call_is_refused_the_same_way_on_every_transport(
    limited: AltaluneServer,
) -> None:
    project, key = await _spent_key(limited)
    outcomes = []
    for name in TRANSPORTS:
        t = open_transport(name, grpc_port=limited.grpc_port, http_port=limited.http_port, token=key)
        try:
            outcomes.append(await t.call(QUERY_EMPLOYEES, _query(project)))
        finally:
            await t.close()
    for outcome in outcomes:
        _assert_limited(outcome, "api_key", "6/m", 10)
        assert outcome.request_id, outcome.transport
    first = outcomes[0].failed()
    assert all(o.failed().message == first.message for o in outcomes), [o.failed().message for o in outcomes]


async def test_a_rate_limited_call_is_recorded_as_a_call_refused_event(limited: AltaluneServer) -> None:
    project, key = await _spent_key(limited)
    t = open_transport("http-json", grpc_port=limited.grpc_port, http_port=limited.http_port, token=key)
    try:
        refused = [await t.call(QUERY_EMPLOYEES, _query(project)) for _ in range(5)]
    finally:
        await t.close()
    assert all(o.failed().reason == "RATE_LIMITED" for o in refused)
    await limited.container.refusals.flush()
    async with await psycopg.AsyncConnection.connect(limited.container.database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT actor_kind, code, reason, rpc, project_public_id FROM global_events"
            " WHERE type = 'CallRefused' AND reason = 'RATE_LIMITED'"
        )
        rows = await cur.fetchall()
    # Six refusals within a second (the one in _spent_key and these five): one event per bucket and
    # second, so a flood is not a write amplifier.
    assert rows == [
        ("api_key", "resource_exhausted", "RATE_LIMITED", "altalune.v1.EmployeeService/QueryEmployees", project)
    ]


async def test_a_peer_sending_bad_credentials_is_limited_before_authentication(
    limited: AltaluneServer,
) -> None:
    token = admin_token_for(limited)
    base = f"http://127.0.0.1:{limited.http_port}/api/altalune.v1.ProjectService/QueryProjects"

    async with httpx.AsyncClient(timeout=5.0) as http:

        async def query(credential: str) -> httpx.Response:
            return await http.post(base, json={}, headers=bearer(credential))

        # Valid credentials never spend the peer's bucket (the admin's own bucket holds 10).
        assert [(await query(token)).status_code for _ in range(5)] == [200] * 5
        # Three bad keys are answered as such, and charged to the peer...
        bad = [await query(f"ak_nope_{i}") for i in range(3)]
        assert [r.status_code for r in bad] == [401] * 3
        # ...then the peer is refused before its credential is looked at, good or bad.
        for credential in ("ak_nope_4", token):
            refused = await query(credential)
            assert refused.status_code == 429, refused.text
            reasons = [d["debug"]["reason"] for d in refused.json()["details"] if d["type"] == "google.rpc.ErrorInfo"]
            assert reasons == ["RATE_LIMITED"]
            assert refused.headers["ratelimit-policy"] == '"peer";q=6;w=60'
            assert 1 <= int(refused.headers["retry-after"]) <= 10
