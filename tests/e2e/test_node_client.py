"""connect-node (the Connect client for Node.js) calling the real `altalune serve` over HTTP/2 with
Connect JSON: `createConnectTransport({httpVersion: "2", useBinaryFormat: false})`, the client a Node
service would use. Before the HTTP port spoke HTTP/2, every such call failed `[internal] Protocol error`.

tests/e2e/node/h2_client.mjs makes its calls over one transport: create a project and two employees,
read them back, query both lists, two calls that must fail (not found, invalid argument, with their
ErrorInfo / BadRequest details), then 20 calls at once; then it cancels 300 calls one after another
(each a health Watch, reset once answered) beside a Watch that stays open, as a client with
deadlines does, and calls once more. Its descriptors come from a
FileDescriptorSet written here from the generated modules, so no generated JavaScript is committed.

What proves HTTP/2, from both ends: node reports a single `http2` session (ALPN `h2c`), the odd stream
id of every call, and 20 streams open at once on it; the server's access log (JSON lines) names the
same peer address, that session's socket, for every call. Twenty calls in flight on one TCP connection
is multiplexing, which HTTP/1.1 cannot do.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2

from internal.config import REPO_ROOT
from internal.container import contract
from tests.e2e.clients import PUBLIC_ID, free_port
from tests.e2e.test_log_pipeline import json_lines
from tests.e2e.test_process import bootstrap_token, serve_env, serving, stopped

pytestmark = pytest.mark.e2e

NODE_DIR = Path(REPO_ROOT) / "tests" / "e2e" / "node"
SCRIPT = NODE_DIR / "h2_client.mjs"
CONCURRENT_CALLS = 20  # h2_client.mjs's CONCURRENT_CALLS
NODE_TIMEOUT_S = 60.0


@pytest.fixture
def node() -> str:
    """The node binary. Without node the test cannot run (skipped); with node but without the
    packages, `make setup` was not run, which is a failure to fix, not a reason to skip."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not on PATH: this test runs connect-node (Node.js 20+)")
    if not (NODE_DIR / "node_modules" / "@connectrpc" / "connect-node" / "package.json").is_file():
        pytest.fail(f"{NODE_DIR / 'node_modules'} is missing or incomplete: run `make setup` (it runs npm ci there)")
    return found


def descriptor_set() -> bytes:
    """The contract's files and everything they import (plus google/rpc/error_details.proto, for the
    error details), dependencies first: what @bufbuild/protobuf's createFileRegistry resolves."""
    ordered: list[FileDescriptor] = []

    def add(file: FileDescriptor) -> None:
        if file in ordered:
            return
        for dependency in file.dependencies:
            add(dependency)
        ordered.append(file)

    for service in contract():
        add(service.file)
    add(error_details_pb2.DESCRIPTOR)
    add(health_pb2.DESCRIPTOR)
    files = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        file.CopyToProto(files.file.add())
    return files.SerializeToString()


