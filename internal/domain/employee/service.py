"""Employee business rules. Proto in, proto out; owns the transactions; knows no transport."""

from __future__ import annotations

from altalune.v1 import employee_pb2
from internal.domain.employee.errors import EmployeeNotFound
from internal.domain.employee.model import STATUSES, EmployeeChanges, NewEmployee
from internal.domain.employee.repo import QUERY_SPEC, EmployeeRepo
from internal.ids import new_public_id
from internal.postgres.database import Database
from internal.query import params_from_proto
from internal.tenancy import ProjectRef


class EmployeeService:
    """Every method acts in `project`, the live project authorization resolved for the call."""

    def __init__(self, db: Database, repo: EmployeeRepo) -> None:
        self._db = db
        self._repo = repo

    async def create_employee(
        self, project: ProjectRef, request: employee_pb2.CreateEmployeeRequest
    ) -> employee_pb2.CreateEmployeeResponse:
        new = NewEmployee(
            public_id=new_public_id(),
            name=request.name,
            email=request.email,
            role=request.role,
            department=request.department,
            status=STATUSES.from_proto(request.status),
        )
        # EmployeeEmailTaken, or ProjectNotFound if the project was deleted after authorization found it.
        async with self._db.connection() as conn:
            row = await self._repo.insert(conn, project, new)
        return employee_pb2.CreateEmployeeResponse(employee=row.to_proto(project.public_id))

    async def get_employee(
        self, project: ProjectRef, request: employee_pb2.GetEmployeeRequest
    ) -> employee_pb2.GetEmployeeResponse:
        async with self._db.connection() as conn:
            row = await self._repo.get(conn, project.id, request.id)
        if row is None:
            raise EmployeeNotFound(project.public_id, request.id)
        return employee_pb2.GetEmployeeResponse(employee=row.to_proto(project.public_id))

    async def update_employee(
        self, project: ProjectRef, request: employee_pb2.UpdateEmployeeRequest
    ) -> employee_pb2.UpdateEmployeeResponse:
        paths = set(request.update_mask.paths)
        changes = EmployeeChanges(
            name=request.name if "name" in paths else None,
            email=request.email if "email" in paths else None,
            role=request.role if "role" in paths else None,
            department=request.department if "department" in paths else None,
            status=STATUSES.from_proto(request.status) if "status" in paths else None,
        )
        async with self._db.connection() as conn:
            row = await self._repo.update(conn, project, request.id, changes, request.etag)
        if row is None:
            raise EmployeeNotFound(project.public_id, request.id)
        return employee_pb2.UpdateEmployeeResponse(employee=row.to_proto(project.public_id))

    async def delete_employee(
        self, project: ProjectRef, request: employee_pb2.DeleteEmployeeRequest
    ) -> employee_pb2.DeleteEmployeeResponse:
        async with self._db.connection() as conn:
            deleted = await self._repo.delete(conn, project.id, request.id, request.etag)
        if not deleted:
            raise EmployeeNotFound(project.public_id, request.id)
        return employee_pb2.DeleteEmployeeResponse()

    async def query_employees(
        self, project: ProjectRef, request: employee_pb2.QueryEmployeesRequest
    ) -> employee_pb2.QueryEmployeesResponse:
        params = params_from_proto(request.query, QUERY_SPEC)
        async with self._db.connection() as conn:
            result = await self._repo.query(conn, project.id, params)
        return employee_pb2.QueryEmployeesResponse(
            data=[row.to_proto(project.public_id) for row in result.rows], meta=result.meta()
        )
