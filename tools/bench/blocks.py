"""`make bench-blocks`: what the block size of LIST (project_id) partitions costs, in bare SQL.

For each block size, on a fresh throw-away embedded PostgreSQL (fsync off): migrations 0001-0003
(`employees` and `api_keys` as the service has them), N projects with one employee each, and one
partition per block in both tables, made with the same DDL as `ensure_project_blocks()`. Then it
prints: ATTACH of one more block, a new backend's first and second statement (partition descriptor
and first touch of a partition), the cost and memory of opening every partition, random-tenant
read latency on one backend (cold, then warm) and that backend's private memory. It asserts nothing.
The figures behind the block size and connection settings in docs/tenancy.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from internal.postgres.embedded import EmbeddedPostgres
from internal.postgres.migrations import DEFAULT_MIGRATIONS_DIR, migrate_up

CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"
READ = (
    "SELECT id, public_id, name FROM employees WHERE project_id = %(p)s AND public_id = %(e)s "
    "AND EXISTS (SELECT 1 FROM projects WHERE id = %(p)s AND deleted_at IS NULL)"
)


def _private_mb(conn: psycopg.Connection[Any]) -> float:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    kb = 0
    for line in Path(f"/proc/{row[0]}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean", "Private_Dirty")):
            kb += int(line.split()[1])
    return kb / 1024


def _attach(conn: psycopg.Connection[Any], table: str, block: int, size: int) -> float:
    """Create and attach one block partition; returns the ATTACH time in ms."""
    conn.execute(
        f"CREATE TABLE {table}_b{block} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)"
    )
    values = ",".join(str(v) for v in range(block * size, (block + 1) * size))
    started = time.perf_counter()
    conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {table}_b{block} FOR VALUES IN ({values})")
    return (time.perf_counter() - started) * 1000


def _employee_id(project_id: int) -> str:
    return str(project_id).rjust(14, "e")


def _timed_read(conn: psycopg.Connection[Any], project_id: int) -> float:
    started = time.perf_counter()
    conn.execute(READ, {"p": project_id, "e": _employee_id(project_id)}).fetchall()
    return (time.perf_counter() - started) * 1000


def _p99(values: list[float]) -> float:
    return sorted(values)[max(int(len(values) * 0.99) - 1, 0)]


def measure(pg: EmbeddedPostgres, migrations: Path, projects: int, size: int, reads: int) -> str:
    database = f"blocks_{projects}_{size}"
    with psycopg.connect(pg.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    url = pg.conninfo(database)
    migrate_up(url, migrations)
    blocks = projects // size + 2
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO projects (public_id, name, timezone, environment) "
            "SELECT lpad(n::text, 14, 'p'), 'P' || n, 'UTC', 'live' FROM generate_series(1, %s::int) AS n",
            (projects,),
        )
        for block in range(blocks):
            with conn.transaction():
                for table in ("employees", "api_keys"):
                    _attach(conn, table, block, size)
        conn.execute(
            "INSERT INTO employees (project_id, public_id, name, email, role, department, status) "
            "SELECT id, lpad(id::text, 14, 'e'), 'E', 'e' || id || '@example.com', 'R', 'D', 'active' FROM projects"
        )
        conn.execute("VACUUM ANALYZE")
        attach = [_attach(conn, table, blocks, size) for table in ("employees", "api_keys")]
    rng = random.Random(7)
    first, second = [], []
    for _ in range(5):
        with psycopg.connect(url, options=CUSTOM_PLANS, autocommit=True) as conn:
            first.append(_timed_read(conn, rng.randint(1, projects)))
            second.append(_timed_read(conn, rng.randint(1, projects)))
    with psycopg.connect(url, options=CUSTOM_PLANS, autocommit=True) as conn:
        started = time.perf_counter()
        for table in ("employees", "api_keys"):
            conn.execute(f"EXPLAIN SELECT 1 FROM {table} WHERE public_id = 'x'")
        open_all_ms = (time.perf_counter() - started) * 1000
        open_all_mb = _private_mb(conn)
    with psycopg.connect(url, options=CUSTOM_PLANS, autocommit=True) as conn:
        start_mb = _private_mb(conn)
        cold = [_timed_read(conn, rng.randint(1, projects)) for _ in range(reads)]
        warm = [_timed_read(conn, rng.randint(1, projects)) for _ in range(reads)]
        end_mb = _private_mb(conn)
    return (
        f"{projects:>7} {size:>6} {blocks + 1:>6} {attach[0]:>8.1f} {attach[1]:>8.1f} "
        f"{min(first):>6.1f}-{max(first):<6.1f} {statistics.median(second):>6.2f} "
        f"{open_all_ms:>7.0f} {open_all_mb:>7.1f} "
        f"{statistics.median(cold):>6.3f}/{_p99(cold):<6.3f} {statistics.median(warm):>6.3f}/{_p99(warm):<6.3f} "
        f"{start_mb:>5.1f}->{end_mb:<6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projects", default="10000,100000", help="comma-separated project counts")
    parser.add_argument("--block-sizes", default="256,1024", help="comma-separated ids per partition")
    parser.add_argument("--reads", type=int, default=20_000, help="random reads per phase (cold, warm)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="altalune-blocks-"))
    root.chmod(0o755)
    migrations = root / "migrations"
    migrations.mkdir()
    for path in sorted(DEFAULT_MIGRATIONS_DIR.glob("000[123]_*.sql")):
        shutil.copy(path, migrations / path.name)
    pg = EmbeddedPostgres(root / "pg", durable=False)
    pg.start()
    try:
        print(
            f"{'projects':>7} {'block':>6} {'parts':>6} {'att emp':>8} {'att api':>8} {'1st stmt ms':>13} "
            f"{'2nd ms':>6} {'open all':>7} {'MB':>7} {'cold p50/p99':>13} {'warm p50/p99':>13} {'backend MB':>12}"
        )
        for projects in (int(n) for n in args.projects.split(",")):
            for size in (int(s) for s in args.block_sizes.split(",")):
                print(measure(pg, migrations, projects, size, args.reads), flush=True)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
