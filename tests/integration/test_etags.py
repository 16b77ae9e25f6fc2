"""Etags against a real PostgreSQL, for each of the six resources that carry one: present on every
answer, changed by a real change only, and a write naming a stale (or foreign) etag refused with
ABORTED / ETAG_MISMATCH and the current etag, writing nothing, also under concurrency."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from connectrpc.code import Code
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from altalune.v1 import api_key_pb2, common_pb2, employee_pb2, iam_pb2, project_pb2, role_pb2, user_pb2
from internal.auth.principal import Caller, Principal
from internal.container import Container
from internal.domain.api_key.errors import ApiKeyNotFound
from internal.domain.api_key.repo import ApiKeyRepo
from internal.domain.api_key.service import ApiKeyService
from internal.domain.employee.errors import EmployeeNotFound
from internal.domain.employee.repo import EmployeeRepo
from internal.domain.employee.service import EmployeeService
from internal.domain.iam.errors import LastOwner, MemberNotFound
from internal.domain.iam.repo import IamRepo
from internal.domain.iam.service import IamService
from internal.domain.role.errors import RoleBuiltin, RoleNotFound
from internal.domain.role.repo import RoleRepo
from internal.domain.role.service import RoleService
from internal.domain.user.errors import UserNotFound
from internal.domain.user.repo import UserRepo
from internal.domain.user.service import UserService
from internal.errors import AppError, EtagMismatch
from internal.ids import new_public_id
from internal.tenancy import ProjectNotFound, ProjectRef
from tests.integration.projects import AsAuthorized, create_project, fetch, project_ref

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"
# Strings a client may send that are no etag of ours: never a match, whatever the row's version.
NOT_OUR_ETAGS = ("abc", "01", "+1", " 1", "1.0", "-1", "0", "99999999999999999999", "\uff11")
KEY_PERMISSIONS = frozenset({"employee:read", "apikey:read", "apikey:write", "apikey:delete"})


def _key_caller() -> Caller:
    return Caller(principal=Principal.user(1, UNKNOWN_ID), permissions=KEY_PERMISSIONS, project_role="owner")


class Subject(ABC):
    """One resource with an etag, driven through its service as the server calls it. `value(n)` is
    the n-th distinct value of the one field an update changes."""

    resource: str
    not_found: type[AppError]
    deletable: bool = True

    def __init__(self, container: Container) -> None:
        self.container = container

    @abstractmethod
    async def create(self) -> Any: ...

    @abstractmethod
    async def get(self, resource_id: str) -> Any: ...

    @abstractmethod
    async def listed(self, resource_id: str) -> Any:
        """The resource as its list RPC returns it."""

    @abstractmethod
    def value(self, n: int) -> Any: ...

    @abstractmethod
    def field(self, message: Any) -> Any:
        """The value of the field `update` sets."""

    @abstractmethod
    async def update(self, resource_id: str, value: Any, etag: str = "") -> Any: ...

    async def delete(self, resource_id: str, etag: str = "") -> None:
        raise NotImplementedError(f"{self.resource} has no delete that takes an etag")

    @abstractmethod
    def unknown_metadata(self) -> dict[str, str]:
        """The NOT_FOUND metadata of UNKNOWN_ID, as without etags."""


class ProjectSubject(Subject):
    resource = "project"
    not_found = ProjectNotFound

    async def create(self) -> project_pb2.Project:
        return await create_project(self.container, f"Etag {new_public_id()}", description="v0")

    async def get(self, resource_id: str) -> project_pb2.Project:
        return (await self.container.projects.get_project(project_pb2.GetProjectRequest(id=resource_id))).project

    async def listed(self, resource_id: str) -> project_pb2.Project:
        name = (await self.get(resource_id)).name
        page = await self.container.projects.query_projects(
            project_pb2.QueryProjectsRequest(query=common_pb2.QueryRequest(keyword=name))
        )
        (found,) = page.data
        return found

    def value(self, n: int) -> str:
        return f"v{n}"

    def field(self, message: project_pb2.Project) -> str:
        return message.description

    async def update(self, resource_id: str, value: str, etag: str = "") -> project_pb2.Project:
        request = project_pb2.UpdateProjectRequest(
            id=resource_id, description=value, update_mask=FieldMask(paths=["description"]), etag=etag
        )
        return (await self.container.projects.update_project(request)).project

    async def delete(self, resource_id: str, etag: str = "") -> None:
        await self.container.projects.delete_project(project_pb2.DeleteProjectRequest(id=resource_id, etag=etag))

    def unknown_metadata(self) -> dict[str, str]:
        return ProjectNotFound(UNKNOWN_ID).metadata


class InProject(Subject):
    """A resource of one project, made with the subject."""

    project: ProjectRef | None = None

    async def in_project(self) -> ProjectRef:
        if self.project is None:
            created = await create_project(self.container, f"Home {new_public_id()}")
            self.project = await project_ref(self.container, created.id)
        return self.project

    @property
    def project_public_id(self) -> str:
        assert self.project is not None, "nothing was made in the subject's project yet"
        return self.project.public_id


class EmployeeSubject(InProject):
    resource = "employee"
    not_found = EmployeeNotFound

    def service(self) -> AsAuthorized:
        return AsAuthorized(self.container, EmployeeService(self.container.db, EmployeeRepo()))

    async def create(self) -> employee_pb2.Employee:
        project = await self.in_project()
        request = employee_pb2.CreateEmployeeRequest(
            project_id=project.public_id,
            name="Ann Lee",
            email=f"{new_public_id()}@example.com",
            role="Engineer",
            department="v0",
            status=employee_pb2.EMPLOYEE_STATUS_ACTIVE,
        )
        return (await self.service().create_employee(request)).employee

    async def get(self, resource_id: str) -> employee_pb2.Employee:
        project = await self.in_project()
        request = employee_pb2.GetEmployeeRequest(project_id=project.public_id, id=resource_id)
        return (await self.service().get_employee(request)).employee

    async def listed(self, resource_id: str) -> employee_pb2.Employee:
        project = await self.in_project()
        request = employee_pb2.QueryEmployeesRequest(project_id=project.public_id, query=common_pb2.QueryRequest())
        page = await self.service().query_employees(request)
        (found,) = [e for e in page.data if e.id == resource_id]
        return found

    def value(self, n: int) -> str:
        return f"v{n}"

    def field(self, message: employee_pb2.Employee) -> str:
        return message.department

    async def update(self, resource_id: str, value: str, etag: str = "") -> employee_pb2.Employee:
        project = await self.in_project()
        request = employee_pb2.UpdateEmployeeRequest(
            project_id=project.public_id,
            id=resource_id,
            department=value,
            update_mask=FieldMask(paths=["department"]),
            etag=etag,
        )
        return (await self.service().update_employee(request)).employee

    async def delete(self, resource_id: str, etag: str = "") -> None:
        project = await self.in_project()
        request = employee_pb2.DeleteEmployeeRequest(project_id=project.public_id, id=resource_id, etag=etag)
        await self.service().delete_employee(request)

    def unknown_metadata(self) -> dict[str, str]:
        return EmployeeNotFound(self.project_public_id, UNKNOWN_ID).metadata


class ApiKeySubject(InProject):
    resource = "api_key"
    not_found = ApiKeyNotFound

    def service(self) -> AsAuthorized:
        return AsAuthorized(self.container, ApiKeyService(self.container.db, ApiKeyRepo(), self.container.hasher))

    async def create(self) -> api_key_pb2.ApiKey:
        project = await self.in_project()
        expires_at = datetime.now(UTC) + timedelta(days=30)
        request = api_key_pb2.CreateApiKeyRequest(
            project_id=project.public_id, name="v0", scopes=["employee:read"], expires_at=expires_at
        )
        return (await self.service().create_api_key(request, _key_caller())).api_key

    async def get(self, resource_id: str) -> api_key_pb2.ApiKey:
        project = await self.in_project()
        request = api_key_pb2.GetApiKeyRequest(project_id=project.public_id, id=resource_id)
        return (await self.service().get_api_key(request)).api_key

    async def listed(self, resource_id: str) -> api_key_pb2.ApiKey:
        project = await self.in_project()
        request = api_key_pb2.QueryApiKeysRequest(project_id=project.public_id, query=common_pb2.QueryRequest())
        page = await self.service().query_api_keys(request)
        (found,) = [k for k in page.data if k.id == resource_id]
        return found

    def value(self, n: int) -> str:
        return f"v{n}"

    def field(self, message: api_key_pb2.ApiKey) -> str:
        return message.name

    async def update(self, resource_id: str, value: str, etag: str = "") -> api_key_pb2.ApiKey:
        project = await self.in_project()
        request = api_key_pb2.UpdateApiKeyRequest(
            project_id=project.public_id, id=resource_id, name=value, update_mask=FieldMask(paths=["name"]), etag=etag
        )
        return (await self.service().update_api_key(request, _key_caller())).api_key

    async def delete(self, resource_id: str, etag: str = "") -> None:
        project = await self.in_project()
        request = api_key_pb2.DeleteApiKeyRequest(project_id=project.public_id, id=resource_id, etag=etag)
        await self.service().delete_api_key(request)

    def unknown_metadata(self) -> dict[str, str]:
        return ApiKeyNotFound(self.project_public_id, UNKNOWN_ID).metadata


class UserSubject(Subject):
    resource = "user"
    not_found = UserNotFound
    deletable = False

    def service(self) -> UserService:
        return UserService(self.container.db, UserRepo())

    async def create(self) -> user_pb2.User:
        request = user_pb2.CreateUserRequest(email=f"{new_public_id()}@example.com", first_name="v0")
        return (await self.service().create_user(request)).user

    async def get(self, resource_id: str) -> user_pb2.User:
        return (await self.service().get_user(user_pb2.GetUserRequest(id=resource_id))).user

    async def listed(self, resource_id: str) -> user_pb2.User:
        email = (await self.get(resource_id)).email
        page = await self.service().query_users(
            user_pb2.QueryUsersRequest(query=common_pb2.QueryRequest(keyword=email))
        )
        (found,) = page.data
        return found

    def value(self, n: int) -> str:
        return f"v{n}"

    def field(self, message: user_pb2.User) -> str:
        return message.first_name

    async def update(self, resource_id: str, value: str, etag: str = "") -> user_pb2.User:
        request = user_pb2.UpdateUserRequest(
            id=resource_id, first_name=value, update_mask=FieldMask(paths=["first_name"]), etag=etag
        )
        return (await self.service().update_user(request)).user

    def unknown_metadata(self) -> dict[str, str]:
        return UserNotFound(UNKNOWN_ID).metadata


class RoleSubject(Subject):
    resource = "role"
    not_found = RoleNotFound

    def service(self) -> RoleService:
        return RoleService(self.container.db, RoleRepo())

    async def create(self) -> role_pb2.Role:
        request = role_pb2.CreateRoleRequest(name=f"role-{new_public_id()}", description="v0")
        return (await self.service().create_role(request)).role

    async def get(self, resource_id: str) -> role_pb2.Role:
        return (await self.service().get_role(role_pb2.GetRoleRequest(id=resource_id))).role

    async def listed(self, resource_id: str) -> role_pb2.Role:
        name = (await self.get(resource_id)).name
        page = await self.service().query_roles(role_pb2.QueryRolesRequest(query=common_pb2.QueryRequest(keyword=name)))
        (found,) = page.data
        return found

    def value(self, n: int) -> str:
        return f"v{n}"

    def field(self, message: role_pb2.Role) -> str:
        return message.description

    async def update(self, resource_id: str, value: str, etag: str = "") -> role_pb2.Role:
        request = role_pb2.UpdateRoleRequest(
            id=resource_id, description=value, update_mask=FieldMask(paths=["description"]), etag=etag
        )
        return (await self.service().update_role(request)).role

    async def delete(self, resource_id: str, etag: str = "") -> None:
        await self.service().delete_role(role_pb2.DeleteRoleRequest(id=resource_id, etag=etag))

    def unknown_metadata(self) -> dict[str, str]:
        return RoleNotFound(UNKNOWN_ID).metadata


class MemberSubject(InProject):
    """A project membership: its id is the user's; its project's creator is the owner who calls."""

    resource = "project_member"
    not_found = MemberNotFound
    deletable = False
    owner: Caller | None = None

    def service(self) -> IamService:
        return IamService(self.container.db, IamRepo())

    async def caller(self) -> Caller:
        """The owner of the subject's project, as authorization hands them to IAM."""
        if self.owner is None:
            user = await UserSubject(self.container).create()
            (row,) = await fetch(self.container, "SELECT id FROM users WHERE public_id = %s", user.id)
            principal = Principal.user(int(row[0]), user.id)
            created = await self.container.projects.create_project(
                project_pb2.CreateProjectRequest(
                    name=f"Members {new_public_id()}", timezone="UTC", environment=project_pb2.ENVIRONMENT_LIVE
                ),
                Caller(principal=principal, permissions=frozenset()),
            )
            self.project = await project_ref(self.container, created.project.id)
            self.owner = Caller(
                principal=principal,
                permissions=frozenset({"member:read", "member:write"}),
                project=self.project,
                project_role="owner",
            )
        return self.owner

    async def create(self) -> iam_pb2.ProjectMember:
        caller = await self.caller()
        assert self.project is not None
        user = await UserSubject(self.container).create()
        request = iam_pb2.AddProjectMembersRequest(
            project_id=self.project.public_id,
            members=[iam_pb2.NewProjectMember(user_id=user.id, role=self.value(0))],
        )
        (member,) = (await self.service().add_project_members(request, caller)).members
        return member

    async def get(self, resource_id: str) -> iam_pb2.ProjectMember:
        return await self.listed(resource_id)

    async def listed(self, resource_id: str) -> iam_pb2.ProjectMember:
        caller = await self.caller()
        assert self.project is not None
        request = iam_pb2.ListProjectMembersRequest(project_id=self.project.public_id)
        members = (await self.service().list_project_members(request, caller)).members
        (found,) = [m for m in members if m.user_id == resource_id]
        return found

    def value(self, n: int) -> iam_pb2.ProjectRole:
        return (iam_pb2.PROJECT_ROLE_MEMBER, iam_pb2.PROJECT_ROLE_VIEWER, iam_pb2.PROJECT_ROLE_ADMIN)[n % 3]

    def field(self, message: iam_pb2.ProjectMember) -> iam_pb2.ProjectRole:
        return message.role

    async def update(self, resource_id: str, value: iam_pb2.ProjectRole, etag: str = "") -> iam_pb2.ProjectMember:
        caller = await self.caller()
        assert self.project is not None
        request = iam_pb2.UpdateProjectMemberRequest(
            project_id=self.project.public_id, user_id=resource_id, role=value, etag=etag
        )
        return (await self.service().update_project_member(request, caller)).member

    def unknown_metadata(self) -> dict[str, str]:
        return MemberNotFound(self.project_public_id, [UNKNOWN_ID]).metadata


