"""Pure parts of metrics and tracing: when tracing is on, what a statement is called, how a
caller's traceparent is read, the settings that restrict /metrics, when a worker's counts reach the
files the other workers read."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from internal.config import ConfigError, load_settings
from internal.observability.metrics import (
    LATENCY_BUCKETS,
    MULTIPROC_DIR_ENV,
    RPC_LABELS,
    SIZE_BUCKETS,
    STATEMENT_BUCKETS,
    Metrics,
)
from internal.observability.tracing import Tracing, exporter_from_environment, trace_ids_from_header
from internal.postgres.observed import operation_of


@pytest.mark.parametrize(
    "env",
    [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}],
    ids=["nothing set", "exporter none", "sdk disabled"],
)
def test_tracing_is_off_unless_an_exporter_is_asked_for(env: dict[str, str]) -> None:
    assert exporter_from_environment(env) is None
    assert not Tracing.from_environment(env).enabled


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp"}, HttpExporter),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, HttpExporter),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, HttpExporter),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, GrpcExporter),
        ({"OTEL_TRACES_EXPORTER": "console"}, ConsoleSpanExporter),
    ],
)
def test_the_standard_variables_choose_the_exporter(env: dict[str, str], kind: type[SpanExporter]) -> None:
    exporter = exporter_from_environment(env)
    assert isinstance(exporter, kind)
    assert exporter is not None
    exporter.shutdown()


@pytest.mark.parametrize(
    "env",
    [{"OTEL_TRACES_EXPORTER": "zipkin"}, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}],
)
def test_an_unsupported_exporter_stops_start_up(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="OTEL_"):
        exporter_from_environment(env)


@pytest.mark.parametrize(
    ("header", "ids"),
    [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        ),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6-00f067aa0ba902b7-01", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_a_traceparent_is_read_only_when_valid(header: str | None, ids: tuple[str, str] | None) -> None:
    assert trace_ids_from_header(header) == ids


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        ("SELECT 1", "SELECT"),
        ("  \n  with x as (select 1) select * from x", "WITH"),
        (b"INSERT INTO t VALUES (1)", "INSERT"),
        ("BEGIN; SELECT 1; COMMIT", "BEGIN"),
        (sql.SQL("UPDATE {} SET a = 1").format(sql.Identifier("t")), "UPDATE"),
        (sql.Composed([sql.Composed([sql.SQL("DELETE FROM t")])]), "DELETE"),
        (sql.Composed([]), "EMPTY"),
        ("", "EMPTY"),
    ],
)
def test_a_statement_is_named_by_its_first_keyword(query: str | bytes | sql.Composable, operation: str) -> None:
    assert operation_of(query) == operation


def test_a_metrics_token_must_be_long_enough() -> None:
    assert load_settings({"ALTALUNE_METRICS_TOKEN": "x" * 16}).metrics_token == "x" * 16
    assert load_settings({}).metrics_token is None
    assert load_settings({"ALTALUNE_METRICS": "off"}).metrics is False
    with pytest.raises(ConfigError, match="ALTALUNE_METRICS_TOKEN"):
        load_settings({"ALTALUNE_METRICS_TOKEN": "short"})
    with pytest.raises(ConfigError, match="ALTALUNE_METRICS"):
        load_settings({"ALTALUNE_METRICS": "maybe"})


_GET_EMPLOYEE = "altalune.v1.EmployeeService/GetEmployee"


class _Answered:
    """A call's record, as the counters read it."""

    rpc: str | None = _GET_EMPLOYEE
    transport: str = "grpc"
    code: str = "ok"
    request_bytes: int | None = 40
    response_bytes: int | None = 120


