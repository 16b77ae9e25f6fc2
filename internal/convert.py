"""Small conversions shared by every domain's model."""

from __future__ import annotations

import re
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


# An etag is the row's `version` in decimal, and nothing else is: "1", "2", ... up to bigint.
_ETAG = re.compile(r"[1-9][0-9]{0,18}")
_MAX_VERSION = 2**63 - 1


def to_etag(version: int) -> str:
    """The etag of a row at this version. Clients treat it as opaque: they only send it back."""
    return str(version)


def version_of_etag(etag: str) -> int | None:
    """The version an etag names, or None for a string no etag of ours ever was (it matches no row).
    Only the exact form to_etag writes counts: "01", "+1" or " 1" are not etags."""
    if _ETAG.fullmatch(etag) is None:
        return None
    version = int(etag)
    return version if version <= _MAX_VERSION else None
