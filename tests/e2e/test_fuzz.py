"""Bounded property-based fuzzing of both ports: random and mutated requests over every way in,
sent concurrently to one running server, and every answer checked against the error contract.

Transports: Connect unary POST (any content type, encoding, header and method), Connect GET
(``?message=&encoding=&base64=&compression=``), gRPC-Web frames (flags, declared lengths, truncation,
several frames), the gRPC port (raw bytes through ``channel.unary_unary``, random metadata, gzip)
and raw HTTP/1.1 over a socket (malformed request lines and headers, body framing, upgrades).

What every answer must be:

* never ``internal`` / ``unknown`` (Connect code in a JSON body or an end-stream message,
  ``grpc-status`` 2 / 13 in gRPC, gRPC-Web trailers or headers);
* no HTTP 5xx other than 503 (unavailable) and 504 (deadline exceeded), and 501 carrying
  ``unimplemented`` (Connect's own status for that code, e.g. for an unsupported compression);
* on the HTTP port, every non-200 answer is a Connect JSON error body (``application/json`` with a
  ``code``), or for gRPC-Web a well-formed status (``grpc-status``); a raw socket gets parsable
  HTTP/1.1 or a cleanly closed connection;
* an answer within CALL_TIMEOUT_S: a call that times out is "unanswered";
* afterwards the server still serves (``/healthz``, a normal RPC on both ports), and its log holds
  neither the forged API key secrets, nor the e-mail addresses, nor the token that were sent.

Hypothesis is used as the case generator (an inner ``@given`` collects the cases); the cases are
then sent concurrently, so hypothesis does not shrink: a failing case is reported as it was sent,
and all bad answers are collected and summarised (counts per kind, a few examples) rather than
stopping at the first.

Knobs (and ``ALTALUNE_FUZZ_DUMP=<file>``: every case and its answer as JSON lines):

* ``ALTALUNE_FUZZ_EXAMPLES`` (default 2500): how many cases hypothesis generates (about two in
  three are distinct; repeats are sent once).
* ``ALTALUNE_FUZZ_SEED``: unset -> derandomized, the same cases on every run. CI must not fail
  on a case that a lucky draw found in an unrelated change; the breadth comes from the size of
  the run and from running it now and then with ``ALTALUNE_FUZZ_SEED=random`` (a fresh seed,
  printed in the report) and a larger ``ALTALUNE_FUZZ_EXAMPLES``. An integer replays that seed.
  "The same cases" holds for the same code and the same test selection: hypothesis also draws
  constants found in the project's imported modules. A failure is reported with the cases as
  sent, so it never depends on replaying the draw.

Run: ``.venv/bin/pytest -q tests/e2e/test_fuzz.py`` (about 30 s here: 15 s generating, 10 s sending).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import gzip
import io
import json
import logging
import os
import random
import re
import time
import urllib.parse
import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import pytest_asyncio
import structlog
from connectrpc.code import Code
from connectrpc.method import IdempotencyLevel
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from altalune.v1 import project_pb2, user_pb2
from internal.ids import PUBLIC_ID_ALPHABET
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import TEST_ORIGIN, admin_token_for
from tests.e2e.clients import CREATE_PROJECT, GET_PROJECT, Rpc, open_transport

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("ALTALUNE_FUZZ_EXAMPLES", "2500"))
SEED_SETTING = os.environ.get("ALTALUNE_FUZZ_SEED", "").strip()
CONCURRENCY = 16
CALL_TIMEOUT_S = 10.0
SERVER_DEADLINE_S = 5.0  # the fuzzed server's longest deadline: every call ends well within CALL_TIMEOUT_S
RAW_IDLE_S = 1.0  # a raw connection silent this long is half-closed: the server must then answer or close
EXAMPLES_SHOWN = 3
DUMP = os.environ.get("ALTALUNE_FUZZ_DUMP")  # a file to write every case and its answer to (JSON lines)

BAD_CONNECT_CODES = frozenset({"internal", "unknown"})
BAD_GRPC_STATUSES = frozenset({2, 13})  # UNKNOWN, INTERNAL
CONNECT_CODES = frozenset(code.name.lower() for code in Code)
# The only 5xx answers allowed, with the Connect code they must carry. 501 is Connect's own status
# for `unimplemented` (an unsupported compression, say), not a server failure.
ALLOWED_5XX = {501: "unimplemented", 503: "unavailable", 504: "deadline_exceeded"}

# --- cases ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpCase:
    """One request to the HTTP port through httpx (Connect POST or GET, gRPC-Web)."""

    transport: str  # "connect", "connect-get", "grpc-web"
    method: str
    target: str  # path and query, as sent
    headers: tuple[tuple[str, str], ...]
    body: bytes
    feature: str  # what the summary groups by (the request's content type, ...)
    label: str


@dataclass(frozen=True, slots=True)
class GrpcCase:
    path: str
    body: bytes
    metadata: tuple[tuple[str, str | bytes], ...]
    gzip: bool
    timeout_s: float
    feature: str
    label: str
    transport: str = "grpc"


@dataclass(frozen=True, slots=True)
class RawCase:
    data: bytes
    feature: str
    label: str
    transport: str = "raw-http"


Case = HttpCase | GrpcCase | RawCase


@dataclass(slots=True)
class Verdict:
    """What one case got back: the broken rules (empty: fine) and a short description of the answer."""

    problems: list[str] = field(default_factory=list)
    answer: str = ""
    outcome: str = ""  # for the statistics: "200", "401 unauthenticated", "client refused", ...


@dataclass(frozen=True, slots=True)
class Known:
    """Values of this server that make generated requests reach past look-ups and authentication."""

    token: str
    project_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    rpcs: tuple[tuple[str, type[Message]], ...]  # path, request class
    get_rpcs: tuple[tuple[str, type[Message]], ...]  # those without side effects


# --- strategies: field values ---------------------------------------------------------------------
# Strategies are built once (module constants, or cached per message / field) and the case
# builders are plain functions drawing from them: building strategies per draw costs more than
# drawing from them.

MARKER_EMAIL = re.compile(r"fz\d+\.leak@example\.com")
FORGED_KEY = re.compile(r"ak_[^\s\"',]+")
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ROLL = st.integers(0, 9)  # for "most of the time" choices
ID_ALPHABET = PUBLIC_ID_ALPHABET

nasty_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate: escaped in JSON, invalid once decoded
        "\u202eevil",
        "😀" * 20,
        "'; DROP TABLE projects; --",
        "%_\\",
        "null",
        "NaN",
        "x" * 300,
        "y" * 70_000,
        "../../etc/passwd",
        "{}",
        "Ω≈ç√∫µ≤≥÷",
    ]
)
any_text = st.one_of(st.text(max_size=30), nasty_strings)
nice_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789 _-", min_size=1, max_size=24)
public_ids = st.text(alphabet=ID_ALPHABET, min_size=14, max_size=14)
# httpx refuses header values with surrounding white space (the raw socket cases send those).
short_printable = st.text(PRINTABLE, max_size=16).map(str.strip)
edge_ints = st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**30])
json_numbers: st.SearchStrategy[Any] = st.one_of(
    st.integers(-1000, 1_000_000),
    edge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["12", "1e3", "0x10", " 7", "-0", "1.5", "99999999999999999999999"]),
)
garbage_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2030-01-01T00:00:00Z",
            "2020-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1970-01-01T00:00:00.123456789Z",
            "2030-02-30T00:00:00Z",
            "2030-01-01T00:00:00+25:00",
            "2030-01-01",
            "now",
            "",
        ]
    ),
    any_text,
)
emails = st.one_of(
    st.integers(0, 10**9).map(lambda n: f"fz{n}.leak@example.com"),
    st.integers(0, 10**9).map(lambda n: f"fz{n}.leak@example.com"),
    st.sampled_from(["not-an-email", "a@b", "@example.com", "x" * 250 + "@example.com", "Ünï@exämple.com"]),
    any_text,
)
UNKNOWN_KEYS = st.text(max_size=8)
timezones = st.sampled_from(["UTC", "UTC", "Europe/Paris", "America/New_York", "Mars/Olympus", "utc", "UTC\x00"])


@st.composite
def mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """`good` eight times in ten, `other` otherwise (one_of would pick about evenly)."""
    return draw(good) if draw(ROLL) < 8 else draw(other)


def _is_id_field(name: str) -> bool:
    return name == "id" or name.endswith("_id") or name.endswith("_ids") or name == "ids"


def good_scalar(fd: Any, known: Known, message: Any) -> st.SearchStrategy[Any]:
    """A value of the field's own type, often one the server will accept."""
    name = fd.name
    if fd.type == FieldDescriptor.TYPE_STRING:
        if _is_id_field(name):
            return mostly(st.sampled_from([*known.project_ids, *known.user_ids]), st.one_of(public_ids, any_text))
        if "email" in name:
            return emails
        if name == "timezone":
            return timezones
        return mostly(nice_text, any_text)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in fd.enum_type.values]
        return mostly(st.sampled_from(names[1:] or names), st.one_of(st.integers(-2, len(names) + 2), any_text))
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()), any_text)
    if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.one_of(st.floats(), json_numbers)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        full = fd.message_type.full_name
        if full == "google.protobuf.Timestamp":
            return timestamps
        if full == "google.protobuf.FieldMask":
            names = [f.json_name for f in message.fields if f.name != fd.name]
            masks = st.lists(st.sampled_from(names or ["name"]), min_size=1, max_size=4, unique=True).map(",".join)
            return mostly(masks, any_text)
        return message_json(fd.message_type, known, 1)
    return mostly(st.integers(1, 50), json_numbers)  # integers: page sizes and the like, edges too


