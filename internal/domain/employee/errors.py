"""Errors of the employee domain."""

from __future__ import annotations

from connectrpc.code import Code

from internal.errors import AppError


class EmployeeNotFound(AppError):
    reason = "EMPLOYEE_NOT_FOUND"
    situation = "unknown employee"
    code = Code.NOT_FOUND
    metadata_keys = ("project_id", "employee_id")

    def __init__(self, project_id: str, employee_id: str) -> None:
        super().__init__(
            f"employee {employee_id!r} not found in project {project_id!r}",
            metadata={"project_id": project_id, "employee_id": employee_id},
        )


class EmployeeEmailTaken(AppError):
    reason = "EMPLOYEE_EMAIL_TAKEN"
    situation = "duplicate employee email in the project"
    code = Code.ALREADY_EXISTS
    metadata_keys = ("project_id", "email")

    def __init__(self, project_id: str, email: str) -> None:
        super().__init__(
            f"an employee with email {email!r} already exists in project {project_id!r}",
            metadata={"project_id": project_id, "email": email},
        )
