"""The connection pool and the one way to run a unit of work against it.

Every unit of work is a transaction that carries the request's remaining deadline as
`statement_timeout`, and whose driver failures become application errors.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg import AsyncClientCursor, AsyncConnection, AsyncCursor
from psycopg.abc import Params, QueryNoTemplate
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from internal import deadlines
from internal.errors import Busy, DatabaseUnavailable, DeadlineExceeded
from internal.logs import get_logger
from internal.observability.metrics import Metrics

log = get_logger(__name__)

# Generic plans of a partitioned table lock every partition ("out of shared memory" at a few
# thousand projects), so every pooled connection is forced onto custom plans.
CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"
POOL_WAIT_S = 5.0


def create_pool(
    conninfo: str,
    *,
    min_size: int = 2,
    max_size: int = 8,
    max_lifetime_s: float = 3600.0,
    statement_timeout_ms: int = 30_000,
    configure: Callable[[AsyncConnection[Any]], Awaitable[None]] | None = None,
    cursor_factory: type[AsyncCursor[Any]] = AsyncCursor,
) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """A closed pool; open it inside the running event loop (container start-up).

    Each partition a backend touches stays in its caches, so a backend's memory is bounded by the
    number of block partitions (~43 MB at 100,000 projects), not by its age; a new connection is
    cold (partition descriptors, first touch of each partition). So connections live long (an hour
    by default) and `configure` warms each before use (docs/tenancy.md).
    """
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        max_lifetime=max_lifetime_s,
        # The session default statement timeout is the server's maximum deadline, so only requests
        # with a shorter client deadline pay a round trip to lower it.
        # Autocommit: a read is one round trip; writes open explicit transactions (Database.transaction).
        kwargs={
            "options": f"{CUSTOM_PLANS} -c statement_timeout={statement_timeout_ms}",
            "autocommit": True,
            "cursor_factory": cursor_factory,
        },
        timeout=POOL_WAIT_S,
        open=False,
        configure=configure,
        name="altalune",
    )


class _CallConnection:
    """The one pooled connection of a call, checked out at its first statement and returned when
    the call ends (Database.call_scope)."""

    __slots__ = ("checkout", "conn")

    def __init__(self) -> None:
        self.checkout: AbstractAsyncContextManager[AsyncConnection[Any]] | None = None
        self.conn: AsyncConnection[Any] | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    query: QueryNoTemplate
    params: Params | None = None


class OpenTransaction:
    """A transaction of Database.write_transaction: its connection, the cursor holding its first
    statement's result, and the statement that is to travel with its COMMIT."""

    __slots__ = ("conn", "last", "opened")

    def __init__(self, conn: AsyncConnection[Any], opened: AsyncClientCursor[Any] | None) -> None:
        self.conn = conn
        self.opened = opened
        self.last: Statement | None = None

    def commit_with(self, statement: Statement) -> None:
        self.last = statement


# Callbacks waiting for the commit of the call's write transaction (Database.write_transaction).
_after_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar("altalune_after_commit", default=None)
_call_connection: ContextVar[_CallConnection | None] = ContextVar("altalune_call_connection", default=None)


