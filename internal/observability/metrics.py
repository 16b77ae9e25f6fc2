"""Prometheus metrics, one set per serving process, exposed at GET /metrics on the HTTP port.

Names: the RPC metrics are those of go-grpc-prometheus (`grpc_server_started_total`,
`grpc_server_handled_total`, `grpc_server_handling_seconds`, labels `grpc_type`, `grpc_service`,
`grpc_method`, `grpc_code` with Go's code names such as `NotFound`), so the dashboards and alerts
gRPC users already have work unchanged; a `transport` label (`grpc`, `connect`) tells the ports
apart. Everything else is `altalune_*`. docs/operating.md lists them all.

With several worker processes (internal/server/workers.py) the supervisor gives every worker the
same PROMETHEUS_MULTIPROC_DIR before the client library is imported: each process writes its
figures to memory-mapped files there, and a scrape answered by any worker adds up all of them
(prometheus_client's multiprocess mode). A lone process keeps its figures in memory.

The library's own update costs a call more than everything else metrics do together (an
observation is five Python frames and two locks; in multiprocess mode also a file write). So the
per-call counters and histograms are tallied in plain lists on the event loop, and handed to the
library's metrics once a second (`flush`, from the gauge sampler), before a scrape is answered,
and when the process stops: a scrape sees the other workers' figures as they were at most a second
ago. The names, buckets, exposition, files and aggregation are all the library's.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector


class CallOutcome(Protocol):
    """What the counters need of the request's record (internal/rpc/calls.CallRecord)."""

    rpc: str | None
    transport: str
    code: str
    request_bytes: int | None
    response_bytes: int | None


MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Go's grpc codes.Code.String(), as go-grpc-prometheus writes them, from the Connect code names.
_GO_CODE_NAMES = {
    "ok": "OK",
    "canceled": "Canceled",
    "unknown": "Unknown",
    "invalid_argument": "InvalidArgument",
    "deadline_exceeded": "DeadlineExceeded",
    "not_found": "NotFound",
    "already_exists": "AlreadyExists",
    "permission_denied": "PermissionDenied",
    "resource_exhausted": "ResourceExhausted",
    "failed_precondition": "FailedPrecondition",
    "aborted": "Aborted",
    "out_of_range": "OutOfRange",
    "unimplemented": "Unimplemented",
    "internal": "Internal",
    "unavailable": "Unavailable",
    "data_loss": "DataLoss",
    "unauthenticated": "Unauthenticated",
}

# Seconds: a Get is ~1 ms of work, a write a few ms; the tail reaches the deadline (30 s).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATEMENT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method", "transport")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def mark_process_dead(pid: int, directory: str) -> None:
    """A dead worker's live gauges (in flight, pool) must stop counting; its counters stay."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


# A tally is what a hot path adds to instead of calling into the library: plain numbers in a list,
# with no lock and no call frame. A histogram's tally is one count per bucket (+Inf last, each
# counting only its own observations, as the library keeps them), then the sum; a counter's is one
# number. `Metrics.flush` hands every tally to the library's own values and zeroes it.
Tally = list[float]


def _histogram_targets(child: Any) -> list[Callable[[float], None]]:
    """The library's values of one histogram child, in a tally's order. The one place that reads
    the library's layout (`_buckets`, `_sum`); a unit test pins it against `observe()`."""
    return [*(bucket.inc for bucket in child._buckets), child._sum.inc]


