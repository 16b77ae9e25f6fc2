"""The start-up check's one line: where it tried (never the password) and the reason in a few words."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from internal.postgres.embedded import EmbeddedPostgresError
from internal.postgres.reachability import (
    DatabaseUnreachable,
    check_reachable,
    connection_failure_cause,
    describe,
    embedded_start_failure,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret-pass@db.internal:6432/altalune", "db.internal:6432/altalune"),
        ("postgresql://app:s3cret-pass@127.0.0.1/altalune", "127.0.0.1:5432/altalune"),
        ("postgresql://app@h1:5432,h2:5433/altalune", "h1:5432,h2:5433/altalune"),
        ("postgresql://app@[::1]:5433/altalune", "[::1]:5433/altalune"),
        ("postgresql://app:pw@db/", "db:5432/app"),
    ],
)
def test_the_place_is_host_port_and_database_without_credentials(
    url: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(name, raising=False)
    assert describe(url) == expected


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?",
            "connection refused",
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
            'FATAL:  password authentication failed for user "app"',
            'password authentication failed for user "app"',
        ),
        ("connection timeout expired", "connection timeout expired"),
        (
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
        ),
        ("connection failed: SSL SYSCALL error: EOF detected", "SSL SYSCALL error: EOF detected"),
    ],
)
def test_the_cause_is_libpqs_reason_without_its_preamble(message: str, cause: str) -> None:
    assert connection_failure_cause(psycopg.OperationalError(message)) == cause


def test_an_unparsable_url_is_named_but_not_quoted() -> None:
    with pytest.raises(DatabaseUnreachable) as caught:
        check_reachable("postgresql://app:pa%zzword@db/altalune")
    assert "DATABASE_URL is not a valid PostgreSQL connection URL" in str(caught.value)
    assert "zz" not in str(caught.value)


def test_an_embedded_failure_is_one_line_with_the_reason_from_the_server_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    log_file = data_dir / "server.log"
    data_dir.mkdir()
    log_file.write_text("...")
    error = EmbeddedPostgresError(
        f"pg_ctl start failed (exit code 1) for data dir {data_dir}:\n"
        "waiting for server to start.... stopped waiting\npg_ctl: could not start server\n"
        f"--- last lines of {log_file} ---\n"
        '2026-01-01 00:00:00.000 GMT [7] FATAL:  could not create lock file "/tmp/.s.PGSQL.5432.lock"\n'
    )

    line = embedded_start_failure(data_dir, log_file, error)

    assert "\n" not in line
    assert line == (
        f"cannot start the embedded PostgreSQL in ALTALUNE_DATA_DIR ({data_dir}): pg_ctl start failed "
        f'(exit code 1): could not create lock file "/tmp/.s.PGSQL.5432.lock"; see {log_file}'
    )


def test_an_embedded_os_error_names_the_path(tmp_path: Path) -> None:
    data_dir = tmp_path / "file"
    error = NotADirectoryError(20, "Not a directory", str(data_dir / "postmaster.pid"))

    line = embedded_start_failure(data_dir, data_dir / "server.log", error)

    assert line == (
        f"cannot start the embedded PostgreSQL in ALTALUNE_DATA_DIR ({data_dir}): "
        f"not a directory: {data_dir / 'postmaster.pid'}"
    )


def test_an_embedded_program_that_hangs_is_one_line(tmp_path: Path) -> None:
    error = subprocess.TimeoutExpired(["/opt/pg/bin/initdb", "-D", "x"], 120)
    line = embedded_start_failure(tmp_path, tmp_path / "server.log", error)
    assert line.endswith("a PostgreSQL program did not finish within 120 s")
