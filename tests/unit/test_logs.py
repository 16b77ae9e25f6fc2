"""What the logs may hold: a traceback in JSON mode carries no local variables (they held the
authorization header and request fields), and a line is one write (worker processes share stderr)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from internal.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """These tests configure logging into a buffer; the rest of the suite keeps its configuration."""
    saved = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    level = logging.getLogger().level
    yield
    structlog.configure(**saved)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)


def _fail_with_secret_in_a_local() -> None:
    authorization = "Bearer ak_23456789abcdef_23456789abcdeg_SECRETSECRETSECRETSECRETSECRETSECRETSECR"
    email = "ann.private@example.com"
    raise ValueError(f"boom ({len(authorization) + len(email)})")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_logged_exception_shows_no_local_variables(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    configure_logging(fmt=fmt, level="info")
    try:
        _fail_with_secret_in_a_local()
    except ValueError:
        get_logger("test").exception("unhandled error")

    out = captured.getvalue()
    assert "boom" in out, "the exception itself is logged"
    assert "SECRETSECRET" not in out
    assert "ann.private@example.com" not in out
    if fmt == "json":
        record = json.loads(out.strip())
        assert record["exception"][0]["exc_type"] == "ValueError"


def test_a_json_line_is_written_in_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr(sys, "stderr", Recorder())
    configure_logging(fmt="json", level="info")
    get_logger("test").info("rpc", code="ok")

    assert len(writes) == 1
    assert writes[0].endswith("\n")
    assert json.loads(writes[0])["event"] == "rpc"
