"""Worker processes: ALTALUNE_WORKERS serving processes behind both ports, under one supervisor.

The supervisor (the `altalune serve` process) owns the ports and the workers:
- HTTP: it binds and listens once; every worker inherits the listening socket and accepts from the
  same queue, so a busy worker simply accepts less (no hashing of connections to a busy process).
- gRPC: grpc.aio binds its own sockets, so workers bind with SO_REUSEPORT and the kernel spreads
  connections over them. The supervisor first binds the port without SO_REUSEPORT (so a port in use
  by anyone else fails start-up loudly, as with one process), then keeps a reservation on it while
  workers come and go (so a second `altalune serve` cannot join the group).
It starts N workers, reports "serving" once all are ready, replaces a worker that dies, and on
SIGTERM or SIGINT asks every worker to drain (each keeps the grace period) and waits for them.
Migrations and bootstrap run before any worker starts; background upkeep runs in the one worker
holding its lease (internal/server/app.py), so nothing runs N times.
Metrics: the supervisor makes a private directory for prometheus_client's multiprocess mode, hands
it to every worker, clears a dead worker's live gauges, and removes the directory at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import FrameType

import structlog

from internal.config import Settings, load_settings
from internal.logs import configure_logging, get_logger
from internal.observability.metrics import MULTIPROC_DIR_ENV, mark_process_dead
from internal.ratelimit.table import FD_ENV as RATE_FD_ENV
from internal.ratelimit.table import new_table_fd
from internal.server.sockets import listen_http, reserve_grpc_port

log = get_logger("altalune.workers")

HTTP_FD_ENV = "ALTALUNE_WORKER_HTTP_FD"
READY_FD_ENV = "ALTALUNE_WORKER_READY_FD"
INDEX_ENV = "ALTALUNE_WORKER_INDEX"
START_TIMEOUT_S = 120.0
# After the grace period, workers get this long to close their pools before they are killed.
STOP_MARGIN_S = 5.0
# A worker that keeps dying is restarted after a growing pause (up to the maximum), not in a loop.
RESTART_PAUSE_S = 0.2
RESTART_PAUSE_MAX_S = 10.0
STABLE_AFTER_S = 30.0
PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_fd: int
    started_at: float
    ready: bool = False


@dataclass
class Supervisor:
    settings: Settings
    database_url: str
    workers: dict[int, _Worker] = field(default_factory=dict)
    _stopping: bool = False
    _wakeup: tuple[int, int] = (-1, -1)
    _shared_fds: tuple[int, ...] = ()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 after a clean drain, 1 if the workers could not start."""
        settings = self.settings
        http = listen_http(settings.host, settings.http_port)
        try:
            reservation, grpc_port = reserve_grpc_port(settings.host, settings.grpc_port)
        except OSError:
            http.close()
            raise
        http_port = http.getsockname()[1]
        self._wakeup = os.pipe()
        os.set_blocking(self._wakeup[1], False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        signal.set_wakeup_fd(self._wakeup[1])
        metrics_dir = tempfile.mkdtemp(prefix="altalune-metrics-")
        env = {
            **os.environ,
            MULTIPROC_DIR_ENV: metrics_dir,
            "DATABASE_URL": self.database_url,
            "ALTALUNE_GRPC_PORT": str(grpc_port),
            HTTP_FD_ENV: str(http.fileno()),
        }
        # Rate limits hold across workers: one table in shared memory, inherited like the socket.
        rate_fd = new_table_fd() if settings.rate_limits.enabled else -1
        if rate_fd >= 0:
            env[RATE_FD_ENV] = str(rate_fd)
            self._shared_fds = (rate_fd,)
        try:
            for index in range(settings.workers):
                self._start(index, env, http.fileno())
            if not self._wait_until_ready():
                self._stop_all()
                if self._stopping:  # told to stop while starting: a clean stop
                    log.info("stopped")
                    return 0
                log.error("workers failed to start; stopped")
                return 1
            log.info(
                "serving",
                grpc=f"{settings.host}:{grpc_port}",
                http=f"http://{settings.host}:{http_port}/api",
                workers=settings.workers,
            )
            self._supervise(env, http.fileno())
            self._stop_all()
            log.info("stopped")
            return 0
        finally:
            signal.set_wakeup_fd(-1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in self._wakeup:
                os.close(fd)
            http.close()
            reservation.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            if rate_fd >= 0:
                os.close(rate_fd)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only a flag: a handler that logged could wait forever on the log lock the interrupted
        # code holds. The loop logs when it sees the flag.
        self._stopping = True

    def _start(self, index: int, env: dict[str, str], http_fd: int) -> None:
        ready_read, ready_write = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "internal.server.workers"],
            env={**env, READY_FD_ENV: str(ready_write), INDEX_ENV: str(index)},
            pass_fds=(http_fd, ready_write, *self._shared_fds),
        )
        os.close(ready_write)
        self.workers[index] = _Worker(index, process, ready_read, time.monotonic())

    def _retire(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _drain_ready(self, readable: list[int]) -> None:
        for worker in self.workers.values():
            if worker.ready_fd >= 0 and worker.ready_fd in readable:
                try:
                    said = os.read(worker.ready_fd, 64)
                except OSError:
                    said = b""
                if said.startswith(b"ready"):
                    worker.ready = True
                    log.debug("worker ready", worker=worker.index, pid=worker.process.pid)
                self._retire(worker)  # one message, then end of file

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.ready for w in self.workers.values()):
            if self._stopping or time.monotonic() > deadline:
                return False
            if any(w.process.poll() is not None for w in self.workers.values()):
                return False
            self._drain_ready(self._select(0.2))
        return True

    def _select(self, timeout_s: float) -> list[int]:
        fds = [self._wakeup[0], *(w.ready_fd for w in self.workers.values() if w.ready_fd >= 0)]
        try:
            readable, _, _ = select.select(fds, [], [], timeout_s)
        except InterruptedError:
            return []
        if self._wakeup[0] in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup[0], 512)
        return list(readable)

    def _supervise(self, env: dict[str, str], http_fd: int) -> None:
        """Replace dead workers until told to stop; a worker that keeps dying waits longer each time."""
        failures: dict[int, int] = {}
        restart_at: dict[int, float] = {}
        while not self._stopping:
            self._drain_ready(self._select(0.5))
            now = time.monotonic()
            for index, worker in list(self.workers.items()):
                code = worker.process.poll()
                if code is None or self._stopping:
                    if worker.ready and now - worker.started_at > STABLE_AFTER_S:
                        failures.pop(index, None)
                    continue
                if index not in restart_at:
                    failures[index] = failures.get(index, 0) + 1
                    pause = min(RESTART_PAUSE_S * 2 ** (failures[index] - 1), RESTART_PAUSE_MAX_S)
                    restart_at[index] = now + pause
                    log.warning("worker exited; replacing it", worker=index, exit_code=code, pause_s=pause)
                if now >= restart_at[index]:
                    del restart_at[index]
                    self._retire(worker)
                    mark_process_dead(worker.process.pid, env[MULTIPROC_DIR_ENV])
                    self._start(index, env, http_fd)

    def _stop_all(self) -> None:
        """SIGTERM every worker at once (each drains within the grace period), then wait; kill late ones."""
        if self._stopping:
            log.info("shutting down", grace_s=self.settings.shutdown_grace_s)
        for worker in self.workers.values():
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_s + STOP_MARGIN_S
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time; killing it", worker=worker.index)
                worker.process.kill()
                worker.process.wait()
            self._retire(worker)


