"""The `altalune` command: serve, migrate, bootstrap, token, public-id."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

from internal.auth.bootstrap import DEFAULT_ADMIN_EMAIL, active_user, ensure_admin
from internal.config import REPO_ROOT, SETTING_VARIABLES, ConfigError, Settings, load_settings, unknown_variables
from internal.container import local_issuer
from internal.ids import new_public_id
from internal.logs import configure_logging, get_logger
from internal.observability.tracing import exporter_choice
from internal.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresError
from internal.postgres.migrations import migrate_up, migration_status
from internal.postgres.partitions import reconcile_partitions
from internal.postgres.reachability import DatabaseUnreachable, check_reachable, embedded_start_failure

MIGRATIONS_DIR = REPO_ROOT / "migrations"

log = get_logger("altalune")


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL if set; otherwise the embedded PostgreSQL in the data directory (started if needed).

    Either is checked once, before any command touches it: when it cannot be reached, the command
    stops with DatabaseUnreachable (one line) rather than a traceback or a pool retrying forever.
    """
    if settings.database_url:
        check_reachable(settings.database_url, source="DATABASE_URL")
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir)
    try:
        url = server.start()  # connects to it, creating the service database if needed
    except (EmbeddedPostgresError, OSError, subprocess.SubprocessError) as exc:
        log.debug("embedded PostgreSQL did not start", data_dir=str(settings.data_dir), detail=str(exc))
        raise DatabaseUnreachable(embedded_start_failure(server.data_dir, server.log_file, exc)) from None
    log.info("embedded PostgreSQL", data_dir=str(settings.data_dir), url=url, started=server.started_by_us)
    try:
        yield url
    finally:
        server.stop()


def _migrate(url: str) -> list[str]:
    applied = migrate_up(url, MIGRATIONS_DIR, after_each=reconcile_partitions)
    log.info("migrations applied" if applied else "database is up to date", applied=applied)
    return applied


async def _serve(settings: Settings, url: str) -> None:
    from internal.server.app import AltaluneServer

    # Built inside the running loop: the pool and grpc.aio bind to the loop that creates them.
    await AltaluneServer(settings, url).run_until_signalled()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from internal.server.runtime import exit_now, run

    with database(settings) as url:
        if args.migrate:
            _migrate(url)
        if settings.workers > 1:
            from internal.server.workers import Supervisor

            code = Supervisor(settings, url).run()
        else:
            run(_serve(settings, url))
            code = 0
    exit_now(code)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url:
        if args.action == "up":
            _migrate(url)
        else:
            for status in migration_status(url, MIGRATIONS_DIR):
                state = status.applied_at.isoformat() if status.applied_at else "pending"
                print(f"{status.version}  {status.name:<40} {state}")
    return 0


TOKEN_TTL_DAYS = 30


def _print_token(settings: Settings, public_id: str, email: str, ttl_days: int, *, label: str = "Token") -> bool:
    issuer = local_issuer(settings)
    if issuer is None:
        print("altalune: ALTALUNE_LOCAL_ISSUER=off, so no token can be minted here", file=sys.stderr)
        return False
    token = issuer.mint(user_public_id=public_id, email=email, ttl_s=ttl_days * 86_400)
    print(f"# {label} for {email} (user {public_id}), valid {ttl_days} days. Shown once; keep it secret.")
    print(f"# Mint another with: altalune token --email {email}")
    print(f"export ALTALUNE_TOKEN={token}")
    return True


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url:
        _migrate(url)
        admin = ensure_admin(url, email=args.email)
    if not admin.created:
        print(
            f"# Already bootstrapped: administrator {admin.email} exists. "
            f"Mint a token with: altalune token --email {admin.email}"
        )
        return 0
    return 0 if _print_token(settings, admin.public_id, admin.email, TOKEN_TTL_DAYS, label="Admin token") else 1


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings) as url:
        user = active_user(url, args.email)
    if user is None:
        print(f"altalune: no active user with email {args.email!r}", file=sys.stderr)
        return 1
    return 0 if _print_token(settings, user[0], user[1], args.ttl_days) else 1


def cmd_public_id(_settings: Settings, args: argparse.Namespace) -> int:
    for _ in range(args.n):
        print(new_public_id())
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("altalune")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="altalune",
        description="Multi-tenant resource API (gRPC + Connect).",
        epilog="Settings come from the environment (DATABASE_URL and "
        + ", ".join(SETTING_VARIABLES)
        + "); README.md lists their defaults and meaning.",
    )
    parser.add_argument("--version", action="version", version=f"altalune {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve gRPC and Connect (embedded PostgreSQL unless DATABASE_URL)")
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    serve.set_defaults(run=cmd_serve)
    migrate = commands.add_parser("migrate", help="apply or list migrations")
    migrate.add_argument(
        "action",
        nargs="?",
        choices=("up", "status"),
        default="up",
        help="up: apply pending migrations (the default); status: list every migration and when it was applied",
    )
    migrate.set_defaults(run=cmd_migrate)
    bootstrap = commands.add_parser(
        "bootstrap", help="migrate, create the first administrator and print its token (idempotent)"
    )
    bootstrap.add_argument("--email", default=DEFAULT_ADMIN_EMAIL, help=f"default {DEFAULT_ADMIN_EMAIL}")
    bootstrap.set_defaults(run=cmd_bootstrap)
    token = commands.add_parser("token", help="mint a local-issuer token for an active user")
    token.add_argument("--email", required=True)
    token.add_argument("--ttl-days", type=int, default=TOKEN_TTL_DAYS, choices=range(1, 366), metavar="1..365")
    token.set_defaults(run=cmd_token)
    public_id = commands.add_parser("public-id", help="print new public ids")
    public_id.add_argument("-n", type=int, default=1, help="how many (default 1)")
    public_id.set_defaults(run=cmd_public_id)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        exporter_choice(os.environ)  # a mistyped OTEL_* stops start-up here, not in each worker
    except ConfigError as exc:
        print(f"altalune: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    for name, suggestion in unknown_variables(os.environ):
        log.warning("unknown setting ignored", variable=name, did_you_mean=suggestion)
    try:
        return int(args.run(settings, args))
    except DatabaseUnreachable as exc:
        # Plain text in both log formats, like the configuration error: it is the whole answer.
        print(f"altalune: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.error("cannot start", error=str(exc))
        return 1
