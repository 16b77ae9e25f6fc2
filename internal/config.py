"""Configuration from the environment, validated once at start-up."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from internal.addresses import IPNetwork
from internal.ids import is_public_id

REPO_ROOT = Path(__file__).resolve().parent.parent

# Browser origins allowed when ALTALUNE_CORS_ORIGINS is not set: local development servers only
# (Vite, Next.js / CRA). Setting the variable replaces this list; set it to "none" for no CORS.
DEV_CORS_ORIGINS = (
    "http://localhost:3000",
    "http://localhost:5173",
    "http://127.0.0.1:3000",
    "http://127.0.0.1:5173",
)


# The default number of workers is the number of cores, up to this: each worker holds up to
# ALTALUNE_DB_POOL_MAX connections plus one, and the database's connection limit is shared.
DEFAULT_MAX_WORKERS = 8


def default_workers() -> int:
    return min(available_cores(), DEFAULT_MAX_WORKERS)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), the default number of workers."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Every ALTALUNE_* variable the service reads, plus the ones it knowingly leaves alone (the token a
# shell keeps for clients, the test suite's own), so a misspelled one can be named at start-up.
SETTING_VARIABLES = (
    "ALTALUNE_WORKERS",
    "ALTALUNE_HOST",
    "ALTALUNE_GRPC_PORT",
    "ALTALUNE_HTTP_PORT",
    "ALTALUNE_DATA_DIR",
    "ALTALUNE_PG_RUN_AS",
    "ALTALUNE_LOG_FORMAT",
    "ALTALUNE_LOG_LEVEL",
    "ALTALUNE_CORS_ORIGINS",
    "ALTALUNE_MAX_DEADLINE_MS",
    "ALTALUNE_MAX_CONCURRENT_CALLS",
    "ALTALUNE_SHUTDOWN_GRACE_S",
    "ALTALUNE_HEADER_TIMEOUT_S",
    "ALTALUNE_MAX_CONNECTIONS",
    "ALTALUNE_GRPC_MAX_CONNECTION_AGE_S",
    "ALTALUNE_DB_POOL_MIN",
    "ALTALUNE_DB_POOL_MAX",
    "ALTALUNE_DB_POOL_MAX_LIFETIME_S",
    "ALTALUNE_REAPER_INTERVAL_S",
    "ALTALUNE_IDEMPOTENCY_RETENTION_H",
    "ALTALUNE_EVENT_RETENTION_DAYS",
    "ALTALUNE_SECRETS_DIR",
    "ALTALUNE_API_KEY_PEPPER",
    "ALTALUNE_LOCAL_ISSUER",
    "ALTALUNE_OIDC_ISSUER",
    "ALTALUNE_OIDC_AUDIENCE",
    "ALTALUNE_OIDC_JWKS_URL",
    "ALTALUNE_METRICS",
    "ALTALUNE_METRICS_TOKEN",
    "ALTALUNE_RATE_LIMIT",
    "ALTALUNE_RATE_LIMIT_BURST",
    "ALTALUNE_RATE_LIMIT_PROJECTS",
    "ALTALUNE_RATE_LIMIT_PEER",
)
_LEFT_ALONE = frozenset({"ALTALUNE_TOKEN"})
_LEFT_ALONE_PREFIXES = ("ALTALUNE_TEST_", "ALTALUNE_WORKER_", "ALTALUNE_FUZZ_")


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """ALTALUNE_* variables nothing reads, each with the closest real name (None if none is close)."""
    found = []
    for name in sorted(env):
        if not name.startswith("ALTALUNE_") or name in SETTING_VARIABLES or name in _LEFT_ALONE:
            continue
        if name.startswith(_LEFT_ALONE_PREFIXES):
            continue
        close = difflib.get_close_matches(name, SETTING_VARIABLES, n=1, cutoff=0.8)
        found.append((name, close[0] if close else None))
    return found


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


_RATE = re.compile(r"^(\d{1,9})/([smh])(?::(\d{1,9}))?$")
_PERIOD_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit as written (`100/s`, `6000/m`, `500/h`) and its burst: how many calls may come
    at once before the steady rate applies. The burst defaults to one second's worth of the rate
    (at least 1), so `100/s` allows 100 at once and then one every 10 ms."""

    count: int
    period_s: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.count / self.period_s

    @property
    def text(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.period_s]
        return f"{self.count}/{unit}"


def default_burst(count: int, period_s: float) -> int:
    return max(1, math.ceil(count / period_s))


