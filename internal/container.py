"""Builds everything once at start-up: config -> pool -> repos -> services -> handlers -> routes.

This is the only place that calls constructors. `SERVICES` is the one list of the services the
contract offers: routes, access rules, gRPC reflection and health, and the test suite's clients and
contract checks are all derived from it, so adding a domain adds one line there.
"""

from __future__ import annotations

import asyncio
import contextlib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from google.protobuf.descriptor import ServiceDescriptor

from altalune.v1 import api_key_pb2, employee_pb2, event_pb2, iam_pb2, permission_pb2, project_pb2, role_pb2, user_pb2
from internal.auth.access import Authenticator, Authorizer
from internal.auth.credentials import ApiKeyHasher, load_or_create_pepper
from internal.auth.interceptors import Authenticate, Authorize
from internal.auth.oidc import JwksCache, LocalIssuer, TokenVerifier, TrustedIssuer, UserMatch
from internal.auth.policy import AccessRule, access_rules
from internal.auth.store import AccessStore
from internal.config import Settings
from internal.domain.api_key.handler import ApiKeyHandler
from internal.domain.api_key.repo import ApiKeyRepo
from internal.domain.api_key.service import ApiKeyService
from internal.domain.employee.handler import EmployeeHandler
from internal.domain.employee.repo import EmployeeRepo
from internal.domain.employee.service import EmployeeService
from internal.domain.event.handler import EventHandler
from internal.domain.event.repo import EventRepo
from internal.domain.event.service import EventService
from internal.domain.iam.handler import IamHandler
from internal.domain.iam.repo import IamRepo
from internal.domain.iam.service import IamService
from internal.domain.permission.handler import PermissionHandler
from internal.domain.permission.repo import PermissionRepo
from internal.domain.permission.service import PermissionService
from internal.domain.project.handler import ProjectHandler
from internal.domain.project.model import timezone_rule
from internal.domain.project.repo import ProjectRepo
from internal.domain.project.service import ProjectService
from internal.domain.role.handler import RoleHandler
from internal.domain.role.repo import RoleRepo
from internal.domain.role.service import RoleService
from internal.domain.user.handler import UserHandler
from internal.domain.user.repo import UserRepo
from internal.domain.user.service import UserService
from internal.events.interceptors import RefusalEvents, TrustedWrites
from internal.events.refusals import RefusalLog
from internal.events.registry import WriteRpc, event_types, write_rpcs
from internal.observability.metrics import Metrics
from internal.observability.tracing import Tracing
from internal.postgres.database import Database, create_pool
from internal.postgres.observed import observed_cursors
from internal.postgres.partitions import warm_connection
from internal.ratelimit.interceptors import CredentialLimit, PeerLimit
from internal.ratelimit.limiter import RateLimiter
from internal.ratelimit.table import SharedTable
from internal.rpc.endpoints import ServiceBinding, UnaryRoute, build_routes
from internal.rpc.interceptors import CallScope, Drain, default_chain
from internal.validation import RequestValidator

PEPPER_FILE = "api-key-pepper"
TRACE_FLUSH_S = 1.0
LOCAL_ISSUER_KEY_FILE = "local-issuer.pem"


def local_issuer(settings: Settings) -> LocalIssuer | None:
    """The development issuer, created on first use; None when ALTALUNE_LOCAL_ISSUER=off."""
    return LocalIssuer.load_or_create(settings.secrets_dir / LOCAL_ISSUER_KEY_FILE) if settings.local_issuer else None


def api_key_hasher(settings: Settings) -> ApiKeyHasher:
    return ApiKeyHasher(settings.api_key_pepper or load_or_create_pepper(settings.secrets_dir / PEPPER_FILE))


@dataclass(frozen=True, slots=True)
class Shared:
    """What the container builds before the handlers; a handler's builder takes what it needs."""

    db: Database
    hasher: ApiKeyHasher
    projects: ProjectService
    writes: dict[str, WriteRpc]  # the write RPCs of the contract, by route path
    rpcs: tuple[str, ...]  # every RPC of the contract, "pkg.Service/Method"

    def event_repo(self) -> EventRepo:
        return EventRepo(
            event_types=event_types(self.writes),
            rpcs=self.rpcs,
            resources=sorted({write.resource for write in self.writes.values()}),
        )


@dataclass(frozen=True, slots=True)
class Registration:
    """One service of the contract (the only service of its generated `_pb2` module) and how to
    build its handler."""

    module: ModuleType
    build: Callable[[Shared], object]

    @property
    def descriptor(self) -> ServiceDescriptor:
        (service,) = self.module.DESCRIPTOR.services_by_name.values()
        return service  # type: ignore[no-any-return]


SERVICES: tuple[Registration, ...] = (
    Registration(project_pb2, lambda s: ProjectHandler(s.projects)),
    Registration(employee_pb2, lambda s: EmployeeHandler(EmployeeService(s.db, EmployeeRepo()))),
    Registration(api_key_pb2, lambda s: ApiKeyHandler(ApiKeyService(s.db, ApiKeyRepo(), s.hasher))),
    Registration(user_pb2, lambda s: UserHandler(UserService(s.db, UserRepo()))),
    Registration(role_pb2, lambda s: RoleHandler(RoleService(s.db, RoleRepo()))),
    Registration(permission_pb2, lambda s: PermissionHandler(PermissionService(s.db, PermissionRepo()))),
    Registration(iam_pb2, lambda s: IamHandler(IamService(s.db, IamRepo()))),
    Registration(event_pb2, lambda s: EventHandler(EventService(s.db, s.event_repo()))),
)