class Metrics:
    """The process's metrics. The per-call ones are tallied (see `Tally`), one tally per label set,
    found with one dict lookup: `labels()` costs more than the increment it leads to. Tallies are
    added to and flushed on the event loop only."""

    def __init__(self, rpcs: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        # Only the contract's RPCs get series of their own: a name a client made up is `unknown`
        # (labels from requests would let any caller grow the scrape without bound).
        self._known = frozenset(rpcs)
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", RPC_LABELS, registry=r)
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their code.",
            (*RPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from the port receiving the request to the answer being ready.",
            RPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_bytes = Histogram(
            "altalune_rpc_request_bytes",
            "Size of each request body as received: the protobuf message on the gRPC port, the body "
            "(JSON or binary, as sent: compressed or not) on the HTTP port.",
            RPC_LABELS,
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.response_bytes = Histogram(
            "altalune_rpc_response_bytes",
            "Size of each successful call's response body as sent, measured as for requests.",
            RPC_LABELS,
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "altalune_rpc_in_flight",
            "RPCs being served now (all workers; sampled every second).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.refused = Counter(
            "altalune_rpc_refused_total",
            "Calls refused before any work: OVERLOADED (in-flight cap) or RATE_LIMITED, by credential kind.",
            ("reason", "credential_kind"),
            registry=r,
        )
        self.pool_connections = Gauge(
            "altalune_db_pool_connections",
            "Database connections held by the pools (all workers), by state: idle or in_use.",
            ("state",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_max = Gauge(
            "altalune_db_pool_max_connections",
            "The most connections the pools may hold (all workers).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_waiting = Gauge(
            "altalune_db_pool_waiting",
            "Calls waiting for a pooled connection now (all workers).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_wait = Histogram(
            "altalune_db_pool_wait_seconds",
            "Time a call waited for its pooled connection.",
            buckets=STATEMENT_BUCKETS,
            registry=r,
        )
        self.statement = Histogram(
            "altalune_db_statement_seconds",
            "Database statement latency, as the service sees it (round trip included), by first keyword.",
            ("operation",),
            buckets=STATEMENT_BUCKETS,
            registry=r,
        )
        self.background_last_success = Gauge(
            "altalune_background_last_success_timestamp_seconds",
            "When a background task last finished without error (Unix time).",
            ("task",),
            registry=r,
            multiprocess_mode="max",
        )
        self.background_failures = Counter(
            "altalune_background_failures_total",
            "Background task rounds that failed and were postponed.",
            ("task",),
            registry=r,
        )
        self.background_backlog = Gauge(
            "altalune_background_backlog",
            "Work a background task has left: projects waiting to be purged, refusal events waiting to be written.",
            ("task",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._in_flight_now = 0
        self._tallies: list[tuple[Tally, list[Callable[[float], None]]]] = []
        self._started: dict[tuple[str, str, str], Tally] = {}
        self._statements: dict[str, Tally] = {}
        self._per_rpc: dict[tuple[str, ...], tuple[Tally, Tally, Tally]] = {}
        self._written: dict[tuple[str | None, str, str], tuple[Tally, Tally, Tally, Tally | None]] = {}
        self._pool_wait = self._histogram_tally(self.pool_wait)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _counter_tally(self, child: Any) -> Tally:
        tally = [0.0]
        self._tallies.append((tally, [child.inc]))
        return tally

    def _histogram_tally(self, child: Any) -> Tally:
        targets = _histogram_targets(child)
        tally = [0.0] * len(targets)
        self._tallies.append((tally, targets))
        return tally

    def flush(self) -> None:
        """Hands the tallies to the library: every second, before a scrape, and when the process
        stops. In multiprocess mode this is what writes the worker's file."""
        for tally, targets in self._tallies:
            for i, amount in enumerate(tally):
                if amount:
                    tally[i] = 0.0
                    targets[i](amount)

    # --- RPCs -------------------------------------------------------------------------------

    # Every call pays for what happens here: one lookup, then additions to tallies. A histogram
    # observation is `tally[bisect_left(bounds, value)] += 1` (the first bucket whose `le` holds
    # it, +Inf when none does) and `tally[-1] += value`. The in-flight gauge is a plain count that
    # the gauge sampler publishes.

    def call_started(self, service: str, method: str, transport: str) -> None:
        key = (service, method, transport)
        started = self._started.get(key)
        if started is None:
            child = self.started.labels("unary", service, method, transport)
            started = self._started[key] = self._counter_tally(child)
        started[0] += 1
        self._in_flight_now += 1

    def call_ended(self) -> None:
        self._in_flight_now -= 1

    def call_written(self, record: CallOutcome, duration_s: float) -> None:
        """Counts every call that named an RPC, whether the chain or a port answered it."""
        if record.rpc is None:
            return
        # One lookup per call: the four children of an (RPC, transport, code) are found together.
        key = (record.rpc if record.rpc in self._known else None, record.transport, record.code)
        children = self._written.get(key)
        if children is None:
            children = self._written[key] = self._written_children(*key)
        handled, handling, request_bytes, response_bytes = children
        handled[0] += 1
        handling[bisect_left(LATENCY_BUCKETS, duration_s)] += 1
        handling[-1] += duration_s
        size = record.request_bytes
        if size is not None:
            request_bytes[bisect_left(SIZE_BUCKETS, size)] += 1
            request_bytes[-1] += size
        size = record.response_bytes
        if size is not None and response_bytes is not None:
            response_bytes[bisect_left(SIZE_BUCKETS, size)] += 1
            response_bytes[-1] += size

    def _written_children(self, rpc: str | None, transport: str, code: str) -> tuple[Tally, Tally, Tally, Tally | None]:
        service, method = rpc.partition("/")[::2] if rpc is not None else ("unknown", "unknown")
        labels = ("unary", service, method, transport)
        go_code = _GO_CODE_NAMES.get(code, "Unknown")
        # Shared by the codes of one RPC: its latency and sizes are one series whatever the code.
        handling, request_bytes, response_bytes = self._rpc_tallies(labels)
        return (
            self._counter_tally(self.handled.labels(*labels, go_code)),
            handling,
            request_bytes,
            response_bytes if go_code == "OK" else None,
        )

    def _rpc_tallies(self, labels: tuple[str, ...]) -> tuple[Tally, Tally, Tally]:
        found = self._per_rpc.get(labels)
        if found is None:
            found = self._per_rpc[labels] = (
                self._histogram_tally(self.handling.labels(*labels)),
                self._histogram_tally(self.request_bytes.labels(*labels)),
                self._histogram_tally(self.response_bytes.labels(*labels)),
            )
        return found

    def call_refused(self, reason: str, credential_kind: str = "") -> None:
        self._child(self.refused, reason, credential_kind).inc()

    # --- database -----------------------------------------------------------------------------

    def statement_done(self, operation: str, seconds: float) -> None:
        tally = self._statements.get(operation)
        if tally is None:
            tally = self._statements[operation] = self._histogram_tally(self.statement.labels(operation))
        tally[bisect_left(STATEMENT_BUCKETS, seconds)] += 1
        tally[-1] += seconds

    def pool_waited(self, seconds: float) -> None:
        tally = self._pool_wait
        tally[bisect_left(STATEMENT_BUCKETS, seconds)] += 1
        tally[-1] += seconds

    def calls_state(self) -> None:
        """Publishes the calls in flight now (sampled with the pool, every second)."""
        self.in_flight.set(self._in_flight_now)

    def pool_state(self, stats: dict[str, int]) -> None:
        """From psycopg_pool's get_stats(): connections open, idle, waiting requests."""
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        self._child(self.pool_connections, "idle").set(idle)
        self._child(self.pool_connections, "in_use").set(max(size - idle, 0))
        self.pool_max.set(stats.get("pool_max", 0))
        self.pool_waiting.set(stats.get("requests_waiting", 0))

    # --- background work ----------------------------------------------------------------------

    def background_succeeded(self, task: str) -> None:
        self._child(self.background_last_success, task).set(time.time())

    def background_failed(self, task: str) -> None:
        self._child(self.background_failures, task).inc()

    def backlog(self, task: str, size: int) -> None:
        self._child(self.background_backlog, task).set(size)

    # --- exposition ---------------------------------------------------------------------------

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape's body and content type (OpenMetrics when the scraper asks for it). With
        worker processes it adds up every worker's files; this reads files: run it off the loop."""
        directory = multiprocess_dir()
        registry = self.registry
        if directory is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type
