"""The one mapping of application errors onto Connect errors and gRPC statuses, with google.rpc details."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from internal.domain.employee.errors import EmployeeEmailTaken, EmployeeNotFound
from internal.domain.project.errors import ProjectNameTaken
from internal.errors import (
    AppError,
    Busy,
    DatabaseUnavailable,
    DeadlineExceeded,
    FieldViolation,
    InternalError,
    InvalidArgument,
    RequestTooLarge,
    to_connect_error,
    to_grpc_status,
)
from internal.tenancy import ProjectNotFound

M = TypeVar("M", bound=Message)
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _unpack(details: Iterable[any_pb2.Any], kind: type[M]) -> list[M]:
    """Every detail of the given type, from a ConnectError's or a google.rpc.Status's Any list."""
    found: list[M] = []
    for detail in details:
        if detail.TypeName() == kind.DESCRIPTOR.full_name:
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def _error_info(error: ConnectError) -> error_details_pb2.ErrorInfo:
    [info] = _unpack(error.details, error_details_pb2.ErrorInfo)
    return info


@pytest.mark.parametrize(
    ("error", "code", "reason", "metadata"),
    [
        (ProjectNotFound("23456789abcdef"), Code.NOT_FOUND, "PROJECT_NOT_FOUND", {"project_id": "23456789abcdef"}),
        (ProjectNameTaken("Acme"), Code.ALREADY_EXISTS, "PROJECT_NAME_TAKEN", {"name": "Acme"}),
        (
            EmployeeNotFound("p2345678abcdef", "e2345678abcdef"),
            Code.NOT_FOUND,
            "EMPLOYEE_NOT_FOUND",
            {"project_id": "p2345678abcdef", "employee_id": "e2345678abcdef"},
        ),
        (
            EmployeeEmailTaken("p2345678abcdef", "a@b.c"),
            Code.ALREADY_EXISTS,
            "EMPLOYEE_EMAIL_TAKEN",
            {"project_id": "p2345678abcdef", "email": "a@b.c"},
        ),
        (DeadlineExceeded(), Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", {}),
        (RequestTooLarge(4096), Code.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE", {"limit_bytes": "4096"}),
        (InternalError(), Code.INTERNAL, "INTERNAL", {}),
    ],
)
def test_a_connect_error_carries_the_code_message_and_error_info(
    error: AppError, code: Code, reason: str, metadata: dict[str, str]
) -> None:
    connect = to_connect_error(error)

    assert connect.code is code
    assert connect.message == error.message
    info = _error_info(connect)
    assert (info.reason, info.domain, dict(info.metadata)) == (reason, "altalune.v1", metadata)
    assert _unpack(connect.details, error_details_pb2.BadRequest) == []
    assert _unpack(connect.details, error_details_pb2.RetryInfo) == []


def test_invalid_argument_carries_a_bad_request_with_every_field_violation() -> None:
    error = InvalidArgument(
        [
            FieldViolation("name", "value is required", "required"),
            FieldViolation('query.filters["x"]', "unknown filter key 'x'", "query.filter_key"),
        ]
    )

    connect = to_connect_error(error)

    assert connect.code is Code.INVALID_ARGUMENT
    assert connect.message == "invalid request: name: value is required (and 1 more)"
    assert _error_info(connect).reason == "INVALID_ARGUMENT"
    [bad_request] = _unpack(connect.details, error_details_pb2.BadRequest)
    assert [(v.field, v.description, v.reason) for v in bad_request.field_violations] == [
        ("name", "value is required", "required"),
        ('query.filters["x"]', "unknown filter key 'x'", "query.filter_key"),
    ]


@pytest.mark.parametrize(
    ("error", "seconds", "nanos"),
    [(Busy("the table"), 1, 0), (DatabaseUnavailable(retry_after_s=2.5), 2, 500_000_000)],
)
def test_retryable_errors_are_unavailable_with_retry_info(error: AppError, seconds: int, nanos: int) -> None:
    connect = to_connect_error(error)

    assert connect.code is Code.UNAVAILABLE
    [retry] = _unpack(connect.details, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (seconds, nanos)


def test_the_grpc_status_has_the_same_code_message_and_details_in_grpc_status_details_bin() -> None:
    connect = to_connect_error(
        InvalidArgument([FieldViolation("timezone", "not a time zone", "timezone.iana")], message="bad zone")
    )

    status = to_grpc_status(connect)

    assert status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "bad zone"
    metadata = dict(status.trailing_metadata)
    rpc_status = status_pb2.Status.FromString(metadata[STATUS_DETAILS_KEY])
    assert rpc_status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] == 3
    assert rpc_status.message == "bad zone"
    assert list(rpc_status.details) == list(connect.details)
    [info] = _unpack(rpc_status.details, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "altalune.v1")
    [bad_request] = _unpack(rpc_status.details, error_details_pb2.BadRequest)
    assert bad_request.field_violations[0].field == "timezone"


@pytest.mark.parametrize("code", list(Code))
def test_every_connect_code_maps_to_the_grpc_code_of_the_same_name(code: Code) -> None:
    status = to_grpc_status(ConnectError(code, "x"))

    expected = "CANCELLED" if code is Code.CANCELED else code.name
    assert status.code.name == expected
    assert status_pb2.Status.FromString(dict(status.trailing_metadata)[STATUS_DETAILS_KEY]).code == status.code.value[0]
