"""Employee business rules. Proto in, proto out; owns the transactions; knows no transport."""

from __future__ import annotations

from altalune.v1 import employee_pb2
from internal.domain.employee.errors import EmployeeEmailTaken, EmployeeNotFound
from internal.domain.employee.model import STATUSES, EmployeeChanges, NewEmployee
from internal.domain.employee.repo import QUERY_SPEC, EmailTaken, EmployeeRepo
from internal.domain.project.service import ProjectResolver
from internal.ids import new_public_id
from internal.postgres.database import Database
from internal.query import params_from_proto


class EmployeeService:
    def __init__(self, db: Database, repo: EmployeeRepo, projects: ProjectResolver) -> None:
        self._db = db
        self._repo = repo
        self._projects = projects

    async def create_employee(self, request: employee_pb2.CreateEmployeeRequest) -> employee_pb2.CreateEmployeeResponse:
        project_id = await self._projects.resolve_project_id(request.project_id)
        new = NewEmployee(
            public_id=new_public_id(),
            name=request.name,
            email=request.email,
            role=request.role,
            department=request.department,
            status=STATUSES.from_proto(request.status),
        )
        try:
            async with self._db.connection() as conn:
                row = await self._repo.insert(conn, project_id, new)
        except EmailTaken:
            raise EmployeeEmailTaken(request.project_id, request.email) from None
        if row is None:
            # The project was deleted between resolving it and inserting.
            raise self._projects.project_missing(request.project_id)
        return employee_pb2.CreateEmployeeResponse(employee=row.to_entity(request.project_id).to_proto())

    async def get_employee(self, request: employee_pb2.GetEmployeeRequest) -> employee_pb2.GetEmployeeResponse:
        project_id = await self._projects.resolve_project_id(request.project_id)
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, project_id, request.id)
        if row is None:
            raise EmployeeNotFound(request.project_id, request.id)
        return employee_pb2.GetEmployeeResponse(employee=row.to_entity(request.project_id).to_proto())

    async def update_employee(self, request: employee_pb2.UpdateEmployeeRequest) -> employee_pb2.UpdateEmployeeResponse:
        project_id = await self._projects.resolve_project_id(request.project_id)
        paths = set(request.update_mask.paths)
        changes = EmployeeChanges(
            name=request.name if "name" in paths else None,
            email=request.email if "email" in paths else None,
            role=request.role if "role" in paths else None,
            department=request.department if "department" in paths else None,
            status=STATUSES.from_proto(request.status) if "status" in paths else None,
        )
        try:
            async with self._db.connection() as conn:
                row = await self._repo.update(conn, project_id, request.id, changes)
        except EmailTaken:
            raise EmployeeEmailTaken(request.project_id, request.email) from None
        if row is None:
            raise EmployeeNotFound(request.project_id, request.id)
        return employee_pb2.UpdateEmployeeResponse(employee=row.to_entity(request.project_id).to_proto())

    async def delete_employee(self, request: employee_pb2.DeleteEmployeeRequest) -> employee_pb2.DeleteEmployeeResponse:
        project_id = await self._projects.resolve_project_id(request.project_id)
        async with self._db.connection() as conn:
            deleted = await self._repo.delete(conn, project_id, request.id)
        if not deleted:
            raise EmployeeNotFound(request.project_id, request.id)
        return employee_pb2.DeleteEmployeeResponse()

    async def query_employees(self, request: employee_pb2.QueryEmployeesRequest) -> employee_pb2.QueryEmployeesResponse:
        project_id = await self._projects.resolve_project_id(request.project_id)
        params = params_from_proto(request.query if request.HasField("query") else None, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, project_id, params)
        return employee_pb2.QueryEmployeesResponse(
            data=[row.to_entity(request.project_id).to_proto() for row in result.rows], meta=result.meta()
        )
