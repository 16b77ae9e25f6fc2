"""The start-up database check: one connection attempt with a short timeout, and one line that says
where it tried and why it failed.

Without it a wrong DATABASE_URL shows up as a pool warning every second and calls that wait 5 s
for `unavailable` (serve), or as a driver traceback (migrate, bootstrap). The line names host, port
and database, never the password (DATABASE_URL may carry one)."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from internal.postgres.embedded import EmbeddedPostgresError

__all__ = ["CONNECT_TIMEOUT_S", "DatabaseUnreachable", "check_reachable", "describe", "embedded_start_failure"]

# libpq's minimum is 2 s; psycopg applies it per address tried (a refused port fails at once).
CONNECT_TIMEOUT_S = 5
# A password this short could match unrelated text; scrubbing it would garble the message.
_MIN_SCRUBBED_SECRET = 4


class DatabaseUnreachable(Exception):
    """The database a command needs cannot be reached; the message is one line for the operator."""


def describe(conninfo: str) -> str:
    """`host:port/dbname` of a connection string (every host of a multi-host one), without credentials."""
    params = conninfo_to_dict(conninfo)
    hosts = str(params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "default socket")
    ports = str(params.get("port") or os.environ.get("PGPORT") or "5432").split(",")
    user = params.get("user") or os.environ.get("PGUSER") or _os_user()
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    places = []
    for index, host in enumerate(hosts.split(",")):
        port = ports[index] if index < len(ports) else ports[-1]
        places.append(f"{f'[{host}]' if ':' in host else host}:{port or '5432'}")
    return f"{','.join(places)}/{dbname}"


def check_reachable(conninfo: str, *, source: str = "DATABASE_URL") -> None:
    """Connect once and close; raise DatabaseUnreachable naming `source`, where and why otherwise."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        # libpq's parse errors quote the offending part of the string, which may be the password.
        raise DatabaseUnreachable(
            f"{source} is not a valid PostgreSQL connection URL (postgresql://user:password@host:port/dbname)"
        ) from None
    try:
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True):
            pass
    except psycopg.Error as exc:
        cause = _scrub(connection_failure_cause(exc), str(params.get("password") or ""))
        raise DatabaseUnreachable(
            f"cannot connect to the database at {source} ({describe(conninfo)}): {cause}"
        ) from None


def connection_failure_cause(exc: BaseException) -> str:
    """The reason in a libpq connection error, e.g. "connection refused", without its preamble
    (`connection failed: connection to server at "h", port p failed: `) and hint lines."""
    lines = str(exc).strip().splitlines()
    first = lines[0].strip() if lines else type(exc).__name__
    _, found, reason = first.rpartition(" failed: ")
    text = re.sub(r"^(?:FATAL|ERROR|PANIC):\s+", "", reason if found else first)
    return _lower_first(text)


def embedded_start_failure(data_dir: Path, log_file: Path, exc: BaseException) -> str:
    """One line for an embedded server that did not start: the data dir, the reason, and where
    the server's own log is (the full detail is logged at debug level)."""
    line = f"cannot start the embedded PostgreSQL in ALTALUNE_DATA_DIR ({data_dir}): {_embedded_cause(data_dir, exc)}"
    if log_file.is_file():
        return f"{line}; see {log_file}"
    if len(str(exc).strip().splitlines()) > 1:
        return f"{line} (ALTALUNE_LOG_LEVEL=debug shows the details)"
    return line


def _embedded_cause(data_dir: Path, exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return _lower_first(exc.strerror) + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"a PostgreSQL program did not finish within {exc.timeout:.0f} s"
    if not isinstance(exc, EmbeddedPostgresError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # EmbeddedPostgresError: a summary line, then the program's output and the tail of server.log.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    summary = lines[0].replace(f" for data dir {data_dir}", "").rstrip(":") if lines else "failed"
    details = [line for line in lines[1:] if not line.startswith("---")]
    fatal = [line for line in details if re.search(r"\b(?:FATAL|PANIC):", line)]
    if fatal:
        reason = re.sub(r"^.*?\b(?:FATAL|PANIC):\s+", "", fatal[-1])
    else:
        reason = next((line for line in details if "error" in line.lower()), details[0] if details else "")
    return f"{summary}: {reason}" if reason else summary


def _scrub(text: str, secret: str) -> str:
    """libpq does not echo passwords, but a message is never trusted to keep one out."""
    return text.replace(secret, "***") if len(secret) >= _MIN_SCRUBBED_SECRET else text


def _lower_first(text: str) -> str:
    """ "Connection refused" reads as a clause after a colon; "SSL ..." keeps its capitals."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"
