"""Behind a proxy (ALTALUNE_TRUSTED_PROXIES, internal/addresses.py), on real servers over both
ports: the caller X-Forwarded-For names is the one the peer rate limit charges and the events
record, so one abusive client behind a load balancer does not lock out everyone behind it; without
the setting, the header is anyone's to send and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import httpx
import psycopg
import pytest

from altalune.v1 import project_pb2, project_pb2_grpc
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import bearer

pytestmark = pytest.mark.e2e

PEER_LIMIT = "6/m:3"  # three bad credentials at once per caller


@pytest.fixture
async def behind_a_proxy(database_url: str) -> AsyncIterator[AltaluneServer]:
    async with conftest.running_server(
        database_url, ALTALUNE_RATE_LIMIT_PEER=PEER_LIMIT, ALTALUNE_TRUSTED_PROXIES="127.0.0.0/8"
    ) as running:
        yield running


@pytest.fixture
async def exposed(database_url: str) -> AsyncIterator[AltaluneServer]:
    async with conftest.running_server(database_url, ALTALUNE_RATE_LIMIT_PEER=PEER_LIMIT) as running:
        yield running


async def over_http(server: AltaluneServer, credential: str, client: str) -> int:
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.post(
            f"http://127.0.0.1:{server.http_port}/api/altalune.v1.ProjectService/QueryProjects",
            json={},
            headers={**bearer(credential), "x-forwarded-for": f"198.51.100.250, {client}"},
        )
    return answer.status_code


async def over_grpc(server: AltaluneServer, credential: str, client: str) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        try:
            await project_pb2_grpc.ProjectServiceStub(channel).QueryProjects(
                project_pb2.QueryProjectsRequest(),
                metadata=(("authorization", f"Bearer {credential}"), ("x-forwarded-for", client)),
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_each_client_behind_a_trusted_proxy_has_its_own_peer_limit_on_both_ports(
    behind_a_proxy: AltaluneServer,
) -> None:
    server, token = behind_a_proxy, admin_token_for(behind_a_proxy)
    abuser, other = "203.0.113.1", "203.0.113.2"
    # The abuser's three bad credentials, over both ports, are charged to the abuser...
    assert [await over_http(server, f"ak_nope_{i}", abuser) for i in range(2)] == [401, 401]
    assert await over_grpc(server, "ak_nope_3", abuser) is grpc.StatusCode.UNAUTHENTICATED
    # ...who is then refused before authentication on either port, whatever the credential...
    assert await over_http(server, token, abuser) == 429
    assert await over_grpc(server, token, abuser) is grpc.StatusCode.RESOURCE_EXHAUSTED
    # ...while another client behind the same proxy is not affected, on either port.
    assert await over_http(server, token, other) == 200
    assert await over_grpc(server, token, other) is grpc.StatusCode.OK
    assert await over_grpc(server, "ak_nope_4", other) is grpc.StatusCode.UNAUTHENTICATED

    await server.container.refusals.flush()
    async with await psycopg.AsyncConnection.connect(server.container.database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT DISTINCT peer FROM global_events WHERE type = 'CallRefused' AND reason = 'RATE_LIMITED'"
        )
        peers = [row[0] for row in await cur.fetchall()]
    assert peers == [abuser], "the refusal event names the client, not the proxy"


async def test_without_trusted_proxies_x_forwarded_for_changes_nothing(exposed: AltaluneServer) -> None:
    token = admin_token_for(exposed)
    # Three bad credentials claiming three different clients are all the socket peer's.
    assert [await over_http(exposed, f"ak_nope_{i}", f"203.0.113.{i}") for i in range(2)] == [401, 401]
    assert await over_grpc(exposed, "ak_nope_2", "203.0.113.2") is grpc.StatusCode.UNAUTHENTICATED
    assert await over_http(exposed, token, "203.0.113.9") == 429
    assert await over_grpc(exposed, token, "203.0.113.9") is grpc.StatusCode.RESOURCE_EXHAUSTED
