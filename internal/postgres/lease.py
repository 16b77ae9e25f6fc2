"""A lease on work that must run once per deployment, however many processes serve it.

The lease is a session-level advisory lock held on a connection of its own (outside the pool): one
process holds it at a time, and PostgreSQL releases it the moment that process or its connection
dies, so another process takes over at its next attempt. No clock, no table, no heartbeat.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
from psycopg import AsyncConnection

from internal.logs import get_logger

log = get_logger(__name__)

CONNECT_TIMEOUT_S = 5


class SessionLease:
    def __init__(self, conninfo: str, key: int, *, name: str) -> None:
        self._conninfo = conninfo
        self._key = key
        self._name = name
        self._conn: AsyncConnection[Any] | None = None
        self._held = False

    @property
    def holding(self) -> bool:
        """What the last check found, without asking the database again."""
        return self._held

    async def held(self) -> bool:
        """True if this process holds the lease now (taking it if it is free)."""
        try:
            if self._conn is None or self._conn.closed:
                self._held = False
                self._conn = await AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name=self._name
                )
            if self._held:
                await self._conn.execute("SELECT 1")  # the lock lives as long as this connection
                return True
            cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
            row = await cur.fetchone()
            self._held = bool(row and row[0])
            if self._held:
                log.info("lease taken", lease=self._name)
            return self._held
        except psycopg.Error as exc:
            if self._held:
                log.warning("lease lost", lease=self._name, error=type(exc).__name__)
            await self.release()
            return False

    async def release(self) -> None:
        """Give the lease up (closing the connection releases the lock)."""
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