SUBJECTS: dict[str, type[Subject]] = {
    "project": ProjectSubject,
    "employee": EmployeeSubject,
    "api_key": ApiKeySubject,
    "user": UserSubject,
    "role": RoleSubject,
    "project_member": MemberSubject,
}
DELETABLE = [name for name, subject in SUBJECTS.items() if subject.deletable]


def _id(message: Any) -> str:
    """The id a resource's writes name: a member's is its user's."""
    return str(message.user_id if isinstance(message, iam_pb2.ProjectMember) else message.id)


async def _mismatch(write: Awaitable[Any]) -> EtagMismatch:
    with pytest.raises(EtagMismatch) as caught:
        await write
    return caught.value


@pytest.fixture(params=list(SUBJECTS))
def subject(request: pytest.FixtureRequest, container: Container) -> Subject:
    return SUBJECTS[request.param](container)


@pytest.fixture(params=DELETABLE)
def deletable(request: pytest.FixtureRequest, container: Container) -> Subject:
    return SUBJECTS[request.param](container)


# -- present everywhere, changed by real changes only -----------------------------------------------


async def test_the_etag_is_on_create_get_and_list_and_the_same_on_each(subject: Subject) -> None:
    created = await subject.create()

    assert created.etag
    assert (await subject.get(_id(created))).etag == created.etag
    assert (await subject.listed(_id(created))).etag == created.etag


