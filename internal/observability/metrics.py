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
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
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


class Metrics:
    """The process's metrics. Labelled children are cached per label set: `labels()` costs more
    than the increment it leads to, and the hot path makes a dozen of them per call."""

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
            "RPCs being served now (all workers).",
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

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- RPCs -------------------------------------------------------------------------------

    def call_started(self, service: str, method: str, transport: str) -> None:
        self._child(self.started, "unary", service, method, transport).inc()
        self.in_flight.inc()

    def call_ended(self) -> None:
        self.in_flight.dec()

    def call_written(self, record: CallOutcome, duration_s: float) -> None:
        """Counts every call that named an RPC, whether the chain or a port answered it."""
        if record.rpc is None:
            return
        service, method = record.rpc.partition("/")[::2] if record.rpc in self._known else ("unknown", "unknown")
        labels = ("unary", service, method, record.transport)
        code = _GO_CODE_NAMES.get(record.code, "Unknown")
        self._child(self.handled, *labels, code).inc()
        self._child(self.handling, *labels).observe(duration_s)
        if record.request_bytes is not None:
            self._child(self.request_bytes, *labels).observe(record.request_bytes)
        if record.response_bytes is not None and code == "OK":
            self._child(self.response_bytes, *labels).observe(record.response_bytes)

    def call_refused(self, reason: str, credential_kind: str = "") -> None:
        self._child(self.refused, reason, credential_kind).inc()

    # --- database -----------------------------------------------------------------------------

    def statement_done(self, operation: str, seconds: float) -> None:
        self._child(self.statement, operation).observe(seconds)

    def pool_waited(self, seconds: float) -> None:
        self.pool_wait.observe(seconds)

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