def _die_with_supervisor() -> None:
    """Ask Linux to send SIGTERM when the supervisor dies, so no worker outlives it (kill -9 of the
    supervisor included); elsewhere the worker notices within a second by polling its parent."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _serve_worker(settings: Settings, database_url: str, http_fd: int, ready_fd: int) -> None:
    from internal.server.app import AltaluneServer

    parent = os.getppid()
    sock = socket.socket(fileno=http_fd)
    sock.setblocking(False)
    server = AltaluneServer(settings, database_url, http_socket=sock, share_grpc_port=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()  # on failure it releases what it took and raises: the worker exits non-zero
    try:
        try:
            os.write(ready_fd, b"ready\n")
        except BrokenPipeError:
            stop.set()  # the supervisor went away while this worker was starting
        finally:
            os.close(ready_fd)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()
            if os.getppid() != parent:
                log.warning("supervisor gone; stopping")
                break
    finally:
        await server.stop()


def worker_main() -> int:
    """Entry of one worker process (started by Supervisor._start)."""
    _die_with_supervisor()
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    structlog.contextvars.bind_contextvars(worker=int(os.environ[INDEX_ENV]))
    from internal.server.runtime import exit_now, run

    run(
        _serve_worker(settings, os.environ["DATABASE_URL"], int(os.environ[HTTP_FD_ENV]), int(os.environ[READY_FD_ENV]))
    )
    exit_now(0)


if __name__ == "__main__":
    sys.exit(worker_main())