async def test_a_real_change_changes_the_etag_and_setting_the_same_values_does_not(subject: Subject) -> None:
    created = await subject.create()

    changed = await subject.update(_id(created), subject.value(1))
    same = await subject.update(_id(created), subject.value(1))

    assert changed.etag != created.etag
    assert (same.etag, same.updated_at) == (changed.etag, changed.updated_at)
    assert (await subject.get(_id(created))).etag == changed.etag
    again = await subject.update(_id(created), subject.value(2))
    assert again.etag not in (created.etag, changed.etag)


# -- updates and deletes that name an etag -----------------------------------------------------------


async def test_an_update_with_the_current_etag_is_written(subject: Subject) -> None:
    created = await subject.create()

    updated = await subject.update(_id(created), subject.value(1), created.etag)

    assert subject.field(updated) == subject.value(1)
    assert updated.etag != created.etag
    assert await subject.get(_id(created)) == updated


async def test_an_update_with_a_stale_etag_is_refused_with_the_current_one_and_writes_nothing(
    subject: Subject,
) -> None:
    created = await subject.create()
    current = await subject.update(_id(created), subject.value(1))

    refused = await _mismatch(subject.update(_id(created), subject.value(2), created.etag))

    assert refused.code is Code.ABORTED
    assert refused.reason == "ETAG_MISMATCH"
    assert refused.metadata == {"resource": subject.resource, "id": _id(created), "etag": current.etag}
    assert await subject.get(_id(created)) == current


