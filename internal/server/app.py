"""One serving process, two ports: start, run until told to stop, shut down gracefully.

With ALTALUNE_WORKERS > 1 several of these run side by side under internal/server/workers.py and
share both ports; background work that must run once per deployment takes a lease first.

Shutdown order: health NOT_SERVING and /readyz 503 at once, stop accepting, let in-flight calls
finish within the grace period, cut the rest (each answers UNAVAILABLE `SHUTTING_DOWN`), stop
background work, close the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from connectrpc.server import ConnectASGIApplication, Endpoint

from internal.config import Settings
from internal.container import Container
from internal.events.store import purge_expired, purge_old_events
from internal.logs import get_logger
from internal.observability.metrics import Metrics
from internal.observability.tracing import Tracing
from internal.postgres.lease import SessionLease
from internal.postgres.partitions import UPKEEP_LEASE_KEY
from internal.rpc.endpoints import UnaryRoute, connect_endpoints
from internal.server.codecs import BoundedGzip, JSONCodec, ProtoCodec
from internal.server.grpc_server import GrpcServer
from internal.server.http_gateway import CorsPolicy, HttpGateway
from internal.server.http_protocol import guarded_protocol
from internal.server.reflection import reflection_endpoints
from internal.server.sockets import listen_http

log = get_logger("altalune.server")

HEALTH_INTERVAL_S = 2.0
GAUGE_INTERVAL_S = 1.0
UPKEEP_MIN_GAP_S = 1.0
# How long cut calls get to write their UNAVAILABLE answer at the end of the grace period.
CUT_SETTLE_S = 0.5


class ConnectApp(ConnectASGIApplication[None]):
    """All services' endpoints in one connectrpc ASGI application (mounted under /api by the gateway).
    `public` are served outside the chain, as on the gRPC port: health and reflection."""

    def __init__(
        self, routes: dict[str, UnaryRoute], *, max_request_bytes: int, public: Mapping[str, Endpoint[Any, Any]]
    ) -> None:
        endpoints = {**connect_endpoints(routes), **public}
        super().__init__(
            service=None,
            endpoints=lambda _service: endpoints,
            read_max_bytes=max_request_bytes,
            compressions=[BoundedGzip(max_request_bytes)],
            codecs=[ProtoCodec(), JSONCodec()],
        )

    @property
    def path(self) -> str:
        return "/"


class UvicornWithoutSignals(uvicorn.Server):  # type: ignore[misc]
    """uvicorn without its own signal handlers: the process-level handler stops both ports."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AltaluneServer:
    """The running service; tests start it on port 0 and read the bound ports.

    A worker process gets the HTTP socket already bound by its supervisor (`http_socket`) and binds
    the gRPC port with SO_REUSEPORT (`share_grpc_port`); a lone process binds both exclusively.
    """

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        *,
        http_socket: socket.socket | None = None,
        share_grpc_port: bool = False,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self._upkeep_wakeup = asyncio.Event()
        self.container = Container.build(settings, database_url, wake_upkeep=self._upkeep_wakeup.set, tracing=tracing)
        metrics = self.container.metrics
        self._upkeep_lease = SessionLease(database_url, UPKEEP_LEASE_KEY, name="altalune-upkeep")
        self._grpc = GrpcServer(
            self.container.routes,
            self.container.service_names,
            share_port=share_grpc_port,
            max_connections=settings.max_connections,
            handshake_timeout_s=settings.header_timeout_s,
            longest_call_s=settings.max_deadline_ms / 1000,
            max_connection_age_s=settings.grpc_max_connection_age_s,
            observer=metrics,
            trusted_proxies=settings.trusted_proxies,
        )
        self._given_socket = http_socket
        self._shutting_down = False
        # Health and server reflection (public, as on the gRPC port): `buf curl --reflect` and
        # grpc.health.v1 clients work against this port too.
        health_check, health_watch = self._grpc.health.connect_endpoints()
        streams = {**reflection_endpoints(self.container.service_names), **health_watch}
        gateway = HttpGateway(
            ConnectApp(
                self.container.routes,
                max_request_bytes=settings.max_request_bytes,
                public={**health_check, **streams},
            ),
            max_request_bytes=settings.max_request_bytes,
            cors=CorsPolicy(frozenset(settings.cors_origins)),
            readiness=self._ready,
            procedures={
                **{path: route.method for path, route in self.container.routes.items()},
                **{path: endpoint.method for path, endpoint in health_check.items()},
            },
            metrics=metrics,
            metrics_token=settings.metrics_token,
            streams={path: endpoint.method for path, endpoint in streams.items()},
            trusted_proxies=settings.trusted_proxies,
        )
        self._uvicorn = UvicornWithoutSignals(
            uvicorn.Config(
                gateway,
                lifespan="on",
                log_config=None,
                access_log=False,
                server_header=False,
                # Not uvicorn's X-Forwarded-For handling (on by default for 127.0.0.1 and ::1, and
                # only on this port): both ports name the caller one way (internal/addresses.py).
                proxy_headers=False,
                # HTTP/1.1, plus h2c by prior knowledge or `Upgrade: h2c` (internal/server/http2.py).
                http=guarded_protocol(
                    header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections, http2=True
                ),
                ws="none",
                # stop() cuts the calls at the grace period and then ends uvicorn's wait; this
                # is only a backstop.
                timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s + CUT_SETTLE_S),
                timeout_keep_alive=30,
            )
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._socket: socket.socket | None = None
        self.grpc_port = 0
        self.http_port = 0

    async def _ready(self) -> bool:
        return not self._shutting_down and await self.container.db.ping()

    async def start(self) -> None:
        """Bind both ports and start serving; on any failure, release what was acquired and re-raise."""
        try:
            await self._start()
        except BaseException:
            self._shutting_down = True
            if self._socket is not None and not self._tasks:
                self._socket.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._grpc.stop(0)
            await self.container.close()
            raise

    async def _start(self) -> None:
        settings = self.settings
        await self.container.open()
        sock = self._socket = self._given_socket or listen_http(settings.host, settings.http_port)
        self.http_port = sock.getsockname()[1]
        self.grpc_port = await self._grpc.start(settings.host, settings.grpc_port)
        await self._grpc.set_serving(await self.container.db.ping())
        self._tasks = [
            asyncio.create_task(self._uvicorn.serve(sockets=[sock]), name="http"),
            asyncio.create_task(self._watch_health(), name="health"),
            asyncio.create_task(self._upkeep_loop(), name="tenancy-upkeep"),
        ]
        if metrics := self.container.metrics:
            self._tasks.append(asyncio.create_task(self._sample_gauges(metrics), name="metrics-gauges"))
        while not self._uvicorn.started:
            if self._tasks[0].done():
                await self._tasks[0]
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        log.info(
            "serving",
            grpc=f"{settings.host}:{self.grpc_port}",
            http=f"http://{settings.host}:{self.http_port}/api",
        )

    async def stop(self) -> None:
        """Stop accepting at once; let calls in flight run for the grace period; then cut the rest,
        each answering UNAVAILABLE `SHUTTING_DOWN` in its protocol; exit within grace + 1 s."""
        if self._shutting_down:
            return
        self._shutting_down = True
        grace = self.settings.shutdown_grace_s
        drain = self.container.drain
        log.info("shutting down", grace_s=grace, in_flight=drain.in_flight)
        self._uvicorn.should_exit = True
        # Both servers keep admitted calls a little past the grace period, so the cut calls'
        # answers are written before either server drops what is left.
        stopping = [asyncio.create_task(self._grpc.stop(grace + CUT_SETTLE_S)), self._tasks[0]]
        await asyncio.wait(stopping, timeout=grace)
        if cut := await drain.cut(settle_s=CUT_SETTLE_S):
            log.warning("calls cut at the end of the grace period", calls=cut)
        # What is left on the HTTP port is outside any call (a body still arriving, an idle
        # connection): uvicorn need not wait for it.
        self._uvicorn.force_exit = True
        await asyncio.gather(*stopping, return_exceptions=True)
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        await self._upkeep_lease.release()
        await self.container.close()
        if self.container.metrics is not None:
            self.container.metrics.flush()  # the last second's counts, for the workers that stay
        log.info("stopped")

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()

    async def _watch_health(self) -> None:
        """gRPC health follows the database: NOT_SERVING while it is unreachable."""
        serving: bool | None = None
        while True:
            ok = await self.container.db.ping()
            if ok != serving and not self._shutting_down:
                await self._grpc.set_serving(ok)
                if serving is not None:
                    log.warning("database reachability changed", reachable=ok)
                serving = ok
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def _sample_gauges(self, metrics: Metrics) -> None:
        """Gauges of this process's calls, pool and queues, sampled, and its counts of the last
        second written out (each worker writes its own; a scrape adds them up)."""
        while True:
            metrics.flush()
            metrics.calls_state()
            metrics.pool_state(self.container.db.pool.get_stats())
            metrics.backlog("refusal_events", self.container.refusals.queued)
            # Only the upkeep lease holder purges; the others report nothing left.
            holder = self._upkeep_lease.holding
            metrics.backlog("project_purge", self.container.projects.purge_backlog if holder else 0)
            await asyncio.sleep(GAUGE_INTERVAL_S)

    async def _purge_expired(self) -> None:
        """Idempotency records past their retention, and events past theirs (bounded batches)."""
        db = self.container.db
        keys = await purge_expired(db)
        events = await purge_old_events(db, retention_days=self.settings.event_retention_days)
        if keys or events:
            log.info("expired records purged", idempotency_keys=keys, events=events)

    async def _upkeep_loop(self) -> None:
        """Tenancy upkeep off the request path: block partitions ahead of need, purges of deleted
        projects, removal of dead blocks. Runs at start, when woken (a delete, ids nearing the last
        block made) and every reaper interval, in the one process of the deployment that holds the
        upkeep lease (the others try again each round, and take over when the holder dies). Every
        step is also idempotent and serialised in the database. Rounds are at least
        UPKEEP_MIN_GAP_S apart: a burst of deletes is purged in one round, not in one round each
        (every round costs a dozen statements, which other tenants' calls would wait behind under
        create/delete churn)."""
        gap = min(UPKEEP_MIN_GAP_S, self.settings.reaper_interval_s)
        while True:
            self._upkeep_wakeup.clear()
            steps = (self.container.projects.prepare_blocks, self.container.projects.reap_deleted, self._purge_expired)
            metrics = self.container.metrics
            for step in steps if await self._upkeep_lease.held() else ():
                try:
                    await step()
                    if metrics is not None:
                        metrics.background_succeeded(step.__name__.lstrip("_"))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if metrics is not None:
                        metrics.background_failed(step.__name__.lstrip("_"))
                    log.warning("tenancy upkeep step postponed", step=step.__name__, error=type(exc).__name__)
            await asyncio.sleep(gap)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.settings.reaper_interval_s - gap, 0.0)):
                    await self._upkeep_wakeup.wait()