def contract() -> list[ServiceDescriptor]:
    """The services the contract offers, in SERVICES order."""
    return [registration.descriptor for registration in SERVICES]


@dataclass
class Container:
    settings: Settings
    database_url: str
    db: Database
    projects: ProjectService
    hasher: ApiKeyHasher
    issuer: LocalIssuer | None
    jwks: JwksCache | None
    rules: dict[str, AccessRule]
    writes: dict[str, WriteRpc]
    routes: dict[str, UnaryRoute]
    service_names: list[str]
    drain: Drain
    validator: RequestValidator
    refusals: RefusalLog
    metrics: Metrics | None
    tracing: Tracing
    rate_limiter: RateLimiter | None

    @classmethod
    def build(
        cls,
        settings: Settings,
        database_url: str,
        *,
        wake_upkeep: Callable[[], None] = lambda: None,
        tracing: Tracing | None = None,
    ) -> Container:
        """Wire the object graph. Nothing touches the network here; see open()."""
        services = contract()
        rpcs = tuple(f"{s.full_name}/{m.name}" for s in services for m in s.methods)
        metrics = Metrics(rpcs) if settings.metrics else None
        tracing = tracing or Tracing.from_environment()
        cursor, client_cursor = observed_cursors(metrics, tracing)
        pool = create_pool(
            database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            max_lifetime_s=settings.pool_max_lifetime_s,
            statement_timeout_ms=settings.max_deadline_ms,
            configure=warm_connection,
            cursor_factory=cursor,
        )
        db = Database(pool, statement_timeout_ms=settings.max_deadline_ms, client_cursor=client_cursor, metrics=metrics)
        hasher = api_key_hasher(settings)
        projects = ProjectService(db, ProjectRepo(), wake_upkeep=wake_upkeep)
        # Deny by default: an RPC without an (altalune.v1.access) option stops start-up here, and
        # a write RPC without its (altalune.v1.event) declaration too.
        rules = access_rules(services)
        writes = write_rpcs(services, rules)
        shared = Shared(db=db, hasher=hasher, projects=projects, writes=writes, rpcs=rpcs)
        bindings = [ServiceBinding(r.descriptor, r.build(shared)) for r in SERVICES]

        issuer = local_issuer(settings)
        trusted: list[TrustedIssuer] = [issuer.trusted()] if issuer else []
        jwks = None
        if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:
            jwks = JwksCache(settings.oidc_jwks_url)
            trusted.append(TrustedIssuer(settings.oidc_issuer, settings.oidc_audience, jwks, UserMatch.EMAIL))
        store = AccessStore()
        drain = Drain()
        refusals = RefusalLog(db)
        # Domain rules the contract cannot state, checked in the one validation pass.
        validator = RequestValidator([timezone_rule(frozenset(zoneinfo.available_timezones()))])
        # A worker shares its supervisor's table (internal/ratelimit/table.py); off by default.
        limiter = None
        if settings.rate_limits.enabled:
            limiter = RateLimiter(settings.rate_limits, SharedTable.from_environment())
        chain = default_chain(
            validator=validator,
            max_deadline_ms=settings.max_deadline_ms,
            max_concurrent_calls=settings.max_concurrent_calls,
            call_scope=CallScope(db.call_scope),
            authenticate=Authenticate(Authenticator(db, store, TokenVerifier(trusted), hasher), rules),
            authorize=Authorize(Authorizer(db, store)),
            refusal_events=RefusalEvents(refusals, {path: rule.project_field for path, rule in rules.items()}),
            trusted_writes=TrustedWrites(db, writes, idempotency_retention_s=settings.idempotency_retention_h * 3600),
            drain=drain,
            metrics=metrics,
            tracing=tracing,
            peer_limit=PeerLimit(limiter) if limiter is not None else None,
            credential_limit=CredentialLimit(limiter) if limiter is not None else None,
        )
        return cls(
            settings=settings,
            database_url=database_url,
            db=db,
            projects=projects,
            hasher=hasher,
            issuer=issuer,
            jwks=jwks,
            rules=rules,
            writes=writes,
            routes=build_routes(bindings, chain),
            service_names=[b.descriptor.full_name for b in bindings],
            drain=drain,
            validator=validator,
            refusals=refusals,
            metrics=metrics,
            tracing=tracing,
            rate_limiter=limiter,
        )

    async def open(self) -> None:
        """Open the pool inside the running loop (never at import time)."""
        await self.db.pool.open(wait=False)
        self.refusals.start()

    async def close(self) -> None:
        await self.refusals.stop()
        if self.jwks is not None:
            await self.jwks.close()
        await self.db.pool.close()
        # Spans still buffered get a moment to leave; a collector that is down must not hold the
        # shutdown (the SDK's own export timeout is 10 s).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self.tracing.shutdown), TRACE_FLUSH_S)