def parse_rate(name: str, raw: str, *, allow_burst: bool = True) -> Rate | None:
    """`N/s`, `N/m`, `N/h` (with `:B` for a burst of B where allowed), or `off` (None)."""
    value = raw.strip().lower()
    if value == "off":
        return None
    found = _RATE.fullmatch(value)
    if found is None or (found.group(3) is not None and not allow_burst):
        shape = "N/s, N/m or N/h" + (" (optionally :BURST)" if allow_burst else "")
        raise ConfigError(f"{name} must be {shape} or off, got {raw!r}")
    count, period_s = int(found.group(1)), _PERIOD_S[found.group(2)]
    burst = int(found.group(3)) if found.group(3) is not None else default_burst(count, period_s)
    if count < 1 or burst < 1:
        raise ConfigError(f"{name} must allow at least one call (use off for no limit), got {raw!r}")
    return Rate(count, period_s, burst)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-credential rate limits (internal/ratelimit). `default` applies to every API key and
    user, `projects` overrides it for one project (None there: no limit), `peer` applies per IP
    address to calls without a valid credential."""

    default: Rate | None = None
    projects: tuple[tuple[str, Rate | None], ...] = ()
    peer: Rate | None = None

    @property
    def enabled(self) -> bool:
        return self.default is not None or self.peer is not None or any(r for _, r in self.projects)


def _rate_limits(env: Mapping[str, str]) -> RateLimits:
    default = parse_rate("ALTALUNE_RATE_LIMIT", env.get("ALTALUNE_RATE_LIMIT", "") or "off", allow_burst=False)
    raw_burst = env.get("ALTALUNE_RATE_LIMIT_BURST", "")
    if raw_burst:
        if default is None:
            raise ConfigError("ALTALUNE_RATE_LIMIT_BURST needs ALTALUNE_RATE_LIMIT")
        burst = _number(env, "ALTALUNE_RATE_LIMIT_BURST", 1, low=1, high=1_000_000_000)
        default = Rate(default.count, default.period_s, burst)
    raw_peer = env.get("ALTALUNE_RATE_LIMIT_PEER", "")
    peer = parse_rate("ALTALUNE_RATE_LIMIT_PEER", raw_peer) if raw_peer else default
    projects: dict[str, Rate | None] = {}
    for entry in (e.strip() for e in env.get("ALTALUNE_RATE_LIMIT_PROJECTS", "").split(",")):
        if not entry:
            continue
        project, _, rate = entry.partition("=")
        project = project.strip()
        if not is_public_id(project) or not rate:
            raise ConfigError(
                f"ALTALUNE_RATE_LIMIT_PROJECTS entries are <project id>=<rate or off>, got {entry[:80]!r}"
            )
        if project in projects:
            raise ConfigError(f"ALTALUNE_RATE_LIMIT_PROJECTS names {project} twice")
        projects[project] = parse_rate(f"ALTALUNE_RATE_LIMIT_PROJECTS ({project})", rate)
    return RateLimits(default=default, projects=tuple(sorted(projects.items())), peer=peer)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the process reads from its environment."""

    # Serving processes sharing both ports (internal/server/workers.py); 1 = serve in this process.
    workers: int = field(default_factory=lambda: default_workers())
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    database_url: str | None = None
    data_dir: Path = REPO_ROOT / ".data" / "postgres"
    log_format: str = "console"
    log_level: str = "info"
    cors_origins: tuple[str, ...] = DEV_CORS_ORIGINS
    max_request_bytes: int = 4 * 1024 * 1024
    max_deadline_ms: int = 30_000
    max_concurrent_calls: int = 512
    shutdown_grace_s: float = 10.0
    header_timeout_s: float = 10.0  # request headers must arrive within this (slow clients hold sockets)
    max_connections: int = 1000  # open connections per port and worker process
    grpc_max_connection_age_s: float = 120.0  # then GOAWAY: the bound on a request grpcio never dispatches
    pool_min_size: int = 2
    pool_max_size: int = 8
    pool_max_lifetime_s: float = 3600.0
    reaper_interval_s: float = 30.0
    # How long a write's request_id answers its retries, and how long events are kept.
    idempotency_retention_h: float = 24.0
    event_retention_days: float = 365.0
    # The API key pepper file and the local issuer's key live here (0700 dir, 0600 files).
    secrets_dir: Path = REPO_ROOT / ".data" / "secrets"
    # Overrides the pepper file; every replica must use the same value or keys stop matching.
    api_key_pepper: bytes | None = None
    local_issuer: bool = True
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    # GET /metrics on the HTTP port (docs/operating.md); with a token it answers only a scraper
    # that sends `Authorization: Bearer <token>`.
    metrics: bool = True
    metrics_token: str | None = None
    rate_limits: RateLimits = RateLimits()
    # Proxies whose X-Forwarded-For names the caller (internal/addresses.py `caller_address`).
    trusted_proxies: tuple[IPNetwork, ...] = ()


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, *, low: N, high: N) -> N:
    """Parse with the default's type (int or float) and check the range."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "") or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _origins(raw: str) -> tuple[str, ...]:
    if raw.strip().lower() == "none":
        return ()
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin == "*":
            raise ConfigError("ALTALUNE_CORS_ORIGINS must list origins explicitly; '*' is not allowed")
        if not origin.startswith(("http://", "https://")):
            raise ConfigError(f"ALTALUNE_CORS_ORIGINS entry {origin!r} must start with http:// or https://")
    return origins


def _pepper(env: Mapping[str, str]) -> bytes | None:
    raw = env.get("ALTALUNE_API_KEY_PEPPER", "")
    if not raw:
        return None
    if len(raw.encode()) < 32:
        raise ConfigError("ALTALUNE_API_KEY_PEPPER must be at least 32 characters (use `openssl rand -hex 32`)")
    return raw.encode()


def _oidc(env: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    names = ("ALTALUNE_OIDC_ISSUER", "ALTALUNE_OIDC_AUDIENCE", "ALTALUNE_OIDC_JWKS_URL")
    values = tuple(env.get(n, "") or None for n in names)
    if any(values) and not all(values):
        raise ConfigError(f"set all of {', '.join(names)} or none of them")
    url = values[2]
    if url is not None and not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ConfigError("ALTALUNE_OIDC_JWKS_URL must be https:// (plain http only on loopback)")
    return values[0], values[1], url


def _trusted_proxies(env: Mapping[str, str]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in (e.strip() for e in env.get("ALTALUNE_TRUSTED_PROXIES", "").split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                f"ALTALUNE_TRUSTED_PROXIES: {entry[:60]!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _metrics_token(env: Mapping[str, str]) -> str | None:
    raw = env.get("ALTALUNE_METRICS_TOKEN", "")
    if not raw:
        return None
    if len(raw) < 16 or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ConfigError("ALTALUNE_METRICS_TOKEN must be at least 16 printable ASCII characters, no spaces")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every ALTALUNE_* variable; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL") or None
    if database_url is not None and not database_url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    pool_min = _number(env, "ALTALUNE_DB_POOL_MIN", 2, low=1, high=100)
    pool_max = _number(env, "ALTALUNE_DB_POOL_MAX", 8, low=1, high=100)
    if pool_max < pool_min:
        raise ConfigError("ALTALUNE_DB_POOL_MAX must be >= ALTALUNE_DB_POOL_MIN")
    oidc = _oidc(env)
    return Settings(
        workers=_number(env, "ALTALUNE_WORKERS", default_workers(), low=1, high=64),
        host=env.get("ALTALUNE_HOST", "") or "127.0.0.1",
        grpc_port=_number(env, "ALTALUNE_GRPC_PORT", 50051, low=0, high=65535),
        http_port=_number(env, "ALTALUNE_HTTP_PORT", 8080, low=0, high=65535),
        database_url=database_url,
        data_dir=Path(env.get("ALTALUNE_DATA_DIR", "") or REPO_ROOT / ".data" / "postgres"),
        log_format=_choice(env, "ALTALUNE_LOG_FORMAT", "console", ("console", "json")),
        log_level=_choice(env, "ALTALUNE_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        cors_origins=_origins(env.get("ALTALUNE_CORS_ORIGINS", ",".join(DEV_CORS_ORIGINS))),
        max_deadline_ms=_number(env, "ALTALUNE_MAX_DEADLINE_MS", 30_000, low=100, high=600_000),
        max_concurrent_calls=_number(env, "ALTALUNE_MAX_CONCURRENT_CALLS", 512, low=1, high=100_000),
        shutdown_grace_s=_number(env, "ALTALUNE_SHUTDOWN_GRACE_S", 10.0, low=0.0, high=300.0),
        header_timeout_s=_number(env, "ALTALUNE_HEADER_TIMEOUT_S", 10.0, low=0.1, high=300.0),
        max_connections=_number(env, "ALTALUNE_MAX_CONNECTIONS", 1000, low=1, high=1_000_000),
        grpc_max_connection_age_s=_number(env, "ALTALUNE_GRPC_MAX_CONNECTION_AGE_S", 120.0, low=1.0, high=86_400.0),
        pool_min_size=pool_min,
        pool_max_size=pool_max,
        pool_max_lifetime_s=_number(env, "ALTALUNE_DB_POOL_MAX_LIFETIME_S", 3600.0, low=10.0, high=86_400.0),
        reaper_interval_s=_number(env, "ALTALUNE_REAPER_INTERVAL_S", 30.0, low=0.1, high=3600.0),
        idempotency_retention_h=_number(env, "ALTALUNE_IDEMPOTENCY_RETENTION_H", 24.0, low=0.001, high=24.0 * 90),
        event_retention_days=_number(env, "ALTALUNE_EVENT_RETENTION_DAYS", 365.0, low=0.001, high=36_500.0),
        secrets_dir=Path(env.get("ALTALUNE_SECRETS_DIR", "") or REPO_ROOT / ".data" / "secrets"),
        api_key_pepper=_pepper(env),
        local_issuer=_choice(env, "ALTALUNE_LOCAL_ISSUER", "on", ("on", "off")) == "on",
        oidc_issuer=oidc[0],
        oidc_audience=oidc[1],
        oidc_jwks_url=oidc[2],
        metrics=_choice(env, "ALTALUNE_METRICS", "on", ("on", "off")) == "on",
        metrics_token=_metrics_token(env),
        rate_limits=_rate_limits(env),
        trusted_proxies=_trusted_proxies(env),
    )
