"""The two links of the chain that make writes trustworthy (internal/rpc/interceptors.default_chain).

`RefusalEvents` sits outside authentication: a call that authentication or authorization refuses
records one `CallRefused` event in the global stream (who, from where, which RPC, why).

`TrustedWrites` sits inside authorization, so it knows the caller and the project. For every write
RPC (registry.write_rpcs) it:
1. records `<Rpc>Attempted`, committed on its own before the write runs, so it survives whatever
   follows;
2. runs the handler in one transaction on the call's connection, which first claims the call's
   request_id (if any) and ends with `<Rpc>Succeeded` and the stored answer: the write, its event
   and its idempotency record commit together or not at all;
3. answers a retry (same caller, same request_id, same request) with the first answer, recording
   `<Rpc>Replayed`; the same request_id with another request is REQUEST_ID_REUSED;
4. records `<Rpc>Failed` with the code and reason when the write is refused or fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from connectrpc.code import Code
from connectrpc.request import RequestContext
from google.protobuf.message import Message

from internal import deadlines
from internal.auth.principal import current_caller
from internal.errors import AppError, DatabaseUnavailable, DeadlineExceeded, InternalError, RateLimited
from internal.events.errors import RequestIdReused
from internal.events.refusals import RefusalLog
from internal.events.registry import CALL_REFUSED, REQUEST_ID_FIELD, EventOutcome, WriteRpc
from internal.events.store import (
    EventDraft,
    RequestIdClaim,
    append_on_its_own,
    committed_on_its_own,
    succeeded_in_write,
)
from internal.logs import get_logger
from internal.postgres.database import Database
from internal.rpc.calls import CallRecord, current_call
from internal.rpc.endpoints import UnaryFunction

log = get_logger("altalune.events")

REPLAYED_HEADER = "idempotent-replayed"
# Refusals that are security events. Anything else raised before authorization let the call
# through (an invalid request, overload, a deadline) is not one.
_REFUSAL_CODES = frozenset({Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.NOT_FOUND})


def _security_refusal(error: AppError) -> bool:
    """A refusal the event log records: the codes above, and a rate limit (by its reason: other
    RESOURCE_EXHAUSTED refusals, like overload, are not security events). A flood of rate-limited
    calls records one event per bucket per second and process (internal/ratelimit/limiter.py)."""
    if isinstance(error, RateLimited):
        return error.record_event
    return error.code in _REFUSAL_CODES


def _draft(record: CallRecord, rpc: str, **values: Any) -> EventDraft:
    """The columns every event of this call shares; `values` adds the rest."""
    shared: dict[str, Any] = {
        "type": "",
        "outcome": "",
        "rpc": rpc,
        "actor_kind": record.actor_kind,
        "actor_id": record.actor_id,
        "peer": record.peer or "",
        "user_agent": record.user_agent,
        "transport": record.transport,
        "call_request_id": record.request_id,
    }
    return EventDraft(**(shared | values))


class RefusalEvents:
    def __init__(self, refusals: RefusalLog, project_fields: Mapping[str, str | None]) -> None:
        self._refusals = refusals
        self._project_fields = dict(project_fields)  # route path -> request field naming the project

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        try:
            return await call_next(request, ctx)
        except AppError as error:
            record = current_call()
            if record is None or record.authorized or not _security_refusal(error):
                raise
            method = ctx.method()
            field = self._project_fields.get(f"/{method.service_name}/{method.name}")
            # Queued, not awaited: the refusal is answered at once (internal/events/refusals.py).
            self._refusals.record(
                _draft(
                    record,
                    f"{method.service_name}/{method.name}",
                    type=CALL_REFUSED,
                    outcome=EventOutcome.REFUSED.value,
                    project_public_id=str(getattr(request, field, ""))[:64] if field else "",
                    code=error.code.name.lower(),
                    reason=error.reason,
                )
            )
            raise


class TrustedWrites:
    def __init__(self, db: Database, writes: Mapping[str, WriteRpc], *, idempotency_retention_s: float) -> None:
        self._db = db
        self._writes = dict(writes)
        self._retention_s = idempotency_retention_s

    async def intercept_unary(
        self, call_next: UnaryFunction, request: Message, ctx: RequestContext[Any, Any]
    ) -> Message:
        method = ctx.method()
        write = self._writes.get(f"/{method.service_name}/{method.name}")
        record = current_call()
        if write is None or record is None:
            return await call_next(request, ctx)
        project = current_caller().project
        attempt = _draft(
            record,
            write.rpc,
            resource_type=write.resource,
            resource_id=write.resource_id(request, None),
            project_public_id=project.public_id if project is not None else "",
            idempotency_key=getattr(request, REQUEST_ID_FIELD),
            project_id=project.id if project is not None and write.project_stream else None,
        )
        attempted = attempt.with_outcome(EventOutcome.ATTEMPTED, write.event_type(EventOutcome.ATTEMPTED))
        progress = _Progress()
        try:
            response, replayed = await self._write(write, call_next, request, ctx, attempt, attempted, progress)
        except AppError as error:
            # The connection lost while committing: the write may have committed (its Succeeded
            # event with it) or not; the Attempted event stays alone, as after a cancellation.
            unknown = progress.committing and isinstance(error, DatabaseUnavailable)
            if progress.attempted and not unknown:
                await self._failed(write, attempt, error.code.name.lower(), error.reason)
            raise
        except asyncio.CancelledError:
            # Cancelled during the commit, the outcome is unknown: the Attempted event stays alone.
            if progress.attempted and not progress.committing:
                timed_out = deadlines.expired()
                code, reason = ("deadline_exceeded", DeadlineExceeded.reason) if timed_out else ("canceled", "")
                await self._failed(write, attempt, code, reason, own_connection=True)
            raise
        except Exception:
            if progress.attempted:
                await self._failed(write, attempt, "internal", InternalError.reason, own_connection=True)
            raise
        if replayed:
            ctx.response_headers()[REPLAYED_HEADER] = "true"
            event = attempt.with_outcome(
                EventOutcome.REPLAYED,
                write.event_type(EventOutcome.REPLAYED),
                resource_id=write.resource_id(request, response),
            )
            await _record_best_effort(self._db, event)
        return response

    async def _write(
        self,
        write: WriteRpc,
        call_next: UnaryFunction,
        request: Message,
        ctx: RequestContext[Any, Any],
        attempt: EventDraft,
        attempted: EventDraft,
        progress: _Progress,
    ) -> tuple[Message, bool]:
        """Attempted, committed on its own; then the write and its Succeeded event in one
        transaction, or (the first answer, True) for a retry. Attempted, BEGIN and the request_id's
        claim travel in one round trip, the Succeeded event and COMMIT in another
        (Database.write_transaction)."""
        request_id = attempt.idempotency_key
        caller = f"{attempt.actor_kind}:{attempt.actor_id}"
        fingerprint = write.fingerprint(request) if request_id else b""
        claim = RequestIdClaim(caller, request_id, write.rpc, fingerprint, self._retention_s) if request_id else None
        async with self._db.write_transaction(
            committed_before=committed_on_its_own(attempted),
            first=claim.statement() if claim is not None else None,
            on_committed_before=progress.attempted_committed,
        ) as transaction:
            if claim is not None:
                first = await claim.first_answer(transaction)
                if first is not None:
                    if first.rpc != write.rpc or first.fingerprint != fingerprint:
                        raise RequestIdReused(request_id)
                    return write.response_class.FromString(first.response), True
            response = await call_next(request, ctx)
            succeeded = attempt.with_outcome(
                EventOutcome.SUCCEEDED,
                write.event_type(EventOutcome.SUCCEEDED),
                resource_id=write.resource_id(request, response),
                changed_fields=write.changed_fields(request),
                etag=write.new_etag(response),
            )
            answer = (caller, request_id, write.storable_answer(response)) if request_id else None
            transaction.commit_with(succeeded_in_write(succeeded, answer=answer))
            progress.committing = True
        return response, False

    async def _failed(
        self, write: WriteRpc, attempt: EventDraft, code: str, reason: str, *, own_connection: bool = False
    ) -> None:
        failed = attempt.with_outcome(
            EventOutcome.FAILED, write.event_type(EventOutcome.FAILED), code=code, reason=reason
        )
        await _record_best_effort(self._db, failed, own_connection=own_connection)


class _Progress:
    __slots__ = ("attempted", "committing")

    def __init__(self) -> None:
        self.attempted = False  # the Attempted event is committed
        self.committing = False

    def attempted_committed(self) -> None:
        self.attempted = True


async def _record_best_effort(db: Database, draft: EventDraft, *, own_connection: bool = False) -> None:
    """An event outside the write, shielded from the call's cancellation, and never the reason a
    call fails: a failure to record is logged. After a cancellation or an unexpected error the
    call's connection may be mid-statement, so such an event takes a connection of its own."""
    try:
        await asyncio.shield(append_on_its_own(db, draft, own_connection=own_connection))
    except Exception:
        log.exception("event not recorded", event_type=draft.type)
