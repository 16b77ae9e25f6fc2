"""`make bench-ratelimit`: what one rate-limit check costs, in microseconds per call.

Runs RateLimiter.take() (bucket choice + GCRA step on the shared table) in a loop: on a private
table (a lone process, no locks), on a shared one (the lockf byte-range lock a worker takes), and
with 2 and 4 processes hammering the same key of one shared table (the contended case). It also
prints the cost of the key hash alone. It asserts nothing.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from internal.auth.principal import Principal
from internal.config import RateLimits, parse_rate
from internal.ratelimit.limiter import RateLimiter
from internal.ratelimit.table import SharedTable, key_hash, new_table_fd
from internal.tenancy import ProjectRef

CALLS = 200_000
LIMITS = RateLimits(default=parse_rate("bench", "1000000/s"))
KEY = Principal.api_key("abcdefghjkmnpq", ProjectRef("prjbench234567", 1), frozenset())


def _loop(table: SharedTable, calls: int) -> float:
    """Seconds per call of bucket choice + take()."""
    limiter = RateLimiter(LIMITS, table)
    started = time.perf_counter()
    for _ in range(calls):
        bucket = limiter.credential_bucket(KEY, None)
        assert bucket is not None
        limiter.take(bucket)
    return (time.perf_counter() - started) / calls


def _worker(fd: int, calls: int, out: multiprocessing.Queue[float]) -> None:
    out.put(_loop(SharedTable(fd, shared=True), calls))


def main() -> None:
    started = time.perf_counter()
    for i in range(CALLS):
        key_hash(f"api_key:{i}")
    print(f"key hash (blake2b, 8 bytes):        {(time.perf_counter() - started) / CALLS * 1e6:6.2f} µs")
    print(f"take(), private table (no lock):    {_loop(SharedTable.private(), CALLS) * 1e6:6.2f} µs per call")
    fd = new_table_fd()
    print(f"take(), shared table (lockf):       {_loop(SharedTable(fd, shared=True), CALLS) * 1e6:6.2f} µs per call")
    for processes in (2, 4):
        out: multiprocessing.Queue[float] = multiprocessing.Queue()
        context = multiprocessing.get_context("fork")
        runners = [context.Process(target=_worker, args=(fd, CALLS // 2, out)) for _ in range(processes)]
        for runner in runners:
            runner.start()
        figures = [out.get() for _ in runners]
        for runner in runners:
            runner.join()
        worst = max(figures) * 1e6
        print(f"take(), shared, {processes} processes, one key:  {worst:6.2f} µs per call (slowest process)")
    os.close(fd)
    print(f"(cores available: {len(os.sched_getaffinity(0))})")


if __name__ == "__main__":
    main()