@pytest.mark.parametrize("etag", NOT_OUR_ETAGS)
async def test_an_etag_that_is_none_of_ours_never_matches(subject: Subject, etag: str) -> None:
    created = await subject.create()

    refused = await _mismatch(subject.update(_id(created), subject.value(1), etag))

    assert refused.metadata == {"resource": subject.resource, "id": _id(created), "etag": created.etag}
    assert await subject.get(_id(created)) == created


async def test_without_an_etag_an_update_proceeds_whatever_the_version(subject: Subject) -> None:
    created = await subject.create()
    await subject.update(_id(created), subject.value(1))

    updated = await subject.update(_id(created), subject.value(2))

    assert subject.field(updated) == subject.value(2)


async def test_an_unknown_id_with_an_etag_is_the_domains_not_found_as_before(subject: Subject) -> None:
    created = await subject.create()  # the project (and owner) of a project-scoped subject exist

    for etag in ("", created.etag, "abc"):
        with pytest.raises(subject.not_found) as caught:
            await subject.update(UNKNOWN_ID, subject.value(1), etag)
        assert caught.value.metadata == subject.unknown_metadata(), etag


async def test_a_delete_with_the_current_etag_deletes(deletable: Subject) -> None:
    created = await deletable.create()
    current = await deletable.update(_id(created), deletable.value(1))

    await deletable.delete(_id(created), current.etag)

    with pytest.raises(deletable.not_found):
        await deletable.get(_id(created))


