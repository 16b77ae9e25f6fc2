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

In multiprocess mode the library writes the file on every increment, which doubled what metrics
cost a call. So a worker's counters and histograms are kept in memory and written to its file once
a second (`flush`, from the gauge sampler), before this worker answers a scrape, and when it stops:
a scrape sees the other workers' figures as they were at most a second ago.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
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


class _Pending:
    """The values a worker changed since its last flush."""

    changed: set[Any] = set()


def _buffered_multiprocess_value() -> type:
    """prometheus_client's multiprocess value class, with increments kept in memory until
    `flush_pending()`: the library's own file format, writer and collector, written less often."""
    mapped: Any = values.MultiProcessValue()  # type: ignore[no-untyped-call]

    class BufferedValue(mapped):  # type: ignore[misc,valid-type]
        _unwritten = 0.0

        def inc(self, amount: float) -> None:
            self._unwritten += amount
            _Pending.changed.add(self)

        def set(self, value: float, timestamp: float | None = None) -> None:
            self._unwritten = 0.0
            super().set(value, timestamp)

        def get(self) -> float:
            return float(super().get()) + self._unwritten

        def write(self) -> None:
            amount, self._unwritten = self._unwritten, 0.0
            if amount:
                super().inc(amount)

    return BufferedValue


def flush_pending() -> None:
    """Write this process's buffered increments to its file (multiprocess mode; else nothing)."""
    changed, _Pending.changed = _Pending.changed, set()
    for value in changed:
        value.write()


def _use_buffered_values() -> None:
    """Every metric made from now on in this process buffers its increments (once per process,
    and only in multiprocess mode: a lone process keeps its figures in memory anyway)."""
    if multiprocess_dir() is not None and not getattr(values.ValueClass, "_altalune_buffered", False):
        buffered = _buffered_multiprocess_value()
        buffered._altalune_buffered = True  # type: ignore[attr-defined]
        values.ValueClass = buffered


class Metrics:
    """The process's metrics. Labelled children are cached per label set: `labels()` costs more
    than the increment it leads to, and the hot path makes a dozen of them per call."""

    def __init__(self, rpcs: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        # Only the contract's RPCs get series of their own: a name a client made up is `unknown`
        # (labels from requests would let any caller grow the scrape without bound).
        self._known = frozenset(rpcs)
        _use_buffered_values()
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
        self._started: dict[tuple[str, str, str], Any] = {}
        self._statements: dict[str, Any] = {}
        self._written: dict[tuple[str | None, str, str], tuple[Any, Any, Any, Any]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- RPCs -------------------------------------------------------------------------------

    # Every call pays for what happens here, so each label set's children are found with one
    # lookup, and the in-flight gauge is a plain count that the gauge sampler publishes (a gauge
    # write takes a lock; two per call cost more than the count is worth between scrapes).

    def call_started(self, service: str, method: str, transport: str) -> None:
        key = (service, method, transport)
        started = self._started.get(key)
        if started is None:
            started = self._started[key] = self.started.labels("unary", service, method, transport)
        started.inc()
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
        handled.inc()
        handling.observe(duration_s)
        if record.request_bytes is not None:
            request_bytes.observe(record.request_bytes)
        if record.response_bytes is not None and response_bytes is not None:
            response_bytes.observe(record.response_bytes)

    def _written_children(self, rpc: str | None, transport: str, code: str) -> tuple[Any, Any, Any, Any]:
        service, method = rpc.partition("/")[::2] if rpc is not None else ("unknown", "unknown")
        labels = ("unary", service, method, transport)
        go_code = _GO_CODE_NAMES.get(code, "Unknown")
        return (
            self._child(self.handled, *labels, go_code),
            self._child(self.handling, *labels),
            self._child(self.request_bytes, *labels),
            self._child(self.response_bytes, *labels) if go_code == "OK" else None,
        )

    def call_refused(self, reason: str, credential_kind: str = "") -> None:
        self._child(self.refused, reason, credential_kind).inc()

    # --- database -----------------------------------------------------------------------------

    def statement_done(self, operation: str, seconds: float) -> None:
        child = self._statements.get(operation)
        if child is None:
            child = self._statements[operation] = self.statement.labels(operation)
        child.observe(seconds)

    def pool_waited(self, seconds: float) -> None:
        self.pool_wait.observe(seconds)

    def calls_state(self) -> None:
        """Publishes the calls in flight now (sampled with the pool, every second)."""
        self.in_flight.set(self._in_flight_now)

    def flush(self) -> None:
        """Every second, before this worker answers a scrape, and when it stops."""
        flush_pending()

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