def field_value(fd: Any, known: Known, message: Any, depth: int) -> st.SearchStrategy[Any]:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key_fd = fd.message_type.fields_by_name["key"]
        value_fd = fd.message_type.fields_by_name["value"]
        keys = st.one_of(nice_text, any_text) if key_fd.type == FieldDescriptor.TYPE_STRING else st.integers()
        values = (
            message_json(value_fd.message_type, known, depth + 1)
            if value_fd.message_type is not None
            else good_scalar(value_fd, known, message)
        )
        good: st.SearchStrategy[Any] = st.dictionaries(keys.map(str), values, max_size=3)
    elif fd.message_type is not None and fd.message_type.full_name.startswith("altalune."):
        element = message_json(fd.message_type, known, depth + 1)
        good = st.lists(element, max_size=4) if fd.is_repeated else element
    else:
        element = good_scalar(fd, known, message)
        good = st.lists(element, max_size=4) if fd.is_repeated else element
    return mostly(good, garbage_json)


@functools.cache
def message_json(message: Any, known: Known, depth: int = 0) -> st.SearchStrategy[Any]:
    """A JSON object for the message: any subset of its fields (camelCase or proto names), values
    of the right shape most of the time, of any shape otherwise, sometimes with unknown keys."""
    if depth > 3:
        return st.just({})
    values = {fd.json_name: field_value(fd, known, message, depth) for fd in message.fields}
    base = st.one_of(st.fixed_dictionaries(values), st.fixed_dictionaries({}, optional=values))  # all or some
    proto_names = {fd.json_name: fd.name for fd in message.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        data = dict(draw(base))
        roll = draw(st.integers(0, 19))
        if roll == 0:
            data[draw(UNKNOWN_KEYS)] = draw(garbage_json)  # a field the server does not know
        elif roll == 1 and data:
            data = {proto_names.get(k, k): v for k, v in data.items()}  # proto field names are accepted too
        return data

    return build()


# --- strategies: bodies, paths, headers -----------------------------------------------------------


def to_proto(request_class: type[Message], data: Any) -> bytes:
    """Binary protobuf of the JSON request when it is a valid one, else the empty message."""
    try:
        return json_format.ParseDict(data, request_class(), ignore_unknown_fields=True).SerializeToString()
    except Exception:
        return b""


def dump_json(data: Any, ascii_only: bool) -> bytes:
    return json.dumps(data, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


MUTATIONS = st.sampled_from(["as-is", "as-is", "as-is", "truncated", "tail", "flipped"])
SHORT_BYTES = st.binary(min_size=1, max_size=12)


def mutate(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    """The bytes as they are, or truncated, extended, or with one byte flipped."""
    how = draw(MUTATIONS)
    if how == "truncated" and data:
        return how, data[: draw(st.integers(0, len(data) - 1))]
    if how == "tail":
        return how, data + draw(SHORT_BYTES)
    if how == "flipped" and data:
        at = draw(st.integers(0, len(data) - 1))
        return how, data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return "as-is", data


BODY_KINDS = st.sampled_from(["json", "json", "json", "proto", "proto", "bytes", "empty", "json-nonobject"])
RANDOM_BODIES = st.binary(max_size=200)


def request_body(draw: st.DrawFn, request_class: type[Message], known: Known) -> tuple[str, str, bytes]:
    """(body kind, matching content type, bytes) for one RPC's request."""
    kind = draw(BODY_KINDS)
    if kind == "bytes":
        return kind, "application/proto", draw(RANDOM_BODIES)
    if kind == "empty":
        return kind, "application/json", b""
    if kind == "json-nonobject":
        return kind, "application/json", dump_json(draw(garbage_json), True)
    data = draw(message_json(request_class.DESCRIPTOR, known))
    if kind == "json":
        how, body = mutate(draw, dump_json(data, draw(st.booleans())))
        return f"json/{how}", "application/json", body
    how, body = mutate(draw, to_proto(request_class, data))
    return f"proto/{how}", "application/proto", body


# One of 14 mutations one time in eight (sampled_from is uniform; integers() favours its bounds).
MUTATION_ROLL = st.sampled_from([-1] * 98 + list(range(14)))
LONG_TAILS = st.sampled_from([100, 5_000, 20_000])


def rpc_path(draw: st.DrawFn, known: Known, *, get: bool = False) -> tuple[str, type[Message]]:
    """A real RPC path (most of the time) or a mutation of one; the request class of the real one.
    With `get`, mostly the side-effect-free RPCs (the only ones Connect GET serves)."""
    rpcs = known.get_rpcs if get and draw(ROLL) < 8 else known.rpcs
    path, request_class = rpcs[draw(st.integers(0, len(rpcs) - 1))]
    service, method = path[1:].split("/", 1)
    mutations = {
        0: f"/altalune.v1.NoSuchService/{method}",
        1: f"/{service}/NoSuchMethod",
        2: path + "/",
        3: "/" + path,
        4: f"/{service}//{method}",
        5: f"/{service}%2F{method}",
        6: "/" + urllib.parse.quote(path[1:], safe=""),
        7: path.lower(),
        8: path + "x" * draw(LONG_TAILS),
        9: f"/{service}/{method}\u00e9",
        10: f"/{service}/{method}%00",
        11: f"/{service}/../{service}/{method}",
        12: "/",
        13: f"/{service}",
    }
    return mutations.get(draw(MUTATION_ROLL), path), request_class


@functools.cache
def authorization(known: Known) -> st.SearchStrategy[str | None]:
    """The admin's bearer token most of the time (to get past authentication), else garbage or forged keys."""
    forged = st.builds(
        lambda project, key, secret: f"ak_{project}_{key}_{secret}",
        st.one_of(st.sampled_from(known.project_ids), public_ids),
        public_ids,
        st.text(alphabet=ID_ALPHABET, min_size=40, max_size=40),
    )
    odd_keys = st.one_of(
        st.text(alphabet=ID_ALPHABET + "_", min_size=10, max_size=80).map(lambda s: "ak_" + s),
        st.builds(lambda a, b: f"ak_{a}_{b}_{'Z' * 40}", public_ids, public_ids),
    )
    others = st.one_of(
        st.none(),
        forged.map(lambda k: f"Bearer {k}"),
        odd_keys.map(lambda k: f"Bearer {k}"),
        st.text(PRINTABLE, max_size=40).map(str.strip),
        st.text(PRINTABLE, max_size=40).map(lambda s: ("Bearer " + s).strip()),
        st.sampled_from(
            [
                "Bearer",
                "Bearer\ttoken",
                "bearer " + known.token,
                "Basic dXNlcjpwYXNz",
                f"Bearer {known.token[:-5]}AAAAA",
                "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
                "Bearer " + "a" * 9000,
            ]
        ),
    )
    admin = st.just(f"Bearer {known.token}")
    return st.integers(0, 9).flatmap(lambda roll: admin if roll < 7 else others)


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/proto",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/grpc",
        "application/grpc+proto",
        "application/grpc+json",
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/connect+json",
        "application/connect+proto",
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        None,
    ]
)
OPTIONAL_HEADERS: dict[str, st.SearchStrategy[str | None]] = {
    "x-request-id": st.one_of(st.sampled_from([None, "fuzz-1", "a" * 65]), short_printable),
    "origin": st.sampled_from([None, TEST_ORIGIN, "http://evil.test", "null"]),
    "accept-encoding": st.sampled_from([None, "gzip", "br", "identity", "*", "garbage;q=x"]),
    "connect-accept-encoding": st.sampled_from([None, None, "gzip", "br", "garbage"]),
}
ONE_IN_FOUR = st.integers(0, 3)
HEADER_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
HEADER_VALUES = st.text(PRINTABLE, max_size=30).map(str.strip)


def common_headers(draw: st.DrawFn, known: Known) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if (auth := draw(authorization(known))) is not None:
        headers.append(("authorization", auth))
    for name, values in OPTIONAL_HEADERS.items():
        if draw(ONE_IN_FOUR) == 0 and (value := draw(values)) is not None:
            headers.append((name, value))
    if draw(st.integers(0, 5)) == 0:
        headers.append((draw(HEADER_NAMES), draw(HEADER_VALUES)))
    return headers


ENCODINGS = st.sampled_from(
    ["none", "none", "none", "none", "gzip", "gzip-invalid", "gzip-truncated", "br", "identity", "junk"]
)


def content_encoding(draw: st.DrawFn, body: bytes) -> tuple[str, str | None, bytes]:
    """(label, content-encoding header value, body)."""
    how = draw(ENCODINGS)
    if how == "gzip":
        return how, "gzip", gzip.compress(body, mtime=0)
    if how == "gzip-invalid":
        return how, "gzip", body
    if how == "gzip-truncated":
        packed = gzip.compress(body, mtime=0)
        return how, "gzip", packed[: max(len(packed) // 2, 1)]
    if how in ("br", "identity"):
        return how, how, body
    if how == "junk":
        return how, draw(st.text(PRINTABLE, min_size=1, max_size=10)).strip() or "junk", body
    return how, None, body


def _utf8(text: str) -> bytes:
    """Text back to the bytes it was decoded from (surrogateescape), or with lone surrogates kept."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _auth_label(value: str | None, known: Known) -> str:
    if value is None:
        return "none"
    if value == f"Bearer {known.token}":
        return "admin"
    if "ak_" in value:
        return "forged-api-key"
    return f"junk({value[:20]!r})"


# --- strategies: cases ----------------------------------------------------------------------------

PROTOCOL_VERSIONS = st.sampled_from(["1", "1", "1", "1", "2", "0", None, "v1", "1,1"])
CONNECT_TIMEOUTS = st.sampled_from(
    [None, None, None, None, "-1", "0", "1", "50", "10000", "99999999999999999999", "abc", "1.5", "+10"]
)
METHODS = st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH"])
PREFIXES = st.sampled_from(["/api"] * 20 + ["/api/", "", "/API", "/api/../api"])


@st.composite
def connect_cases(draw: st.DrawFn, known: Known) -> HttpCase:
    path, request_class = rpc_path(draw, known)
    body_kind, matching_type, body = request_body(draw, request_class, known)
    content_type = matching_type if draw(st.booleans()) else draw(CONTENT_TYPES)
    if content_type is None and draw(st.booleans()):
        content_type = draw(short_printable)
    headers = common_headers(draw, known)
    if content_type is not None:
        headers.append(("content-type", content_type))
    if (version := draw(PROTOCOL_VERSIONS)) is not None:
        headers.append(("connect-protocol-version", version))
    if (timeout := draw(CONNECT_TIMEOUTS)) is not None:
        headers.append(("connect-timeout-ms", timeout))
    encoding_label, encoding, body = content_encoding(draw, body)
    if encoding is not None:
        headers.append(("connect-content-encoding" if draw(ONE_IN_FOUR) == 0 else "content-encoding", encoding))
    method = draw(METHODS)
    prefix = draw(PREFIXES)
    auth = next((v for k, v in headers if k == "authorization"), None)
    label = (
        f"{method} {prefix}{path[:100]} ct={content_type!r} body={body_kind}({len(body)} B) enc={encoding_label} "
        f"cpv={version} timeout={timeout} auth={_auth_label(auth, known)}"
    )
    return HttpCase("connect", method, prefix + path, tuple(headers), body, f"content-type {content_type!r}", label)


GET_CONNECT = st.sampled_from(["v1"] * 6 + ["v2", "", None])
GET_ENCODINGS = st.sampled_from(["json"] * 5 + ["proto"] * 3 + ["JSON", "xml", "", None])
GET_COMPRESSIONS = st.sampled_from([None, None, None, None, "gzip", "gzip", "identity", "br", "junk"])
GET_BASE64 = st.sampled_from(["1", "1", "0", "true", "junk", None])
GET_MESSAGE_FORMS = st.sampled_from(["plain", "plain", "plain", "b64url", "b64std", "missing", "junk"])


@st.composite
def connect_get_cases(draw: st.DrawFn, known: Known) -> HttpCase:
    path, request_class = rpc_path(draw, known, get=True)
    data = draw(message_json(request_class.DESCRIPTOR, known))
    params: list[tuple[str, str]] = []
    if (connect := draw(GET_CONNECT)) is not None:
        params.append(("connect", connect))
    if (encoding := draw(GET_ENCODINGS)) is not None:
        params.append(("encoding", encoding))
    raw = to_proto(request_class, data) if encoding == "proto" else dump_json(data, True)
    if (compression := draw(GET_COMPRESSIONS)) is not None:
        params.append(("compression", compression))
        if compression == "gzip" and draw(st.booleans()):
            raw = gzip.compress(raw, mtime=0)
    as_base64 = draw(GET_BASE64) if encoding != "json" or draw(ONE_IN_FOUR) == 0 else None
    if as_base64 is not None:
        params.append(("base64", as_base64))
    form = draw(GET_MESSAGE_FORMS)
    message: str | None
    if form == "b64url" or (as_base64 == "1" and form == "plain"):
        message = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    elif form == "b64std":
        message = base64.b64encode(raw).decode()
    elif form == "missing":
        message = None
    elif form == "junk":
        message = draw(any_text)
    else:
        message = raw.decode("utf-8", "surrogateescape")
    if message is not None:
        params.append(("message", message))
    if draw(st.integers(0, 9)) == 0:
        params.reverse()
    query = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(_utf8(v), safe='')}" for k, v in params)
    headers = common_headers(draw, known)
    auth = next((v for k, v in headers if k == "authorization"), None)
    label = (
        f"GET /api{path[:100]}?connect={connect}&encoding={encoding}&base64={as_base64}&compression={compression}"
        f" message={form}({len(message or '')} chars) auth={_auth_label(auth, known)}"
    )
    return HttpCase("connect-get", "GET", f"/api{path}?{query}", tuple(headers), b"", f"encoding={encoding!r}", label)


FRAME_FLAGS = st.sampled_from([0, 0, 0, 0, 1, 0x80, 0x02]) | st.integers(0, 255)
FRAME_LENGTHS = st.sampled_from(["exact", "exact", "exact", "exact", "shorter", "longer", "zero", "huge"])
RANDOM_PAYLOADS = st.binary(max_size=40)
FRAME_COUNTS = st.sampled_from([1, 1, 1, 0, 2, 3])
FRAME_TAILS = st.sampled_from(["none", "none", "none", "none", "truncated", "partial-header"])
GRPC_WEB_TYPES = st.sampled_from(
    [
        "application/grpc-web+proto",
        "application/grpc-web+proto",
        "application/grpc-web+proto",
        "application/grpc-web+proto",
        "application/grpc-web",
        "application/grpc-web+json",
        "application/grpc-web-text",
        "application/grpc-web-text+proto",
    ]
)
GRPC_WEB_HEADERS = {
    "grpc-encoding": st.sampled_from([None, None, None, "gzip", "identity", "br", "junk"]),
    "grpc-timeout": st.sampled_from([None, None, None, None, "1S", "100m", "0n", "99999999H", "junk", "-1S", ""]),
    "grpc-accept-encoding": st.sampled_from([None, None, "gzip", "junk"]),
}


def grpc_web_frame(draw: st.DrawFn, payloads: Sequence[bytes]) -> tuple[str, bytes]:
    flag = draw(FRAME_FLAGS)
    payload = payloads[draw(st.integers(0, len(payloads) - 1))] if draw(ROLL) < 7 else draw(RANDOM_PAYLOADS)
    if flag == 1 and draw(st.booleans()):
        payload = gzip.compress(payload, mtime=0)
    length_mode = draw(FRAME_LENGTHS)
    length = {
        "exact": len(payload),
        "shorter": max(len(payload) - 3, 0),
        "longer": len(payload) + 100,
        "zero": 0,
        "huge": 0xFFFFFFFF,
    }[length_mode]
    return f"flag={flag:#x}/len={length_mode}/{len(payload)}B", bytes([flag]) + length.to_bytes(4, "big") + payload


@st.composite
def grpc_web_cases(draw: st.DrawFn, known: Known) -> HttpCase:
    path, request_class = rpc_path(draw, known)
    data = draw(message_json(request_class.DESCRIPTOR, known))
    payloads = [to_proto(request_class, data), b"", dump_json(data, True)]
    frames = [grpc_web_frame(draw, payloads) for _ in range(draw(FRAME_COUNTS))]
    body = b"".join(frame for _, frame in frames)
    tail = draw(FRAME_TAILS)
    if tail == "truncated" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif tail == "partial-header":
        body += draw(st.binary(min_size=1, max_size=4))
    content_type = draw(GRPC_WEB_TYPES)
    if content_type.startswith("application/grpc-web-text"):
        body = base64.b64encode(body) if draw(ONE_IN_FOUR) else body + b"!!"
    headers = common_headers(draw, known)
    headers.append(("content-type", content_type))
    if draw(ONE_IN_FOUR):
        headers.append(("x-grpc-web", "1"))
    for name, values in GRPC_WEB_HEADERS.items():
        if (value := draw(values)) is not None:
            headers.append((name, value))
    auth = next((v for k, v in headers if k == "authorization"), None)
    label = (
        f"POST /api{path[:100]} ct={content_type} frames=[{', '.join(lbl for lbl, _ in frames)}] tail={tail} "
        f"headers={[f'{k}={v}' for k, v in headers if k.startswith('grpc')]} auth={_auth_label(auth, known)}"
    )
    return HttpCase("grpc-web", "POST", f"/api{path}", tuple(headers), body, f"content-type {content_type}", label)


GRPC_METADATA_KEYS = st.one_of(
    st.from_regex(r"\A[a-z][a-z0-9_.-]{0,15}\Z").filter(
        lambda k: not k.startswith("grpc-") and k not in {"content-type", "te", "user-agent", "host", "connection"}
    ),
    st.sampled_from(["x-request-id", "connect-timeout-ms", "content-encoding", "trace-bin", "x-bin"]),
)
GRPC_BODY_KINDS = st.sampled_from(["proto", "proto", "proto", "proto", "bytes", "empty", "json"])
GRPC_TIMEOUTS = st.sampled_from([CALL_TIMEOUT_S] * 10 + [0.001, 0.05])


@st.composite
def grpc_cases(draw: st.DrawFn, known: Known) -> GrpcCase:
    path, request_class = rpc_path(draw, known)
    data = draw(message_json(request_class.DESCRIPTOR, known))
    body_kind = draw(GRPC_BODY_KINDS)
    if body_kind == "proto":
        how, body = mutate(draw, to_proto(request_class, data))
        body_kind = f"proto/{how}"
    elif body_kind == "bytes":
        body = draw(RANDOM_BODIES)
    elif body_kind == "json":
        body = dump_json(data, True)
    else:
        body = b""
    metadata: list[tuple[str, str | bytes]] = []
    auth = draw(authorization(known))
    if auth is not None and auth.isascii() and auth.isprintable():
        metadata.append(("authorization", auth))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        key = draw(GRPC_METADATA_KEYS)
        metadata.append((key, draw(SHORT_BYTES) if key.endswith("-bin") else draw(HEADER_VALUES).strip()))
    compress = draw(ONE_IN_FOUR) == 0
    timeout_s = draw(GRPC_TIMEOUTS)
    label = (
        f"{path[:100]} body={body_kind}({len(body)} B) gzip={compress} timeout={timeout_s} "
        f"metadata={[k for k, _ in metadata if k != 'authorization']} auth={_auth_label(auth, known)}"
    )
    return GrpcCase(path, body, tuple(metadata), compress, timeout_s, f"body {body_kind.split('/')[0]}", label)


RAW_GARBAGE = st.sampled_from(
    [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
        b"\r\n\r\n",
        b"GET\r\n\r\n",
    ]
) | st.binary(min_size=1, max_size=300)
# Each raw case breaks one thing (sometimes two) of an otherwise valid request, so that what is
# tested is that one thing and not uvicorn's first refusal of it.
RAW_FLAWS = st.sampled_from(
    [
        *("none", "none", "method", "target", "version", "eol", "host", "framing", "framing"),
        *("upgrade", "upgrade", "upgrade", "oddity", "oddity", "oddity", "cut", "garbage"),
    ]
)
RAW_METHODS = st.sampled_from(
    [b"GET", b"PUT", b"DELETE", b"OPTIONS", b"BREW", b"", b"P\x00ST", b"GET GET", b"x" * 9000]
)
RAW_TARGETS = st.sampled_from(["*", "", "absolute", "high-bytes", "space", "long-query", "/healthz"])
RAW_VERSIONS = st.sampled_from([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"", b"http/1.1", b"HTTP/9.9"])
RAW_EOLS = st.sampled_from([b"\n", b"\r", b"\n\r"])
RAW_HOSTS = st.sampled_from(["missing", "twice", "junk"])
RAW_FRAMINGS = st.sampled_from(
    ["none", "short", "long", "negative", "junk", "two", "chunked", "chunked-bad", "chunked+cl"]
)
RAW_UPGRADES = st.sampled_from(["websocket", "websocket", "websocket-post", "h2c", "junk"])
RAW_ODDITIES = st.sampled_from(
    ["no-colon", "space-before-colon", "obs-fold", "nul", "high-bytes", "huge", "many", "empty-name", "expect"]
)
RAW_HUGE = st.sampled_from([9_000, 70_000, 300_000])


@st.composite
def raw_cases(draw: st.DrawFn, known: Known) -> RawCase:
    """HTTP/1.1 built by hand: a valid request with one flaw (sometimes two) in its request line,
    header lines, body framing or upgrade, or plain garbage."""
    flaws = {draw(RAW_FLAWS)} | ({draw(RAW_FLAWS)} if draw(ONE_IN_FOUR) == 0 else set())
    if "garbage" in flaws:
        data = draw(RAW_GARBAGE)
        return RawCase(data, "garbage bytes", f"raw bytes {data[:60]!r}")
    path, request_class = rpc_path(draw, known)
    body_kind, content_type, body = request_body(draw, request_class, known)
    method = draw(RAW_METHODS) if "method" in flaws else b"POST"
    target = ("/api" + path).encode()
    if "target" in flaws:
        target = {
            "*": b"*",
            "": b"",
            "absolute": f"http://127.0.0.1/api{path}".encode(),
            "high-bytes": target + b"\xff\xfe",
            "space": target + b" x",
            "long-query": target + b"?" + b"q" * 70_000,
            "/healthz": b"/healthz",
        }[draw(RAW_TARGETS)]
    version = draw(RAW_VERSIONS) if "version" in flaws else b"HTTP/1.1"
    eol = draw(RAW_EOLS) if "eol" in flaws else b"\r\n"
    host = draw(RAW_HOSTS) if "host" in flaws else "ok"
    headers = {"ok": [b"Host: 127.0.0.1"], "missing": [], "twice": [b"Host: 127.0.0.1", b"Host: example.com"]}.get(
        host, [b"Host: \x01\x02 @@"]
    )
    headers += [f"Content-Type: {content_type}".encode(), b"Connect-Protocol-Version: 1"]
    if draw(ROLL) < 8:
        headers.append(f"Authorization: Bearer {known.token}".encode())
    upgrade = draw(RAW_UPGRADES) if "upgrade" in flaws else "none"
    if upgrade.startswith("websocket"):
        if upgrade == "websocket":  # a real handshake: GET without a body
            method, body, body_kind = b"GET", b"", "none"
        headers += [
            b"Connection: Upgrade",
            b"Upgrade: websocket",
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            b"Sec-WebSocket-Version: 13",
        ]
    elif upgrade == "h2c":
        headers += [
            b"Connection: Upgrade, HTTP2-Settings",
            b"Upgrade: h2c",
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
        ]
    elif upgrade == "junk":
        headers += [b"Connection: Upgrade", b"Upgrade: " + draw(SHORT_BYTES)]
    framing = draw(RAW_FRAMINGS) if "framing" in flaws else "exact"
    declared = {
        "exact": str(len(body)),
        "long": str(len(body) + 10),
        "short": str(max(len(body) - 3, 0)),
        "negative": "-1",
        "junk": "ten",
        "two": f"{len(body)}, {len(body) + 1}",
        "chunked+cl": str(len(body)),
    }.get(framing)
    if framing.startswith("chunked"):
        headers.append(b"Transfer-Encoding: chunked")
        if framing == "chunked-bad":
            body = b"zz\r\n" + body + b"\r\n"
        else:
            body = f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"
    if declared is not None and (body or method != b"GET"):
        headers.append(f"Content-Length: {declared}".encode())
    oddity = draw(RAW_ODDITIES) if "oddity" in flaws else "none"
    if oddity == "huge":
        headers.append(b"X-Huge: " + b"h" * draw(RAW_HUGE))
    elif oddity == "many":
        headers += [f"X-Many-{i}: {i}".encode() for i in range(150 if draw(st.booleans()) else 1_000)]
    else:
        headers += {
            "no-colon": [b"X-Broken"],
            "space-before-colon": [b"X-Broken : yes"],
            "obs-fold": [b"X-Folded: a", b"  continued"],
            "nul": [b"X-Nul: a\x00b"],
            "high-bytes": [b"X-High: \xff\xfe\x80"],
            "empty-name": [b": nameless"],
            "expect": [b"Expect: 100-continue"],
        }.get(oddity, [])
    if draw(st.booleans()):
        headers.append(b"Connection: close")
    data = method + b" " + target + (b" " + version if version else b"") + eol + eol.join(headers) + eol + eol + body
    cut = "cut" in flaws
    if cut:
        data = data[: draw(st.integers(1, len(data) - 1))]
    label = (
        f"{method[:20]!r} {target[:80]!r} {version!r} eol={eol!r} host={host} framing={framing} upgrade={upgrade} "
        f"oddity={oddity} body={body_kind}({len(body)} B) cut={cut}"
    )
    return RawCase(data, "flaw " + "+".join(sorted(flaws)), label)


def all_cases(known: Known) -> st.SearchStrategy[Case]:
    """Roughly: Connect POST 3/9, Connect GET 1/9, gRPC-Web 2/9, gRPC 2/9, raw HTTP 1/9."""
    connect, web, grpc_port = connect_cases(known), grpc_web_cases(known), grpc_cases(known)
    return st.one_of(
        connect, connect, connect, connect_get_cases(known), web, web, grpc_port, grpc_port, raw_cases(known)
    )


def generate(known: Known, count: int, seed: int | None) -> list[Case]:
    """`count` cases from hypothesis (derandomized without a seed)."""
    cases: list[Case] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=seed is None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(all_cases(known))
    def collect(case: Case) -> None:
        cases.append(case)

    runner: Callable[[], None] = collect if seed is None else hypothesis_seed(seed)(collect)
    runner()
    return cases


# --- sending and judging --------------------------------------------------------------------------


def judge_connect_error(body: bytes) -> tuple[str, list[str]]:
    """(code and ErrorInfo reason, problems) of a Connect JSON error body."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "?", ["error body is not JSON"]
    if not isinstance(payload, dict) or not isinstance(payload.get("code"), str):
        return "?", ["error body has no code"]
    code = payload["code"]
    reasons = [
        str(detail.get("debug", {}).get("reason"))
        for detail in payload.get("details", [])
        if isinstance(detail, dict)
        and detail.get("type") == "google.rpc.ErrorInfo"
        and isinstance(detail.get("debug"), dict)
    ]
    described = f"{code}/{reasons[0]}" if reasons else code
    if code not in CONNECT_CODES:
        return described, [f"unknown Connect code {code!r}"]
    if code in BAD_CONNECT_CODES:
        return described, [f"code={code}"]
    return described, []


def judge_status(status: int, code: str | None) -> list[str]:
    """A 5xx is allowed only as 501/503/504 carrying its own Connect code."""
    if status >= 500 and (code or "").split("/")[0] != ALLOWED_5XX.get(status):
        return [f"HTTP {status}"]
    return []


def parse_envelopes(body: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """Length-prefixed frames (gRPC-Web, Connect streaming), compressed ones (flag bit 0, gzip)
    inflated; False when the body does not frame or a frame does not inflate."""
    frames: list[tuple[int, bytes]] = []
    at = 0
    while at < len(body):
        if len(body) - at < 5:
            return frames, False
        flag, length = body[at], int.from_bytes(body[at + 1 : at + 5], "big")
        if len(body) - at - 5 < length:
            return frames, False
        payload = body[at + 5 : at + 5 + length]
        if flag & 0x01:
            try:
                payload = gzip.decompress(payload)
            except (OSError, EOFError, zlib.error):
                return frames, False
        frames.append((flag, payload))
        at += 5 + length
    return frames, True


def decode_grpc_web_text(body: bytes) -> bytes | None:
    """gRPC-Web text: base64 chunks, each padded, concatenated."""
    out = b""
    for chunk in re.findall(rb"[A-Za-z0-9+/]+={0,2}", body):
        try:
            out += base64.b64decode(chunk)
        except binascii.Error:
            return None
    return out


def judge_grpc_status(value: str | None, where: str) -> list[str]:
    if value is None:
        return []
    try:
        status = int(value.strip())
    except ValueError:
        return [f"unparsable grpc-status {value!r} in {where}"]
    if not 0 <= status <= 16:
        return [f"grpc-status {status} out of range in {where}"]
    if status in BAD_GRPC_STATUSES:
        return [f"grpc-status {status} ({'unknown' if status == 2 else 'internal'}) in {where}"]
    return []


def judge_http(status: int, headers: httpx.Headers, body: bytes) -> Verdict:
    """An answer on the HTTP port, whatever the request's protocol."""
    verdict = Verdict()
    content_type = headers.get("content-type", "")
    problems = verdict.problems
    code: str | None = None
    grpc_status = headers.get("grpc-status")
    problems += judge_grpc_status(grpc_status, "headers")
    if content_type.startswith("application/grpc-web"):
        raw = decode_grpc_web_text(body) if content_type.startswith("application/grpc-web-text") else body
        frames, complete = parse_envelopes(raw) if raw is not None else ([], False)
        if not complete:
            problems.append("gRPC-Web body does not frame")
        for flag, trailer in frames:
            if not flag & 0x80:
                continue
            fields: dict[str, str] = {}
            for line in trailer.decode("latin-1").split("\r\n"):
                name, colon, value = line.partition(":")
                if colon:
                    fields[name.strip().lower()] = value.strip()
            if "grpc-status" not in fields:
                problems.append("gRPC-Web trailer without grpc-status")
            problems += judge_grpc_status(fields.get("grpc-status"), "gRPC-Web trailer")
            grpc_status = grpc_status or fields.get("grpc-status")
        if status == 200 and grpc_status is None:
            problems.append("gRPC-Web answer without grpc-status")
    elif content_type.startswith("application/grpc") and status == 200 and grpc_status is None:
        problems.append("gRPC answer without grpc-status")  # HTTP/1.1 has no trailers: it must be a header
    elif content_type.startswith("application/connect+"):
        frames, complete = parse_envelopes(body)
        end = [payload for flag, payload in frames if flag & 0x02]
        if not complete or not end:
            problems.append("Connect stream without a well-formed end-stream message")
        for payload in end:
            try:
                error = json.loads(payload).get("error")
            except (ValueError, AttributeError):
                problems.append("end-stream message is not a JSON object")
                continue
            if isinstance(error, dict):
                code = str(error.get("code"))
                if code in BAD_CONNECT_CODES:
                    problems.append(f"end-stream code={code}")
    if status != 200:
        if content_type.startswith("application/json"):
            code, found = judge_connect_error(body)
            problems += found
        elif grpc_status is None:
            problems.append(f"non-JSON error body ({content_type or 'no content-type'})")
    elif content_type.startswith("application/json"):
        try:
            json.loads(body)
        except ValueError:
            problems.append("200 with a body that is not JSON")
    elif not content_type.startswith(("application/proto", "application/grpc", "application/connect+")):
        problems.append(f"200 with content-type {content_type or 'none'}")
    problems += judge_status(status, code)
    verdict.outcome = " ".join(
        str(part) for part in (status, code, grpc_status and f"grpc-status={grpc_status}") if part
    )
    verdict.answer = f"HTTP {status} {content_type or '-'} grpc-status={grpc_status} body={body[:160]!r}"
    return verdict


async def send_http(client: httpx.AsyncClient, case: HttpCase) -> Verdict:
    try:
        reply = await client.request(case.method, case.target, content=case.body, headers=list(case.headers))
    except httpx.TimeoutException:
        return Verdict([f"unanswered within {CALL_TIMEOUT_S:.0f} s"], "timeout", "unanswered")
    except httpx.RemoteProtocolError as exc:
        return Verdict([f"connection dropped without an answer ({exc})"], repr(exc), "dropped")
    except httpx.DecodingError as exc:
        return Verdict(["undecodable response body"], repr(exc), "undecodable")
    except (httpx.ReadError, httpx.WriteError) as exc:
        return Verdict([f"connection reset ({type(exc).__name__})"], repr(exc), "reset")
    except httpx.ConnectError as exc:
        return Verdict(["cannot connect"], repr(exc), "cannot connect")
    except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError, ValueError) as exc:
        return Verdict([], repr(exc), "client refused")
    return judge_http(reply.status_code, reply.headers, reply.content)


async def send_grpc(channel: grpc.aio.Channel, case: GrpcCase) -> Verdict:
    started = time.monotonic()
    try:
        call = channel.unary_unary(case.path)(
            case.body,
            metadata=case.metadata,
            timeout=case.timeout_s,
            compression=grpc.Compression.Gzip if case.gzip else None,
        )
        await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        elapsed = time.monotonic() - started
        answer = f"{code.name}: {exc.details()!r}"
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and case.timeout_s >= CALL_TIMEOUT_S and elapsed >= 9.5:
            return Verdict([f"unanswered within {CALL_TIMEOUT_S:.0f} s"], answer, "unanswered")
        outcome = code.name
        with contextlib.suppress(Exception):
            status = rpc_status.from_call(exc)
            for detail in status.details if status is not None else ():
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    outcome += f"/{info.reason}"
        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
            return Verdict([f"status {code.name}"], answer, outcome)
        return Verdict([], answer, outcome)
    except (ValueError, TypeError, UnicodeError, grpc.aio.UsageError) as exc:  # refused before sending
        return Verdict([], repr(exc), "client refused")
    return Verdict([], "OK", "OK")


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n")


def parse_http_answers(data: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], str | None]:
    """Complete HTTP/1.x responses in `data`; the second item says what is wrong with the rest
    ("incomplete" when it merely stops early, "until-close" for a body delimited by the close)."""
    answers: list[tuple[int, dict[str, str], bytes]] = []
    try:
        return _parse_http_answers(data, answers)
    except ValueError as exc:
        return answers, f"bad framing ({exc})"


def _parse_http_answers(
    data: bytes, answers: list[tuple[int, dict[str, str], bytes]]
) -> tuple[list[tuple[int, dict[str, str], bytes]], str | None]:
    at = 0
    while at < len(data):
        match = _STATUS_LINE.match(data, at)
        if match is None:
            return answers, "incomplete" if len(data) - at < 20 and b"\r\n" not in data[at:] else "not HTTP/1.x"
        end = data.find(b"\r\n\r\n", match.end() - 2)  # the status line's CRLF may end the head
        if end < 0:
            return answers, "incomplete"
        headers: dict[str, str] = {}
        block = data[match.end() : end] if end >= match.end() else b""
        for line in block.split(b"\r\n") if block else ():
            if b":" not in line:
                return answers, f"bad header line {line[:40]!r}"
            name, value = line.split(b":", 1)
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        status = int(match.group(1))
        at = end + 4
        if 100 <= status < 200 and status != 101:
            continue
        if status == 101:
            answers.append((status, headers, b""))
            return answers, None
        if "content-length" in headers:
            length = int(headers["content-length"])
            if len(data) - at < length:
                return answers, "incomplete"
            answers.append((status, headers, data[at : at + length]))
            at += length
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                line_end = data.find(b"\r\n", at)
                if line_end < 0:
                    return answers, "incomplete"
                size = int(data[at:line_end].split(b";")[0], 16)
                if len(data) - line_end - 2 < size + 2:
                    return answers, "incomplete"
                body += data[line_end + 2 : line_end + 2 + size]
                at = line_end + 4 + size
                if size == 0:
                    break
            answers.append((status, headers, body))
        elif status in (204, 304):
            answers.append((status, headers, b""))
        else:  # delimited by the end of the connection
            answers.append((status, headers, data[at:]))
            return answers, "until-close"
    return answers, None


async def send_raw(port: int, case: RawCase) -> Verdict:
    deadline = time.monotonic() + CALL_TIMEOUT_S
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return Verdict(["cannot connect"], repr(exc), "cannot connect")
    data = b""
    how_ended = "eof"
    try:
        try:
            writer.write(case.data)
            await asyncio.wait_for(writer.drain(), CALL_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass  # the server stopped reading (and may have answered): read what it sent
        half_closed = False
        while True:
            answers, rest = parse_http_answers(data)
            if answers and rest is None:
                how_ended = "complete"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                how_ended = "timeout"
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), min(RAW_IDLE_S, remaining))
            except TimeoutError:
                if not half_closed and writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    half_closed = True
                continue
            except ConnectionError:
                how_ended = "reset"
                break
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1)
    return judge_raw(case, data, how_ended)