async def test_a_delete_with_a_stale_or_foreign_etag_is_refused_and_deletes_nothing(deletable: Subject) -> None:
    created = await deletable.create()
    current = await deletable.update(_id(created), deletable.value(1))

    for etag in (created.etag, "abc"):
        refused = await _mismatch(deletable.delete(_id(created), etag))
        assert refused.metadata == {"resource": deletable.resource, "id": _id(created), "etag": current.etag}
    assert await deletable.get(_id(created)) == current


async def test_a_delete_without_an_etag_proceeds_and_an_unknown_id_is_not_found(deletable: Subject) -> None:
    created = await deletable.create()
    await deletable.update(_id(created), deletable.value(1))

    await deletable.delete(_id(created))

    for etag in ("", created.etag):
        with pytest.raises(deletable.not_found):
            await deletable.delete(_id(created), etag)
    with pytest.raises(deletable.not_found) as caught:
        await deletable.delete(UNKNOWN_ID, "1")
    assert caught.value.metadata == deletable.unknown_metadata()


# -- concurrency -------------------------------------------------------------------------------------

_ROW_OF = {
    "project": "SELECT 1 FROM projects WHERE public_id = %(id)s FOR UPDATE",
    "employee": "SELECT 1 FROM employees WHERE public_id = %(id)s FOR UPDATE",
    "api_key": "SELECT 1 FROM api_keys WHERE public_id = %(id)s FOR UPDATE",
    "user": "SELECT 1 FROM users WHERE public_id = %(id)s FOR UPDATE",
    "role": "SELECT 1 FROM roles WHERE public_id = %(id)s FOR UPDATE",
    "project_member": (
        "SELECT 1 FROM project_members m JOIN users u ON u.id = m.user_id WHERE u.public_id = %(id)s FOR UPDATE OF m"
    ),
}


@asynccontextmanager
async def _row_held(database_url: str, resource: str, resource_id: str) -> AsyncIterator[None]:
    """The resource's row locked by a transaction of our own until the block ends."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(_ROW_OF[resource], {"id": resource_id})
        assert await cur.fetchone() is not None
        yield
        await conn.rollback()


async def _waiting_for_locks(database_url: str, count: int) -> None:
    """Until `count` other sessions of the database wait for a lock (the writes are in flight)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(500):
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"{count} writes never waited for the row")


