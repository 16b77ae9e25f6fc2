"""The SQL migration runner, against real PostgreSQL databases."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from internal.postgres.migrations import (
    DEFAULT_MIGRATIONS_DIR,
    MigrationChecksumError,
    MigrationError,
    discover_migrations,
    migrate_up,
    migration_status,
)

pytestmark = pytest.mark.integration


def _write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_text(content)


def _tracked(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version").fetchall()
    return [(str(v), str(n), str(c)) for v, n, c in rows]


def _exists(url: str, relation: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()
    return bool(row and row[0])


def test_pending_migrations_are_applied_in_version_order_and_tracked_with_their_checksum(
    empty_database_url: str, tmp_path: Path
) -> None:
    # 0010 would come before 0002 if the runner went by directory order; 0002 needs 0001's table.
    _write(
        tmp_path,
        {
            "0010_add_index.sql": "CREATE INDEX notes_body ON notes (body);",
            "0001_create_notes.sql": "CREATE TABLE notes (id int PRIMARY KEY);",
            "0002_add_body.sql": "ALTER TABLE notes ADD COLUMN body text;",
            "README.md": "not a migration",
        },
    )

    applied = migrate_up(empty_database_url, tmp_path)

    assert applied == ["0001", "0002", "0010"]
    assert _tracked(empty_database_url) == [
        ("0001", "create_notes", hashlib.sha256(b"CREATE TABLE notes (id int PRIMARY KEY);").hexdigest()),
        ("0002", "add_body", hashlib.sha256(b"ALTER TABLE notes ADD COLUMN body text;").hexdigest()),
        ("0010", "add_index", hashlib.sha256(b"CREATE INDEX notes_body ON notes (body);").hexdigest()),
    ]
    assert _exists(empty_database_url, "notes_body")


def test_running_again_applies_only_migrations_added_since(empty_database_url: str, tmp_path: Path) -> None:
    _write(tmp_path, {"0001_counter.sql": "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);"})
    assert migrate_up(empty_database_url, tmp_path) == ["0001"]
    assert migrate_up(empty_database_url, tmp_path) == []

    _write(tmp_path, {"0002_bump.sql": "UPDATE counter SET n = n + 1;"})
    assert migrate_up(empty_database_url, tmp_path) == ["0002"]
    assert migrate_up(empty_database_url, tmp_path) == []

    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT n FROM counter").fetchone() == (2,)


def test_a_file_may_hold_many_statements_dollar_quoting_and_percent_signs(
    empty_database_url: str, tmp_path: Path
) -> None:
    _write(
        tmp_path,
        {
            "0001_functions.sql": """
                CREATE TABLE labels (v text NOT NULL);
                INSERT INTO labels VALUES ('100%'), ('%s'), ('50%% off');
                CREATE FUNCTION shout(t text) RETURNS text LANGUAGE plpgsql AS $$
                BEGIN
                    RETURN upper(t) || '!';  -- a ; inside a function body
                END;
                $$;
            """
        },
    )

    migrate_up(empty_database_url, tmp_path)

    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT v FROM labels ORDER BY v").fetchall() == [
            ("%s",),
            ("100%",),
            ("50%% off",),
        ]
        assert conn.execute("SELECT shout('hi')").fetchone() == ("HI!",)


def test_a_failing_migration_leaves_no_trace_and_stops_later_ones(empty_database_url: str, tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "0001_ok.sql": "CREATE TABLE first (id int);",
            "0002_broken.sql": "CREATE TABLE second (id int); INSERT INTO first VALUES (1); SELECT 1/0;",
            "0003_later.sql": "CREATE TABLE third (id int);",
        },
    )

    with pytest.raises(MigrationError, match=r"0002_broken\.sql.*division by zero"):
        migrate_up(empty_database_url, tmp_path)

    assert [v for v, _, _ in _tracked(empty_database_url)] == ["0001"]
    assert _exists(empty_database_url, "first")
    assert not _exists(empty_database_url, "second")
    assert not _exists(empty_database_url, "third")
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM first").fetchone() == (0,)

    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE second (id int);")  # fixed before it applied
    assert migrate_up(empty_database_url, tmp_path) == ["0002", "0003"]


def test_editing_an_applied_migration_is_an_error_naming_the_file(empty_database_url: str, tmp_path: Path) -> None:
    _write(tmp_path, {"0001_create.sql": "CREATE TABLE t (id int);"})
    migrate_up(empty_database_url, tmp_path)
    _write(tmp_path, {"0001_create.sql": "CREATE TABLE t (id bigint);", "0002_next.sql": "CREATE TABLE u ();"})

    with pytest.raises(MigrationChecksumError, match=r"0001_create\.sql was changed after it was applied"):
        migrate_up(empty_database_url, tmp_path)

    assert not _exists(empty_database_url, "u")
    status = migration_status(empty_database_url, tmp_path)
    assert [(s.version, s.checksum_matches) for s in status] == [("0001", False), ("0002", None)]


def test_four_concurrent_migrators_apply_each_migration_exactly_once_without_errors(
    empty_database_url: str, tmp_path: Path
) -> None:
    # Not idempotent on purpose: a second application would fail (table exists) or double-count.
    _write(
        tmp_path,
        {
            "0001_log.sql": "CREATE TABLE applied_log (version text NOT NULL);",
            "0002_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE slow (id int);"
            " INSERT INTO applied_log VALUES ('0002');",
            "0003_index.sql": "CREATE INDEX slow_id ON slow (id); INSERT INTO applied_log VALUES ('0003');",
            "0004_more.sql": "CREATE TABLE more (id int); INSERT INTO applied_log VALUES ('0004');",
        },
    )
    start = threading.Barrier(4)
    results: list[list[str]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def migrator() -> None:
        start.wait()
        try:
            applied = migrate_up(empty_database_url, tmp_path)
        except BaseException as exc:
            with lock:
                failures.append(exc)
        else:
            with lock:
                results.append(applied)

    threads = [threading.Thread(target=migrator) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(results) == 4
    assert sorted(v for applied in results for v in applied) == ["0001", "0002", "0003", "0004"]
    with psycopg.connect(empty_database_url) as conn:
        log = conn.execute("SELECT version FROM applied_log ORDER BY version").fetchall()
    assert log == [("0002",), ("0003",), ("0004",)]
    assert [v for v, _, _ in _tracked(empty_database_url)] == ["0001", "0002", "0003", "0004"]


def test_status_lists_applied_migrations_with_their_time_and_pending_ones_without(
    empty_database_url: str, tmp_path: Path
) -> None:
    _write(tmp_path, {"0001_a.sql": "CREATE TABLE a ();", "0002_b.sql": "CREATE TABLE b ();"})
    before = migration_status(empty_database_url, tmp_path)
    assert [(s.version, s.name, s.applied) for s in before] == [("0001", "a", False), ("0002", "b", False)]

    migrate_up(empty_database_url, tmp_path)
    _write(tmp_path, {"0003_c.sql": "CREATE TABLE c ();"})
    after = migration_status(empty_database_url, tmp_path)

    assert [(s.version, s.name, s.applied) for s in after] == [
        ("0001", "a", True),
        ("0002", "b", True),
        ("0003", "c", False),
    ]
    assert after[0].applied_at is not None
    assert after[1].applied_at is not None
    assert after[0].applied_at <= after[1].applied_at
    assert after[2].applied_at is None
    assert all(s.checksum_matches for s in after[:2])


def test_after_each_hook_runs_inside_each_migrations_transaction(empty_database_url: str, tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "0001_audit.sql": "CREATE TABLE audit (note text NOT NULL);",
            "0002_widgets.sql": "CREATE TABLE widgets (id int);",
        },
    )
    seen: list[tuple[pq.TransactionStatus, bool, bool]] = []

    def hook(conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT to_regclass('widgets') IS NOT NULL, txid_current_if_assigned() IS NOT NULL")
        widgets_visible, in_write_txn = row.fetchone() or (False, False)
        seen.append((conn.info.transaction_status, bool(widgets_visible), bool(in_write_txn)))
        conn.execute("INSERT INTO audit VALUES ('hook ran')")

    assert migrate_up(empty_database_url, tmp_path, after_each=hook) == ["0001", "0002"]

    # Inside a transaction that already did the migration's writes (it created the table).
    assert seen == [
        (pq.TransactionStatus.INTRANS, False, True),
        (pq.TransactionStatus.INTRANS, True, True),
    ]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (2,)


def test_a_failing_after_each_hook_rolls_back_its_writes_and_the_migration(
    empty_database_url: str, tmp_path: Path
) -> None:
    _write(tmp_path, {"0001_audit.sql": "CREATE TABLE audit (note text NOT NULL);"})
    migrate_up(empty_database_url, tmp_path)
    _write(tmp_path, {"0002_widgets.sql": "CREATE TABLE widgets (id int);"})

    def hook(conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO audit VALUES ('written by the hook')")
        raise RuntimeError("hook gave up")

    with pytest.raises(MigrationError, match=r"0002_widgets\.sql.*hook gave up"):
        migrate_up(empty_database_url, tmp_path, after_each=hook)

    assert not _exists(empty_database_url, "widgets")
    assert [v for v, _, _ in _tracked(empty_database_url)] == ["0001"]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (0,)


def test_badly_named_or_duplicate_migration_files_are_rejected_before_touching_the_database(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "bad", {"0001_ok.sql": "", "2_short.sql": ""})
    with pytest.raises(MigrationError, match=r"'2_short\.sql'.*NNNN_name\.sql"):
        discover_migrations(tmp_path / "bad")

    _write(tmp_path / "dup", {"0001_a.sql": "", "0001_b.sql": ""})
    with pytest.raises(MigrationError, match="0001 is used by both"):
        discover_migrations(tmp_path / "dup")

    with pytest.raises(MigrationError, match="does not exist"):
        discover_migrations(tmp_path / "missing")


def test_each_test_database_is_a_fully_migrated_copy_of_the_template(database_url: str) -> None:
    status = migration_status(database_url, DEFAULT_MIGRATIONS_DIR)
    assert all(s.applied and s.checksum_matches for s in status)
    assert _exists(database_url, "schema_migrations")
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE scratch_only_here (id int)")
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres") as conn:
        row = conn.execute(
            "SELECT datallowconn, datistemplate FROM pg_database WHERE datname = 'altalune_template'"
        ).fetchone()
    assert row == (False, True)