def judge_raw(case: RawCase, data: bytes, how_ended: str) -> Verdict:
    if not data:
        if how_ended == "timeout":
            return Verdict([f"unanswered within {CALL_TIMEOUT_S:.0f} s (connection still open)"], "-", "unanswered")
        return Verdict([], f"closed ({how_ended})", f"closed ({how_ended})")
    if case.data.startswith(b"PRI * HTTP/2.0") and len(data) >= 9 and data[3] == 0x04:
        return Verdict([], "HTTP/2 SETTINGS", "h2")
    answers, rest = parse_http_answers(data)
    verdict = Verdict(answer=f"{data[:120]!r}")
    if rest not in (None, "until-close", "incomplete"):
        verdict.problems.append(f"answer is not parsable HTTP ({rest})")
    elif rest == "incomplete" and not answers:
        verdict.problems.append(f"truncated answer ({how_ended})")
    if how_ended == "timeout" and rest == "incomplete":
        verdict.problems.append(f"unanswered within {CALL_TIMEOUT_S:.0f} s (answer incomplete)")
    for status, headers, body in answers:
        verdict.outcome = str(status)
        if status == 101:
            # HTTP/2 by upgrade is served (README, HTTP/2 on the HTTP port): the request asked for h2c, and the
            # answer switches to it; any other switch is a flaw.
            asked = b"\r\nUpgrade: h2c" in case.data and b"HTTP2-Settings:" in case.data
            if not (asked and headers.get("upgrade", "").lower() == "h2c"):
                verdict.problems.append("101 Switching Protocols on the HTTP port")
            verdict.outcome = "101 h2c"
            continue
        content_type = headers.get("content-type", "")
        verdict.answer = f"HTTP {status} {content_type or '-'} body={body[:160]!r}"
        code = None
        if status >= 300:
            if not content_type.startswith("application/json"):
                verdict.problems.append(f"non-JSON error body ({content_type or 'no content-type'})")
            else:
                code, found = judge_connect_error(body)
                verdict.outcome += f" {code}"
                verdict.problems += found
        verdict.problems += judge_status(status, code)
    return verdict