async def run_node(node: str, base_url: str, descriptors: Path, token: str) -> tuple[int, str, str]:
    """The Node client, its credential in the environment (not in argv, which `ps` shows)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ALTALUNE_")}, "ALTALUNE_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        base_url,
        str(descriptors),
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_connect_node_over_http2_one_session(node: str, database_url: str, tmp_path: Path) -> None:
    descriptors = tmp_path / "altalune.binpb"
    descriptors.write_bytes(descriptor_set())
    grpc_port, http_port = free_port(), free_port()
    env = serve_env(
        database_url, tmp_path / "secrets", grpc_port, http_port, ALTALUNE_LOCAL_ISSUER="on", ALTALUNE_LOG_FORMAT="json"
    )
    token, _ = await bootstrap_token(env)
    async with serving(env) as process:
        code, out, err = await run_node(node, f"http://127.0.0.1:{http_port}/api", descriptors, token)
        _, stderr = await stopped(process)
    assert code == 0, f"h2_client.mjs failed:\n{err}"
    summary: dict[str, Any] = json.loads(out)

    assert summary["contentTypes"] == {"request": ["application/json"], "response": ["application/json"]}
    # The answers: ids round-trip, fields are what was sent, errors carry their details.
    project = summary["created"]["ok"]["project"]
    assert PUBLIC_ID.fullmatch(project["id"])
    assert project["name"].startswith("Node H2 ")
    assert (project["timezone"], project["environment"]) == ("Europe/Paris", "ENVIRONMENT_SANDBOX")
    assert project["description"] == "made by connect-node over HTTP/2"
    assert project["etag"]
    assert project["createdAt"]
    assert summary["fetched"] == {"ok": {"project": project}}
    employee = summary["employee"]["ok"]["employee"]
    assert PUBLIC_ID.fullmatch(employee["id"])
    assert (employee["projectId"], employee["name"], employee["status"]) == (
        project["id"],
        "Ada Lovelace",
        "EMPLOYEE_STATUS_ACTIVE",
    )
    queried = summary["queried"]["ok"]
    assert queried["data"] == [employee]  # the keyword and the status filter leave Ada only
    assert queried["meta"]["rowCount"] == "1"  # int64: a string in proto JSON
    assert [p["id"] for p in summary["listed"]["ok"]["data"]] == [project["id"]]
    missing = summary["missing"]["error"]
    assert (missing["code"], missing["reason"], missing["domain"]) == ("not_found", "EMPLOYEE_NOT_FOUND", "altalune.v1")
    invalid = summary["invalid"]["error"]
    assert invalid["code"] == "invalid_argument"
    assert invalid["reason"] == "INVALID_ARGUMENT"
    assert [(v["field"], v["reason"]) for v in invalid["violations"]] == [
        ("id", "public_id.len"),
        ("id", "public_id.alphabet"),
    ]
    assert summary["concurrent"] == [employee["id"] if i % 2 == 0 else project["id"] for i in range(CONCURRENT_CALLS)]

    # A client that cancels calls: every reset stream was answered as cancelled, the session was
    # retired gracefully (the Watch open on it went on) and the client moved to a new one.
    cancelling = summary["cancelling"]
    assert cancelling["unexpected"] == []
    assert cancelling["stayedOpen"], cancelling["stayingError"]
    assert cancelling["newSessions"] >= 2, cancelling  # 300 resets, a session retired after 128
    assert cancelling["after"]["ok"]["project"] == project

    # HTTP/2, as node saw it: one session, one stream per call, 20 streams open at once.
    calls: list[dict[str, Any]] = summary["calls"]
    h2 = summary["http2"]
    assert h2["sessions"] == 1
    assert h2["alpnProtocol"] == "h2c"  # node's name for HTTP/2 over cleartext TCP
    # One client-initiated (odd) stream per call, in the order opened: no retry, no second connection.
    assert sorted(h2["streamIds"]) == list(range(1, 2 * len(calls), 2)), h2["streamIds"]
    assert h2["serverMaxConcurrentStreams"] >= CONCURRENT_CALLS  # the server's SETTINGS frame
    assert h2["concurrentPeakOpenStreams"] == CONCURRENT_CALLS
    for call in calls:
        assert call["answeredRequestId"] == call["requestId"], call

    # ... and as the server saw it: each call's one access-log line, all from that session's socket.
    lines: dict[str, list[dict[str, Any]]] = {}
    for record in json_lines(stderr.decode()):
        if record["event"] == "rpc":
            lines.setdefault(str(record.get("request_id")), []).append(record)
    peer = f"{h2['localAddress']}:{h2['localPort']}"
    for call in calls:
        logged = lines.get(call["requestId"], [])
        assert len(logged) == 1, (call, logged)
        line = logged[0]
        assert (line["rpc"], line["code"], line["transport"]) == (call["rpc"], call["code"], "connect"), line
        assert line["peer"] == peer, (line, peer)
