"""A command that needs the database and cannot reach it stops at once: exit code 1 and one line on
stderr saying where it tried and why, never the password and never a traceback.

Without the start-up check `serve` logged "serving" and then a pool warning every second while
calls waited 5 s for `unavailable`; `serve --migrate`, `migrate` and `bootstrap` printed a driver
traceback. The embedded server's failures name the data directory and its server.log instead."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients import free_port
from tests.e2e.test_process import ALTALUNE, serve_env

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-Pa55word"
DATABASE_COMMANDS = [
    ("serve",),
    ("serve", "--migrate"),
    ("migrate",),
    ("migrate", "status"),
    ("bootstrap",),
    ("token", "--email", "admin@example.com"),
]


async def run_with_deadline(env: dict[str, str], *args: str, deadline_s: float = 10.0) -> tuple[int, str, float]:
    """Run `altalune args...`; the exit code, stderr and how long it took (killed after `deadline_s`)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ALTALUNE), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), deadline_s)
    except TimeoutError:
        pytest.fail(f"`altalune {' '.join(args)}` still running after {deadline_s} s")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(), time.monotonic() - started


def the_one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def embedded_env(tmp_path: Path, data_dir: Path) -> dict[str, str]:
    env = serve_env("", tmp_path / "secrets", free_port(), free_port(), ALTALUNE_DATA_DIR=str(data_dir))
    env.pop("DATABASE_URL")
    return env


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does, from the backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=" ".join)
async def test_a_closed_database_port_is_one_line_naming_it_without_the_password(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    port = free_port()
    url = f"postgresql://altalune:{PASSWORD}@127.0.0.1:{port}/altalune"
    env = serve_env(url, tmp_path / "secrets", free_port(), free_port(), ALTALUNE_LOCAL_ISSUER="on")

    code, err, elapsed = await run_with_deadline(env, *args)

    assert code == 1, err
    line = the_one_line(err)
    assert line == (
        f"altalune: cannot connect to the database at DATABASE_URL (127.0.0.1:{port}/altalune): connection refused"
    )
    assert PASSWORD not in err
    assert elapsed < 10


async def test_in_json_log_mode_it_is_the_same_plain_line(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://altalune:{PASSWORD}@127.0.0.1:{port}/altalune"
    env = serve_env(url, tmp_path / "secrets", free_port(), free_port(), ALTALUNE_LOG_FORMAT="json")

    code, err, _ = await run_with_deadline(env, "serve")

    assert code == 1
    assert the_one_line(err).startswith(f"altalune: cannot connect to the database at DATABASE_URL (127.0.0.1:{port}/")


async def test_a_database_that_never_answers_is_given_up_on_within_seconds(silent_port: int, tmp_path: Path) -> None:
    url = f"postgresql://altalune:{PASSWORD}@127.0.0.1:{silent_port}/altalune"
    env = serve_env(url, tmp_path / "secrets", free_port(), free_port())

    code, err, elapsed = await run_with_deadline(env, "serve", deadline_s=15)

    assert code == 1, err
    line = the_one_line(err)
    assert f"DATABASE_URL (127.0.0.1:{silent_port}/altalune)" in line
    assert "timeout" in line
    assert PASSWORD not in err
    assert elapsed < 10


@pytest.mark.parametrize("args", [("serve",), ("migrate",)], ids=" ".join)
async def test_an_unusable_data_dir_is_one_line_naming_it(args: tuple[str, ...], tmp_path: Path) -> None:
    data_dir = tmp_path / "not-a-directory"
    data_dir.write_text("a regular file where the data directory should be\n")

    code, err, _ = await run_with_deadline(embedded_env(tmp_path, data_dir), *args)

    assert code == 1, err
    line = the_one_line(err)
    assert line.startswith(f"altalune: cannot start the embedded PostgreSQL in ALTALUNE_DATA_DIR ({data_dir}): ")
    assert "not a directory" in line


async def test_an_embedded_server_that_fails_to_start_points_to_its_server_log(
    pg_workdir: Path, tmp_path: Path
) -> None:
    data_dir = pg_workdir / "data"
    env = embedded_env(tmp_path, data_dir)
    code, err, _ = await run_with_deadline(env, "migrate", deadline_s=60)
    assert code == 0, err
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("no_such_setting = on\n")

    code, err, _ = await run_with_deadline(env, "serve", deadline_s=60)

    assert code == 1, err
    line = the_one_line(err)
    assert line.startswith(f"altalune: cannot start the embedded PostgreSQL in ALTALUNE_DATA_DIR ({data_dir}): ")
    assert "postgresql.conf" in line, "the reason, from the server's log"
    assert line.endswith(f"; see {data_dir / 'server.log'}")
    assert os.path.isfile(data_dir / "server.log")
