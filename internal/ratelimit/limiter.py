"""Per-credential rate limits: which bucket a call is charged to, and the GCRA decision.

Buckets (keys are public ids, never secrets):
- an API key: one bucket per key, at its project's override (ALTALUNE_RATE_LIMIT_PROJECTS) or the
  default (ALTALUNE_RATE_LIMIT);
- a user: one bucket per user at the default rate, except for calls naming a project that has an
  override, which go to a bucket per (user, project) at that project's rate. So a user cannot
  multiply the default by spreading calls over projects, and a project given more (or `off`) gets
  it for its own calls only;
- a peer IP address, for calls without a valid credential (ALTALUNE_RATE_LIMIT_PEER, by default
  the default rate): charged when authentication refuses a call, checked before authentication.

GCRA is the token bucket written as one timestamp per bucket (the "theoretical arrival time"):
a call costs `1 / rate` seconds and is allowed while the debt stays within `burst / rate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from internal.addresses import split_peer
from internal.auth.principal import Principal, PrincipalKind
from internal.config import Rate, RateLimits
from internal.errors import RateLimited
from internal.ratelimit.table import Mode, SharedTable, key_hash

# Under a flood, one CallRefused event per bucket per this many seconds and process: the refusal
# log stays a record of who was limited, not a write amplifier (the metrics count every refusal).
EVENT_INTERVAL_S = 1.0
_EVENT_MEMORY = 10_000  # buckets remembered for that; forgotten all at once beyond


@dataclass(frozen=True, slots=True)
class Bucket:
    scope: str  # "api_key" | "user" | "peer": whose calls fill it (the metrics label too)
    hashed: int
    rate: Rate
    interval_s: float
    capacity_s: float

    @classmethod
    def of(cls, scope: str, key: str, rate: Rate) -> Bucket:
        interval = 1.0 / rate.per_second
        return cls(scope, key_hash(f"{scope}:{key}"), rate, interval, rate.burst * interval)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # calls the bucket would allow right now, after this one
    wait_s: float  # until one more call would be allowed (0 while remaining > 0)


class RateLimiter:
    def __init__(
        self,
        limits: RateLimits,
        table: SharedTable,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = limits.default
        self._projects = dict(limits.projects)
        self._peer = limits.peer
        self._table = table
        self._clock = clock
        self._evented: dict[int, float] = {}

    def credential_bucket(self, principal: Principal, project_hint: str | None) -> Bucket | None:
        """The bucket of an authenticated call, None when no limit applies to it."""
        if principal.kind is PrincipalKind.API_KEY:
            project = principal.key_project.public_id if principal.key_project is not None else None
            rate = self._projects.get(project, self._default) if project is not None else self._default
            return Bucket.of("api_key", principal.public_id, rate) if rate is not None else None
        if project_hint is not None and project_hint in self._projects:
            rate = self._projects[project_hint]
            return Bucket.of("user", f"{principal.public_id}@{project_hint}", rate) if rate is not None else None
        return Bucket.of("user", principal.public_id, self._default) if self._default is not None else None

    def peer_bucket(self, address: str | None) -> Bucket | None:
        if self._peer is None or not address:
            return None
        return Bucket.of("peer", peer_ip(address), self._peer)

    def take(self, bucket: Bucket) -> Decision:
        """Spend one call from the bucket, if it has one."""
        return self._decide(bucket, Mode.TAKE)

    def peek(self, bucket: Bucket) -> Decision:
        """Whether the bucket would allow a call now, without spending it."""
        return self._decide(bucket, Mode.PEEK)

    def charge(self, bucket: Bucket) -> None:
        """Spend one call whatever the bucket holds (a refused credential costs its peer)."""
        self._table.update(bucket.hashed, self._clock(), bucket.interval_s, bucket.capacity_s, Mode.CHARGE)

    def _decide(self, bucket: Bucket, mode: Mode) -> Decision:
        now = self._clock()
        interval, capacity = bucket.interval_s, bucket.capacity_s
        allowed, tat = self._table.update(bucket.hashed, now, interval, capacity, mode)
        if not allowed:
            return Decision(False, 0, max(tat - now - capacity, 0.0))
        left = capacity - (tat - now)  # time's worth of calls still in the bucket
        remaining = math.floor(left / interval + 1e-9)
        return Decision(True, remaining, 0.0 if remaining > 0 else max(interval - left, 0.0))

    def refused(self, bucket: Bucket, decision: Decision) -> RateLimited:
        """The error for a refused call, and whether it becomes an event (the metrics count every
        one: altalune_rpc_refused_total, from the call's record)."""
        error = RateLimited(bucket.scope, bucket.rate.text, bucket.rate.burst, decision.wait_s)
        error.record_event = self._first_this_second(bucket.hashed)
        return error

    def _first_this_second(self, hashed: int) -> bool:
        now = self._clock()
        last = self._evented.get(hashed)
        if last is not None and now - last < EVENT_INTERVAL_S:
            return False
        if len(self._evented) >= _EVENT_MEMORY:
            self._evented.clear()
        self._evented[hashed] = now
        return True


def peer_ip(address: str) -> str:
    """`127.0.0.1:5000` / `[::1]:5000` / `203.0.113.7` (how both ports name a caller) -> the address alone."""
    return split_peer(address)[0]


def headers(bucket: Bucket, decision: Decision) -> dict[str, str]:
    """The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers-09) and, on a refusal,
    Retry-After. The policy is the configured steady rate (`q` calls per `w` seconds); `r` is what
    the bucket allows right now, `t` the seconds until it allows one more (0 while `r` > 0)."""
    rate = bucket.rate
    fields = {
        "ratelimit-policy": f'"{bucket.scope}";q={rate.count};w={int(rate.period_s)}',
        "ratelimit": f'"{bucket.scope}";r={decision.remaining};t={math.ceil(decision.wait_s - 1e-9)}',
    }
    if not decision.allowed:
        fields["retry-after"] = str(max(1, math.ceil(decision.wait_s - 1e-9)))
    return fields