# --- the test -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    by_kind: dict[str, list[tuple[Case, Verdict]]] = field(default_factory=lambda: defaultdict(list))
    outcomes: Counter[str] = field(default_factory=Counter)
    every: list[tuple[Case, Verdict]] = field(default_factory=list)

    def add(self, case: Case, verdict: Verdict) -> None:
        self.every.append((case, verdict))
        self.outcomes[f"{case.transport}: {verdict.outcome}"] += 1
        if verdict.problems:
            self.by_kind[f"{case.transport}: {'; '.join(verdict.problems)}"].append((case, verdict))

    def dump(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as out:
            for case, verdict in self.every:
                record = {
                    "transport": case.transport,
                    "feature": case.feature,
                    "case": case.label,
                    "outcome": verdict.outcome,
                    "problems": verdict.problems,
                    "answer": verdict.answer,
                }
                out.write(json.dumps(record) + "\n")

    def bad(self) -> int:
        return sum(len(v) for v in self.by_kind.values())

    def summary(self, total: int, note: str) -> str:
        lines = [f"{self.bad()} bad answers out of {total} cases ({note})"]
        for kind, hits in sorted(self.by_kind.items(), key=lambda item: -len(item[1])):
            features = Counter(case.feature for case, _ in hits).most_common(4)
            lines.append(f"\n[{len(hits)}x] {kind}")
            lines.append("    mostly: " + ", ".join(f"{name} x{n}" for name, n in features))
            shown: dict[str, tuple[Case, Verdict]] = {}
            for case, verdict in hits:
                shown.setdefault(case.label, (case, verdict))  # distinct cases only
            for case, verdict in list(shown.values())[:EXAMPLES_SHOWN]:
                lines.append(f"    e.g. {case.label}\n         -> {verdict.answer[:300]}")
        lines.append("\noutcomes: " + ", ".join(f"{k} x{n}" for k, n in sorted(self.outcomes.items())))
        return "\n".join(lines)


@pytest.fixture
def server_log(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Everything the in-process server logs while the test runs: structlog (pointed at a buffer,
    uncached, the processors left as configured), the standard library's loggers, and fd 1/2."""
    buffer = io.StringIO()
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=buffer), cache_logger_on_first_use=False)
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)

    def read() -> str:
        captured = capfd.readouterr()
        return buffer.getvalue() + captured.out + captured.err

    try:
        yield read
    finally:
        root.removeHandler(handler)
        structlog.configure(**saved)


