"""Builds everything once at start-up: config -> pool -> repos -> services -> handlers -> routes.

This is the only place that calls constructors; adding a domain means adding its lines here.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from altalune.v1 import employee_pb2, project_pb2
from internal.config import Settings
from internal.domain.employee.handler import EmployeeHandler
from internal.domain.employee.repo import EmployeeRepo
from internal.domain.employee.service import EmployeeService
from internal.domain.project.handler import ProjectHandler
from internal.domain.project.repo import ProjectRepo
from internal.domain.project.service import ProjectService
from internal.postgres.database import Database, create_pool
from internal.server.endpoints import ServiceBinding, UnaryRoute, build_routes
from internal.server.interceptors import default_chain
from internal.validation import RequestValidator


@dataclass
class Container:
    settings: Settings
    database_url: str
    db: Database
    projects: ProjectService
    employees: EmployeeService
    routes: dict[str, UnaryRoute]
    service_names: list[str]

    @classmethod
    def build(
        cls, settings: Settings, database_url: str, *, on_project_deleted: Callable[[], None] = lambda: None
    ) -> Container:
        """Wire the object graph. Nothing touches the network here; see open()."""
        pool = create_pool(
            database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            max_lifetime_s=settings.pool_max_lifetime_s,
            statement_timeout_ms=settings.max_deadline_ms,
        )
        db = Database(pool, statement_timeout_ms=settings.max_deadline_ms)
        projects = ProjectService(
            db,
            ProjectRepo(),
            timezones=frozenset(zoneinfo.available_timezones()),
            on_deleted=on_project_deleted,
        )
        employees = EmployeeService(db, EmployeeRepo(), projects)
        bindings = [
            ServiceBinding(project_pb2.DESCRIPTOR.services_by_name["ProjectService"], ProjectHandler(projects)),
            ServiceBinding(employee_pb2.DESCRIPTOR.services_by_name["EmployeeService"], EmployeeHandler(employees)),
        ]
        chain = default_chain(
            validator=RequestValidator(),
            max_deadline_ms=settings.max_deadline_ms,
            max_concurrent_calls=settings.max_concurrent_calls,
        )
        return cls(
            settings=settings,
            database_url=database_url,
            db=db,
            projects=projects,
            employees=employees,
            routes=build_routes(bindings, chain),
            service_names=[b.descriptor.full_name for b in bindings],
        )

    async def open(self) -> None:
        """Open the pool inside the running loop (never at import time)."""
        await self.db.pool.open(wait=False)

    async def close(self) -> None:
        await self.db.pool.close()
