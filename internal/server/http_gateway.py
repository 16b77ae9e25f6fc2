"""The ASGI layer in front of the Connect app: everything that happens before or around the
interceptor chain on the HTTP port.

- request id accepted or minted, echoed on every response;
- request bodies bounded (compressed size) before connectrpc reads them;
- CORS for an allow-list of origins, preflights answered;
- every error, including routing/decoding errors raised before the interceptors, leaves as a
  Connect JSON error body a browser client can decode;
- /healthz (liveness) and /readyz (database reachable, not shutting down), and grpc.health.v1
  under /api as on the gRPC port (internal/server/health.py);
- /metrics (Prometheus; behind a bearer token when ALTALUNE_METRICS_TOKEN is set).
Health, readiness and metrics are outside the interceptor chain: never limited, never counted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import MethodInfo
from google.protobuf.json_format import MessageToDict
from google.protobuf.symbol_database import Default as default_symbols

from internal.addresses import FORWARDED_FOR_HEADER, IPNetwork, caller_address, socket_peer
from internal.errors import (
    AppError,
    DeadlineExceeded,
    InternalError,
    MalformedRequest,
    MethodNotAllowed,
    MetricsTokenRequired,
    NoRoute,
    RequestTooLarge,
    to_connect_error,
)
from internal.logs import get_logger
from internal.observability.metrics import Metrics
from internal.rpc.calls import REQUEST_ID_HEADER, CallRecord, call_record, current_call
from internal.server.health import CHECK_PATH, WATCH_PATH
from internal.server.http_admission import (
    Protocol,
    admit,
    admit_stream,
    check_grpc_web_body,
    grpc_web_error_body,
    header_text,
    protocol_of,
)

log = get_logger("altalune.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HTTP_STATUS_BY_CODE: dict[Code, int] = {
    Code.CANCELED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

CORS_ALLOW_METHODS = "GET, POST"
CORS_ALLOW_HEADERS = (
    "Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Accept-Encoding, "
    "Connect-Content-Encoding, Accept-Encoding, Content-Encoding, Grpc-Timeout, X-Grpc-Web, "
    "X-User-Agent, Authorization, X-Request-Id, Traceparent, Tracestate"
)
CORS_EXPOSE_HEADERS = (
    "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Content-Encoding, Connect-Content-Encoding, X-Request-Id, "
    "Retry-After, RateLimit, RateLimit-Policy"
)
CORS_MAX_AGE = "7200"


def connect_error_body(error: ConnectError, http_status: int | None = None) -> tuple[int, bytes]:
    """Render an error as the Connect unary error body: code, message, details (value + debug)."""
    details = []
    for any_message in error.details:
        type_name = any_message.type_url.rsplit("/", 1)[-1]
        entry: dict[str, Any] = {
            "type": type_name,
            "value": base64.b64encode(any_message.value).decode().rstrip("="),
        }
        try:
            message_class = default_symbols().GetSymbol(type_name)
            entry["debug"] = MessageToDict(message_class.FromString(any_message.value))
        except KeyError:
            pass
        details.append(entry)
    body: dict[str, Any] = {"code": error.code.name.lower(), "message": error.message}
    if details:
        body["details"] = details
    status = http_status or HTTP_STATUS_BY_CODE.get(error.code, 500)
    return status, json.dumps(body, separators=(",", ":")).encode()


def _has_reason(body: Mapping[str, Any]) -> bool:
    details = body.get("details")
    return isinstance(details, list) and any(
        isinstance(d, dict) and d.get("type") == "google.rpc.ErrorInfo" for d in details
    )


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allowed_origins: frozenset[str]

    def allows(self, origin: str | None) -> bool:
        return origin is not None and origin in self.allowed_origins


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _forwarded_for(scope: Scope) -> str | None:
    """Every X-Forwarded-For field of the request, joined (a list split over fields is one list)."""
    fields = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == _FORWARDED_FOR]
    return ",".join(fields) if fields else None


_BACKSTOP_BODY_LIMIT = 64 * 1024
_FORWARDED_FOR = FORWARDED_FOR_HEADER.encode()
# Probes and scrapes come every few seconds: their lines would drown the access log.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Probes' paths: no access-log line each, as /healthz (the gRPC port logs none for its health either).
_QUIET_PROCEDURES = frozenset({CHECK_PATH, WATCH_PATH})


class HttpGateway:
    """Outermost ASGI app of the HTTP port; `connect_app` serves the RPCs under `prefix`."""

    def __init__(
        self,
        connect_app: ASGIApp,
        *,
        max_request_bytes: int,
        cors: CorsPolicy,
        readiness: Callable[[], Awaitable[bool]],
        procedures: Mapping[str, MethodInfo[Any, Any]],
        streams: Mapping[str, MethodInfo[Any, Any]] | None = None,
        prefix: str = "/api",
        metrics: Metrics | None = None,
        metrics_token: str | None = None,
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        self._app = connect_app
        self._trusted = trusted_proxies
        self._metrics = metrics
        self._metrics_token = metrics_token.encode() if metrics_token else None
        self._procedures = procedures
        self._streams = streams or {}
        self._max = max_request_bytes
        self._cors = cors
        self._readiness = readiness
        self._prefix = prefix
        self._quiet = _QUIET_PATHS | {prefix + path for path in _QUIET_PROCEDURES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = str(scope.get("path", ""))
        client = scope.get("client")
        peer: str | None
        via: str | None = None
        if client and self._trusted:
            peer, via = caller_address(client[0], client[1], _forwarded_for(scope), self._trusted)
        else:
            peer = socket_peer(client)
        with call_record(
            _header(scope, b"x-request-id"), transport="connect", peer=peer, observer=self._metrics, via=via
        ) as record:
            record.http_method, record.path = scope.get("method"), path[:200]
            record.http_version = scope.get("http_version")
            record.quiet = path in self._quiet
            await self._serve(scope, receive, send, record)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, record: CallRecord) -> None:
        request_id = record.request_id
        origin = _header(scope, b"origin")
        cors_ok = self._cors.allows(origin)
        if origin is not None and not cors_ok:
            # The browser blocks the answer; without this line the operator never learns why.
            log.warning("CORS origin refused", origin=origin[:200], path=record.path)
        started = False
        is_rpc = str(scope.get("path", "")).startswith(self._prefix + "/")

        async def send_out(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                # The preflight answer sets its own CORS headers; a second Allow-Origin fails it in browsers.
                has_cors = any(k.lower() == b"access-control-allow-origin" for k, _ in headers)
                if cors_ok and origin is not None and not has_cors:
                    headers += [
                        (b"access-control-allow-origin", origin.encode()),
                        (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()),
                        (b"vary", b"Origin"),
                    ]
                # Every RPC answer depends on the caller's credential: no shared cache may keep it
                # (Connect GET makes responses cacheable by default).
                if is_rpc and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"private, no-store"))
                message = {**message, "headers": headers}
                record.status = message["status"]
                started = True
            elif message["type"] == "http.response.body":
                record.response_bytes = (record.response_bytes or 0) + len(message.get("body", b""))
            await send(message)

        try:
            await self._route(scope, receive, send_out, cors_ok=cors_ok, origin=origin)
        except Exception:
            log.exception("unhandled error in HTTP layer")
            if not started:
                await self._send_error(send_out, to_connect_error(InternalError()))

    async def _route(self, scope: Scope, receive: Receive, send: Send, *, cors_ok: bool, origin: str | None) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "OPTIONS":
            await self._preflight(scope, send, cors_ok=cors_ok, origin=origin)
            return
        if path == "/healthz" and method in ("GET", "HEAD"):
            await self._send_json(send, 200, {"status": "ok"})
            return
        if path == "/readyz" and method in ("GET", "HEAD"):
            ready = await self._readiness()
            await self._send_json(send, 200 if ready else 503, {"status": "ready" if ready else "not ready"})
            return
        if path == "/metrics" and method in ("GET", "HEAD") and self._metrics is not None:
            await self._scrape(scope, send)
            return
        if not path.startswith(self._prefix + "/"):
            await self._send_error(send, to_connect_error(NoRoute(path)))
            return
        if path[len(self._prefix) :] in self._streams:
            await self._stream(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        grpc_web = method == "POST" and protocol_of(content_type) is Protocol.GRPC_WEB
        try:
            headers = header_text(scope.get("headers", ()))
            admit(method, path[len(self._prefix) :], headers, scope.get("query_string", b""), self._procedures)
            body = await self._read_body(scope, receive)
            if body is not None and grpc_web:
                check_grpc_web_body(body, headers)
        except AppError as refused:
            await self._refuse(send, refused, grpc_web=grpc_web)
            return
        if body is None:
            return  # client went away
        if (record := current_call()) is not None:
            record.request_bytes = len(body)
        inner_scope = {**scope, "path": path[len(self._prefix) :], "raw_path": None, "root_path": ""}
        await self._app(inner_scope, _replay(body, receive), self._ensure_connect_body(send))

    async def _scrape(self, scope: Scope, send: Send) -> None:
        """The Prometheus exposition, read off the loop (with workers it reads every worker's files)."""
        assert self._metrics is not None
        if self._metrics_token is not None:
            sent = (_header(scope, b"authorization") or "").encode("latin-1")
            if not hmac.compare_digest(sent, b"Bearer " + self._metrics_token):
                refused = MetricsTokenRequired()
                await self._send_error(send, to_connect_error(refused))
                return
        self._metrics.flush()  # this worker's own figures are current; the others' at most 1 s old
        body, content_type = await asyncio.to_thread(self._metrics.exposition, _header(scope, b"accept"))
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A streaming call (server reflection, health Watch): admitted on its head, then handed to
        connectrpc unbuffered, because a bidi stream's requests keep arriving while its answers are
        written. connectrpc bounds each message (read_max_bytes) and reports errors in the
        end-of-stream message.

        connectrpc notices a client that left only when it has a next message to write; a stream
        that waits (a health Watch between status changes) would stay, with its task, for as long as
        nothing changes. So the call is ended here as soon as the connection reports the client gone."""
        try:
            admit_stream(scope["method"], header_text(scope.get("headers", ())), self._max)
        except AppError as refused:
            await self._refuse(send, refused, grpc_web=False)
            return
        inner_scope = {**scope, "path": scope["path"][len(self._prefix) :], "raw_path": None, "root_path": ""}
        gone = asyncio.Event()

        async def receive_noting_departure() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            return message

        serving = asyncio.ensure_future(
            self._app(inner_scope, receive_noting_departure, self._ensure_connect_body(send))
        )
        departed = asyncio.ensure_future(gone.wait())
        ended_here = False
        try:
            await asyncio.wait((serving, departed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            departed.cancel()
            if not serving.done():
                # The client left (or this request is being cut): nobody is left to answer.
                # connectrpc turns the cancel into a CANCELED end message, which goes nowhere.
                ended_here = True
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectError):
                    await serving
        if not ended_here:
            await serving  # its own outcome, as if it had been awaited directly

    async def _refuse(self, send: Send, refused: AppError, *, grpc_web: bool) -> None:
        """A refusal in the caller's framing: gRPC-Web trailers (HTTP 200), or a Connect JSON error."""
        error = to_connect_error(refused)
        if not grpc_web:
            await self._send_error(send, error, status=refused.http_status)
            return
        _noted(error)
        body = grpc_web_error_body(error)
        headers = [(b"content-type", b"application/grpc-web+proto"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole (compressed) body, refused as soon as it passes the limit."""
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                if int(declared) > self._max:
                    raise RequestTooLarge(self._max)
            except ValueError:
                raise MalformedRequest("invalid content-length") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                raise RequestTooLarge(self._max)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _ensure_connect_body(self, send: Send) -> Send:
        """Backstop for errors connectrpc writes itself: a bare one (404, 415, ...) gets a Connect
        JSON body, and a JSON one without an ErrorInfo gets the reason its code stands for."""
        held: dict[str, Any] = {}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    held["start"] = message
                    held["chunks"] = []
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                held["chunks"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._reshape_error(send, held["start"], b"".join(held["chunks"]))
                return
            await send(message)

        return wrapped

    async def _reshape_error(self, send: Send, start: Message, body: bytes) -> None:
        status: int = start["status"]
        content_type = dict((k.lower(), v) for k, v in start.get("headers", ())).get(b"content-type", b"")
        parsed: Any = None
        if content_type.startswith(b"application/json") and len(body) <= _BACKSTOP_BODY_LIMIT:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict) and _has_reason(parsed):
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        code_name = str(parsed.get("code", "")).upper() if isinstance(parsed, dict) else ""
        message = str(parsed.get("message", "")) if isinstance(parsed, dict) else ""
        known = self._backstop(code_name, message)
        if known is None:
            # Admission refuses what connectrpc would refuse bare (404, 405, 415), and its text for an
            # unexpected failure may quote the cause: logged, and answered as our internal error.
            log.warning("library error replaced by internal", status=status, code=code_name, message=message[:300])
            known = InternalError()
        status, payload = connect_error_body(to_connect_error(known), known.http_status)
        extra = [(k, v) for k, v in start.get("headers", ()) if k.lower() in (b"allow", b"accept-post")]
        await self._send_raw(send, status, payload, extra=extra)

    def _backstop(self, code_name: str, message: str) -> AppError | None:
        """The one error class a library-made error stands for (so every reason a client receives is
        a documented class with its metadata), or None."""
        if code_name == Code.INVALID_ARGUMENT.name:
            return MalformedRequest(message or "malformed request")
        if code_name == Code.RESOURCE_EXHAUSTED.name:
            return RequestTooLarge(self._max)
        if code_name == Code.DEADLINE_EXCEEDED.name:
            return DeadlineExceeded()
        return None

    async def _preflight(self, scope: Scope, send: Send, *, cors_ok: bool, origin: str | None) -> None:
        requested_method = _header(scope, b"access-control-request-method")
        if requested_method is None:
            refused = MethodNotAllowed("OPTIONS", "GET, POST (OPTIONS only as a CORS preflight)")
            await self._send_error(send, to_connect_error(refused), status=refused.http_status)
            return
        headers: list[tuple[bytes, bytes]] = [
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        ]
        if cors_ok and origin is not None:
            # A disallowed origin simply gets no CORS headers; the browser then blocks the call.
            headers += [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-methods", CORS_ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
                (b"access-control-max-age", CORS_MAX_AGE.encode()),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_error(self, send: Send, error: ConnectError, *, status: int | None = None) -> None:
        _noted(error)
        http_status, body = connect_error_body(error, status)
        await self._send_raw(send, http_status, body, extra=[])

    async def _send_json(self, send: Send, status: int, payload: dict[str, str]) -> None:
        await self._send_raw(send, status, json.dumps(payload).encode(), extra=[(b"cache-control", b"no-store")])

    @staticmethod
    async def _send_raw(send: Send, status: int, body: bytes, *, extra: Iterable[tuple[bytes, bytes]]) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _noted(error: ConnectError) -> None:
    """The refusal's code and reason, for the request's access-log line."""
    record = current_call()
    if record is not None:
        record.failed(error)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the buffered body to the inner app once, then pass through (disconnect notices)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