async def test_two_concurrent_updates_with_the_same_etag_one_wins_the_other_is_refused(subject: Subject) -> None:
    created = await subject.create()
    writes: list[asyncio.Task[Any]] = []

    # Both writes start from the same etag and wait on the row; released together, they race for it.
    async with _row_held(subject.container.database_url, subject.resource, _id(created)):
        for n in (1, 2):
            writes.append(asyncio.ensure_future(subject.update(_id(created), subject.value(n), created.etag)))
        await _waiting_for_locks(subject.container.database_url, 2)
    outcomes = await asyncio.gather(*writes, return_exceptions=True)

    won: list[Any] = [o for o in outcomes if isinstance(o, Message)]
    refused = [o for o in outcomes if isinstance(o, EtagMismatch)]
    assert (len(won), len(refused)) == (1, 1), outcomes
    assert refused[0].metadata["etag"] == won[0].etag != created.etag
    assert await subject.get(_id(created)) == won[0]


# -- every answer that returns one, and the domain rules that answer first -------------------------


async def test_activation_and_the_iam_lists_carry_the_etag(container: Container) -> None:
    keys = ApiKeySubject(container)
    key = await keys.create()
    project = await keys.in_project()
    off = await keys.service().deactivate_api_key(
        api_key_pb2.DeactivateApiKeyRequest(project_id=project.public_id, id=key.id)
    )
    on = await keys.service().activate_api_key(
        api_key_pb2.ActivateApiKeyRequest(project_id=project.public_id, id=key.id)
    )
    assert len({key.etag, off.api_key.etag, on.api_key.etag}) == 3
    assert (await keys.get(key.id)).etag == on.api_key.etag

    users = UserSubject(container)
    user = await users.create()
    caller = Caller(principal=Principal.user(1, UNKNOWN_ID), permissions=frozenset())
    inactive = (await users.service().deactivate_user(user_pb2.DeactivateUserRequest(id=user.id), caller)).user
    still = (await users.service().deactivate_user(user_pb2.DeactivateUserRequest(id=user.id), caller)).user
    active = (await users.service().activate_user(user_pb2.ActivateUserRequest(id=user.id))).user
    assert inactive.etag != user.etag
    assert still.etag == inactive.etag
    assert active.etag not in (user.etag, inactive.etag)

    role = await RoleSubject(container).create()
    iam = IamService(container.db, IamRepo())
    held = await iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=user.id, role_ids=[role.id]))
    listed = await iam.list_user_roles(iam_pb2.ListUserRolesRequest(user_id=user.id))
    assert [r.etag for r in held.roles] == [r.etag for r in listed.roles] == [role.etag]


async def test_a_built_in_role_is_refused_as_built_in_whatever_the_etag(container: Container) -> None:
    roles = RoleService(container.db, RoleRepo())
    page = await roles.query_roles(role_pb2.QueryRolesRequest(query=common_pb2.QueryRequest(keyword="viewer")))
    (viewer,) = [r for r in page.data if r.name == "viewer"]

    for etag in (viewer.etag, "stale"):
        with pytest.raises(RoleBuiltin):
            await roles.update_role(
                role_pb2.UpdateRoleRequest(
                    id=viewer.id, name="watcher", update_mask=FieldMask(paths=["name"]), etag=etag
                )
            )
        with pytest.raises(RoleBuiltin):
            await roles.delete_role(role_pb2.DeleteRoleRequest(id=viewer.id, etag=etag))

    # Its description may change, under the etag like any role's.
    described = RoleSubject(container)
    refused = await _mismatch(described.update(viewer.id, "Reads everything", "stale"))
    assert refused.metadata == {"resource": "role", "id": viewer.id, "etag": viewer.etag}
    updated = await described.update(viewer.id, "Reads everything", viewer.etag)
    assert updated.etag != viewer.etag


async def test_the_last_owner_rule_still_answers_for_a_membership_named_with_its_etag(container: Container) -> None:
    members = MemberSubject(container)
    owner = await members.caller()
    assert owner.principal.user_public_id is not None
    me = await members.listed(owner.principal.user_public_id)

    for etag in (me.etag, "stale"):
        with pytest.raises(LastOwner):
            await members.update(me.user_id, iam_pb2.PROJECT_ROLE_ADMIN, etag)
    # Keeping the owner role is allowed, and changes nothing.
    kept = await members.update(me.user_id, iam_pb2.PROJECT_ROLE_OWNER, me.etag)
    assert (kept.etag, kept.updated_at) == (me.etag, me.updated_at)
