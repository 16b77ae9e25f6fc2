"""EmployeeService RPC surface: one call into the service per method, nothing else."""

from __future__ import annotations

from typing import Any

from connectrpc.request import RequestContext

from altalune.v1 import employee_connect, employee_pb2
from internal.auth.principal import current_project
from internal.domain.employee.service import EmployeeService


class EmployeeHandler(employee_connect.EmployeeService):
    """altalune.v1.EmployeeService on both ports; subclassing the generated protocol type-checks each method."""

    def __init__(self, service: EmployeeService) -> None:
        self._service = service

    async def create_employee(
        self, request: employee_pb2.CreateEmployeeRequest, ctx: RequestContext[Any, Any]
    ) -> employee_pb2.CreateEmployeeResponse:
        return await self._service.create_employee(current_project(), request)

    async def get_employee(
        self, request: employee_pb2.GetEmployeeRequest, ctx: RequestContext[Any, Any]
    ) -> employee_pb2.GetEmployeeResponse:
        return await self._service.get_employee(current_project(), request)

    async def update_employee(
        self, request: employee_pb2.UpdateEmployeeRequest, ctx: RequestContext[Any, Any]
    ) -> employee_pb2.UpdateEmployeeResponse:
        return await self._service.update_employee(current_project(), request)

    async def delete_employee(
        self, request: employee_pb2.DeleteEmployeeRequest, ctx: RequestContext[Any, Any]
    ) -> employee_pb2.DeleteEmployeeResponse:
        return await self._service.delete_employee(current_project(), request)

    async def query_employees(
        self, request: employee_pb2.QueryEmployeesRequest, ctx: RequestContext[Any, Any]
    ) -> employee_pb2.QueryEmployeesResponse:
        return await self._service.query_employees(current_project(), request)
