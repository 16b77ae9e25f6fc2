"""Small conversions shared by every domain's model."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime) -> Timestamp:
    """Exact to the microsecond, without Timestamp.FromDatetime's time tuple round trip (a page of
    rows converts two timestamps per row)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)
