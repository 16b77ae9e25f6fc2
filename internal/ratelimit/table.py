"""The rate limits' state, shared by every worker process of one machine.

One fixed-size table in shared memory (a memfd the supervisor creates and every worker inherits,
like the HTTP socket), so a credential's limit holds across workers instead of each worker
granting its own share (a client with one connection lands on one worker; one with many, on all).

Layout: SLOTS + WINDOW slots, each a 64-bit key hash (0 = never used) and a float64 GCRA
"theoretical arrival time" on CLOCK_MONOTONIC (system-wide on Linux, so comparable between
processes). A key lives in one of the WINDOW slots from `hash % SLOTS` (open addressing without
wrap-around: the table has WINDOW spare slots at its end). A slot whose time has passed holds a
full bucket, which is the same as no bucket: it is free for any key. When every slot of a window
holds a non-full bucket (far more active keys than SLOTS), the one closest to full is taken over,
which gives that key a full bucket early: the table fails towards allowing, never towards refusing.

Each update is a read-modify-write under an exclusive `lockf` on the byte range of the key's
window in the hash array (two updates that can touch the same slot lock overlapping ranges). POSIX
record locks belong to a process, so they order workers, not coroutines: an update runs without
awaiting between lock and unlock, so a worker's own calls never interleave inside one.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import tempfile
from enum import Enum

SLOTS = 65_536  # active buckets the table is meant for; 1 MiB of shared memory
WINDOW = 16  # slots probed per key
_TOTAL = SLOTS + WINDOW
SIZE_BYTES = _TOTAL * 16

FD_ENV = "ALTALUNE_WORKER_RATE_FD"  # the supervisor's table, inherited by each worker


class Mode(Enum):
    TAKE = "take"  # spend one call if the bucket has one
    PEEK = "peek"  # would a call be allowed? change nothing
    CHARGE = "charge"  # spend one call whatever the bucket holds (never beyond empty)


def key_hash(key: str) -> int:
    """A stable 64-bit hash (the same in every process, unlike hash()), never 0."""
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return value or 1


def new_table_fd() -> int:
    """An anonymous shared-memory file of the table's size (zeroed: every slot unused)."""
    try:
        fd = os.memfd_create("altalune-rate-limits")
    except (AttributeError, OSError):  # not Linux: an unlinked temp file does the same
        fd, path = tempfile.mkstemp(prefix="altalune-rate-limits-")
        os.unlink(path)
    os.ftruncate(fd, SIZE_BYTES)
    return fd


class SharedTable:
    """GCRA buckets in a shared mapping of `fd`. `shared=False` (a lone process) skips the locks."""

    def __init__(self, fd: int, *, shared: bool) -> None:
        if os.fstat(fd).st_size != SIZE_BYTES:
            raise ValueError(f"rate limit table has {os.fstat(fd).st_size} bytes, expected {SIZE_BYTES}")
        self._fd = fd
        self._shared = shared
        self._map = mmap.mmap(fd, SIZE_BYTES)
        self._view = memoryview(self._map)
        self._hashes = self._view[: _TOTAL * 8].cast("Q")
        self._tats = self._view[_TOTAL * 8 :].cast("d")

    @classmethod
    def private(cls) -> SharedTable:
        """A table for this process alone (ALTALUNE_WORKERS=1, tests)."""
        return cls(new_table_fd(), shared=False)

    @classmethod
    def from_environment(cls) -> SharedTable:
        """The supervisor's table when this process is one of its workers, else a private one."""
        inherited = os.environ.get(FD_ENV)
        if inherited:
            return cls(int(inherited), shared=True)
        return cls.private()

    def update(self, hashed: int, now: float, interval_s: float, capacity_s: float, mode: Mode) -> tuple[bool, float]:
        """One GCRA step for the bucket `hashed`: (allowed, its theoretical arrival time once this
        call is paid for; stored unless the call is only peeked at or refused).

        `interval_s` is the time one call costs (1 / rate), `capacity_s` what a full bucket holds
        (burst * interval_s). A call is allowed when, after paying for it, the debt
        (arrival time - now) is at most the capacity."""
        start = hashed % SLOTS
        if self._shared:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, WINDOW * 8, start * 8, os.SEEK_SET)
        try:
            window = self._hashes[start : start + WINDOW].tolist()
            try:
                slot = start + window.index(hashed)
                tat = max(self._tats[slot], now)
            except ValueError:
                slot = self._free_slot(start, window, now)
                tat = now
            paid = tat + interval_s
            allowed = paid - now <= capacity_s + 1e-9
            if mode is Mode.PEEK or (mode is Mode.TAKE and not allowed):
                return allowed, paid  # what it would be: nothing is stored
            if mode is Mode.CHARGE:
                paid = min(paid, now + capacity_s)
            self._hashes[slot] = hashed
            self._tats[slot] = paid
            return allowed, paid
        finally:
            if self._shared:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, WINDOW * 8, start * 8, os.SEEK_SET)

    def _free_slot(self, start: int, window: list[int], now: float) -> int:
        """The first slot of the window holding nothing or a full bucket, else the fullest one."""
        tats = self._tats[start : start + WINDOW].tolist()
        for offset, (used, tat) in enumerate(zip(window, tats, strict=True)):
            if used == 0 or tat <= now:
                return start + offset
        return start + tats.index(min(tats))

    def close(self) -> None:
        self._hashes.release()
        self._tats.release()
        self._view.release()
        self._map.close()
