"""CORS on the Connect port, as a browser console on another origin exercises it (user-needs §6.1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from internal.server.app import AltaluneServer
from tests.conftest import TEST_ORIGIN
from tests.e2e.clients import GET_PROJECT, QUERY_PROJECTS, bearer, failure_from_connect_body

pytestmark = pytest.mark.e2e

OTHER_ORIGIN = "http://evil.test"
BROWSER_HEADERS = (
    "authorization",
    "connect-protocol-version",
    "content-type",
    "connect-timeout-ms",
    "traceparent",
    "x-request-id",
)
MUST_BE_EXPOSED = ("grpc-status-details-bin", "x-request-id", "grpc-status", "grpc-message")


def header_list(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


@pytest_asyncio.fixture(scope="module")
async def http(server: AltaluneServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10.0) as client:
        yield client


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": ",".join(BROWSER_HEADERS),
    }


async def test_a_preflight_from_the_allowed_origin_allows_the_call_and_every_header_the_console_sends(
    http: httpx.AsyncClient,
) -> None:
    reply = await http.options("/api" + GET_PROJECT.path, headers=preflight_headers(TEST_ORIGIN))

    assert reply.status_code == 204
    # Exactly one value: browsers fail a preflight whose Allow-Origin is repeated.
    assert reply.headers.get_list("access-control-allow-origin") == [TEST_ORIGIN]
    assert {"GET", "POST"} <= {m.upper() for m in header_list(reply.headers.get("access-control-allow-methods"))}
    allowed = header_list(reply.headers.get("access-control-allow-headers"))
    missing = [h for h in BROWSER_HEADERS if h not in allowed]
    assert not missing, f"preflight does not allow {missing}: {sorted(allowed)}"
    assert int(reply.headers["access-control-max-age"]) > 0
    assert "origin" in header_list(reply.headers.get("vary"))
    # Never a wildcard: the answer is an echo of one allow-listed origin.
    assert reply.headers["access-control-allow-origin"] != "*"


async def test_a_preflight_from_another_origin_gets_no_cors_permission(http: httpx.AsyncClient) -> None:
    reply = await http.options("/api" + GET_PROJECT.path, headers=preflight_headers(OTHER_ORIGIN))

    assert "access-control-allow-origin" not in reply.headers
    assert "access-control-allow-headers" not in reply.headers
    assert "access-control-allow-methods" not in reply.headers


@pytest.mark.parametrize(
    ("case", "path", "body", "status"),
    [
        pytest.param("success", QUERY_PROJECTS.path, {}, 200, id="success"),
        pytest.param("domain error", GET_PROJECT.path, {"id": "zzzzzzzzzzzzzz"}, 404, id="domain-error"),
        pytest.param("validation error", GET_PROJECT.path, {"id": "nope"}, 400, id="validation-error"),
        pytest.param("routing error", "/altalune.v1.ProjectService/Nope", {}, 404, id="routing-error"),
    ],
)
async def test_a_browser_call_from_the_allowed_origin_can_read_the_answer_and_its_error_headers(
    http: httpx.AsyncClient, admin_token: str, case: str, path: str, body: dict[str, str], status: int
) -> None:
    reply = await http.post(
        "/api" + path,
        content=json.dumps(body),
        headers={
            "origin": TEST_ORIGIN,
            "content-type": "application/json",
            "connect-protocol-version": "1",
            **bearer(admin_token),
        },
    )

    assert reply.status_code == status, (case, reply.content)
    assert reply.headers.get_list("access-control-allow-origin") == [TEST_ORIGIN]
    exposed = header_list(reply.headers.get("access-control-expose-headers"))
    missing = [h for h in MUST_BE_EXPOSED if h not in exposed]
    assert not missing, f"{case}: not exposed {missing}"
    assert "origin" in header_list(reply.headers.get("vary"))
    assert reply.headers.get("x-request-id")
    if status != 200:
        assert failure_from_connect_body(reply.content).code


async def test_a_call_from_another_origin_carries_no_cors_headers(http: httpx.AsyncClient, admin_token: str) -> None:
    reply = await http.post(
        "/api" + QUERY_PROJECTS.path,
        content=b"{}",
        headers={"origin": OTHER_ORIGIN, "content-type": "application/json", **bearer(admin_token)},
    )

    assert reply.status_code == 200  # the server answers; the browser then blocks the page from reading it
    assert "access-control-allow-origin" not in reply.headers
    assert "access-control-expose-headers" not in reply.headers


async def test_a_connect_get_from_the_allowed_origin_is_readable_without_a_preflight(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    # A Connect GET with an authorization header is no longer a CORS "simple request": a browser
    # would preflight it. The point here is that the GET answer itself carries the CORS headers.
    reply = await http.get(
        "/api" + GET_PROJECT.path,
        params={"connect": "v1", "encoding": "json", "message": '{"id":"zzzzzzzzzzzzzz"}'},
        headers={"origin": TEST_ORIGIN, **bearer(admin_token)},
    )

    assert reply.status_code == 404
    assert reply.headers["access-control-allow-origin"] == TEST_ORIGIN
    assert failure_from_connect_body(reply.content).reason == "PROJECT_NOT_FOUND"


async def test_a_browser_call_without_credentials_can_read_why_it_was_refused(http: httpx.AsyncClient) -> None:
    """The console must be able to read a 401 (and its reason) to send the user to sign in."""
    reply = await http.post(
        "/api" + QUERY_PROJECTS.path,
        content=b"{}",
        headers={"origin": TEST_ORIGIN, "content-type": "application/json", "connect-protocol-version": "1"},
    )

    assert reply.status_code == 401, reply.content
    assert reply.headers.get_list("access-control-allow-origin") == [TEST_ORIGIN]
    exposed = header_list(reply.headers.get("access-control-expose-headers"))
    missing = [h for h in MUST_BE_EXPOSED if h not in exposed]
    assert not missing, f"not exposed on a 401: {missing}"
    failure = failure_from_connect_body(reply.content)
    assert (failure.code, failure.reason) == ("unauthenticated", "CREDENTIALS_MISSING")
