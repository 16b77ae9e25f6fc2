"""Trusted writes as clients see them, against one real server on both ports.

* A write that carries a `request_id` is done once: a retry by the same caller with the same
  request (over any port or encoding, concurrent or late) is answered with the first answer and the
  header `idempotent-replayed: true`; another request with the same id is REQUEST_ID_REUSED; another
  caller's request_id is its own.
* Every call leaves exactly the events it should: `<Rpc>Attempted` then one of Succeeded / Failed /
  Replayed in its stream for an authorized write, one global `CallRefused` for a call refused by
  authentication or authorization, nothing for reads and invalid requests; streams are gapless;
  no secret ever reaches the log.
* EventService reads the log back (newest first, filters, time range, pages) to those allowed.

The checks read the tables with psycopg and match them call by call through each call's own
`x-request-id` (its `call_request_id` in the log).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import secrets as secrets_module
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from altalune.v1 import api_key_pb2, common_pb2, employee_pb2, event_pb2, iam_pb2, project_pb2, user_pb2
from internal.auth.bootstrap import ensure_admin
from internal.ids import PUBLIC_ID_ALPHABET, new_public_id
from internal.server.app import AltaluneServer
from tests.e2e.clients import (
    CREATE_EMPLOYEE,
    CREATE_PROJECT,
    DELETE_EMPLOYEE,
    GET_EMPLOYEE,
    QUERY_EMPLOYEES,
    TRANSPORTS,
    UPDATE_EMPLOYEE,
    Outcome,
    Rpc,
    RpcFailure,
    Transport,
    open_transport,
)

pytestmark = pytest.mark.e2e

REPLAYED_HEADER = "idempotent-replayed"
# Fields a create sets: the names a CreateEmployeeSucceeded event lists (never their values).
CREATED_FIELDS = ("department", "email", "name", "role", "status")

CREATE_API_KEY: Rpc[api_key_pb2.CreateApiKeyRequest, api_key_pb2.CreateApiKeyResponse] = Rpc(
    "ApiKeyService", "CreateApiKey", api_key_pb2.CreateApiKeyResponse
)
CREATE_USER: Rpc[user_pb2.CreateUserRequest, user_pb2.CreateUserResponse] = Rpc(
    "UserService", "CreateUser", user_pb2.CreateUserResponse
)
ADD_PROJECT_MEMBERS: Rpc[iam_pb2.AddProjectMembersRequest, iam_pb2.AddProjectMembersResponse] = Rpc(
    "IamService", "AddProjectMembers", iam_pb2.AddProjectMembersResponse
)
QUERY_EVENTS: Rpc[event_pb2.QueryEventsRequest, event_pb2.QueryEventsResponse] = Rpc(
    "EventService", "QueryEvents", event_pb2.QueryEventsResponse
)
QUERY_GLOBAL_EVENTS: Rpc[event_pb2.QueryGlobalEventsRequest, event_pb2.QueryGlobalEventsResponse] = Rpc(
    "EventService", "QueryGlobalEvents", event_pb2.QueryGlobalEventsResponse
)

EMPLOYEE_SCOPES = ["employee:read", "employee:write", "employee:delete"]
_serial = itertools.count(1)
UNKNOWN_EMPLOYEE = new_public_id()

# (type, outcome, code, reason): what must be identical for an expected and a recorded event.
Shape = tuple[str, str, str, str]


# --- calling the service --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """A credential and who the event log must name for it."""

    token: str
    kind: str  # "user" or "api_key"
    id: str  # public id of the user or the API key


def new_call_id() -> str:
    """A plain x-request-id (the server keeps it), unique per call: the key from calls to events."""
    return uuid.uuid4().hex


def unique_email(tag: str) -> str:
    return f"{tag}.{next(_serial)}.{uuid.uuid4().hex[:6]}@trusted.test"


def port_of(transport: str) -> str:
    """The `transport` column of an event: the port the call came in on, "grpc" or "connect"
    (event.proto, as the access log names them), whichever protocol the HTTP port spoke."""
    return "grpc" if transport == "grpc" else "connect"


def rpc_name(rpc: Rpc[Any, Any]) -> str:
    """The `rpc` column of an event: "altalune.v1.EmployeeService/CreateEmployee"."""
    return rpc.path.removeprefix("/")


def call_headers(authorization: str | None, call_id: str | None) -> dict[str, str]:
    sent: dict[str, str] = {}
    if authorization is not None:
        sent["authorization"] = authorization
    if call_id is not None:
        sent["x-request-id"] = call_id
    return sent


async def send(
    t: Transport, rpc: Rpc[Any, Any], request: Message, caller: Caller | None, call_id: str | None = None
) -> Outcome[Any]:
    authorization = f"Bearer {caller.token}" if caller is not None else None
    return await t.call(rpc, request, headers=call_headers(authorization, call_id))


def replayed(outcome: Outcome[Any]) -> bool:
    return outcome.headers.get(REPLAYED_HEADER) == "true"


def create_request(
    project: str, email: str, *, name: str = "Ada Lovelace", request_id: str = ""
) -> employee_pb2.CreateEmployeeRequest:
    return employee_pb2.CreateEmployeeRequest(
        project_id=project,
        name=name,
        email=email,
        role="Engineer",
        department="Analytical Engines",
        status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        request_id=request_id,
    )


def rename_request(
    project: str, employee: str, name: str, *, request_id: str = ""
) -> employee_pb2.UpdateEmployeeRequest:
    return employee_pb2.UpdateEmployeeRequest(
        project_id=project, id=employee, name=name, update_mask=FieldMask(paths=["name"]), request_id=request_id
    )


def a_name() -> str:
    """A fresh valid employee name (letters only: digits break the name's pattern)."""
    n = next(_serial)
    letters = ""
    while True:
        n, digit = divmod(n, 26)
        letters += chr(ord("a") + digit)
        if not n:
            return f"Name {letters.capitalize()}"


def in_days(days: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=days))
    return stamp


def failure_shape(failure: RpcFailure) -> tuple[str, str | None]:
    return (failure.code, failure.reason)


async def new_project(t: Transport, admin: Caller, name: str, call_id: str | None = None) -> str:
    request = project_pb2.CreateProjectRequest(
        name=f"{name} {next(_serial)}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
    )
    project: str = (await send(t, CREATE_PROJECT, request, admin, call_id)).ok().project.id
    return project


async def new_key(
    t: Transport, admin: Caller, project: str, scopes: Sequence[str], call_id: str | None = None
) -> Caller:
    request = api_key_pb2.CreateApiKeyRequest(
        project_id=project, name=f"key {next(_serial)}", scopes=list(scopes), expires_at=in_days(30)
    )
    created = (await send(t, CREATE_API_KEY, request, admin, call_id)).ok()
    return Caller(token=created.secret, kind="api_key", id=created.api_key.id)


async def new_member(
    server: AltaluneServer, t: Transport, admin: Caller, project: str, role: iam_pb2.ProjectRole
) -> Caller:
    """A user holding `role` in `project`, with a JWT of the local issuer."""
    email = unique_email("member")
    user = (await send(t, CREATE_USER, user_pb2.CreateUserRequest(email=email, first_name="Mem"), admin)).ok().user
    members = [iam_pb2.NewProjectMember(user_id=user.id, role=role)]
    (
        await send(t, ADD_PROJECT_MEMBERS, iam_pb2.AddProjectMembersRequest(project_id=project, members=members), admin)
    ).ok()
    issuer = server.container.issuer
    assert issuer is not None
    return Caller(token=issuer.mint(user_public_id=user.id, email=email, ttl_s=3600), kind="user", id=user.id)


