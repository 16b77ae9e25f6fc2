"""to_timestamp agrees with protobuf's own Timestamp.FromDatetime, to the microsecond; an etag names a
version in exactly the one form to_etag writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from internal.convert import to_etag, to_timestamp, version_of_etag


def _reference(value: datetime) -> Timestamp:
    expected = Timestamp()
    expected.FromDatetime(value)
    return expected


def test_edges_match_from_datetime() -> None:
    for value in (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
        datetime(2026, 12, 2, 9, 30, tzinfo=timezone(timedelta(hours=-11, minutes=-30))),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ):
        assert to_timestamp(value) == _reference(value), value


def test_random_instants_in_any_offset_match_from_datetime() -> None:
    rng = random.Random(20261202)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(5000):
        instant = epoch + timedelta(microseconds=rng.randint(-6 * 10**16, 6 * 10**16))
        value = instant.astimezone(timezone(timedelta(minutes=rng.randint(-14 * 60, 14 * 60))))
        assert to_timestamp(value) == _reference(value), value


@pytest.mark.parametrize("version", [1, 2, 10, 2**63 - 1])
def test_an_etag_names_its_version(version: int) -> None:
    assert version_of_etag(to_etag(version)) == version


@pytest.mark.parametrize(
    "etag", ["", "0", "01", "+1", "-1", " 1", "1 ", "1\n", "1.0", "1_000", "\uff11", "abc", str(2**63), "9" * 64]
)
def test_a_string_in_any_other_form_names_no_version(etag: str) -> None:
    assert version_of_etag(etag) is None
