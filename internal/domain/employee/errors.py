"""Errors of the employee domain."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import DomainError


class EmployeeNotFound(DomainError):
    reason = "EMPLOYEE_NOT_FOUND"
    situation = "unknown employee"
    code = Code.NOT_FOUND
    template = "employee {employee_id!r} not found in project {project_id!r}"

    project_id: str
    employee_id: str


class EmployeeEmailTaken(DomainError):
    reason = "EMPLOYEE_EMAIL_TAKEN"
    situation = "duplicate employee email in the project"
    code = Code.ALREADY_EXISTS
    template = "an employee with email {email!r} already exists in project {project_id!r}"

    project_id: str
    email: str
