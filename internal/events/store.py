"""SQL of the event log and of the idempotency records. Events are only ever inserted here; the
purges are the only deletes, and the tables' triggers refuse anything else (migration 0007).

Durability: a `Succeeded` event is written in the write's own transaction, so it commits (durably)
with the write or not at all. Every other event (Attempted, Failed, Replayed, Refused) commits on
its own with `synchronous_commit = off`: it costs no wait for the disk, and the WAL is written in
order, so it is durable as soon as any later transaction is, and lost only if PostgreSQL itself
crashes within its WAL writer delay (0.2 s by default) after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, LiteralString

from internal.events.registry import EventOutcome
from internal.postgres.database import Database, OpenTransaction, Statement, delete_in_batches

GLOBAL_STREAM = 0

_COLUMNS: LiteralString = (
    "type, outcome, actor_kind, actor_id, peer, user_agent, rpc, transport, resource_type, resource_id, "
    "project_public_id, call_request_id, idempotency_key, code, reason, changed_fields, etag"
)
_VALUES: LiteralString = (
    "%(type)s, %(outcome)s, %(actor_kind)s, %(actor_id)s, %(peer)s, %(user_agent)s, %(rpc)s, %(transport)s, "
    "%(resource_type)s, %(resource_id)s, %(project_public_id)s, %(call_request_id)s, %(idempotency_key)s, "
    "%(code)s, %(reason)s, %(changed_fields)s, %(etag)s"
)
_PROJECT_INSERT: LiteralString = (
    f"INSERT INTO project_events (project_id, sequence, {_COLUMNS}) "
    f"SELECT %(project_id)s, next_event_sequence(%(project_id)s), {_VALUES}"
)
_GLOBAL_INSERT: LiteralString = (
    f"INSERT INTO global_events (sequence, {_COLUMNS}) SELECT next_event_sequence(0), {_VALUES}"
)
# A local setting made inside the statement holds until its (implicit) transaction commits.
_ASYNC: LiteralString = " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
# The first answer, stored with the Succeeded event in one statement (one round trip).
_STORE_ANSWER: LiteralString = (
    "WITH answered AS (UPDATE idempotency_keys SET response = %(response)s "
    "WHERE caller = %(caller)s AND request_id = %(request_id)s) "
)

_CLAIM: LiteralString = (
    "INSERT INTO idempotency_keys AS k (caller, request_id, rpc, fingerprint, expires_at) "
    "VALUES (%(caller)s, %(request_id)s, %(rpc)s, %(fingerprint)s, now() + make_interval(secs => %(retention_s)s)) "
    "ON CONFLICT (caller, request_id) DO UPDATE SET rpc = excluded.rpc, fingerprint = excluded.fingerprint, "
    "response = NULL, created_at = now(), expires_at = excluded.expires_at WHERE k.expires_at <= now() "
    "RETURNING true"
)
_FIRST_ANSWER: LiteralString = (
    "SELECT rpc, fingerprint, response FROM idempotency_keys WHERE caller = %(caller)s AND request_id = %(request_id)s"
)


@dataclass(slots=True)
class EventDraft:
    """One event's columns; the sequence and the time are the database's."""

    type: str
    outcome: str
    rpc: str
    actor_kind: str = "anonymous"
    actor_id: str = ""
    peer: str = ""
    user_agent: str = ""
    transport: str = ""
    resource_type: str = ""
    resource_id: str = ""
    project_public_id: str = ""
    call_request_id: str = ""
    idempotency_key: str = ""
    code: str = ""
    reason: str = ""
    changed_fields: list[str] = field(default_factory=list)
    etag: str = ""
    project_id: int | None = None  # internal: the project stream, None for the global stream

    def with_outcome(self, outcome: EventOutcome, type_: str, **changes: Any) -> EventDraft:
        """A copy for another event of the same call (copied field by field: dataclasses.replace
        costs the write path tens of microseconds)."""
        copy = object.__new__(EventDraft)
        for name in _DRAFT_FIELDS:
            setattr(copy, name, getattr(self, name))
        copy.outcome = outcome.value
        copy.type = type_
        for name, value in changes.items():
            setattr(copy, name, value)
        return copy

    def params(self) -> dict[str, Any]:
        """The columns to bind: a shallow copy (dataclasses.asdict deep-copies, at a cost the
        write path measurably paid)."""
        return {name: getattr(self, name) for name in _DRAFT_FIELDS}


_DRAFT_FIELDS = tuple(f.name for f in fields(EventDraft))


def _insert(draft: EventDraft) -> LiteralString:
    return _GLOBAL_INSERT if draft.project_id is None else _PROJECT_INSERT


def committed_on_its_own(draft: EventDraft) -> Statement:
    """An event that commits by itself, asynchronously: Attempted, Failed, Replayed, Refused."""
    return Statement(_insert(draft) + _ASYNC, draft.params())


async def append_on_its_own(db: Database, draft: EventDraft, *, own_connection: bool = False) -> None:
    """Such an event, now: on the call's connection, or on one of its own after a failure that may
    have left the call's unusable."""
    statement = committed_on_its_own(draft)
    if own_connection:
        async with db.separate_connection() as conn:
            await conn.execute(statement.query, statement.params)
        return
    async with db.connection() as conn:
        await conn.execute(statement.query, statement.params)


