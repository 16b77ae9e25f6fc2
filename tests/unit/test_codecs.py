"""Codecs and compression of the Connect port: lenient JSON in, compact JSON out, bounded gzip."""

from __future__ import annotations

import gzip
import json

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.rpc import error_details_pb2

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.server.codecs import BoundedGzip, JSONCodec, ProtoCodec


def _error_info(error: ConnectError) -> error_details_pb2.ErrorInfo:
    infos = [d for d in error.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, f"expected one ErrorInfo in {error.details}"
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    return info


def test_json_decoding_ignores_fields_the_server_does_not_know() -> None:
    body = b'{"name": "Acme", "timezone": "UTC", "environment": "ENVIRONMENT_LIVE", "owner": {"x": 1}, "tags": [1]}'

    decoded = JSONCodec().decode(body, project_pb2.CreateProjectRequest())

    assert decoded == project_pb2.CreateProjectRequest(
        name="Acme", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
    )


def test_json_decoding_accepts_enum_numbers_and_snake_case_names() -> None:
    decoded = JSONCodec().decode(
        b'{"project_id": "23456789abcdef", "query": {"pagination": {"pageSize": 5}}}',
        employee_pb2.QueryEmployeesRequest(),
    )

    assert decoded.project_id == "23456789abcdef"
    assert decoded.query.pagination.page_size == 5


def test_an_enum_name_from_a_newer_contract_decodes_as_unspecified_for_validation_to_judge() -> None:
    decoded = JSONCodec().decode(
        b'{"name": "Acme", "environment": "ENVIRONMENT_MARTIAN"}', project_pb2.CreateProjectRequest()
    )

    assert decoded.name == "Acme"
    assert decoded.environment == project_pb2.ENVIRONMENT_UNSPECIFIED


def test_an_empty_json_body_is_an_empty_message() -> None:
    assert JSONCodec().decode(b"  \n", project_pb2.GetProjectRequest()) == project_pb2.GetProjectRequest()


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": ',
        b"[1, 2]",
        b'{"name": 5}',
        b'{"environment": {}}',
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
    ],
    ids=["truncated", "array", "wrong-type", "object-for-enum", "not-utf8", "deep-nesting"],
)
def test_malformed_json_is_invalid_argument_with_reason_malformed_request(body: bytes) -> None:
    with pytest.raises(ConnectError) as caught:
        JSONCodec().decode(body, project_pb2.CreateProjectRequest())

    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.message.startswith("malformed request body")
    info = _error_info(caught.value)
    assert (info.reason, info.domain) == ("MALFORMED_REQUEST", "altalune.v1")


def test_json_output_is_compact_and_keeps_zero_values() -> None:
    response = common_pb2.QueryMeta(row_count=0, page=1, page_size=20)

    encoded = JSONCodec().encode(response)

    assert b" " not in encoded
    assert b"\n" not in encoded
    assert json.loads(encoded) == {"rowCount": "0", "pageCount": 0, "page": 1, "pageSize": 20, "filters": {}}


def test_json_output_keeps_non_ascii_text_readable() -> None:
    encoded = JSONCodec().encode(project_pb2.Project(name="Zoë"))

    assert "Zoë".encode() in encoded


def test_json_round_trips_a_message() -> None:
    codec = JSONCodec()
    original = project_pb2.Project(id="23456789abcdef", name="Acme", environment=project_pb2.ENVIRONMENT_SANDBOX)

    assert codec.decode(codec.encode(original), project_pb2.Project()) == original


def test_binary_protobuf_round_trips_a_message() -> None:
    codec = ProtoCodec()
    original = employee_pb2.Employee(id="23456789abcdef", name="Ann", status=employee_pb2.EMPLOYEE_STATUS_ACTIVE)

    assert codec.decode(codec.encode(original), employee_pb2.Employee()) == original


def test_a_malformed_protobuf_body_is_invalid_argument() -> None:
    with pytest.raises(ConnectError) as caught:
        ProtoCodec().decode(b"\x0a\xff\xff\xff\xff\x0f", project_pb2.CreateProjectRequest())

    assert caught.value.code is Code.INVALID_ARGUMENT
    assert _error_info(caught.value).reason == "MALFORMED_REQUEST"


def test_gzip_within_the_limit_round_trips() -> None:
    codec = BoundedGzip(max_bytes=1024)
    data = b"a" * 1024

    compressed = codec.compress(data)

    assert codec.decompress(compressed) == data
    assert gzip.decompress(compressed) == data  # a standard gzip stream, readable by any client
    assert codec.decompress(gzip.compress(b"hello")) == b"hello"


def test_gzip_inflating_past_the_limit_is_resource_exhausted() -> None:
    codec = BoundedGzip(max_bytes=1024)
    bomb = gzip.compress(b"\0" * 10_000_000)  # ~10 KB on the wire, 10 MB inflated

    with pytest.raises(ConnectError) as caught:
        codec.decompress(bomb)

    assert caught.value.code is Code.RESOURCE_EXHAUSTED
    info = _error_info(caught.value)
    assert info.reason == "REQUEST_TOO_LARGE"
    assert dict(info.metadata) == {"limit_bytes": "1024"}


def test_gzip_one_byte_past_the_limit_is_refused() -> None:
    with pytest.raises(ConnectError) as caught:
        BoundedGzip(max_bytes=1024).decompress(gzip.compress(b"a" * 1025))

    assert caught.value.code is Code.RESOURCE_EXHAUSTED


def test_invalid_gzip_data_is_invalid_argument() -> None:
    with pytest.raises(ConnectError) as caught:
        BoundedGzip(max_bytes=1024).decompress(b"definitely not gzip")

    assert caught.value.code is Code.INVALID_ARGUMENT
    assert _error_info(caught.value).reason == "MALFORMED_REQUEST"
