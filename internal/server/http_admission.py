"""What the HTTP port admits before connectrpc reads a request, and the gRPC-Web error form.

connectrpc answers protocol mistakes (unknown path, content type, method, timeout and version
headers, encodings, gRPC-Web framing) with a bare code and its own wording, some as `internal`
or `unknown`. Checking them here first gives each a precise status and an ErrorInfo reason, in
the framing the caller speaks: a Connect JSON error, or a gRPC-Web trailer for gRPC-Web callers.
Pure functions of the request's head (and, for gRPC-Web, its body): unit-testable without a server.
"""

from __future__ import annotations

import base64
import enum
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo

from internal.errors import (
    InvalidHeader,
    MalformedRequest,
    MethodNotAllowed,
    RequestTooLarge,
    UnknownProcedure,
    UnsupportedContentType,
    UnsupportedEncoding,
    to_grpc_status,
)

ENCODINGS = frozenset({"identity", "gzip"})
CONNECT_CODECS = frozenset({"json", "proto"})
_CONNECT_TIMEOUT = re.compile(r"[0-9]{1,10}")
_GRPC_TIMEOUT = re.compile(r"[0-9]{1,8}[HMSmun]")
_FRAME_HEADER = 5
_COMPRESSED = 0x01
_TRAILER_FRAME = 0x80
CONTENT_TYPE_HINT = "use application/json or application/proto (Connect), or application/grpc-web+proto"
GRPC_HINT = "gRPC needs HTTP/2 trailers: call the gRPC port, or use Connect or gRPC-Web on this port"
GRPC_WEB_HINT = "gRPC-Web is served in binary form: use application/grpc-web+proto (or +json)"


class Protocol(enum.Enum):
    CONNECT = "connect"
    GRPC_WEB = "grpc-web"


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def protocol_of(content_type: str | None) -> Protocol | None:
    """The protocol a request's content type names, None when it names none we speak."""
    media = media_type(content_type or "")
    if media in ("application/grpc-web", "application/grpc-web+proto", "application/grpc-web+json"):
        return Protocol.GRPC_WEB
    if media.startswith("application/") and media.removeprefix("application/") in CONNECT_CODECS:
        return Protocol.CONNECT
    return None