def test_a_worker_writes_its_counts_for_the_others_when_it_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Multiprocess mode: a call's figures stay in the worker's tallies (the hot path takes no
    lock and no file write) until a flush writes them, once."""
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    # What the library chooses at import in a worker, whose environment names the directory.
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # type: ignore[no-untyped-call]
    metrics = Metrics([_GET_EMPLOYEE])

    def shared(name: str) -> float:
        """What a scrape answered by another worker would read: the files."""
        text, _ = metrics.exposition(None)
        found = [
            sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if sample.name == name and sample.labels.get("grpc_method") == "GetEmployee"
        ]
        return sum(found)

    for _ in range(3):
        metrics.call_started("altalune.v1.EmployeeService", "GetEmployee", "grpc")
        metrics.call_written(_Answered(), 0.002)
    assert shared("grpc_server_handled_total") == 0

    metrics.flush()
    assert shared("grpc_server_handled_total") == 3
    assert shared("grpc_server_started_total") == 3
    assert shared("grpc_server_handling_seconds_count") == 3
    assert shared("altalune_rpc_response_bytes_sum") == 360

    metrics.call_written(_Answered(), 0.002)
    metrics.flush()
    metrics.flush()  # nothing new: nothing written twice
    assert shared("grpc_server_handled_total") == 4


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family.name == name
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_tallied_figures_are_what_the_library_would_have_counted() -> None:
    """The hot path adds to tallies laid out as the library keeps a histogram (a count per
    bucket, then the sum); the figures after a flush must be those of the library's own
    `observe()` for the same values, bucket edges and beyond-the-last-bucket included. Fails if
    an upgrade of prometheus_client changes that layout."""
    metrics = Metrics([_GET_EMPLOYEE])
    reference = CollectorRegistry()
    labels = {"grpc_type": "unary", "grpc_service": "altalune.v1.EmployeeService", "grpc_method": "GetEmployee"}
    handling = Histogram("grpc_server_handling_seconds", "", RPC_LABELS, buckets=LATENCY_BUCKETS, registry=reference)
    sizes = {
        name: Histogram(name, "", RPC_LABELS, buckets=SIZE_BUCKETS, registry=reference)
        for name in ("altalune_rpc_request_bytes", "altalune_rpc_response_bytes")
    }
    statement = Histogram(
        "altalune_db_statement_seconds", "", ("operation",), buckets=STATEMENT_BUCKETS, registry=reference
    )
    pool_wait = Histogram("altalune_db_pool_wait_seconds", "", buckets=STATEMENT_BUCKETS, registry=reference)
    handled = Counter("grpc_server_handled_total", "", (*RPC_LABELS, "grpc_code"), registry=reference)

    durations = [0.0, 0.0005, 0.00050001, 0.001, 0.003, 30.0, 31.0, 1e9]
    byte_counts = [0, 64, 65, 1000, 4194304, 4194305, 10**9]
    for transport in ("grpc", "connect"):
        for duration, size in zip(durations, [*byte_counts, 7], strict=True):
            record = _Answered()
            record.transport, record.request_bytes, record.response_bytes = transport, size, size + 1
            metrics.call_written(record, duration)
            handling.labels(*labels.values(), transport).observe(duration)
            sizes["altalune_rpc_request_bytes"].labels(*labels.values(), transport).observe(size)
            sizes["altalune_rpc_response_bytes"].labels(*labels.values(), transport).observe(size + 1)
            handled.labels(*labels.values(), transport, "OK").inc()
    for seconds in [0.0, 0.0001, 0.00011, 0.004, 30.0, 99.0]:
        metrics.statement_done("SELECT", seconds)
        statement.labels("SELECT").observe(seconds)
        metrics.pool_waited(seconds)
        pool_wait.observe(seconds)

    metrics.flush()
    metrics.flush()  # a second flush adds nothing
    for name in [
        "grpc_server_handling_seconds",
        "altalune_rpc_request_bytes",
        "altalune_rpc_response_bytes",
        "altalune_db_statement_seconds",
        "altalune_db_pool_wait_seconds",
        "grpc_server_handled",
    ]:
        ours = _samples(metrics.registry, name)
        assert ours, name
        assert ours == _samples(reference, name), name
