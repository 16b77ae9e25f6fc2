"""Codecs and compression for the Connect port, covering what connectrpc 0.10.1 leaves to us:
malformed bodies are INVALID_ARGUMENT, unknown JSON fields are ignored, responses are compact JSON
with zero values present, and gzip bodies cannot inflate past the request size limit."""

from __future__ import annotations

import json
import zlib
from typing import Any

from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from internal.errors import MalformedRequest, RequestTooLarge, to_connect_error


def _malformed(what: str) -> ConnectError:
    return to_connect_error(MalformedRequest(f"malformed request body: {what}"))


class JSONCodec:
    """Proto3 canonical JSON: lenient on input (clients are upgraded after servers), compact on output."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        if not data.strip():
            return message
        try:
            json_format.Parse(bytes(data), message, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise _malformed(str(exc).split("\n", 1)[0][:200]) from None
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _malformed("not valid UTF-8 JSON") from None
        return message


class ProtoCodec:
    """Binary protobuf; a body that does not parse is INVALID_ARGUMENT, like on the gRPC port."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        try:
            message.ParseFromString(bytes(data))
        except (DecodeError, RecursionError):
            raise _malformed("not a valid protobuf message") from None
        return message


class BoundedGzip:
    """gzip whose decompression stops at the size limit instead of inflating a bomb into memory."""

    def __init__(self, max_bytes: int, level: int = 6) -> None:
        self._max_bytes = max_bytes
        self._level = level

    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        # One C call: most responses are a few hundred bytes, where set-up dominates the cost.
        return zlib.compress(data, self._level, wbits=16 + zlib.MAX_WBITS)

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = decompressor.decompress(data, self._max_bytes + 1)
        except zlib.error:
            raise _malformed("invalid gzip data") from None
        if len(out) > self._max_bytes or decompressor.unconsumed_tail:
            raise to_connect_error(RequestTooLarge(self._max_bytes))
        return out
