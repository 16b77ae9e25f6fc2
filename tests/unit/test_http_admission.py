"""What the HTTP port admits before connectrpc reads a request: each refusal is a precise AppError,
and a gRPC-Web refusal is a well-formed trailer frame."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import pytest
from connectrpc.method import IdempotencyLevel, MethodInfo
from google.rpc import error_details_pb2, status_pb2

from altalune.v1 import project_pb2
from internal.errors import (
    AppError,
    InvalidHeader,
    MalformedRequest,
    MethodNotAllowed,
    UnknownProcedure,
    UnsupportedContentType,
    UnsupportedEncoding,
    to_connect_error,
)
from internal.server.http_admission import Protocol, admit, check_grpc_web_body, grpc_web_error_body, header_text

GET = "/altalune.v1.ProjectService/GetProject"
CREATE = "/altalune.v1.ProjectService/CreateProject"
PROCEDURES: dict[str, MethodInfo[Any, Any]] = {
    GET: MethodInfo(
        name="GetProject",
        service_name="altalune.v1.ProjectService",
        input=project_pb2.GetProjectRequest,
        output=project_pb2.GetProjectResponse,
        idempotency_level=IdempotencyLevel.NO_SIDE_EFFECTS,
    ),
    CREATE: MethodInfo(
        name="CreateProject",
        service_name="altalune.v1.ProjectService",
        input=project_pb2.CreateProjectRequest,
        output=project_pb2.CreateProjectResponse,
        idempotency_level=IdempotencyLevel.UNKNOWN,
    ),
}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "query", "protocol"),
    [
        ("POST", CREATE, JSON, b"", Protocol.CONNECT),
        ("POST", CREATE, {"content-type": "application/json; charset=utf-8"}, b"", Protocol.CONNECT),
        ("POST", CREATE, {"content-type": "application/proto", "connect-timeout-ms": "1500"}, b"", Protocol.CONNECT),
        ("POST", CREATE, {"content-type": "application/grpc-web+proto", "grpc-timeout": "5S"}, b"", Protocol.GRPC_WEB),
        ("POST", CREATE, {"content-type": "application/grpc-web", "grpc-encoding": "gzip"}, b"", Protocol.GRPC_WEB),
        ("GET", GET, {}, b"encoding=json&message=%7B%7D&connect=v1", Protocol.CONNECT),
        ("GET", GET, {}, b"encoding=proto&message=&base64=1&compression=gzip", Protocol.CONNECT),
    ],
)
def test_a_well_formed_request_is_admitted_in_its_protocol(
    method: str, path: str, headers: dict[str, str], query: bytes, protocol: Protocol
) -> None:
    assert admit(method, path, headers, query, PROCEDURES) is protocol


@pytest.mark.parametrize(
    ("method", "path", "headers", "query", "refusal", "detail"),
    [
        ("POST", "/altalune.v1.Nope/Get", JSON, b"", UnknownProcedure, "/altalune.v1.Nope/Get"),
        ("GET", CREATE, {}, b"encoding=json&message=%7B%7D", MethodNotAllowed, "POST"),
        ("DELETE", GET, JSON, b"", MethodNotAllowed, "GET, POST"),
        ("POST", GET, {}, b"", UnsupportedContentType, "(none)"),
        ("POST", GET, {"content-type": "application/grpc"}, b"", UnsupportedContentType, "gRPC port"),
        ("POST", GET, {"content-type": "application/grpc-web-text"}, b"", UnsupportedContentType, "binary form"),
        ("POST", GET, {"content-type": "application/connect+json"}, b"", UnsupportedContentType, "application/json"),
        ("POST", GET, {**JSON, "connect-timeout-ms": "0"}, b"", InvalidHeader, "connect-timeout-ms"),
        ("POST", GET, {**JSON, "connect-timeout-ms": "-5"}, b"", InvalidHeader, "connect-timeout-ms"),
        ("POST", GET, {**JSON, "connect-timeout-ms": "12345678901"}, b"", InvalidHeader, "connect-timeout-ms"),
        ("POST", GET, {**JSON, "connect-protocol-version": "2"}, b"", InvalidHeader, "connect-protocol-version"),
        ("POST", GET, {**JSON, "content-encoding": "br"}, b"", UnsupportedEncoding, "content-encoding"),
        (
            "POST",
            GET,
            {"content-type": "application/grpc-web", "grpc-timeout": "5"},
            b"",
            InvalidHeader,
            "grpc-timeout",
        ),
        (
            "POST",
            GET,
            {"content-type": "application/grpc-web", "grpc-encoding": "zstd"},
            b"",
            UnsupportedEncoding,
            "zstd",
        ),
        ("GET", GET, {}, b"encoding=json", MalformedRequest, "message"),
        ("GET", GET, {}, b"encoding=xml&message=x", UnsupportedContentType, "xml"),
        ("GET", GET, {}, b"encoding=json&message=x&connect=v2", InvalidHeader, "connect"),
        ("GET", GET, {}, b"encoding=json&message=x&compression=br", UnsupportedEncoding, "compression"),
    ],
)
def test_a_protocol_mistake_is_refused_with_its_own_reason(
    method: str, path: str, headers: dict[str, str], query: bytes, refusal: type[AppError], detail: str
) -> None:
    with pytest.raises(refusal) as caught:
        admit(method, path, headers, query, PROCEDURES)
    assert detail in caught.value.message + " ".join(caught.value.metadata.values())


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", {}),
        (b"\x00\x00\x00", {}),
        (b"\x00\x00\x00\x00\x05abc", {}),
        (b"\x00\x00\x00\x00\x01abc", {}),
        (b"\x01\x00\x00\x00\x00", {}),
        (b"\x01\x00\x00\x00\x00", {"grpc-encoding": "identity"}),
        (b"\x80\x00\x00\x00\x00", {}),
        (b"\x02\x00\x00\x00\x00", {}),
    ],
)
def test_a_grpc_web_body_that_is_not_one_message_frame_is_malformed(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(MalformedRequest):
        check_grpc_web_body(body, headers)


def test_one_message_frame_is_accepted_compressed_only_with_an_encoding() -> None:
    check_grpc_web_body(b"\x00\x00\x00\x00\x02ab", {})
    check_grpc_web_body(b"\x01\x00\x00\x00\x02ab", {"grpc-encoding": "gzip"})


def test_a_grpc_web_error_is_one_trailer_frame_with_status_message_and_details() -> None:
    body = grpc_web_error_body(to_connect_error(MalformedRequest("bad frame: 9 ≠ 2")))

    assert body[0] == 0x80
    assert int.from_bytes(body[1:5], "big") == len(body) - 5
    trailers = dict(line.split(": ", 1) for line in body[5:].decode().strip().split("\r\n"))
    assert trailers["grpc-status"] == "3"
    assert urllib.parse.unquote(trailers["grpc-message"]) == "bad frame: 9 ≠ 2"
    status = status_pb2.Status.FromString(base64.b64decode(trailers["grpc-status-details-bin"] + "=="))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "MALFORMED_REQUEST"


def test_headers_are_read_as_utf8_text_and_a_value_that_is_not_is_refused_by_name() -> None:
    assert header_text([(b"X-Name", "Zoë".encode())]) == {"x-name": "Zoë"}
    with pytest.raises(InvalidHeader) as caught:
        header_text([(b"content-type", b"application/json"), (b"x-high", b"\xff\xfe")])
    assert caught.value.metadata == {"header": "x-high"}