def succeeded_in_write(draft: EventDraft, *, answer: tuple[str, str, bytes] | None = None) -> Statement:
    """The Succeeded event, last in the write's transaction (its stream's counter row stays
    locked until the commit, which keeps the sequence in commit order); with the first answer
    for the idempotency record when the call carried a request_id (caller, request id, answer)."""
    params = draft.params()
    if answer is None:
        return Statement(_insert(draft), params)
    caller, request_id, response = answer
    params |= {"caller": caller, "request_id": request_id, "response": response}
    return Statement(_STORE_ANSWER + _insert(draft), params)


@dataclass(frozen=True, slots=True)
class FirstAnswer:
    rpc: str
    fingerprint: bytes
    response: bytes


@dataclass(frozen=True, slots=True)
class RequestIdClaim:
    """The claim of a request_id, the first statement of the write's transaction: a concurrent
    call with the same id waits on it until this one commits or rolls back."""

    caller: str
    request_id: str
    rpc: str
    fingerprint: bytes
    retention_s: float

    def params(self) -> dict[str, Any]:
        return {
            "caller": self.caller,
            "request_id": self.request_id,
            "rpc": self.rpc,
            "fingerprint": self.fingerprint,
            "retention_s": self.retention_s,
        }

    def statement(self) -> Statement:
        return Statement(_CLAIM, self.params())

    async def first_answer(self, transaction: OpenTransaction) -> FirstAnswer | None:
        """None if this call is the first with the id, else the first call's answer."""
        assert transaction.opened is not None
        if await transaction.opened.fetchone() is not None:
            return None
        cur = await transaction.conn.execute(_FIRST_ANSWER, self.params())
        row = await cur.fetchone()
        if row is None or row[2] is None:  # purged between the two statements: fail, a retry is safe
            raise RuntimeError("idempotency record vanished while it was read")
        return FirstAnswer(rpc=row[0], fingerprint=bytes(row[1]), response=bytes(row[2]))


async def purge_expired(db: Database, *, batch: int = 5000) -> int:
    """Expired idempotency records, in bounded batches; returns how many went."""
    async with db.connection() as conn:
        return await delete_in_batches(
            conn,
            "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY("
            "SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT %(n)s))",
            {},
            batch=batch,
        )


_OLD_EVENTS: tuple[LiteralString, ...] = (
    "DELETE FROM global_events WHERE sequence IN (SELECT sequence FROM global_events "
    "WHERE occurred_at < now() - %(days)s * interval '1 day' LIMIT %(n)s)",
    "DELETE FROM project_events WHERE (project_id, sequence) IN (SELECT project_id, sequence FROM project_events "
    "WHERE occurred_at < now() - %(days)s * interval '1 day' LIMIT %(n)s)",
)


async def purge_old_events(db: Database, *, retention_days: float, batch: int = 5000) -> int:
    """Events older than the retention, in bounded batches, from both streams."""
    removed = 0
    async with db.purging() as conn:
        for statement in _OLD_EVENTS:
            removed += await delete_in_batches(conn, statement, {"days": retention_days}, batch=batch)
    return removed