# --- reading the log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRow:
    """One row of either table; `stream` is "global" or the public id of the project's stream."""

    stream: str
    sequence: int
    type: str
    outcome: str
    occurred_at: dt.datetime
    actor_kind: str
    actor_id: str
    peer: str
    user_agent: str
    rpc: str
    transport: str
    resource_type: str
    resource_id: str
    project_public_id: str
    call_request_id: str
    idempotency_key: str
    code: str
    reason: str
    changed_fields: tuple[str, ...]
    etag: str

    @property
    def shape(self) -> Shape:
        return (self.type, self.outcome, self.code, self.reason)


_EVENT_COLUMNS = (
    "sequence, type, outcome, occurred_at, actor_kind, actor_id, peer, user_agent, rpc, transport, resource_type, "
    "resource_id, project_public_id, call_request_id, idempotency_key, code, reason, changed_fields, etag"
)
_ALL_EVENTS = (
    f"SELECT 'global', {_EVENT_COLUMNS} FROM global_events UNION ALL "
    f"SELECT p.public_id, {', '.join('e.' + c.strip() for c in _EVENT_COLUMNS.split(','))} "
    "FROM project_events e JOIN projects p ON p.id = e.project_id"
)


@dataclass(frozen=True)
class LogDatabase:
    """The server's database, read once the server has written the refusal events it queued
    (internal/events/refusals.py writes them off the request path)."""

    server: AltaluneServer

    @property
    def url(self) -> str:
        return self.server.container.database_url

    async def settle(self) -> None:
        await self.server.container.refusals.flush()


async def all_events(log_db: LogDatabase) -> list[EventRow]:
    await log_db.settle()
    async with await psycopg.AsyncConnection.connect(log_db.url, autocommit=True) as conn:
        cur = await conn.execute(_ALL_EVENTS)  # type: ignore[arg-type]
        rows = await cur.fetchall()
    names = [f.name for f in fields(EventRow)]
    return [EventRow(**dict(zip(names, (*row[:-2], tuple(row[-2]), row[-1]), strict=True))) for row in rows]


async def events_of(log_db: LogDatabase, call_ids: Iterable[str]) -> dict[str, list[EventRow]]:
    """The events of these calls, by call id, in (stream, sequence) order."""
    wanted = set(call_ids)
    found: dict[str, list[EventRow]] = {cid: [] for cid in wanted}
    for event in sorted(await all_events(log_db), key=lambda e: (e.stream, e.sequence)):
        if event.call_request_id in wanted:
            found[event.call_request_id].append(event)
    return found


async def event_texts(log_db: LogDatabase) -> list[str]:
    """Every event row as text (every column, arrays included): what a secret must never be in."""
    await log_db.settle()
    async with await psycopg.AsyncConnection.connect(log_db.url, autocommit=True) as conn:
        cur = await conn.execute("SELECT g::text FROM global_events g UNION ALL SELECT e::text FROM project_events e")
        return [str(row[0]) for row in await cur.fetchall()]


async def stream_counters(log_db: LogDatabase) -> dict[str, int]:
    """event_streams.last_sequence by stream name ("global" or the project's public id)."""
    await log_db.settle()
    async with await psycopg.AsyncConnection.connect(log_db.url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT coalesce(p.public_id, 'global'), s.last_sequence FROM event_streams s "
            "LEFT JOIN projects p ON p.id = s.stream"
        )
        return {str(name): int(last) for name, last in await cur.fetchall()}


async def employee_count(log_db: LogDatabase, project: str, email: str | None = None) -> int:
    async with await psycopg.AsyncConnection.connect(log_db.url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM employees e JOIN projects p ON p.id = e.project_id "
            "WHERE p.public_id = %s AND (%s::text IS NULL OR lower(e.email) = lower(%s::text))",
            (project, email, email),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def assert_ports(found: Mapping[str, Sequence[EventRow]], transport_by_call: Mapping[str, str]) -> None:
    """Each call's events name the port it came in on ("grpc" or "connect"). Checked last in a test,
    so a wrong port name does not hide the other checks."""
    wrong = {
        (transport_by_call[cid], e.transport)
        for cid, events in found.items()
        for e in events
        if e.transport != port_of(transport_by_call[cid])
    }
    assert not wrong, f"(client, recorded transport) pairs with the wrong port name: {sorted(wrong)}"


def write_shapes(method: str, outcome: str, code: str = "", reason: str = "") -> Counter[Shape]:
    """An authorized write: `<Rpc>Attempted` and exactly one final event."""
    return Counter(
        {(f"{method}Attempted", "attempted", "", ""): 1, (f"{method}{outcome.capitalize()}", outcome, code, reason): 1}
    )


def refused_shape(code: str, reason: str) -> Counter[Shape]:
    return Counter({("CallRefused", "refused", code, reason): 1})


# --- fixtures -------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def transports(server: AltaluneServer) -> AsyncIterator[dict[str, Transport]]:
    """Every client; no credential unless the call sends one."""
    opened = {name: open_transport(name, grpc_port=server.grpc_port, http_port=server.http_port) for name in TRANSPORTS}
    try:
        yield opened
    finally:
        for transport in opened.values():
            await transport.close()


@pytest.fixture(scope="module")
def admin(server: AltaluneServer, admin_token: str) -> Caller:
    return Caller(token=admin_token, kind="user", id=ensure_admin(server.container.database_url).public_id)


@pytest.fixture(scope="module")
def log_db(server: AltaluneServer) -> LogDatabase:
    return LogDatabase(server)


# --- 1. a retry storm -----------------------------------------------------------------------------


async def test_a_retry_storm_writes_once_and_answers_every_retry_with_the_first_answer(
    transports: dict[str, Transport], admin: Caller, log_db: LogDatabase
) -> None:
    """50 concurrent retries over every client, then the retry of a client whose answer was lost:
    one employee, one answer, and the log says which call wrote and which were answered."""
    t = transports["grpc"]
    project = await new_project(t, admin, "Storm")
    request_id = str(uuid.uuid4())
    email = unique_email("storm")
    request = create_request(project, email, request_id=request_id)
    order = [TRANSPORTS[i % len(TRANSPORTS)] for i in range(50)]
    call_ids = [new_call_id() for _ in range(51)]

    storm = await asyncio.gather(
        *(
            send(transports[name], CREATE_EMPLOYEE, request, admin, cid)
            for name, cid in zip(order, call_ids, strict=False)
        )
    )
    late = await send(transports["connect-json"], CREATE_EMPLOYEE, request, admin, call_ids[50])
    outcomes = [*storm, late]

    answers = [o.ok() for o in outcomes]
    first = answers[0].employee
    assert first.id
    assert first.email == email
    assert all(a == answers[0] for a in answers), {
        o.transport for o, a in zip(outcomes, answers, strict=True) if a != answers[0]
    }
    assert {a.employee.etag for a in answers} == {first.etag}
    flags = [replayed(o) for o in outcomes]
    assert flags.count(True) == 50, [(o.transport, o.headers.get(REPLAYED_HEADER)) for o in outcomes]
    assert flags[50], "the late retry must be a replay"
    writer = flags.index(False)
    assert REPLAYED_HEADER not in outcomes[writer].headers

    listed = (
        await send(
            t,
            QUERY_EMPLOYEES,
            employee_pb2.QueryEmployeesRequest(project_id=project, query=common_pb2.QueryRequest(keyword=email)),
            admin,
        )
    ).ok()
    assert [e.id for e in listed.data] == [first.id]
    assert await employee_count(log_db, project) == 1

    found = await events_of(log_db, call_ids)
    by_key = [e for events in found.values() for e in events]
    assert Counter(e.type for e in by_key) == {
        "CreateEmployeeAttempted": 51,
        "CreateEmployeeSucceeded": 1,
        "CreateEmployeeReplayed": 50,
    }
    assert {e.idempotency_key for e in by_key} == {request_id}
    assert {e.stream for e in by_key} == {project}
    for index, cid in enumerate(call_ids):
        final = "succeeded" if index == writer else "replayed"
        assert Counter(e.shape for e in found[cid]) == write_shapes("CreateEmployee", final), (index, found[cid])
        assert {(e.actor_kind, e.actor_id) for e in found[cid]} == {("user", admin.id)}
        last = next(e for e in found[cid] if e.outcome != "attempted")
        assert last.resource_id == first.id
    succeeded = next(e for e in found[call_ids[writer]] if e.outcome == "succeeded")
    assert succeeded.etag == first.etag
    assert list(succeeded.changed_fields) == list(CREATED_FIELDS)
    assert_ports(found, {cid: o.transport for cid, o in zip(call_ids, outcomes, strict=True)})


# --- 2. a request_id is one request of one caller -------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_request_id_reused_for_another_request_is_refused_and_writes_nothing(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, log_db: LogDatabase, transport: str
) -> None:
    """Another request (other fields, or another RPC) under a used request_id is refused the same
    way on every client; the first answer still replays; the employee is untouched."""
    t = transports[transport]
    project = await new_project(transports["grpc"], admin, "Reuse")
    request_id = str(uuid.uuid4())
    email = unique_email("reuse")
    first = (
        await send(transports["grpc"], CREATE_EMPLOYEE, create_request(project, email, request_id=request_id), admin)
    ).ok()

    other_fields = create_request(project, email, name="Someone Else", request_id=request_id)
    other_rpc = rename_request(project, first.employee.id, "Renamed", request_id=request_id)
    call_ids = [new_call_id(), new_call_id()]
    refusals = [
        await send(t, CREATE_EMPLOYEE, other_fields, admin, call_ids[0]),
        await send(t, UPDATE_EMPLOYEE, other_rpc, admin, call_ids[1]),
    ]
    for refused in refusals:
        failure = refused.failed()
        assert failure.shape == ("invalid_argument", "REQUEST_ID_REUSED", ())
        assert dict(failure.metadata) == {"request_id": request_id}
        assert REPLAYED_HEADER not in refused.headers

    retry = await send(t, CREATE_EMPLOYEE, create_request(project, email, request_id=request_id), admin)
    assert retry.ok() == first
    assert replayed(retry)
    got = (
        await send(t, GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=project, id=first.employee.id), admin)
    ).ok()
    assert got.employee == first.employee
    assert await employee_count(log_db, project) == 1

    found = await events_of(log_db, call_ids)
    assert Counter(e.shape for e in found[call_ids[0]]) == write_shapes(
        "CreateEmployee", "failed", "invalid_argument", "REQUEST_ID_REUSED"
    )
    assert Counter(e.shape for e in found[call_ids[1]]) == write_shapes(
        "UpdateEmployee", "failed", "invalid_argument", "REQUEST_ID_REUSED"
    )
    assert {e.idempotency_key for events in found.values() for e in events} == {request_id}
    assert_ports(found, dict.fromkeys(call_ids, transport))


