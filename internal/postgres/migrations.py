"""Plain-SQL migrations: ``migrations/NNNN_name.sql`` applied in order, tracked in ``schema_migrations``.

Each file runs in its own transaction together with its tracking row (and the optional ``after_each``
hook), so a failing migration leaves no trace. Only one migrator works on a database at a time:
the others wait on a session advisory lock, then find nothing left to do.

The lock is polled with ``pg_try_advisory_lock`` rather than taken with a blocking
``pg_advisory_lock``: a session blocked inside ``pg_advisory_lock()`` is a running statement with
an open snapshot, and commands the lock holder may run in a migration (``CREATE INDEX
CONCURRENTLY``, ``DETACH PARTITION CONCURRENTLY``) wait for every such transaction to finish —
while the waiter waits for the holder: a deadlock (observed with 4 concurrent migrators). Between
polls a waiting session is idle, holds no snapshot and blocks nobody.

Already-applied files are verified by SHA-256 checksum; an edited file is an error naming it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

__all__ = [
    "DEFAULT_MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "Migration",
    "MigrationChecksumError",
    "MigrationError",
    "MigrationStatus",
    "discover_migrations",
    "migrate_up",
    "migration_status",
]

DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# Key of the session advisory lock held while migrating (advisory locks are per database).
# 0x616c74616c756e65 is "altalune" in ASCII; it fits in a signed bigint.
MIGRATION_LOCK_KEY = 0x616C74616C756E65

_FILE_RE = re.compile(r"^(?P<version>\d{4,})_(?P<name>[A-Za-z0-9][A-Za-z0-9_\-]*)\.sql$")
_POLL_INTERVAL_S = 0.1

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text,
    checksum   text,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

AfterEach = Callable[[psycopg.Connection[Any]], object]


class MigrationError(RuntimeError):
    """Migrations could not be read or applied; the message names the file."""


class MigrationChecksumError(MigrationError):
    """An already-applied migration file was changed after it was applied."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One ``NNNN_name.sql`` file."""

    version: str
    name: str
    path: Path
    sql: bytes
    checksum: str  # sha256 hex of the file's bytes


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """State of one migration; ``applied_at`` is None while pending."""

    version: str
    name: str
    applied_at: datetime | None
    file_present: bool = True  # False: recorded as applied but its file is gone
    checksum_matches: bool | None = None  # None: pending or file missing

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def discover_migrations(directory: Path) -> list[Migration]:
    """The ``*.sql`` files of ``directory`` in version order; malformed names are an error."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[str, Migration] = {}
    for path in directory.iterdir():
        if path.suffix != ".sql" or not path.is_file():
            continue
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name!r} in {directory} is not named NNNN_name.sql "
                "(digits, underscore, letters/digits/_/-)"
            )
        version = match["version"]
        if version in found:
            raise MigrationError(
                f"migration version {version} is used by both {found[version].path.name!r} and {path.name!r}"
            )
        content = path.read_bytes()
        found[version] = Migration(
            version=version,
            name=match["name"],
            path=path,
            sql=content,
            checksum=hashlib.sha256(content).hexdigest(),
        )
    return sorted(found.values(), key=lambda m: (int(m.version), m.version))


def migrate_up(
    conninfo: str,
    directory: Path = DEFAULT_MIGRATIONS_DIR,
    *,
    after_each: AfterEach | None = None,
    lock_timeout_s: float = 600.0,
) -> list[str]:
    """Apply every pending migration of ``directory``; return the versions applied by this call.

    ``after_each(conn)`` runs inside each migration's transaction, after its SQL and before its
    tracking row; if it raises, the migration is rolled back as a whole.
    """
    migrations = discover_migrations(directory)
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True, application_name="altalune-migrate") as conn:
        _acquire_lock(conn, lock_timeout_s)
        try:
            conn.execute(_CREATE_TABLE)
            applied = _applied_checksums(conn)
            _verify_checksums(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql, prepare=False)
                        if after_each is not None:
                            after_each(conn)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                            "VALUES (%s, %s, %s, clock_timestamp())",
                            (migration.version, migration.name, migration.checksum),
                        )
                except Exception as exc:  # SQL error or the hook's: either way nothing was kept
                    raise MigrationError(f"migration {migration.path.name} failed and was rolled back: {exc}") from exc
                applied_now.append(migration.version)
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


def migration_status(conninfo: str, directory: Path = DEFAULT_MIGRATIONS_DIR) -> list[MigrationStatus]:
    """Every migration file with its applied time (None if pending), plus applied rows whose file is gone."""
    migrations = discover_migrations(directory)
    with psycopg.connect(conninfo, autocommit=True, application_name="altalune-migrate") as conn:
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        rows: list[tuple[str, str | None, str | None, datetime]] = []
        if row is not None and row[0]:
            rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations").fetchall()
    recorded = {version: (name, checksum, applied_at) for version, name, checksum, applied_at in rows}
    result: list[MigrationStatus] = []
    for m in migrations:
        if m.version in recorded:
            _, checksum, applied_at = recorded.pop(m.version)
            result.append(MigrationStatus(m.version, m.name, applied_at, checksum_matches=checksum == m.checksum))
        else:
            result.append(MigrationStatus(m.version, m.name, None))
    for version, (name, _, applied_at) in recorded.items():
        result.append(MigrationStatus(version, name or "", applied_at, file_present=False))
    return sorted(result, key=lambda s: (int(s.version) if s.version.isdigit() else -1, s.version))


def _acquire_lock(conn: psycopg.Connection[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        if row is not None and row[0]:
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another migrator has held the migration lock for over {timeout_s:.0f}s; "
                f"see pg_locks where locktype = 'advisory' and objid = {MIGRATION_LOCK_KEY & 0xFFFFFFFF}"
            )
        time.sleep(_POLL_INTERVAL_S)


def _applied_checksums(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {str(version): checksum for version, checksum in rows}


def _verify_checksums(migrations: list[Migration], applied: dict[str, str | None]) -> None:
    for m in migrations:
        recorded = applied.get(m.version, None)
        if m.version in applied and recorded is not None and recorded != m.checksum:
            raise MigrationChecksumError(
                f"migration {m.path.name} was changed after it was applied "
                f"(recorded sha256 {recorded[:12]}…, file now {m.checksum[:12]}…); "
                "add a new migration instead of editing an applied one"
            )