class Database:
    """Hands out transactions from the pool; repositories receive the connection it yields.

    Inside a call scope (every RPC: see internal/rpc/interceptors.CallScope), authentication,
    authorization and the handler share one checkout: a call pays the pool once, whatever the number
    of statements, and its statements run in order on one connection.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[Any]],
        *,
        statement_timeout_ms: int = 30_000,
        client_cursor: type[AsyncClientCursor[Any]] = AsyncClientCursor,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._statement_timeout_ms = statement_timeout_ms
        self._client_cursor = client_cursor
        self._metrics = metrics

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        return self._pool

    def _timeout_override(self) -> int | None:
        """The request's remaining time if it is meaningfully shorter than the session default."""
        remaining = deadlines.remaining_ms()
        if remaining is not None and remaining < self._statement_timeout_ms - 1000:
            return remaining
        return None

    @staticmethod
    def _acquire_timeout_s() -> float:
        """Wait for a pooled connection at most 5 s, and give up before the request's deadline so
        the caller learns the database is unavailable rather than just "deadline exceeded"."""
        remaining = deadlines.remaining_ms()
        return POOL_WAIT_S if remaining is None else min(POOL_WAIT_S, remaining * 0.8 / 1000)

    @asynccontextmanager
    async def call_scope(self) -> AsyncIterator[None]:
        """Share one connection among everything this call does; it returns to the pool at the end.

        The checkout is lazy: a call refused before its first statement never takes a connection.
        """
        held = _CallConnection()
        token = _call_connection.set(held)
        try:
            yield
        except BaseException as exc:
            _call_connection.reset(token)
            if held.checkout is not None:
                # The pool rolls back or discards a connection left mid-transaction or mid-statement.
                await held.checkout.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        _call_connection.reset(token)
        if held.checkout is not None:
            await held.checkout.__aexit__(None, None, None)

    async def _call_conn(self, held: _CallConnection) -> AsyncConnection[Any]:
        if held.conn is None:
            checkout = self._pool.connection(timeout=self._acquire_timeout_s())
            started = time.perf_counter()
            held.conn = await checkout.__aenter__()
            held.checkout = checkout
            if self._metrics is not None:
                self._metrics.pool_waited(time.perf_counter() - started)
        return held.conn

    @asynccontextmanager
    async def _checkout(self) -> AsyncIterator[AsyncConnection[Any]]:
        """The call's shared connection inside a call scope, a connection of its own otherwise."""
        held = _call_connection.get()
        if held is not None:
            yield await self._call_conn(held)
            return
        async with self._pool.connection(timeout=self._acquire_timeout_s()) as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self, *, lock_timeout_ms: int | None = None) -> AsyncIterator[AsyncConnection[Any]]:
        """One transaction, committed when the block ends without error, rolled back otherwise.

        The request's deadline (and `lock_timeout_ms`) apply to this transaction only.
        """
        with _translate_errors():
            async with self._checkout() as conn, conn.transaction():
                statement_timeout = self._timeout_override()
                if statement_timeout is not None or lock_timeout_ms is not None:
                    await conn.execute(
                        "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                        (str(statement_timeout or self._statement_timeout_ms), str(lock_timeout_ms or 0)),
                    )
                yield conn

    @asynccontextmanager
    async def write_transaction(
        self,
        *,
        committed_before: Statement | None = None,
        first: Statement | None = None,
        on_committed_before: Callable[[], None] = lambda: None,
    ) -> AsyncIterator[OpenTransaction]:
        """One transaction opened and closed by one round trip each, the write path's envelope.

        The opening sends `committed_before` (committed on its own: `on_committed_before` is told
        once it is, even if the transaction then fails), BEGIN and `first` as one multi-statement
        query; the closing sends the statement given to `OpenTransaction.commit_with` and COMMIT.
        Each call to the driver costs the process about as much as the database's work on it, so
        the write path sends two instead of five. Such queries bind values client-side (psycopg's
        literal quoting); the statements inside the block are ordinary ones and join the
        transaction (a nested transaction() becomes a savepoint), as with transaction().
        """
        with _translate_errors():
            async with self._checkout() as conn:
                envelope = self._client_cursor(conn)
                opening: list[Statement] = []
                if committed_before is not None:
                    opening += [committed_before, Statement("COMMIT")]
                opening.append(Statement("BEGIN"))
                statement_timeout = self._timeout_override()
                if statement_timeout is not None:
                    opening.append(
                        Statement("SELECT set_config('statement_timeout', %s, true)", (str(statement_timeout),))
                    )
                if first is not None:
                    opening.append(first)
                try:
                    try:
                        await envelope.execute(_joined(envelope, opening))
                    finally:
                        if committed_before is not None and conn.info.transaction_status in _IN_TRANSACTION:
                            on_committed_before()  # it committed: the BEGIN after it ran
                    while envelope.nextset():
                        pass  # the cursor now holds `first`'s result
                    transaction = OpenTransaction(conn, envelope if first is not None else None)
                    waiting: list[Callable[[], None]] = []
                    token = _after_commit.set(waiting)
                    try:
                        yield transaction
                    finally:
                        _after_commit.reset(token)
                    closing = [transaction.last] if transaction.last is not None else []
                    await envelope.execute(_joined(envelope, [*closing, Statement("COMMIT")]))
                    while envelope.nextset():
                        pass
                    # COMMIT of a transaction that failed answers ROLLBACK instead of an error.
                    if envelope.statusmessage != "COMMIT":
                        raise psycopg.errors.InFailedSqlTransaction("the write transaction rolled back at COMMIT")
                    for callback in waiting:
                        callback()
                except BaseException:
                    if conn.info.transaction_status in _IN_TRANSACTION:
                        with contextlib.suppress(psycopg.Error):
                            await conn.execute("ROLLBACK")
                    raise

    @staticmethod
    def after_commit(callback: Callable[[], None]) -> None:
        """Run `callback` once the call's write transaction has committed (at once outside one):
        e.g. waking a background task that must see what the transaction wrote."""
        waiting = _after_commit.get()
        if waiting is None:
            callback()
        else:
            waiting.append(callback)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection in autocommit mode: each statement is atomic on its own and costs one round
        trip. For reads and single-statement writes; multi-step writes must use transaction().

        Falls back to a transaction when the request deadline must lower the statement timeout.
        """
        if self._timeout_override() is not None:
            async with self.transaction() as conn:
                yield conn
            return
        with _translate_errors():
            async with self._checkout() as conn:
                yield conn

    @asynccontextmanager
    async def separate_connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection of its own, in autocommit, even inside a call scope: for a record
        that must be written when the call's own connection may be unusable (a cancelled statement)."""
        with _translate_errors():
            async with self._pool.connection(timeout=POOL_WAIT_S) as conn:
                yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection outside any transaction block, for DDL such as DETACH CONCURRENTLY.

        Session settings made on it are reset before it returns to the pool.
        """
        async with self._pool.connection() as conn:
            try:
                yield conn
            finally:
                await conn.execute("RESET ALL")

    @asynccontextmanager
    async def purging(self) -> AsyncIterator[AsyncConnection[Any]]:
        """An autocommit connection of the purges: the event log's append-only triggers let its
        deletes through (migration 0007); the setting is reset when it returns to the pool."""
        async with self.autocommit() as conn:
            await conn.execute("SET altalune.purging_events = on")
            yield conn

    async def ping(self) -> bool:
        """True if a connection answers `SELECT 1` quickly; used by readiness and health."""
        try:
            async with self._pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:  # any failure means "not ready"
            return False


async def delete_in_batches(
    conn: AsyncConnection[Any], statement: QueryNoTemplate, params: Mapping[str, Any], *, batch: int
) -> int:
    """Run a DELETE that removes at most `batch` rows (it binds `%(n)s`) until one removes fewer.
    On an autocommit connection each batch commits on its own: short statements that hold no lock
    long, and an interrupted purge keeps what it did. Returns how many rows went."""
    removed = 0
    while True:
        cur = await conn.execute(statement, {**params, "n": batch})
        removed += cur.rowcount
        if cur.rowcount < batch:
            return removed


def _joined(cursor: AsyncClientCursor[Any], statements: list[Statement]) -> str:
    """Statements bound client-side into one multi-statement query (one round trip)."""
    return "; ".join(cursor.mogrify(s.query, s.params) for s in statements)


_IN_TRANSACTION = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


@contextmanager
def _translate_errors() -> Iterator[None]:
    """Driver failures become application errors with the right status code."""
    try:
        yield
    except psycopg.errors.LockNotAvailable as exc:
        raise Busy("the table") from exc
    except psycopg.errors.QueryCanceled as exc:
        if deadlines.expired():
            raise DeadlineExceeded() from exc
        raise
    except PoolTimeout as exc:
        log.warning("database pool timeout")
        raise DatabaseUnavailable() from exc
    except psycopg.OperationalError as exc:
        log.warning("database unavailable", error=type(exc).__name__)
        raise DatabaseUnavailable() from exc
