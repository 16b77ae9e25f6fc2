"""Shared fixtures: one embedded PostgreSQL per test run, a migrated template, a clone per test.

* ``pg_server`` (session): an ``EmbeddedPostgres`` with ``durable=False`` in a fresh temp dir, with
  the repo's ``migrations/`` applied once into database ``altalune_template``.
* ``database_url`` (function): URL of ``test_<n>``, a ``CREATE DATABASE ... TEMPLATE`` clone of it,
  dropped after the test.
* ``empty_database_url`` (function): URL of a database with nothing in it (for migration tests).

The cluster lives on tmpfs (``/dev/shm``) when it has room: creating a database copies ~300 files,
and on this VM's ext4 that costs 65-185 ms per clone against ~10 ms on tmpfs.
``ALTALUNE_TEST_PG_TMPDIR`` picks the parent dir explicitly; ``ALTALUNE_TEST_PG_KEEP=1`` keeps the
server's temp dir (the path is printed) for post-mortems.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import uvloop
from psycopg import sql

from internal.auth.bootstrap import ensure_admin
from internal.config import Settings, load_settings
from internal.container import Container
from internal.postgres.embedded import EmbeddedPostgres
from internal.postgres.migrations import DEFAULT_MIGRATIONS_DIR, migrate_up
from internal.postgres.partitions import reconcile_partitions
from internal.server.app import AltaluneServer

TEMPLATE_DB = "altalune_template"
KEEP_ENV = "ALTALUNE_TEST_PG_KEEP"
TMPDIR_ENV = "ALTALUNE_TEST_PG_TMPDIR"
_TMPFS = Path("/dev/shm")
_TMPFS_MIN_FREE = 2 * 1024**3  # WAL alone may grow to max_wal_size (1 GB) between checkpoints

_db_counter = itertools.count(1)
_timings: dict[str, float] = {}
_clone_ms: list[float] = []


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    """Tests run on the event loop the service runs on (internal/server/runtime.py)."""
    policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
    return policy


def _temp_parent() -> Path | None:
    """Where to put the test cluster: $ALTALUNE_TEST_PG_TMPDIR, else a roomy tmpfs, else the default."""
    if explicit := os.environ.get(TMPDIR_ENV):
        return Path(explicit)
    try:
        st = os.statvfs(_TMPFS)
    except OSError:
        return None
    if os.access(_TMPFS, os.W_OK | os.X_OK) and st.f_bavail * st.f_frsize >= _TMPFS_MIN_FREE:
        return _TMPFS
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_abandoned_servers(parent: Path) -> None:
    """Stop and delete test clusters whose pytest process died without cleaning up (killed, Ctrl-C x2).

    On tmpfs an abandoned cluster holds RAM, and its postmaster would run forever. Only dirs we
    created (our uid, an ``owner.pid`` naming a dead process, no ``keep`` marker) are touched.
    """
    for root in [*parent.glob("altalune-pg-test-*"), *parent.glob("altalune-pg-scratch-*")]:
        try:
            owner = int((root / "owner.pid").read_text())
            if root.stat().st_uid != os.geteuid() or (root / "keep").exists() or _pid_alive(owner):
                continue
        except (OSError, ValueError):
            continue  # being created right now, or not one of ours
        try:
            postmaster = int((root / "data" / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            postmaster = 0  # no server (any more): only the files are left
        if postmaster and _pid_alive(postmaster):
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown; the data is throw-away
            for _ in range(100):
                if not _pid_alive(postmaster):
                    break
                time.sleep(0.05)
        _remove_tree(root)


def _new_root(kind: str) -> Path:
    """A fresh 0755 dir for a cluster, tagged with our pid so a later run can reap it if we die."""
    parent = _temp_parent()
    _reap_abandoned_servers(parent or Path(tempfile.gettempdir()))
    # mkdtemp makes a 0700 dir; as root, PostgreSQL runs as another user that must enter it.
    # Opening up this dir (which we own) is fine; its parent (/dev/shm, /tmp) is world-traversable.
    root = Path(tempfile.mkdtemp(prefix=f"altalune-pg-{kind}-", dir=parent))
    root.chmod(0o755)
    (root / "owner.pid").write_text(str(os.getpid()))
    return root


def _admin(server: EmbeddedPostgres) -> psycopg.Connection[Any]:
    return psycopg.connect(server.conninfo("postgres"), autocommit=True)


def _create_database(server: EmbeddedPostgres, name: str, template: str) -> None:
    with _admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))


def _drop_database(server: EmbeddedPostgres, name: str) -> None:
    # FORCE: a test that leaked a connection (or a pool) must not fail the next one.
    with _admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _remove_tree(path: Path) -> None:
    """Remove the server's temp dir; never fail the session over it (the OS cleans /tmp eventually)."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)  # a late-exiting backend may still be writing a file
    print(f"\nwarning: could not fully remove {path}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """One fast, non-durable PostgreSQL for the whole run, with the migrated template in place."""
    root = _new_root("test")
    server = EmbeddedPostgres(root / "data", durable=False)
    try:
        started = time.perf_counter()
        server.start()
        _timings["server start"] = time.perf_counter() - started

        started = time.perf_counter()
        with _admin(server) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        migrate_up(server.conninfo(TEMPLATE_DB), DEFAULT_MIGRATIONS_DIR, after_each=reconcile_partitions)
        with _admin(server) as conn:
            # Nobody may connect to the template by accident: a session on it makes every clone fail.
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(TEMPLATE_DB)
                )
            )
        _timings["template migrations"] = time.perf_counter() - started

        yield server
    finally:
        server.stop()
        if os.environ.get(KEEP_ENV):
            (root / "keep").touch()
            print(f"\n{KEEP_ENV} set: keeping {root} (server log: {server.log_file})")
        else:
            _remove_tree(root)


@pytest.fixture
def pg_workdir() -> Iterator[Path]:
    """Scratch dir for tests running their own cluster: on the fast parent, enterable by the run-as user."""
    root = _new_root("scratch")
    try:
        yield root
    finally:
        _remove_tree(root)


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A private database cloned from the migrated template; dropped after the test."""
    name = f"test_{next(_db_counter)}"
    started = time.perf_counter()
    _create_database(pg_server, name, TEMPLATE_DB)
    _clone_ms.append((time.perf_counter() - started) * 1000)
    try:
        yield pg_server.conninfo(name)
    finally:
        _drop_database(pg_server, name)


@pytest.fixture(scope="module")
def module_database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """Like database_url, shared by one test module (e2e modules share one running server)."""
    name = f"module_{next(_db_counter)}"
    _create_database(pg_server, name, TEMPLATE_DB)
    try:
        yield pg_server.conninfo(name)
    finally:
        _drop_database(pg_server, name)


TEST_ORIGIN = "http://console.test"
# One secrets dir per test run: the local issuer's key and nothing else (the pepper comes from env).
_SECRETS_DIR = tempfile.mkdtemp(prefix="altalune-test-secrets-")
TEST_PEPPER = "test-pepper-0123456789abcdef0123456789abcdef"


def test_settings(**overrides: str) -> Settings:
    """Settings for an in-process server: free ports, one allowed CORS origin, fast reaper."""
    env = {
        "ALTALUNE_HTTP_PORT": "0",
        "ALTALUNE_GRPC_PORT": "0",
        "ALTALUNE_CORS_ORIGINS": TEST_ORIGIN,
        "ALTALUNE_REAPER_INTERVAL_S": "0.5",
        "ALTALUNE_SHUTDOWN_GRACE_S": "2",
        "ALTALUNE_SECRETS_DIR": _SECRETS_DIR,
        "ALTALUNE_API_KEY_PEPPER": TEST_PEPPER,
        **overrides,
    }
    return load_settings(env)


@pytest_asyncio.fixture
async def container(database_url: str) -> AsyncIterator[Container]:
    """The application's object graph on a private database, without any server."""
    built = Container.build(test_settings(), database_url)
    await built.open()
    await built.db.pool.wait()
    try:
        yield built
    finally:
        await built.close()


@asynccontextmanager
async def running_server(database_url: str, **settings: str) -> AsyncIterator[AltaluneServer]:
    """A real server (both ports, on free ports) with the test settings plus these, stopped after."""
    running = AltaluneServer(test_settings(**settings), database_url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(scope="module")
async def server(module_database_url: str) -> AsyncIterator[AltaluneServer]:
    """A real server for one e2e module."""
    async with running_server(module_database_url) as running:
        yield running


def admin_token_for(server: AltaluneServer) -> str:
    """A local-issuer JWT for the bootstrap administrator of this server's database."""
    admin = ensure_admin(server.container.database_url)
    assert server.container.issuer is not None
    return server.container.issuer.mint(user_public_id=admin.public_id, email=admin.email, ttl_s=3600)


@pytest.fixture(scope="module")
def admin_token(server: AltaluneServer) -> str:
    return admin_token_for(server)


@pytest.fixture
def empty_database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A private database with no schema at all (template0); dropped after the test."""
    name = f"empty_{next(_db_counter)}"
    _create_database(pg_server, name, "template0")
    try:
        yield pg_server.conninfo(name)
    finally:
        _drop_database(pg_server, name)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _timings:
        return
    parts = [f"{what} {seconds * 1000:.0f} ms" for what, seconds in _timings.items()]
    if _clone_ms:
        parts.append(
            f"{len(_clone_ms)} template clones median {statistics.median(_clone_ms):.1f} ms, "
            f"max {max(_clone_ms):.1f} ms"
        )
    terminalreporter.write_line("embedded PostgreSQL: " + "; ".join(parts))
