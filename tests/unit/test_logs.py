"""What the logs may hold: a traceback carries no local variables (they held the authorization header
and request fields), a line is one write (worker processes share stderr), and the standard library's
loggers (uvicorn, psycopg, asyncio, the embedded PostgreSQL launcher) go through the same pipeline,
so in JSON mode every line is a JSON object."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator

import pytest
import structlog

from internal.logs import LineHandler, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """These tests configure structlog into a buffer; the rest of the suite keeps its configuration."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@contextlib.contextmanager
def logging_into(stream: io.StringIO, fmt: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging writing into `stream` for the block.

    The root logger is put back inside the same test phase: its handlers include pytest's capture
    handlers for this phase, which pytest detaches itself when the phase ends.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_level, access_disabled = uvicorn_error.level, logging.getLogger("uvicorn.access").disabled
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        configure_logging(fmt=fmt, level="info")
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        uvicorn_error.setLevel(uvicorn_level)
        logging.getLogger("uvicorn.access").disabled = access_disabled
        logging.captureWarnings(False)


class WriteRecorder(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _fail_with_secret_in_a_local() -> None:
    authorization = "Bearer ak_23456789abcdef_23456789abcdeg_SECRETSECRETSECRETSECRETSECRETSECRETSECR"
    email = "ann.private@example.com"
    raise ValueError(f"boom ({len(authorization) + len(email)})")


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("source", ["structlog", "stdlib"])
def test_a_logged_exception_shows_no_local_variables(fmt: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, fmt, monkeypatch):
        try:
            _fail_with_secret_in_a_local()
        except ValueError:
            if source == "structlog":
                get_logger("test").exception("unhandled error")
            else:
                logging.getLogger("asyncio").exception("Task exception was never retrieved")

    out = captured.getvalue()
    assert "boom" in out, "the exception itself is logged"
    assert "SECRETSECRET" not in out
    assert "ann.private@example.com" not in out
    if fmt == "json":
        record = json.loads(out.strip())
        assert record["exception"][0]["exc_type"] == "ValueError"
        assert record["level"] == "error"


def test_a_json_line_is_written_in_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = WriteRecorder()
    with logging_into(recorder, "json", monkeypatch):
        get_logger("test").info("rpc", code="ok")

    assert len(recorder.writes) == 1
    assert recorder.writes[0].endswith("\n")
    assert json.loads(recorder.writes[0])["event"] == "rpc"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_standard_library_line_is_written_in_one_piece(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = WriteRecorder()
    with logging_into(recorder, fmt, monkeypatch):
        logging.getLogger("psycopg.pool").warning("error connecting in %r: %s", "pool-1", "connection refused")

    assert len(recorder.writes) == 1, recorder.writes
    assert recorder.writes[0].endswith("\n")
    assert recorder.writes[0].count("\n") == 1
    assert "error connecting in 'pool-1': connection refused" in recorder.writes[0]


def test_a_standard_library_line_is_one_json_object_with_its_arguments_formatted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured = io.StringIO()
    with logging_into(captured, "json", monkeypatch):
        # uvicorn passes an ANSI-coloured copy of the message as an extra field.
        logging.getLogger("uvicorn.error").info(
            "Started server process [%d]", 123, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"}
        )
        logging.getLogger("internal.postgres.embedded").info("initialising PostgreSQL cluster in %s", "/srv/pg")

    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["event"] == "Started server process [123]"
    assert (first["logger"], first["level"]) == ("uvicorn.error", "info")
    assert first["timestamp"].endswith("Z")
    assert "color_message" not in first
    assert second["event"] == "initialising PostgreSQL cluster in /srv/pg"
    assert second["logger"] == "internal.postgres.embedded"


def test_structlog_and_standard_library_lines_carry_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, "json", monkeypatch):
        structlog.contextvars.bind_contextvars(request_id="r-1")
        try:
            get_logger("altalune.rpc").info("rpc", code="ok")
            logging.getLogger("psycopg.pool").warning("pool warning")
        finally:
            structlog.contextvars.clear_contextvars()

    own, foreign = (json.loads(line) for line in captured.getvalue().splitlines())
    for record, logger in ((own, "altalune.rpc"), (foreign, "psycopg.pool")):
        assert {"event", "level", "timestamp", "logger", "request_id"} <= record.keys(), record
        assert record["logger"] == logger
        assert record["request_id"] == "r-1"


def test_console_mode_renders_standard_library_lines_like_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, "console", monkeypatch):
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 123)

    line = captured.getvalue()
    assert "Started server process [123]" in line
    assert "[uvicorn.error]" in line
    assert "[info" in line


def test_levels_and_the_disabled_uvicorn_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, "json", monkeypatch):
        logging.getLogger("psycopg").debug("below the configured level")
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /healthz HTTP/1.1" 200')
        logging.getLogger("uvicorn.error").info("Waiting for application startup.")

    events = [json.loads(line)["event"] for line in captured.getvalue().splitlines()]
    assert events == ["Waiting for application startup."]


def test_configuring_again_replaces_the_handler_rather_than_stacking_it(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, "json", monkeypatch):
        configure_logging(fmt="json", level="info")
        configure_logging(fmt="json", level="info")
        logging.getLogger("uvicorn.error").info("once")

        assert [type(h) for h in logging.getLogger().handlers] == [LineHandler]
    assert captured.getvalue().count('"once"') == 1


def test_a_log_call_whose_arguments_do_not_match_still_gives_one_json_line(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, "json", monkeypatch):
        logging.getLogger("some.library").info("%d items in %s", 3)

    [line] = captured.getvalue().splitlines()
    assert json.loads(line)["event"].startswith("%d items in %s")


def test_warnings_become_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    with logging_into(captured, "json", monkeypatch), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", UserWarning, stacklevel=1)

    [line] = captured.getvalue().splitlines()
    record = json.loads(line)
    assert (record["logger"], record["level"]) == ("py.warnings", "warning")
    assert "deprecated thing" in record["event"]