async def test_another_caller_s_request_id_is_its_own(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, log_db: LogDatabase
) -> None:
    """The same request_id from a second API key and from another user starts their own writes:
    never the first caller's answer, never REQUEST_ID_REUSED. Even the first caller's exact request
    is a new write for them (refused as a duplicate email, which proves it ran)."""
    grpc = transports["grpc"]
    project = await new_project(grpc, admin, "Callers")
    key = await new_key(grpc, admin, project, EMPLOYEE_SCOPES)
    member = await new_member(server, grpc, admin, project, iam_pb2.PROJECT_ROLE_MEMBER)
    request_id = str(uuid.uuid4())
    email = unique_email("first")
    mine = (await send(grpc, CREATE_EMPLOYEE, create_request(project, email, request_id=request_id), admin)).ok()

    ids = {mine.employee.id}
    for caller, transport in ((key, "connect-proto"), (member, "http-json")):
        t = transports[transport]
        # The first caller's exact request: a new write for this caller, so the email is taken.
        copy_cid = new_call_id()
        copy = await send(t, CREATE_EMPLOYEE, create_request(project, email, request_id=request_id), caller, copy_cid)
        assert not replayed(copy)
        assert failure_shape(copy.failed()) == ("already_exists", "EMPLOYEE_EMAIL_TAKEN")
        events = (await events_of(log_db, [copy_cid]))[copy_cid]
        assert Counter(e.shape for e in events) == write_shapes(
            "CreateEmployee", "failed", "already_exists", "EMPLOYEE_EMAIL_TAKEN"
        )
        assert {(e.actor_kind, e.actor_id) for e in events} == {(caller.kind, caller.id)}

        # That failure kept nothing: the request_id is still free for this caller's own create.
        theirs_request = create_request(project, unique_email(caller.kind), request_id=request_id)
        theirs = await send(t, CREATE_EMPLOYEE, theirs_request, caller)
        assert not replayed(theirs)
        created = theirs.ok().employee
        assert created.id not in ids
        ids.add(created.id)
        again = await send(transports["grpc"], CREATE_EMPLOYEE, theirs_request, caller)
        assert replayed(again)
        assert again.ok() == theirs.ok()

    assert await employee_count(log_db, project) == 3
    replay = await send(
        transports["connect-json"], CREATE_EMPLOYEE, create_request(project, email, request_id=request_id), admin
    )
    assert replayed(replay)
    assert replay.ok() == mine


async def test_a_failed_first_call_stores_nothing_and_its_retry_writes(
    transports: dict[str, Transport], admin: Caller, log_db: LogDatabase
) -> None:
    """A first call that fails is not an answer to keep: once the obstacle is gone, the retry with
    the same request_id runs the write for real."""
    t = transports["grpc"]
    project = await new_project(t, admin, "Failed first")
    email = unique_email("taken")
    holder = (await send(t, CREATE_EMPLOYEE, create_request(project, email), admin)).ok().employee
    request = create_request(project, email, name="Second Comer", request_id=str(uuid.uuid4()))

    failed = await send(transports["connect-json"], CREATE_EMPLOYEE, request, admin)
    assert failure_shape(failed.failed()) == ("already_exists", "EMPLOYEE_EMAIL_TAKEN")
    (await send(t, DELETE_EMPLOYEE, employee_pb2.DeleteEmployeeRequest(project_id=project, id=holder.id), admin)).ok()
    cid = new_call_id()
    retried = await send(transports["connect-proto"], CREATE_EMPLOYEE, request, admin, cid)

    assert not replayed(retried)
    assert retried.ok().employee.name == "Second Comer"
    events = (await events_of(log_db, [cid]))[cid]
    assert Counter(e.shape for e in events) == write_shapes("CreateEmployee", "succeeded")


# --- 3. a mixed run: every call leaves exactly its events -----------------------------------------

MIXED_CALLS = 10_000
BATCH = 50


@dataclass(eq=False)
class Planned:
    """One call of the mixed run: what it sends, the answer it must get, the events it must leave."""

    kind: str
    transport: str
    rpc: Rpc[Any, Any]
    request: Message
    authorization: str | None
    stream: str = ""  # "global", the project's public id, or "" for a call that leaves no event
    actor: tuple[str, str] = ("anonymous", "")
    events: Counter[Shape] = field(default_factory=Counter)
    code: str | None = None  # None: the call must succeed
    reason: str | None = None
    caller: Caller | None = None
    first: Planned | None = None  # a retry: the call whose answer it must get back
    twin: Planned | None = None  # sent concurrently with the same request_id: one of the two writes
    call_id: str = field(default_factory=new_call_id)
    outcome: Outcome[Any] | None = None

    @property
    def request_id(self) -> str:
        return str(getattr(self.request, "request_id", ""))


class Problems:
    """Every mismatch, by kind, so one run reports all of them at once."""

    def __init__(self) -> None:
        self.found: dict[str, list[str]] = {}

    def add(self, kind: str, text: str) -> None:
        self.found.setdefault(kind, []).append(text)

    def report(self) -> str:
        return "\n".join(
            f"{kind}: {len(texts)} time(s), e.g.\n    " + "\n    ".join(texts[:5]) for kind, texts in self.found.items()
        )


