"""Security events (refused calls) written off the request path, in batches.

A refused call is answered at once: an anonymous caller costs no database round trip, and a flood
of bad credentials becomes one INSERT per batch, not one per call. Each worker process queues its
refusals and a background task writes them to the global stream as they come (usually within
milliseconds). The queue is bounded: under a flood beyond it, or while the database is down, the
excess is dropped and counted in a warning, never held in memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from internal.events.store import EventDraft, committed_on_its_own
from internal.logs import get_logger
from internal.postgres.database import Database

log = get_logger("altalune.events")

QUEUE_CAPACITY = 10_000
BATCH = 500
RETRY_PAUSE_S = 1.0
FINAL_FLUSH_S = 0.5


class RefusalLog:
    def __init__(self, db: Database, *, capacity: int = QUEUE_CAPACITY) -> None:
        self._db = db
        self._capacity = capacity
        self._queue: deque[EventDraft] = deque()
        self._queued = asyncio.Event()
        self._writing = asyncio.Lock()
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Refusals waiting to be written (a metrics gauge)."""
        return len(self._queue)

    def record(self, draft: EventDraft) -> None:
        if len(self._queue) >= self._capacity:
            self._dropped += 1
            return
        self._queue.append(draft)
        self._queued.set()

    def start(self) -> None:
        """Start the writer in the running loop (the server's start-up)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="refusal-events")

    async def stop(self, *, within_s: float = FINAL_FLUSH_S) -> None:
        """Stop the writer, after a last attempt to write what is queued; bounded, so shutdown
        keeps its promise (grace + 1 s) when the database is gone."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(within_s):
                await self.flush()
        if self._queue:
            log.warning("refusal events not written at shutdown", dropped=len(self._queue))

    async def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        async with self._writing:
            while self._queue:
                await self._write_batch()
        self._report_dropped()

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("refusal events not written yet", queued=len(self._queue), error=type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE_S)
                self._queued.set()

    async def _write_batch(self) -> None:
        batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
        statement = committed_on_its_own(batch[0])
        async with self._db.separate_connection() as conn:
            cur = conn.cursor()
            # One pipelined round trip and one (asynchronous) commit for the whole batch.
            await cur.executemany(statement.query, [draft.params() for draft in batch])
        for _ in batch:
            self._queue.popleft()

    def _report_dropped(self) -> None:
        if self._dropped:
            log.warning("refusal events dropped: the queue was full", dropped=self._dropped)
            self._dropped = 0
