"""Protocol edges the Connect library leaves to us (user-needs §1.A), on the HTTP port, and their
gRPC equivalents where one exists: malformed and unknown input, size limits (plain and gzip),
routing and content-type errors, deadlines that really cancel the database statement, Connect GET.

Every call carries the administrator's bearer token, so what is tested is the edge itself and not
the authentication in front of it."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import grpc
import grpc.aio
import httpx
import psycopg
import pytest
import pytest_asyncio
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_status import rpc_status

from altalune.v1 import common_pb2, project_connect, project_pb2
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import (
    CREATE_PROJECT,
    GET_PROJECT,
    QUERY_PROJECTS,
    UPDATE_PROJECT,
    RpcFailure,
    Transport,
    active_project_updates,
    bearer,
    failure_from_connect_body,
    failure_from_details,
    grpc_code_name,
    open_transport,
    project_row_locked,
)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
PORTS = ("connect", "grpc")
_serial = itertools.count(1)


@dataclass(slots=True)
class Answer:
    """A raw answer from either port."""

    failure: RpcFailure | None
    body: bytes = b""  # JSON text (Connect) or serialized protobuf (gRPC) on success
    http_status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class RawPorts:
    """Bytes in, bytes out: no generated client, so malformed and oversized input reaches the server.

    `auth` (the bearer header) goes with every call made through these methods; a test using
    `http` or `channel` directly adds it itself.
    """

    def __init__(self, server: AltaluneServer, token: str) -> None:
        self.auth = bearer(token)
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10.0)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")

    async def connect(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = {"content-type": content_type, "connect-protocol-version": "1", **self.auth, **(headers or {})}
        reply = await self.http.post("/api" + path, content=body, headers=sent)
        return self._answer(reply)

    async def connect_get(self, path: str, params: Mapping[str, str]) -> Answer:
        reply = await self.http.get("/api" + path, params=dict(params), headers=self.auth)
        return self._answer(reply)

    @staticmethod
    def _answer(reply: httpx.Response) -> Answer:
        headers = {k.lower(): v for k, v in reply.headers.items()}
        if reply.status_code == 200:
            return Answer(None, reply.content, 200, headers)
        # Whatever layer answered, the browser must get a decodable Connect error body.
        assert headers.get("content-type", "").startswith("application/json"), (reply.status_code, headers)
        return Answer(failure_from_connect_body(reply.content), reply.content, reply.status_code, headers)

    async def grpc(
        self,
        path: str,
        body: bytes,
        *,
        timeout_s: float | None = None,
        compression: grpc.Compression | None = None,
    ) -> Answer:
        call = self.channel.unary_unary(path)(
            body, metadata=tuple(self.auth.items()), timeout=timeout_s, compression=compression
        )
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            status = rpc_status.from_call(exc)
            details = list(status.details) if status is not None else []
            trailing = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
            return Answer(
                failure_from_details(grpc_code_name(exc.code()), exc.details() or "", details), b"", None, trailing
            )
        assert isinstance(response, bytes)
        return Answer(None, response)

    async def close(self) -> None:
        await self.http.aclose()
        await self.channel.close()


def grpc_transport(server: AltaluneServer, token: str) -> Transport:
    return open_transport("grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=token)


@pytest_asyncio.fixture(scope="module")
async def raw(server: AltaluneServer, admin_token: str) -> AsyncIterator[RawPorts]:
    ports = RawPorts(server, admin_token)
    try:
        yield ports
    finally:
        await ports.close()


@pytest_asyncio.fixture(scope="module")
async def grpc_client(server: AltaluneServer, admin_token: str) -> AsyncIterator[Transport]:
    client = grpc_transport(server, admin_token)
    try:
        yield client
    finally:
        await client.close()


async def make_project(client: Transport, name: str | None = None) -> project_pb2.Project:
    request = project_pb2.CreateProjectRequest(
        name=name or f"Edge {next(_serial)}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
    )
    return (await client.call(CREATE_PROJECT, request)).ok().project


def get_project_path() -> str:
    return GET_PROJECT.path


def big_create_request(size: int) -> project_pb2.CreateProjectRequest:
    return project_pb2.CreateProjectRequest(
        name="Too big", description="x" * size, timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
    )


# --- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", PORTS)
async def test_a_body_that_does_not_parse_is_invalid_argument_not_an_internal_error(port: str, raw: RawPorts) -> None:
    if port == "connect":
        answers = [
            await raw.connect(get_project_path(), b"{not json"),
            await raw.connect(get_project_path(), b'{"id": "abc"', content_type="application/json"),
            await raw.connect(get_project_path(), b"\xff\xfe\x00", content_type="application/json"),
            await raw.connect(get_project_path(), b"\xff\xff\xff", content_type="application/proto"),
        ]
        assert [a.http_status for a in answers] == [400, 400, 400, 400]
    else:
        answers = [await raw.grpc(get_project_path(), b"\xff\xff\xff")]
    for answer in answers:
        assert answer.failure is not None
        assert (answer.failure.code, answer.failure.reason) == ("invalid_argument", "MALFORMED_REQUEST")
        assert "Traceback" not in answer.failure.message
        assert answer.headers.get("x-request-id"), answer.headers


@pytest.mark.parametrize("port", PORTS)
async def test_fields_the_server_does_not_know_yet_are_ignored(
    port: str, raw: RawPorts, grpc_client: Transport
) -> None:
    project = await make_project(grpc_client)
    if port == "connect":
        body = json.dumps({"id": project.id, "addedInV2": {"nested": [1, 2]}, "another_new_field": "x"}).encode()
        answer = await raw.connect(get_project_path(), body)
        assert answer.failure is None, answer.failure
        got = project_pb2.GetProjectResponse()
        json_format.Parse(answer.body, got)
    else:
        # Field 999 (length-delimited) is unknown to GetProjectRequest.
        body = project_pb2.GetProjectRequest(id=project.id).SerializeToString() + b"\xba\x3e\x03abc"
        answer = await raw.grpc(get_project_path(), body)
        assert answer.failure is None, answer.failure
        got = project_pb2.GetProjectResponse.FromString(answer.body)
    assert got.project == project


async def test_json_responses_are_compact_and_show_zero_values(raw: RawPorts) -> None:
    body = json.dumps(
        {"name": f"Compact {next(_serial)}", "timezone": "UTC", "environment": "ENVIRONMENT_SANDBOX"}
    ).encode()
    answer = await raw.connect(CREATE_PROJECT.path, body)
    assert answer.failure is None, answer.failure
    text = answer.body.decode()
    parsed = json.loads(text)
    assert text == json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)
    assert ": " not in text
    assert parsed["project"]["description"] == ""  # a zero value is present, not omitted
    assert parsed["project"]["environment"] == "ENVIRONMENT_SANDBOX"  # enums by name

    empty = await raw.connect(QUERY_PROJECTS.path, json.dumps({"query": {"keyword": "no such project"}}).encode())
    assert empty.failure is None, empty.failure
    listed = json.loads(empty.body)
    assert listed["data"] == []
    assert listed["meta"]["rowCount"] == "0"  # int64 as a string, zero included
    assert listed["meta"]["pageCount"] == 0
    assert empty.body == json.dumps(listed, separators=(",", ":"), ensure_ascii=False).encode()


async def test_a_connect_protocol_version_other_than_1_is_rejected_with_a_connect_error(raw: RawPorts) -> None:
    answer = await raw.connect(get_project_path(), b'{"id":"abc"}', headers={"connect-protocol-version": "2"})
    assert answer.http_status == 400
    assert answer.failure is not None
    assert answer.failure.code == "invalid_argument"


# --- size limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("port", PORTS)
async def test_a_5_mib_request_is_refused_as_resource_exhausted(port: str, raw: RawPorts) -> None:
    request = big_create_request(5 * MiB)
    if port == "connect":
        answer = await raw.connect(CREATE_PROJECT.path, json_format.MessageToJson(request).encode())
        assert answer.http_status == 429
        assert answer.failure is not None
        assert answer.failure.reason == "REQUEST_TOO_LARGE"
    else:
        answer = await raw.grpc(CREATE_PROJECT.path, request.SerializeToString())
    assert answer.failure is not None
    assert answer.failure.code == "resource_exhausted"


async def test_a_5_mib_body_without_a_declared_length_is_refused_while_streaming(raw: RawPorts) -> None:
    chunk = b" " * (256 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"name":"Too big","timezone":"UTC","environment":"ENVIRONMENT_LIVE","description":"'
        for _ in range(20):  # 5 MiB of padding inside the string
            yield chunk
        yield b'"}'

    reply = await raw.http.post(
        "/api" + CREATE_PROJECT.path, content=body(), headers={"content-type": "application/json", **raw.auth}
    )
    assert reply.status_code == 429
    failure = failure_from_connect_body(reply.content)
    assert (failure.code, failure.reason) == ("resource_exhausted", "REQUEST_TOO_LARGE")


@pytest.mark.parametrize("port", PORTS)
async def test_a_small_gzip_body_that_inflates_past_4_mib_is_refused(port: str, raw: RawPorts) -> None:
    request = big_create_request(5 * MiB)
    if port == "connect":
        compressed = gzip.compress(json_format.MessageToJson(request).encode())
        assert len(compressed) < 64 * 1024
        answer = await raw.connect(CREATE_PROJECT.path, compressed, headers={"content-encoding": "gzip"})
        assert answer.http_status == 429
        assert answer.failure is not None
        assert answer.failure.reason == "REQUEST_TOO_LARGE"
    else:
        answer = await raw.grpc(CREATE_PROJECT.path, request.SerializeToString(), compression=grpc.Compression.Gzip)
    assert answer.failure is not None
    assert answer.failure.code == "resource_exhausted"


@pytest.mark.parametrize("port", PORTS)
async def test_a_gzip_body_under_the_limit_is_accepted(port: str, raw: RawPorts, grpc_client: Transport) -> None:
    project = await make_project(grpc_client)
    request = project_pb2.GetProjectRequest(id=project.id)
    if port == "connect":
        answer = await raw.connect(
            get_project_path(),
            gzip.compress(json_format.MessageToJson(request).encode()),
            headers={"content-encoding": "gzip"},
        )
        assert answer.failure is None, answer.failure
        got = project_pb2.GetProjectResponse()
        json_format.Parse(answer.body, got)
    else:
        answer = await raw.grpc(get_project_path(), request.SerializeToString(), compression=grpc.Compression.Gzip)
        assert answer.failure is None, answer.failure
        got = project_pb2.GetProjectResponse.FromString(answer.body)
    assert got.project.id == project.id


async def test_a_body_that_is_not_gzip_but_says_so_is_invalid_argument(raw: RawPorts) -> None:
    answer = await raw.connect(get_project_path(), b'{"id":"abc"}', headers={"content-encoding": "gzip"})
    assert answer.http_status == 400
    assert answer.failure is not None
    assert answer.failure.code == "invalid_argument"


# --- routing and content types --------------------------------------------------------------------


@pytest.mark.parametrize("port", PORTS)
async def test_an_unknown_procedure_is_unimplemented(port: str, raw: RawPorts) -> None:
    paths = ["/altalune.v1.ProjectService/LaunchRocket", "/altalune.v1.NoSuchService/GetProject"]
    for path in paths:
        if port == "connect":
            answer = await raw.connect(path, b"{}")
            assert answer.http_status == 404, path
        else:
            answer = await raw.grpc(path, b"")
        assert answer.failure is not None, path
        assert answer.failure.code == "unimplemented", (path, answer.failure)
        assert answer.failure.reason == "UNKNOWN_PROCEDURE", (port, path, answer.failure)
        assert answer.failure.metadata["procedure"] == path, (port, answer.failure)


async def test_a_path_outside_the_api_prefix_gets_a_connect_json_404(raw: RawPorts) -> None:
    reply = await raw.http.post("/altalune.v1.ProjectService/GetProject", content=b"{}", headers=raw.auth)
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/json")
    assert failure_from_connect_body(reply.content).code == "not_found"


async def test_an_unsupported_content_type_gets_a_connect_json_error_body(raw: RawPorts) -> None:
    reply = await raw.http.post(
        "/api" + get_project_path(), content=b"id=abc", headers={"content-type": "text/plain", **raw.auth}
    )
    assert reply.status_code == 415
    assert reply.headers["content-type"].startswith("application/json")
    failure = failure_from_connect_body(reply.content)
    assert failure.code == "invalid_argument"
    assert "application/json" in failure.message
    assert reply.headers.get("x-request-id")


# --- Connect GET ----------------------------------------------------------------------------------


async def test_a_side_effect_free_method_can_be_called_with_connect_get(raw: RawPorts, grpc_client: Transport) -> None:
    project = await make_project(grpc_client)
    message = json.dumps({"id": project.id}, separators=(",", ":"))
    answer = await raw.connect_get(get_project_path(), {"connect": "v1", "encoding": "json", "message": message})
    assert answer.failure is None, answer.failure
    got = project_pb2.GetProjectResponse()
    json_format.Parse(answer.body, got)
    assert got.project == project

    # The same through an explicitly percent-encoded URL, as a browser builds it.
    url = f"/api{get_project_path()}?connect=v1&encoding=json&message={urllib.parse.quote(message, safe='')}"
    reply = await raw.http.get(url, headers=raw.auth)
    assert reply.status_code == 200
    assert json.loads(reply.content)["project"]["id"] == project.id

    missing = await raw.connect_get(
        get_project_path(), {"connect": "v1", "encoding": "json", "message": '{"id":"zzzzzzzzzzzzzz"}'}
    )
    assert missing.http_status == 404
    assert missing.failure is not None
    assert (missing.failure.code, missing.failure.reason) == ("not_found", "PROJECT_NOT_FOUND")

    # The generated client's GET mode (binary, base64 and gzip-compressed message) works too.
    client = project_connect.ProjectServiceClient(f"http://127.0.0.1:{raw.http.base_url.port}/api")
    try:
        via_client = await client.get_project(
            project_pb2.GetProjectRequest(id=project.id), headers=raw.auth, use_get=True
        )
    finally:
        await client.close()
    assert via_client.project == project


async def test_connect_get_cannot_call_a_method_with_side_effects(raw: RawPorts, grpc_client: Transport) -> None:
    name = f"Via GET {next(_serial)}"
    message = json.dumps({"name": name, "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"})
    answer = await raw.connect_get(CREATE_PROJECT.path, {"connect": "v1", "encoding": "json", "message": message})
    assert answer.failure is not None
    assert answer.http_status == 405
    assert answer.failure.code == "unimplemented"
    listed = await grpc_client.call(
        QUERY_PROJECTS, project_pb2.QueryProjectsRequest(query=common_pb2.QueryRequest(keyword=name))
    )
    assert list(listed.ok().data) == []


# --- deadlines ------------------------------------------------------------------------------------


async def _no_lingering_update(database_url: str, *, within_s: float = 0.5) -> None:
    deadline = time.monotonic() + within_s
    while True:
        active = await active_project_updates(database_url)
        if not active:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the service's UPDATE is still running in PostgreSQL: {active}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("port", PORTS)
async def test_a_call_stuck_on_a_row_lock_ends_with_deadline_exceeded_and_its_statement_is_cancelled(
    port: str, raw: RawPorts, grpc_client: Transport, module_database_url: str
) -> None:
    project = await make_project(grpc_client)
    request = project_pb2.UpdateProjectRequest(
        id=project.id, name=f"Renamed {next(_serial)}", update_mask=FieldMask(paths=["name"])
    )
    async with project_row_locked(module_database_url, project.id):
        started = time.monotonic()
        if port == "connect":
            answer = await raw.connect(
                "/altalune.v1.ProjectService/UpdateProject",
                json_format.MessageToJson(request).encode(),
                headers={"connect-timeout-ms": "300"},
            )
            assert answer.http_status == 504
            assert answer.failure is not None
            assert answer.failure.reason == "DEADLINE_EXCEEDED"
        else:
            answer = await raw.grpc(
                "/altalune.v1.ProjectService/UpdateProject", request.SerializeToString(), timeout_s=0.3
            )
        elapsed = time.monotonic() - started
        assert answer.failure is not None
        assert answer.failure.code == "deadline_exceeded"
        assert 0.25 <= elapsed < 1.0, elapsed
        # The lock is still held: had the statement not been cancelled, it would still be waiting.
        await _no_lingering_update(module_database_url)

    # Nothing was applied later either, once the lock was gone.
    await asyncio.sleep(0.1)
    after = (await grpc_client.call(GET_PROJECT, project_pb2.GetProjectRequest(id=project.id))).ok().project
    assert after == project


# --- on a private server: things that would disturb the shared one --------------------------------


@pytest_asyncio.fixture
async def private_server(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AltaluneServer]:
    env: dict[str, str] = getattr(request, "param", {})
    async with conftest.running_server(database_url, **env) as running:
        yield running


@pytest.mark.parametrize("private_server", [{"ALTALUNE_MAX_DEADLINE_MS": "300"}], indirect=True)
async def test_a_call_without_a_deadline_is_still_bounded_by_the_server_maximum(
    private_server: AltaluneServer, database_url: str
) -> None:
    token = admin_token_for(private_server)
    client = grpc_transport(private_server, token)
    ports = RawPorts(private_server, token)
    try:
        project = await make_project(client)
        request = project_pb2.UpdateProjectRequest(id=project.id, name="Never", update_mask=FieldMask(paths=["name"]))
        async with project_row_locked(database_url, project.id):
            for port in PORTS:
                started = time.monotonic()
                if port == "connect":
                    # A client asking for a minute gets the server's 300 ms.
                    answer = await ports.connect(
                        UPDATE_PROJECT.path,
                        json_format.MessageToJson(request).encode(),
                        headers={"connect-timeout-ms": "60000"},
                    )
                else:
                    answer = await ports.grpc(UPDATE_PROJECT.path, request.SerializeToString())  # no deadline at all
                elapsed = time.monotonic() - started
                assert answer.failure is not None, port
                assert answer.failure.code == "deadline_exceeded", (port, answer.failure)
                assert elapsed < 1.5, (port, elapsed)
                await _no_lingering_update(database_url)
    finally:
        await client.close()
        await ports.close()


async def test_an_unexpected_failure_is_a_generic_internal_error_and_the_log_has_the_cause(
    private_server: AltaluneServer, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    token = admin_token_for(private_server)
    client = grpc_transport(private_server, token)
    ports = RawPorts(private_server, token)
    try:
        project = await make_project(client)
        # A schema the code does not expect: the service's SELECT now fails inside PostgreSQL.
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("ALTER TABLE projects RENAME COLUMN description TO secret_column_name")
        body = project_pb2.GetProjectRequest(id=project.id)
        capsys.readouterr()
        for port in PORTS:
            rid = f"internal-{port}"
            if port == "connect":
                answer = await ports.connect(
                    GET_PROJECT.path, json_format.MessageToJson(body).encode(), headers={"x-request-id": rid}
                )
                assert answer.http_status == 500
            else:
                call = ports.channel.unary_unary(GET_PROJECT.path)(
                    body.SerializeToString(), metadata=(("x-request-id", rid), *ports.auth.items()), timeout=5
                )
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call
                status = rpc_status.from_call(raised.value)
                details = list(status.details) if status is not None else []
                trailing = {k: v for k, v in (raised.value.trailing_metadata() or ()) if isinstance(v, str)}
                answer = Answer(
                    failure_from_details(grpc_code_name(raised.value.code()), raised.value.details() or "", details),
                    headers=trailing,
                )
            assert answer.failure is not None
            assert (answer.failure.code, answer.failure.message, answer.failure.reason) == (
                "internal",
                "internal error",
                "INTERNAL",
            ), port
            assert answer.headers.get("x-request-id") == rid, port
            leaked = answer.body + repr(answer.failure).encode()
            for secret in (b"secret_column_name", b"description", b"SELECT", b"psycopg", b"Traceback"):
                assert secret not in leaked, (port, secret)
        log = capsys.readouterr()
        printed = log.out + log.err
        for port in PORTS:
            line = next((ln for ln in printed.splitlines() if f"internal-{port}" in ln and "unhandled" in ln), None)
            assert line is not None, f"no log line with request id internal-{port}:\n{printed}"
        assert "UndefinedColumn" in printed  # the cause (with its stack) is in the log only
        assert token not in printed  # the credential is never logged, not even with a failure's context
    finally:
        await client.close()
        await ports.close()


# --- latency --------------------------------------------------------------------------------------


async def test_keep_alive_calls_are_not_held_back_by_delayed_acks(server: AltaluneServer) -> None:
    """A response written in two parts must not wait for the client's delayed ACK (~40 ms each
    without TCP_NODELAY). 20 sequential calls on one connection take ~20 ms; with the stall
    they take over 800 ms, so the bound below leaves a wide margin for a busy machine."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
        await client.get("/healthz")  # connect first
        started = time.perf_counter()
        for _ in range(20):
            assert (await client.get("/healthz")).status_code == 200
        elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"20 keep-alive calls took {elapsed:.2f} s"