@dataclass
class MixedWorld:
    project: str
    foreign_project: str
    admin: Caller
    writer: Caller  # an API key of the project with the employee permissions
    reader: Caller  # an API key of the project that may only read employees
    foreign: Caller  # an API key of the other project
    unknown_key: str  # well-formed, never issued
    forged_key: str  # the writer's key with another secret
    setup: dict[str, tuple[str, Counter[Shape]]]  # call id -> (stream, events) of the calls that made this


class MixedRun:
    """Plans batches of calls over the current state (which employees exist), runs them, checks
    each answer, and keeps what the events must be."""

    def __init__(self, world: MixedWorld, transports: Mapping[str, Transport], rng: random.Random) -> None:
        self.w = world
        self.transports = transports
        self.rng = rng
        self.live: list[str] = []  # employees of the run nobody deleted
        self.anchors: list[str] = []  # emails that always exist (never deleted)
        self.anchor_ids: list[str] = []
        self.retries: list[Planned] = []  # answered calls with a request_id, to retry later
        self.answered: list[Planned] = []  # calls with a request_id that wrote: their id may be misused
        self.plans: list[Planned] = []
        self.problems = Problems()

    # -- planning ----------------------------------------------------------------------------------

    def transport(self) -> str:
        return self.rng.choice(TRANSPORTS)

    def writer(self) -> Caller:
        return self.rng.choice((self.w.admin, self.w.writer))

    def write(
        self, kind: str, rpc: Rpc[Any, Any], request: Message, caller: Caller, code: str = "", reason: str = ""
    ) -> Planned:
        final = "failed" if code else "succeeded"
        return Planned(
            kind,
            self.transport(),
            rpc,
            request,
            f"Bearer {caller.token}",
            stream=self.w.project,
            actor=(caller.kind, caller.id),
            events=write_shapes(rpc.method, final, code, reason),
            code=code or None,
            reason=reason or None,
            caller=caller,
        )

    def refused(
        self,
        kind: str,
        authorization: str | None,
        actor: tuple[str, str],
        code: str,
        reason: str,
        *,
        reads: bool = True,
    ) -> Planned:
        rpc, request = self.any_request(reads=reads)
        return Planned(
            kind,
            self.transport(),
            rpc,
            request,
            authorization,
            stream="global",
            actor=actor,
            events=refused_shape(code, reason),
            code=code,
            reason=reason,
        )

    def any_request(self, *, reads: bool = True) -> tuple[Rpc[Any, Any], Message]:
        """A valid request of an employee RPC of the project (a read only when `reads`)."""
        p = self.w.project
        some = self.rng.choice(self.anchor_ids)
        choices: list[tuple[Rpc[Any, Any], Message]] = [
            (CREATE_EMPLOYEE, create_request(p, unique_email("refused"))),
            (UPDATE_EMPLOYEE, rename_request(p, some, "Never")),
            (DELETE_EMPLOYEE, employee_pb2.DeleteEmployeeRequest(project_id=p, id=some)),
        ]
        if reads:
            choices += [
                (GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=p, id=some)),
                (QUERY_EMPLOYEES, employee_pb2.QueryEmployeesRequest(project_id=p)),
            ]
        return self.rng.choice(choices)

    def maybe_request_id(self, chance: float) -> str:
        return str(uuid.uuid4()) if self.rng.random() < chance else ""

    def plan_batch(self, size: int) -> list[Planned]:
        batch: list[Planned] = []
        due, self.retries = self.retries[: size // 5], self.retries[size // 5 :]
        for first in due:
            batch.append(self.retry_of(first))
        busy: set[str] = set()  # employees an update or delete of this batch touches
        kinds = (
            "create",
            "create_twice",
            "update",
            "delete",
            "duplicate",
            "unknown",
            "reused",
            "no_credential",
            "bad_credential",
            "no_permission",
            "other_project",
            "read",
            "invalid",
        )
        weights = (14, 2, 12, 6, 7, 7, 2, 6, 6, 6, 6, 18, 5)
        while len(batch) < size:
            kind = self.rng.choices(kinds, weights)[0]
            free = [e for e in self.live if e not in busy]
            if kind in ("update", "delete") and len(free) < 5:
                kind = "create"
            if kind == "reused" and not self.answered:
                kind = "read"
            if kind == "create_twice" and len(batch) > size - 2:
                kind = "create"
            batch += self.plan(kind, free, busy)
        return batch

    def plan(self, kind: str, free: list[str], busy: set[str]) -> list[Planned]:
        if kind in ("update", "delete"):
            employee = self.rng.choice(free)
            busy.add(employee)
            return [self.plan_update(employee) if kind == "update" else self.plan_delete(employee)]
        planners = {
            "create": self.plan_create,
            "create_twice": self.plan_create_twice,
            "duplicate": self.plan_duplicate,
            "unknown": self.plan_unknown,
            "reused": self.plan_reused,
            "no_credential": self.plan_no_credential,
            "bad_credential": self.plan_bad_credential,
            "no_permission": self.plan_no_permission,
            "other_project": self.plan_other_project,
            "read": self.plan_read,
            "invalid": self.plan_invalid,
        }
        return planners[kind]()

    def plan_create(self) -> list[Planned]:
        request = create_request(self.w.project, unique_email("mixed"), request_id=self.maybe_request_id(0.4))
        return [self.write("create", CREATE_EMPLOYEE, request, self.writer())]

    def plan_create_twice(self) -> list[Planned]:
        """The same create with one request_id, sent twice at once (a client retrying too early)."""
        request = create_request(self.w.project, unique_email("twice"), request_id=str(uuid.uuid4()))
        caller = self.writer()
        one, two = (self.write("create_twice", CREATE_EMPLOYEE, request, caller) for _ in range(2))
        one.twin, two.twin = two, one
        return [one, two]

    def plan_update(self, employee: str) -> Planned:
        request = rename_request(self.w.project, employee, a_name(), request_id=self.maybe_request_id(0.3))
        return self.write("update", UPDATE_EMPLOYEE, request, self.writer())

    def plan_delete(self, employee: str) -> Planned:
        self.live.remove(employee)
        request = employee_pb2.DeleteEmployeeRequest(
            project_id=self.w.project, id=employee, request_id=self.maybe_request_id(0.3)
        )
        return self.write("delete", DELETE_EMPLOYEE, request, self.writer())

    def plan_duplicate(self) -> list[Planned]:
        request = create_request(self.w.project, self.rng.choice(self.anchors), request_id=self.maybe_request_id(0.3))
        caller = self.writer()
        return [self.write("duplicate", CREATE_EMPLOYEE, request, caller, "already_exists", "EMPLOYEE_EMAIL_TAKEN")]

    def plan_unknown(self) -> list[Planned]:
        request = rename_request(self.w.project, new_public_id(), "Ghost", request_id=self.maybe_request_id(0.3))
        caller = self.writer()
        return [self.write("unknown", UPDATE_EMPLOYEE, request, caller, "not_found", "EMPLOYEE_NOT_FOUND")]

    def plan_reused(self) -> list[Planned]:
        """Another request (a rename of an anchor) under a request_id that already answered."""
        first = self.rng.choice(self.answered)
        assert first.caller is not None
        anchor = self.rng.choice(self.anchor_ids)
        request = rename_request(self.w.project, anchor, "Reused", request_id=first.request_id)
        return [self.write("reused", UPDATE_EMPLOYEE, request, first.caller, "invalid_argument", "REQUEST_ID_REUSED")]

    def plan_no_credential(self) -> list[Planned]:
        return [self.refused("no_credential", None, ("anonymous", ""), "unauthenticated", "CREDENTIALS_MISSING")]

    def plan_bad_credential(self) -> list[Planned]:
        w = self.w
        authorization, reason = self.rng.choice(
            (
                (f"Bearer {w.unknown_key}", "API_KEY_INVALID"),
                (f"Bearer {w.forged_key}", "API_KEY_INVALID"),
                ("Bearer ak_short", "API_KEY_INVALID"),
                ("Bearer not-a-jwt", "TOKEN_INVALID"),
            )
        )
        return [self.refused("bad_credential", authorization, ("anonymous", ""), "unauthenticated", reason)]

    def plan_no_permission(self) -> list[Planned]:
        """The read-only key writing: refused by authorization, so it names the key."""
        reader = self.w.reader
        actor = ("api_key", reader.id)
        return [
            self.refused(
                "no_permission", f"Bearer {reader.token}", actor, "permission_denied", "PERMISSION_MISSING", reads=False
            )
        ]

    def plan_other_project(self) -> list[Planned]:
        foreign = self.w.foreign
        actor = ("api_key", foreign.id)
        return [self.refused("other_project", f"Bearer {foreign.token}", actor, "not_found", "PROJECT_NOT_FOUND")]

    def plan_read(self) -> list[Planned]:
        caller = self.rng.choice((self.w.admin, self.w.writer, self.w.reader))
        p = self.w.project
        reads: list[tuple[Rpc[Any, Any], Message]] = [
            (GET_EMPLOYEE, employee_pb2.GetEmployeeRequest(project_id=p, id=self.rng.choice(self.anchor_ids))),
            (
                QUERY_EMPLOYEES,
                employee_pb2.QueryEmployeesRequest(
                    project_id=p, query=common_pb2.QueryRequest(pagination=common_pb2.Pagination(page_size=5))
                ),
            ),
        ]
        rpc, request = self.rng.choice(reads)
        return [Planned("read", self.transport(), rpc, request, f"Bearer {caller.token}", caller=caller)]

    def plan_invalid(self) -> list[Planned]:
        """Requests validation refuses (after authentication, before authorization): no event."""
        caller = self.writer()
        p = self.w.project
        invalid: list[tuple[Rpc[Any, Any], Message]] = [
            (CREATE_EMPLOYEE, create_request(p, "not an email")),
            (CREATE_EMPLOYEE, create_request(p, unique_email("badid"), request_id="not-a-uuid")),
            (
                UPDATE_EMPLOYEE,
                employee_pb2.UpdateEmployeeRequest(project_id=p, id=self.rng.choice(self.anchor_ids), name="No mask"),
            ),
        ]
        rpc, request = self.rng.choice(invalid)
        authorization = f"Bearer {caller.token}"
        return [
            Planned(
                "invalid",
                self.transport(),
                rpc,
                request,
                authorization,
                code="invalid_argument",
                reason="INVALID_ARGUMENT",
                caller=caller,
            )
        ]

    def retry_of(self, first: Planned) -> Planned:
        """The same request by the same caller, maybe over the other port: the first answer again."""
        assert first.caller is not None
        retry = self.write(f"retry {first.kind}", first.rpc, first.request, first.caller)
        retry.events = write_shapes(first.rpc.method, "replayed")
        retry.first = first
        return retry

    # -- running -------------------------------------------------------------------------------------

    async def run(self, batch: list[Planned]) -> None:
        outcomes = await asyncio.gather(
            *(
                self.transports[p.transport].call(p.rpc, p.request, headers=call_headers(p.authorization, p.call_id))
                for p in batch
            )
        )
        for p, outcome in zip(batch, outcomes, strict=True):
            p.outcome = outcome
        for p in batch:
            self.check_answer(p)
        self.plans += batch

    def check_answer(self, p: Planned) -> None:
        outcome = p.outcome
        assert outcome is not None
        if outcome.request_id != p.call_id:
            self.problems.add("request id not echoed", f"{p.kind}: sent {p.call_id}, got {outcome.request_id}")
        if p.twin is not None:
            self.check_twin(p)
        if p.code is not None:
            got = (outcome.error.code, outcome.error.reason) if outcome.error else ("ok", None)
            if got != (p.code, p.reason):
                self.problems.add(
                    f"wrong answer to {p.kind}", f"{p.transport}: expected {p.code} {p.reason}, got {got}"
                )
            if replayed(outcome):
                self.problems.add(f"replay header on a failed {p.kind}", p.transport)
            return
        if outcome.error is not None:
            self.problems.add(f"wrong answer to {p.kind}", f"{p.transport}: expected success, got {outcome.error}")
            p.events = Counter()  # unknown; the mismatch is reported already
            return
        if p.first is not None:
            assert p.first.outcome is not None
            if outcome.response != p.first.outcome.response:
                self.problems.add(
                    f"{p.kind}: another answer than the first", f"{outcome.response} != {p.first.outcome.response}"
                )
            if not replayed(outcome):
                self.problems.add(f"{p.kind}: no replay header", p.transport)
            return
        if p.twin is None and replayed(outcome):
            self.problems.add(f"replay header on a first {p.kind}", p.transport)
        if p.twin is not None and replayed(outcome):
            return  # the twin's answer; the twin keeps the state
        if p.rpc is CREATE_EMPLOYEE:
            self.live.append(outcome.ok().employee.id)
        if p.request_id:
            self.answered.append(p)
            if self.rng.random() < 0.5:
                self.retries.append(p)

    def check_twin(self, p: Planned) -> None:
        """Two concurrent calls with one request_id: one wrote, the other got its answer."""
        twin = p.twin
        assert twin is not None
        assert p.outcome is not None
        assert twin.outcome is not None
        if replayed(p.outcome):
            p.events = write_shapes(p.rpc.method, "replayed")
            if replayed(twin.outcome):
                self.problems.add("both twins replayed", p.transport)
            elif p.outcome.response != twin.outcome.response:
                self.problems.add("twins answered differently", f"{p.outcome.response} != {twin.outcome.response}")

    # -- the log -----------------------------------------------------------------------------------

    def check_events(self, events: Sequence[EventRow]) -> int:
        """Every planned call has exactly its events, in the right stream, naming the right caller,
        RPC and port; no other event names one of these calls or sits in the project's stream."""
        ids = {p.call_id: p for p in self.plans}
        by_call: dict[str, list[EventRow]] = {cid: [] for cid in ids}
        setup: dict[str, list[EventRow]] = {cid: [] for cid in self.w.setup}
        for e in events:
            if e.call_request_id in by_call:
                by_call[e.call_request_id].append(e)
            elif e.call_request_id in setup:
                setup[e.call_request_id].append(e)
            elif e.stream in (self.w.project, self.w.foreign_project):
                self.problems.add("an event of no call of the run in the run's projects", str(e))
        for cid, (stream, shapes) in self.w.setup.items():
            if Counter(e.shape for e in setup[cid]) != shapes or {e.stream for e in setup[cid]} != {stream}:
                self.problems.add("wrong events for a setup call", f"expected {dict(shapes)} in {stream}: {setup[cid]}")
        for cid, p in ids.items():
            got = by_call[cid]
            shapes = Counter(e.shape for e in got)
            if shapes != p.events:
                self.problems.add(f"wrong events for {p.kind}", f"expected {dict(p.events)}, got {dict(shapes)}")
            for e in got:
                self.check_event(p, e)
        return sum(len(v) for v in by_call.values())

    def check_event(self, p: Planned, e: EventRow) -> None:
        want: dict[str, Any] = {
            "stream": p.stream,
            "actor": p.actor,
            "rpc": rpc_name(p.rpc),
            "project_public_id": self.w.project,
        }
        got: dict[str, Any] = {
            "stream": e.stream,
            "actor": (e.actor_kind, e.actor_id),
            "rpc": e.rpc,
            "project_public_id": e.project_public_id,
        }
        if e.outcome != "refused":
            want |= {"idempotency_key": p.request_id, "resource_type": "employee"}
            got |= {"idempotency_key": e.idempotency_key, "resource_type": e.resource_type}
        response = p.outcome.response if p.outcome is not None else None
        if p.rpc is not CREATE_EMPLOYEE and e.outcome != "refused":
            want["resource_id"], got["resource_id"] = str(getattr(p.request, "id", "")), e.resource_id
        elif e.outcome in ("succeeded", "replayed") and response is not None:
            want["resource_id"], got["resource_id"] = response.employee.id, e.resource_id
        if e.outcome == "succeeded" and response is not None:
            if p.rpc is CREATE_EMPLOYEE:
                want |= {"changed_fields": CREATED_FIELDS, "etag": response.employee.etag}
            elif p.rpc is UPDATE_EMPLOYEE:
                want |= {"changed_fields": ("name",), "etag": response.employee.etag}
            else:
                want |= {"changed_fields": (), "etag": ""}
            got |= {"changed_fields": e.changed_fields, "etag": e.etag}
        for key, value in want.items():
            if got[key] != value:
                self.problems.add(f"{p.kind}: wrong {key}", f"{e.type}: expected {value!r}, got {got[key]!r}")
        if e.transport != port_of(p.transport):
            self.problems.add("wrong transport", f"{p.transport} call recorded as {e.transport!r}")


async def mixed_world(server: AltaluneServer, transports: Mapping[str, Transport], admin: Caller) -> MixedWorld:
    """Two projects and three keys, made by calls whose events are known too."""
    t = transports["grpc"]
    setup: dict[str, tuple[str, Counter[Shape]]] = {}

    def tracked(stream: str, method: str) -> str:
        cid = new_call_id()
        setup[cid] = (stream, write_shapes(method, "succeeded"))
        return cid

    project = await new_project(t, admin, "Mixed", tracked("global", "CreateProject"))
    foreign_project = await new_project(t, admin, "Mixed other", tracked("global", "CreateProject"))
    writer = await new_key(t, admin, project, EMPLOYEE_SCOPES, tracked(project, "CreateApiKey"))
    reader = await new_key(t, admin, project, ["employee:read"], tracked(project, "CreateApiKey"))
    foreign = await new_key(t, admin, foreign_project, EMPLOYEE_SCOPES, tracked(foreign_project, "CreateApiKey"))
    secret = "".join(secrets_module.choice(PUBLIC_ID_ALPHABET) for _ in range(len(writer.token.rsplit("_", 1)[1])))
    return MixedWorld(
        project=project,
        foreign_project=foreign_project,
        admin=admin,
        writer=writer,
        reader=reader,
        foreign=foreign,
        unknown_key=f"ak_{project}_{new_public_id()}_{secret}",
        forged_key=writer.token.rsplit("_", 1)[0] + "_" + secret,
        setup=setup,
    )


def secret_parts(token: str) -> list[str]:
    """A credential, and the parts of it that are secret on their own: an API key's secret, a
    JWT's claims and signature."""
    if token.startswith("ak_"):
        return [token, token.rsplit("_", 1)[-1]]
    return [token, *[part for part in token.split(".")[1:] if len(part) >= 16]]


async def test_a_mixed_run_leaves_exactly_the_events_of_its_calls(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, log_db: LogDatabase
) -> None:
    """10,000 calls over every client, 50 at a time: writes that succeed (some retried, some sent
    twice at once), writes that fail, refused calls, invalid requests and reads. Then, for every
    call, its events are exactly the expected ones, in order-free multiset terms, in the right
    stream with the right caller, RPC and port; streams stay gapless; no secret is in the log."""
    world = await mixed_world(server, transports, admin)
    run = MixedRun(world, transports, random.Random(20_26))
    seed = [
        run.write("seed", CREATE_EMPLOYEE, create_request(world.project, unique_email("anchor")), admin)
        for _ in range(20)
    ]
    await run.run(seed)
    for p in seed:
        assert p.outcome is not None
        employee = p.outcome.ok().employee
        run.anchors.append(employee.email)
        run.anchor_ids.append(employee.id)
        run.live.remove(employee.id)

    started = time.perf_counter()
    while len(run.plans) - len(seed) < MIXED_CALLS:
        await run.run(run.plan_batch(min(BATCH, MIXED_CALLS - (len(run.plans) - len(seed)))))
    elapsed = time.perf_counter() - started

    events = await all_events(log_db)
    recorded = run.check_events(events)
    streams: dict[str, list[int]] = {}
    for e in events:
        streams.setdefault(e.stream, []).append(e.sequence)
    counters = await stream_counters(log_db)
    for stream, sequences in streams.items():
        if sorted(sequences) != list(range(1, len(sequences) + 1)):
            missing = sorted(set(range(1, max(sequences) + 1)) - set(sequences))[:10]
            run.problems.add("a stream is not gapless from 1", f"{stream}: {len(sequences)} events, missing {missing}")
        if counters.get(stream) != len(sequences):
            run.problems.add("stream counter != events", f"{stream}: {counters.get(stream)} vs {len(sequences)}")
    texts = await event_texts(log_db)
    credentials = [
        admin.token,
        world.writer.token,
        world.reader.token,
        world.foreign.token,
        world.unknown_key,
        world.forged_key,
    ]
    for credential in credentials:
        for part in secret_parts(credential):
            leaks = sum(part in text for text in texts)
            if leaks:
                run.problems.add("a secret in the log", f"{part[:12]}... in {leaks} event(s)")

    kinds = Counter(p.kind for p in run.plans[len(seed) :])
    print(
        f"\nmixed run: {len(run.plans) - len(seed)} calls in {elapsed:.1f} s "
        f"({(len(run.plans) - len(seed)) / elapsed:.0f} calls/s), {recorded} events for the run's calls "
        f"({len(events)} events in the log, {len(streams)} streams); calls by kind: {dict(sorted(kinds.items()))}"
    )
    assert len(run.plans) - len(seed) == MIXED_CALLS
    assert not run.problems.found, "\n" + run.problems.report()


# --- 4. the port leaves no trace but its name -----------------------------------------------------

# What may differ between two runs of the same calls over two clients.
_PER_CALL_COLUMNS = frozenset(
    {"call_request_id", "transport", "peer", "user_agent", "sequence", "occurred_at", "resource_id", "etag"}
)


def comparable(event: EventRow) -> dict[str, Any]:
    return {name: getattr(event, name) for name in EventRow.__slots__ if name not in _PER_CALL_COLUMNS}


async def _one_of_each_outcome(
    t: Transport, project: str, admin: Caller, reader: Caller, *, email: str, taken: str
) -> list[str]:
    """Create, a duplicate, a rename, a rename of nobody, a refused create (read-only key), an
    anonymous delete, the delete: the call ids, in order. Leaves the project as it found it."""
    steps: list[str] = []

    async def step(rpc: Rpc[Any, Any], request: Message, caller: Caller | None) -> Outcome[Any]:
        steps.append(new_call_id())
        return await send(t, rpc, request, caller, steps[-1])

    delete = employee_pb2.DeleteEmployeeRequest(project_id=project)
    created = (await step(CREATE_EMPLOYEE, create_request(project, email), admin)).ok().employee
    delete.id = created.id
    (await step(CREATE_EMPLOYEE, create_request(project, taken), admin)).failed()
    (await step(UPDATE_EMPLOYEE, rename_request(project, created.id, "Renamed"), admin)).ok()
    (await step(UPDATE_EMPLOYEE, rename_request(project, UNKNOWN_EMPLOYEE, "Nobody"), admin)).failed()
    (await step(CREATE_EMPLOYEE, create_request(project, unique_email("no")), reader)).failed()
    (await step(DELETE_EMPLOYEE, delete, None)).failed()
    (await step(DELETE_EMPLOYEE, delete, admin)).ok()
    return steps


async def test_the_same_calls_over_any_client_record_the_same_events(
    transports: dict[str, Transport], admin: Caller, log_db: LogDatabase
) -> None:
    """One script of writes (each outcome: succeeded, failed, refused) run once per client. The
    events may differ only in what names the call (its id, port, peer, agent, place, time) and in
    the employee it created."""
    grpc = transports["grpc"]
    project = await new_project(grpc, admin, "Ports")
    reader = await new_key(grpc, admin, project, ["employee:read"])
    taken = unique_email("taken")
    (await send(grpc, CREATE_EMPLOYEE, create_request(project, taken), admin)).ok()
    email = unique_email("same")
    recorded: dict[str, list[list[EventRow]]] = {}
    ports: dict[str, str] = {}
    for transport in TRANSPORTS:
        steps = await _one_of_each_outcome(transports[transport], project, admin, reader, email=email, taken=taken)
        found = await events_of(log_db, steps)
        recorded[transport] = [found[cid] for cid in steps]
        ports.update(dict.fromkeys(steps, transport))

    reference = [[comparable(e) for e in events] for events in recorded["grpc"]]
    assert [len(events) for events in reference] == [2, 2, 2, 2, 1, 1, 2]
    for transport in TRANSPORTS[1:]:
        assert [[comparable(e) for e in events] for events in recorded[transport]] == reference, transport
    assert_ports(await events_of(log_db, ports), ports)


# --- 5. reading the log back ----------------------------------------------------------------------


def query(
    filters: Mapping[str, Sequence[str]] | None = None,
    *,
    page: int = 0,
    page_size: int = 100,
    sort: str | None = None,
    ascending: bool = False,
) -> common_pb2.QueryRequest:
    """A QueryRequest: `filters` (key -> accepted values), one page, an optional sort."""
    sorting = (
        common_pb2.Sorting(field=sort, order=common_pb2.SORT_ORDER_ASC if ascending else common_pb2.SORT_ORDER_DESC)
        if sort
        else None
    )
    return common_pb2.QueryRequest(
        pagination=common_pb2.Pagination(page=page, page_size=page_size),
        filters={key: common_pb2.StringList(values=list(values)) for key, values in (filters or {}).items()},
        sorting=sorting,
    )


def stamp_key(stamp: Timestamp) -> tuple[int, int]:
    return (stamp.seconds, stamp.nanos)


@dataclass(frozen=True, slots=True)
class LoggedProject:
    """A project with a known history: the admin's creates (one failing), an update, a key's creates."""

    id: str
    key: Caller
    member: Caller
    employee: str  # created then renamed by the admin
    admin_creates: int
    key_creates: int


async def logged_project(server: AltaluneServer, t: Transport, admin: Caller) -> LoggedProject:
    project = await new_project(t, admin, "Logged")
    key = await new_key(t, admin, project, EMPLOYEE_SCOPES)
    member = await new_member(server, t, admin, project, iam_pb2.PROJECT_ROLE_MEMBER)
    emails = [unique_email("logged") for _ in range(5)]
    created = [(await send(t, CREATE_EMPLOYEE, create_request(project, e), admin)).ok().employee for e in emails]
    (await send(t, CREATE_EMPLOYEE, create_request(project, emails[0]), admin)).failed()
    (await send(t, UPDATE_EMPLOYEE, rename_request(project, created[0].id, "Renamed"), admin)).ok()
    for _ in range(2):
        (await send(t, CREATE_EMPLOYEE, create_request(project, unique_email("bykey")), key)).ok()
    return LoggedProject(project, key, member, created[0].id, admin_creates=5, key_creates=2)


async def all_project_events(t: Transport, caller: Caller, project: str, **extra: Any) -> list[event_pb2.Event]:
    request = event_pb2.QueryEventsRequest(project_id=project, query=query(), **extra)
    answer: event_pb2.QueryEventsResponse = (await send(t, QUERY_EVENTS, request, caller)).ok()
    assert answer.meta.row_count == len(answer.data) < 100
    return list(answer.data)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_owner_reads_the_project_s_events_newest_first(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, log_db: LogDatabase, transport: str
) -> None:
    """The project's owner reads exactly its stream, newest first, with what each event says."""
    t = transports[transport]
    logged = await logged_project(server, transports["grpc"], admin)

    listed = await all_project_events(t, admin, logged.id)

    in_db = sorted((e for e in await all_events(log_db) if e.stream == logged.id), key=lambda e: -e.sequence)
    assert [(e.sequence, e.type, e.call_request_id) for e in listed] == [
        (e.sequence, e.type, e.call_request_id) for e in in_db
    ]
    assert [e.sequence for e in listed] == list(range(len(listed), 0, -1))
    assert {e.project_id for e in listed} == {logged.id}
    newest = listed[0]
    assert (newest.type, newest.outcome, newest.actor_kind, newest.actor_id) == (
        "CreateEmployeeSucceeded",
        event_pb2.EVENT_OUTCOME_SUCCEEDED,
        event_pb2.ACTOR_KIND_API_KEY,
        logged.key.id,
    )
    assert newest.rpc == "altalune.v1.EmployeeService/CreateEmployee"
    assert list(newest.changed_fields) == list(CREATED_FIELDS)
    failed = [e for e in listed if e.outcome == event_pb2.EVENT_OUTCOME_FAILED]
    assert [(e.type, e.code, e.reason) for e in failed] == [
        ("CreateEmployeeFailed", "already_exists", "EMPLOYEE_EMAIL_TAKEN")
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_query_events_filters_by_type_outcome_actor_resource_and_time(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, transport: str
) -> None:
    """Each filter (and since inclusive / until exclusive) keeps exactly the events it names, in order."""
    t = transports[transport]
    logged = await logged_project(server, transports["grpc"], admin)
    everything = await all_project_events(t, admin, logged.id)

    async def filtered(**filters: Sequence[str]) -> list[event_pb2.Event]:
        request = event_pb2.QueryEventsRequest(project_id=logged.id, query=query(filters))
        return list((await send(t, QUERY_EVENTS, request, admin)).ok().data)

    def expected(keep: Any) -> list[int]:
        return [e.sequence for e in everything if keep(e)]

    by_type = await filtered(type=["CreateEmployeeSucceeded"])
    assert [e.sequence for e in by_type] == expected(lambda e: e.type == "CreateEmployeeSucceeded")
    assert len(by_type) == logged.admin_creates + logged.key_creates

    by_outcome = await filtered(outcome=["failed", "succeeded"])
    assert [e.sequence for e in by_outcome] == expected(
        lambda e: e.outcome in (event_pb2.EVENT_OUTCOME_FAILED, event_pb2.EVENT_OUTCOME_SUCCEEDED)
    )
    assert {e.outcome for e in by_outcome} == {event_pb2.EVENT_OUTCOME_FAILED, event_pb2.EVENT_OUTCOME_SUCCEEDED}

    by_actor = await filtered(actor_id=[logged.key.id])
    assert [e.sequence for e in by_actor] == expected(lambda e: e.actor_id == logged.key.id)
    assert len(by_actor) == 2 * logged.key_creates

    by_kind = await filtered(actor_kind=["api_key"])
    assert [e.sequence for e in by_kind] == [e.sequence for e in by_actor]

    by_resource = await filtered(resource_id=[logged.employee])
    assert [e.type for e in by_resource] == [
        "UpdateEmployeeSucceeded",
        "UpdateEmployeeAttempted",
        "CreateEmployeeSucceeded",
    ]

    combined = await filtered(type=["CreateEmployeeSucceeded"], actor_id=[logged.key.id])
    assert len(combined) == logged.key_creates

    oldest_first = list(reversed(everything))
    middle, later = oldest_first[len(oldest_first) // 3], oldest_first[2 * len(oldest_first) // 3]
    cases: list[tuple[dict[str, Timestamp], Any]] = [
        ({"since": middle.time}, lambda e: stamp_key(e.time) >= stamp_key(middle.time)),
        ({"until": middle.time}, lambda e: stamp_key(e.time) < stamp_key(middle.time)),
        (
            {"since": middle.time, "until": later.time},
            lambda e: stamp_key(middle.time) <= stamp_key(e.time) < stamp_key(later.time),
        ),
    ]
    for bounds, keep in cases:
        got = await all_project_events(t, admin, logged.id, **bounds)
        assert [e.sequence for e in got] == expected(keep), sorted(bounds)
        assert got, sorted(bounds)
    assert middle.sequence in [e.sequence for e in await all_project_events(t, admin, logged.id, since=middle.time)]
    assert middle.sequence not in [e.sequence for e in await all_project_events(t, admin, logged.id, until=middle.time)]


async def _page_through_while_appending(
    t: Transport, admin: Caller, project: str, *, ascending: bool
) -> tuple[list[int], int]:
    """Pages of 5 read one after the other, two new events appended before each next page:
    the sequences seen, and how many events there were before the first page."""
    before = len(await all_project_events(t, admin, project))
    seen: list[int] = []
    as_of = 0  # newest first: the first answer's cut, sent back with the next pages
    for page in range(1, 50):
        q = query(page=page, page_size=5, sort="sequence" if ascending else None, ascending=ascending)
        request = event_pb2.QueryEventsRequest(project_id=project, query=q, as_of_sequence=0 if ascending else as_of)
        answer = (await send(t, QUERY_EVENTS, request, admin)).ok()
        as_of = answer.as_of_sequence
        seen += [e.sequence for e in answer.data]
        if len(answer.data) < 5 or (not ascending and len(seen) >= before):
            break
        (await send(t, CREATE_EMPLOYEE, create_request(project, unique_email("append")), admin)).ok()
    return seen, before


@pytest.mark.parametrize("transport", ["grpc", "connect-json"])
async def test_newest_first_pages_show_no_row_twice_while_events_are_appended(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, transport: str
) -> None:
    """The contract: newest first by default, and pages cut at the first answer's
    `as_of_sequence` are stable. A reader paging back through a live log must not be shown a row
    twice (nor skip one that existed when it started)."""
    t = transports[transport]
    logged = await logged_project(server, transports["grpc"], admin)

    seen, before = await _page_through_while_appending(t, admin, logged.id, ascending=False)

    assert before >= 12
    duplicates = sorted(s for s, n in Counter(seen).items() if n > 1)
    assert not duplicates, f"rows shown twice: sequences {duplicates} (pages read: {seen})"
    assert set(range(1, before + 1)) <= set(seen)


@pytest.mark.parametrize("transport", ["grpc", "connect-json"])
async def test_oldest_first_pages_show_no_row_twice_while_events_are_appended(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, transport: str
) -> None:
    """Sorted by sequence ascending, appended events land after the pages already read."""
    t = transports[transport]
    logged = await logged_project(server, transports["grpc"], admin)

    seen, before = await _page_through_while_appending(t, admin, logged.id, ascending=True)

    assert before >= 12
    assert seen == sorted(set(seen))
    assert seen[:before] == list(range(1, before + 1))


@pytest.mark.parametrize("transport", ["grpc", "connect-json", "http-json"])
async def test_members_may_not_read_the_log_and_their_refusal_is_logged(
    server: AltaluneServer, transports: dict[str, Transport], admin: Caller, log_db: LogDatabase, transport: str
) -> None:
    """event:read is for owners and admins; the member's attempt is a security event the global
    administrator sees (and only the administrator may list the global stream)."""
    t = transports[transport]
    logged = await logged_project(server, transports["grpc"], admin)
    cid, global_cid = new_call_id(), new_call_id()

    refused = await send(t, QUERY_EVENTS, event_pb2.QueryEventsRequest(project_id=logged.id), logged.member, cid)
    failure = refused.failed()
    assert failure.shape == ("permission_denied", "PERMISSION_MISSING", ())
    assert failure.metadata["permission"] == "event:read"
    global_refused = await send(t, QUERY_GLOBAL_EVENTS, event_pb2.QueryGlobalEventsRequest(), logged.member, global_cid)
    assert global_refused.failed().shape == ("permission_denied", "PERMISSION_MISSING", ())
    assert global_refused.failed().metadata["permission"] == "event:list"

    request = event_pb2.QueryGlobalEventsRequest(query=query({"type": ["CallRefused"], "actor_id": [logged.member.id]}))
    await log_db.settle()
    seen = (await send(t, QUERY_GLOBAL_EVENTS, request, admin)).ok().data
    assert [(e.call_request_id, e.rpc, e.code, e.reason, e.actor_kind) for e in seen] == [
        (
            global_cid,
            "altalune.v1.EventService/QueryGlobalEvents",
            "permission_denied",
            "PERMISSION_MISSING",
            event_pb2.ACTOR_KIND_USER,
        ),
        (
            cid,
            "altalune.v1.EventService/QueryEvents",
            "permission_denied",
            "PERMISSION_MISSING",
            event_pb2.ACTOR_KIND_USER,
        ),
    ]
    assert seen[1].project_id == logged.id


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_admin_sees_refused_calls_in_the_global_stream(
    transports: dict[str, Transport], admin: Caller, log_db: LogDatabase, transport: str
) -> None:
    """Refused calls are security events: the administrator finds them, with why and for which project."""
    t = transports[transport]
    project = await new_project(transports["grpc"], admin, "Refusals")
    anonymous, forged = new_call_id(), new_call_id()
    request = create_request(project, unique_email("anon"))
    (await send(t, CREATE_EMPLOYEE, request, None, anonymous)).failed()
    (await t.call(CREATE_EMPLOYEE, request, headers=call_headers("Bearer not-a-jwt", forged))).failed()
    await log_db.settle()

    refused = (
        await send(
            t, QUERY_GLOBAL_EVENTS, event_pb2.QueryGlobalEventsRequest(query=query({"outcome": ["refused"]})), admin
        )
    ).ok()
    mine = {e.call_request_id: e for e in refused.data if e.call_request_id in (anonymous, forged)}
    assert {cid: (e.type, e.code, e.reason, e.actor_kind, e.actor_id, e.project_id) for cid, e in mine.items()} == {
        anonymous: (
            "CallRefused",
            "unauthenticated",
            "CREDENTIALS_MISSING",
            event_pb2.ACTOR_KIND_ANONYMOUS,
            "",
            project,
        ),
        forged: ("CallRefused", "unauthenticated", "TOKEN_INVALID", event_pb2.ACTOR_KIND_ANONYMOUS, "", project),
    }
    assert {e.outcome for e in refused.data} == {event_pb2.EVENT_OUTCOME_REFUSED}
    sequences = [e.sequence for e in refused.data]
    assert sequences == sorted(sequences, reverse=True)
    anonymous_only = (
        await send(
            t,
            QUERY_GLOBAL_EVENTS,
            event_pb2.QueryGlobalEventsRequest(query=query({"actor_kind": ["anonymous"]})),
            admin,
        )
    ).ok()
    assert {anonymous, forged} <= {e.call_request_id for e in anonymous_only.data}
    assert {e.actor_kind for e in anonymous_only.data} == {event_pb2.ACTOR_KIND_ANONYMOUS}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unknown_filter_key_is_invalid_argument(
    transports: dict[str, Transport], admin: Caller, transport: str
) -> None:
    """A misspelt filter must not silently match everything: it is refused, naming the key."""
    t = transports[transport]
    project = await new_project(transports["grpc"], admin, "Filters")
    bad = query({"password": ["x"]})
    for rpc, request in (
        (QUERY_EVENTS, event_pb2.QueryEventsRequest(project_id=project, query=bad)),
        (QUERY_GLOBAL_EVENTS, event_pb2.QueryGlobalEventsRequest(query=bad)),
    ):
        failure = (await send(t, rpc, request, admin)).failed()
        assert (failure.code, failure.reason) == ("invalid_argument", "INVALID_ARGUMENT"), rpc.method
        assert [v.field for v in failure.violations] == ['query.filters["password"]'], rpc.method
