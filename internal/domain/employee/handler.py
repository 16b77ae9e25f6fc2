"""EmployeeService on the wire: each RPC bound to its EmployeeService method (internal/auth/handlers.py)."""

from __future__ import annotations

from altalune.v1 import employee_connect
from internal.auth.handlers import InProject, ServiceHandler
from internal.domain.employee.service import EmployeeService


class EmployeeHandler(ServiceHandler[EmployeeService], employee_connect.EmployeeService):
    create_employee = InProject(EmployeeService.create_employee)
    get_employee = InProject(EmployeeService.get_employee)
    update_employee = InProject(EmployeeService.update_employee)
    delete_employee = InProject(EmployeeService.delete_employee)
    query_employees = InProject(EmployeeService.query_employees)