def header_text(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers as text (connectrpc reads them as UTF-8; a value that is not is refused
    here rather than failing inside the library)."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        try:
            headers[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidHeader(name[:60], "the value is not UTF-8 text") from None
    return headers


def admit(
    method: str,
    path: str,
    headers: Mapping[str, str],
    query_string: bytes,
    procedures: Mapping[str, MethodInfo[Any, Any]],
) -> Protocol:
    """The protocol to answer in, or the AppError that refuses the request (raised).

    `path` is the procedure path (`/pkg.Service/Method`), `headers` lower-case names."""
    content_type = headers.get("content-type")
    protocol = protocol_of(content_type) if method != "GET" else Protocol.CONNECT
    info = procedures.get(path)
    if info is None:
        raise UnknownProcedure(path)
    side_effect_free = info.idempotency_level is IdempotencyLevel.NO_SIDE_EFFECTS
    if method not in ("POST", "GET") or (method == "GET" and not side_effect_free):
        raise MethodNotAllowed(method, "GET, POST" if side_effect_free else "POST")
    if protocol is None:
        shown = content_type if content_type is not None else "(none)"
        media = media_type(shown)
        if media.startswith("application/grpc-web"):
            hint = GRPC_WEB_HINT
        elif media.startswith("application/grpc"):
            hint = GRPC_HINT
        else:
            hint = CONTENT_TYPE_HINT
        raise UnsupportedContentType(shown, hint)
    if protocol is Protocol.GRPC_WEB:
        _check_grpc_web_head(headers)
    elif method == "GET":
        _check_connect_get(query_string)
        _check_connect_head(headers, encoding_header=None)
    else:
        _check_connect_head(headers, encoding_header="content-encoding")
    return protocol


STREAM_MEDIA_TYPES = frozenset({"application/connect+proto", "application/connect+json"})
STREAM_HINT = "streams are served with the Connect streaming protocol: application/connect+proto (or +json)"


def admit_stream(method: str, headers: Mapping[str, str], max_request_bytes: int) -> None:
    """Refuse (raise) a streaming call this port does not serve: only Connect streaming over POST."""
    if method != "POST":
        raise MethodNotAllowed(method, "POST")
    content_type = headers.get("content-type")
    if media_type(content_type or "") not in STREAM_MEDIA_TYPES:
        shown = content_type if content_type is not None else "(none)"
        raise UnsupportedContentType(shown, GRPC_HINT if media_type(shown) == "application/grpc" else STREAM_HINT)
    declared = headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise MalformedRequest("invalid content-length")
    if declared is not None and int(declared) > max_request_bytes:
        raise RequestTooLarge(max_request_bytes)
    _check_connect_head(headers, encoding_header="connect-content-encoding")


def _check_connect_head(headers: Mapping[str, str], *, encoding_header: str | None) -> None:
    version = headers.get("connect-protocol-version")
    if version is not None and version != "1":
        raise InvalidHeader("connect-protocol-version", f"must be 1, got {version[:20]!r}")
    timeout = headers.get("connect-timeout-ms")
    if timeout is not None and (not _CONNECT_TIMEOUT.fullmatch(timeout) or int(timeout) == 0):
        raise InvalidHeader("connect-timeout-ms", "must be a positive whole number of milliseconds (at most 10 digits)")
    if encoding_header is not None:
        _check_encoding(encoding_header, headers.get(encoding_header))


def _check_connect_get(query_string: bytes) -> None:
    params = urllib.parse.parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    if "message" not in params:
        raise MalformedRequest("a Connect GET needs the 'message' query parameter")
    version = params.get("connect", ["v1"])[0]
    if version != "v1":
        raise InvalidHeader("connect", f"query parameter must be v1, got {version[:20]!r}")
    codec = params.get("encoding", [""])[0]
    if codec not in CONNECT_CODECS:
        raise UnsupportedContentType(codec or "(none)", "a Connect GET needs encoding=json or encoding=proto")
    _check_encoding("compression", params.get("compression", [None])[0])


def _check_grpc_web_head(headers: Mapping[str, str]) -> None:
    timeout = headers.get("grpc-timeout")
    if timeout is not None and not _GRPC_TIMEOUT.fullmatch(timeout):
        raise InvalidHeader("grpc-timeout", "must be 1 to 8 digits and a unit (H, M, S, m, u, n)")
    _check_encoding("grpc-encoding", headers.get("grpc-encoding"))


def _check_encoding(header: str, value: str | None) -> None:
    if value is not None and value.strip().lower() not in ENCODINGS:
        raise UnsupportedEncoding(header, value)


def check_grpc_web_body(body: bytes, headers: Mapping[str, str]) -> None:
    """A unary gRPC-Web request is exactly one message frame, compressed only with an encoding."""
    if len(body) < _FRAME_HEADER:
        raise MalformedRequest(f"gRPC-Web body of {len(body)} bytes holds no complete frame header")
    flags = body[0]
    declared = int.from_bytes(body[1:_FRAME_HEADER], "big")
    if flags & ~_COMPRESSED:
        raise MalformedRequest(f"gRPC-Web frame flags {flags:#04x}: a request carries one message frame")
    if flags & _COMPRESSED and headers.get("grpc-encoding", "identity").strip().lower() == "identity":
        raise MalformedRequest("gRPC-Web frame is marked compressed but grpc-encoding names no compression")
    if declared != len(body) - _FRAME_HEADER:
        raise MalformedRequest(
            f"gRPC-Web frame declares {declared} bytes but {len(body) - _FRAME_HEADER} follow its header"
        )


def grpc_web_error_body(error: ConnectError) -> bytes:
    """The error as a gRPC-Web trailer frame: status, message and details, as gRPC sends them."""
    status = to_grpc_status(error)
    lines = [f"grpc-status: {status.code.value[0]}", f"grpc-message: {urllib.parse.quote(status.details)}"]
    lines += [f"{key}: {value}" for key, value in _text_trailers(status.trailing_metadata)]
    block = ("\r\n".join(lines) + "\r\n").encode()
    return bytes([_TRAILER_FRAME]) + len(block).to_bytes(4, "big") + block


def _text_trailers(metadata: tuple[tuple[str, str | bytes], ...]) -> list[tuple[str, str]]:
    return [
        (key, base64.b64encode(value).decode().rstrip("=") if isinstance(value, bytes) else value)
        for key, value in metadata
    ]