@pytest_asyncio.fixture(scope="module")
async def fuzzed_server(module_database_url: str) -> AsyncIterator[AltaluneServer]:
    """A server whose every wait is shorter than CALL_TIMEOUT_S (deadline, headers), so a call
    still unanswered at the client's timeout is a real hang, not a call waiting out a 30 s deadline."""
    async with conftest.running_server(
        module_database_url, ALTALUNE_MAX_DEADLINE_MS=str(int(SERVER_DEADLINE_S * 1000)), ALTALUNE_HEADER_TIMEOUT_S="3"
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def known(fuzzed_server: AltaluneServer) -> AsyncIterator[Known]:
    server = fuzzed_server
    admin_token = admin_token_for(server)
    client = open_transport("grpc", grpc_port=server.grpc_port, http_port=server.http_port, token=admin_token)
    try:
        projects = []
        for n in range(3):
            request = project_pb2.CreateProjectRequest(
                name=f"Fuzz seed {n}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
            )
            projects.append((await client.call(CREATE_PROJECT, request)).ok().project.id)
        user_request = user_pb2.CreateUserRequest(email="fuzz.seed@example.com", first_name="Seed")
        user = (await client.call(Rpc.of("UserService", "CreateUser"), user_request)).ok().user.id
    finally:
        await client.close()
    routes = sorted(server.container.routes.items())
    rpcs = tuple((path, route.method.input) for path, route in routes)
    get_rpcs = tuple(
        (path, route.method.input)
        for path, route in routes
        if route.method.idempotency_level is IdempotencyLevel.NO_SIDE_EFFECTS
    )
    assert get_rpcs, "no RPC is marked side-effect free: Connect GET cannot be fuzzed"
    yield Known(token=admin_token, project_ids=tuple(projects), user_ids=(user,), rpcs=rpcs, get_rpcs=get_rpcs)


def _seed() -> tuple[int | None, str]:
    if not SEED_SETTING:
        return None, "derandomized; ALTALUNE_FUZZ_SEED=random for fresh cases"
    value = random.SystemRandom().randrange(2**32) if SEED_SETTING == "random" else int(SEED_SETTING)
    return value, f"ALTALUNE_FUZZ_SEED={value} replays this run"


def secrets_sent(cases: Sequence[Case], token: str) -> set[str]:
    """Forged API key secrets, marker e-mail addresses and the admin token that went out."""
    found = {token}
    for case in cases:
        if isinstance(case, HttpCase):
            text = case.target + " ".join(v for _, v in case.headers) + case.body.decode("latin-1")
        elif isinstance(case, GrpcCase):
            text = " ".join(v for _, v in case.metadata if isinstance(v, str)) + case.body.decode("latin-1")
        else:
            text = case.data.decode("latin-1")
        found.update(MARKER_EMAIL.findall(text))
        for key in FORGED_KEY.findall(text):
            parts = key.split("_", 3)
            if len(parts) == 4 and len(parts[3]) >= 12:
                found.add(parts[3])
    return found


async def test_random_and_mutated_requests_never_get_an_internal_error_a_hang_or_a_crash(
    fuzzed_server: AltaluneServer, known: Known, server_log: Callable[[], str]
) -> None:
    server = fuzzed_server
    seed, seed_note = _seed()
    started = time.monotonic()
    # Hypothesis mutates earlier examples into new ones; exact repeats are sent once.
    cases = list(dict.fromkeys(await asyncio.to_thread(generate, known, EXAMPLES, seed)))
    generated = time.monotonic()
    assert len(cases) >= EXAMPLES // 3, f"hypothesis generated only {len(cases)} distinct cases"

    report = Report()
    await send_all(server, cases, report)
    note = f"{seed_note}; generated in {generated - started:.1f} s, sent in {time.monotonic() - generated:.1f} s"

    alive = await still_serving(server, known.token)

    # Nothing that was sent as a secret shows up in the log.
    log = server_log()
    secrets = secrets_sent(cases, known.token)
    leaked = sorted(secret for secret in secrets if secret in log)
    note += f"; {len(secrets)} secrets sent, none may be in the {len(log) // 1024} KiB of log"

    summary = report.summary(len(cases), note)
    print(summary)
    if DUMP:
        report.dump(DUMP)
    failures = []
    if report.bad():
        failures.append(summary)
    if alive:
        failures.append("the server did not survive the run:\n  " + "\n  ".join(alive))
    if leaked:
        failures.append(f"{len(leaked)} secrets sent in requests appear in the server log, e.g. {leaked[:5]}")
    if "altalune.v1." not in log:  # every access log line names its RPC
        failures.append("the server log was not captured: the secrets check saw nothing")
    if not any(outcome.endswith((" 200", ": OK")) for outcome in report.outcomes):
        failures.append("not one case succeeded: the fuzzing never got past authentication")
    assert not failures, "\n\n".join(failures)


async def send_all(server: AltaluneServer, cases: Sequence[Case], report: Report) -> None:
    """Every case, CONCURRENCY at a time, each bounded by CALL_TIMEOUT_S (plus a margin)."""
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    base_url = f"http://127.0.0.1:{server.http_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=CALL_TIMEOUT_S, limits=limits) as http:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}")

        async def one(case: Case) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(CALL_TIMEOUT_S + 5):
                        if isinstance(case, HttpCase):
                            verdict = await send_http(http, case)
                        elif isinstance(case, GrpcCase):
                            verdict = await send_grpc(channel, case)
                        else:
                            verdict = await send_raw(server.http_port, case)
                except TimeoutError:
                    verdict = Verdict([f"unanswered within {CALL_TIMEOUT_S + 5:.0f} s"], "timeout", "unanswered")
                report.add(case, verdict)

        try:
            await asyncio.gather(*(one(case) for case in cases))
        finally:
            await channel.close()


async def still_serving(server: AltaluneServer, token: str) -> list[str]:
    """What is wrong after the run: /healthz, and a normal create + get on both ports."""
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=CALL_TIMEOUT_S) as http:
        try:
            health = await http.get("/healthz")
            if health.status_code != 200:
                wrong.append(f"/healthz answered {health.status_code}")
        except httpx.HTTPError as exc:
            wrong.append(f"/healthz: {exc!r}")
    for name in ("grpc", "http-json"):
        client = open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port, token=token)
        try:
            request = project_pb2.CreateProjectRequest(
                name=f"After fuzz {name}", timezone="UTC", environment=project_pb2.ENVIRONMENT_SANDBOX
            )
            created = await asyncio.wait_for(client.call(CREATE_PROJECT, request), CALL_TIMEOUT_S)
            got = await asyncio.wait_for(
                client.call(GET_PROJECT, project_pb2.GetProjectRequest(id=created.ok().project.id)), CALL_TIMEOUT_S
            )
            got.ok()
        except (AssertionError, TimeoutError, OSError, httpx.HTTPError, grpc.RpcError) as exc:
            wrong.append(f"{name}: a normal RPC after the run failed: {exc!r}")
        finally:
            await client.close()
    return wrong
