"""IamService against a real PostgreSQL: all-or-nothing batches, owner rules, the last owner under
concurrency, and deleted projects vanishing from every membership view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import psycopg
import pytest
from psycopg import AsyncConnection

from altalune.v1 import iam_pb2, permission_pb2, project_pb2
from internal.auth.errors import ApiKeyNotAllowed
from internal.auth.principal import Caller, Principal
from internal.container import Container
from internal.domain.iam.errors import LastOwner, MemberExists, MemberNotFound, OwnerRequired
from internal.domain.iam.repo import IamRepo
from internal.domain.iam.service import IamService
from internal.domain.permission.errors import PermissionNotFound
from internal.domain.role.errors import RoleNotFound
from internal.domain.user.errors import UserNotFound
from internal.ids import new_public_id
from internal.postgres.database import Database
from internal.tenancy import ProjectNotFound, ProjectRef
from tests.integration.projects import internal_id

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"
OTHER_UNKNOWN_ID = "zzzzzzzzzzzzzz"
OWNER = iam_pb2.PROJECT_ROLE_OWNER
ADMIN = iam_pb2.PROJECT_ROLE_ADMIN
MEMBER = iam_pb2.PROJECT_ROLE_MEMBER
VIEWER = iam_pb2.PROJECT_ROLE_VIEWER


class User:
    """A user inserted with plain SQL: both ids, so tests can build callers and requests."""

    def __init__(self, internal: int, public: str, email: str) -> None:
        self.id = internal
        self.public_id = public
        self.email = email


class Project:
    def __init__(self, internal: int, public: str) -> None:
        self.id = internal
        self.public_id = public


@pytest.fixture
def iam(container: Container) -> IamService:
    return IamService(container.db, IamRepo())


async def _user(
    container: Container, email: str, *, first_name: str = "Ann", last_name: str = "", active: bool = True
) -> User:
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO users (public_id, email, first_name, last_name, active) VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id, public_id",
            (new_public_id(), email, first_name, last_name, active),
        )
        row = await cur.fetchone()
    assert row is not None
    return User(int(row[0]), str(row[1]), email)


async def _project(container: Container, name: str) -> Project:
    response = await container.projects.create_project(
        project_pb2.CreateProjectRequest(name=name, timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_LIVE)
    )
    public_id = response.project.id
    return Project(await internal_id(container, public_id), public_id)


async def _join(container: Container, project: Project, user: User, role: str) -> None:
    async with container.db.connection() as conn:
        await conn.execute(
            "INSERT INTO project_members (project_id, user_id, role) VALUES (%s, %s, %s)", (project.id, user.id, role)
        )


async def _delete_project(container: Container, project: Project) -> None:
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=project.public_id))


async def _role(container: Container, name: str) -> str:
    async with container.db.connection() as conn:
        cur = await conn.execute("INSERT INTO roles (name) VALUES (%s) RETURNING public_id", (name,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def _permission(container: Container, name: str) -> str:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT public_id FROM permissions WHERE name = %s", (name,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def _roles_held(container: Container, user: User) -> list[str]:
    """Straight from the table, not through the service under test."""
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = %s ORDER BY r.name",
            (user.id,),
        )
        return [str(row[0]) for row in await cur.fetchall()]


async def _memberships(container: Container, project: Project) -> dict[str, str]:
    """email -> role, straight from the table."""
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT u.email, m.role FROM project_members m JOIN users u ON u.id = m.user_id WHERE m.project_id = %s",
            (project.id,),
        )
        return {str(row[0]): str(row[1]) for row in await cur.fetchall()}


def _caller(user: User, project: Project, role: str) -> Caller:
    """What the authorizer hands a project-scoped RPC for a member with this role."""
    return Caller(
        principal=Principal.user(user.id, user.public_id),
        permissions=frozenset({"member:read", "member:write"}),
        project=ProjectRef(project.public_id, project.id),
        project_role=role,
    )


def _new(user: User, role: iam_pb2.ProjectRole) -> iam_pb2.NewProjectMember:
    return iam_pb2.NewProjectMember(user_id=user.public_id, role=role)


async def _add(
    iam: IamService, project: Project, caller: Caller, members: Sequence[iam_pb2.NewProjectMember]
) -> list[iam_pb2.ProjectMember]:
    response = await iam.add_project_members(
        iam_pb2.AddProjectMembersRequest(project_id=project.public_id, members=members), caller
    )
    return list(response.members)


async def _update(
    iam: IamService, project: Project, caller: Caller, user: User, role: iam_pb2.ProjectRole
) -> iam_pb2.ProjectMember:
    response = await iam.update_project_member(
        iam_pb2.UpdateProjectMemberRequest(project_id=project.public_id, user_id=user.public_id, role=role), caller
    )
    return response.member


async def _remove(iam: IamService, project: Project, caller: Caller, users: Sequence[User]) -> None:
    await iam.remove_project_members(
        iam_pb2.RemoveProjectMembersRequest(project_id=project.public_id, user_ids=[u.public_id for u in users]),
        caller,
    )


async def _members(iam: IamService, project: Project, caller: Caller) -> list[iam_pb2.ProjectMember]:
    response = await iam.list_project_members(iam_pb2.ListProjectMembersRequest(project_id=project.public_id), caller)
    return list(response.members)


# -- users' global roles ------------------------------------------------------------------------


async def test_assigned_roles_come_back_sorted_and_assigning_again_changes_nothing(
    container: Container, iam: IamService
) -> None:
    user = await _user(container, "ann@example.com")
    beta, alpha = await _role(container, "beta"), await _role(container, "alpha")

    first = await iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=user.public_id, role_ids=[beta, alpha]))
    again = await iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=user.public_id, role_ids=[alpha]))
    listed = await iam.list_user_roles(iam_pb2.ListUserRolesRequest(user_id=user.public_id))

    assert [(r.name, r.id) for r in first.roles] == [("alpha", alpha), ("beta", beta)]
    assert list(again.roles) == list(first.roles)
    assert list(listed.roles) == list(first.roles)
    assert not first.roles[0].builtin
    assert first.roles[0].created_at.seconds > 0
    assert await _roles_held(container, user) == ["alpha", "beta"]


async def test_one_unknown_role_assigns_none_and_names_every_missing_id(container: Container, iam: IamService) -> None:
    user = await _user(container, "ann@example.com")
    alpha, beta = await _role(container, "alpha"), await _role(container, "beta")

    with pytest.raises(RoleNotFound) as caught:
        await iam.assign_user_roles(
            iam_pb2.AssignUserRolesRequest(user_id=user.public_id, role_ids=[alpha, UNKNOWN_ID, beta, OTHER_UNKNOWN_ID])
        )

    assert caught.value.metadata == {"role_ids": f"{UNKNOWN_ID},{OTHER_UNKNOWN_ID}"}
    assert await _roles_held(container, user) == []


async def test_an_unknown_user_is_user_not_found_for_every_user_rpc(container: Container, iam: IamService) -> None:
    alpha = await _role(container, "alpha")

    with pytest.raises(UserNotFound) as caught:
        await iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=UNKNOWN_ID, role_ids=[alpha]))
    with pytest.raises(UserNotFound):
        await iam.remove_user_roles(iam_pb2.RemoveUserRolesRequest(user_id=UNKNOWN_ID, role_ids=[alpha]))
    with pytest.raises(UserNotFound):
        await iam.list_user_roles(iam_pb2.ListUserRolesRequest(user_id=UNKNOWN_ID))
    with pytest.raises(UserNotFound):
        await iam.list_user_projects(iam_pb2.ListUserProjectsRequest(user_id=UNKNOWN_ID))

    assert caught.value.metadata == {"user_ids": UNKNOWN_ID}


async def test_removing_roles_ignores_roles_not_held_and_refuses_unknown_ones_entirely(
    container: Container, iam: IamService
) -> None:
    user = await _user(container, "ann@example.com")
    alpha, beta, gamma = (
        await _role(container, "alpha"),
        await _role(container, "beta"),
        await _role(container, "gamma"),
    )
    await iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=user.public_id, role_ids=[alpha, beta]))

    after = await iam.remove_user_roles(iam_pb2.RemoveUserRolesRequest(user_id=user.public_id, role_ids=[alpha, gamma]))
    assert [r.name for r in after.roles] == ["beta"]

    with pytest.raises(RoleNotFound):
        await iam.remove_user_roles(iam_pb2.RemoveUserRolesRequest(user_id=user.public_id, role_ids=[beta, UNKNOWN_ID]))
    assert await _roles_held(container, user) == ["beta"]


# -- roles' permissions -------------------------------------------------------------------------


async def test_role_permission_grants_round_trip(container: Container, iam: IamService) -> None:
    role = await _role(container, "auditor")
    read = await _permission(container, "employee:read")
    create = await _permission(container, "project:create")

    granted = await iam.assign_role_permissions(
        iam_pb2.AssignRolePermissionsRequest(role_id=role, permission_ids=[read, create])
    )
    assert [(p.name, p.id, p.scope) for p in granted.permissions] == [
        ("employee:read", read, permission_pb2.PERMISSION_SCOPE_PROJECT),
        ("project:create", create, permission_pb2.PERMISSION_SCOPE_GLOBAL),
    ]
    assert granted.permissions[0].description == "Read employees"

    again = await iam.assign_role_permissions(iam_pb2.AssignRolePermissionsRequest(role_id=role, permission_ids=[read]))
    assert list(again.permissions) == list(granted.permissions)
    listed = await iam.list_role_permissions(iam_pb2.ListRolePermissionsRequest(role_id=role))
    assert list(listed.permissions) == list(granted.permissions)

    with pytest.raises(PermissionNotFound) as caught:
        await iam.remove_role_permissions(
            iam_pb2.RemoveRolePermissionsRequest(role_id=role, permission_ids=[read, UNKNOWN_ID])
        )
    assert caught.value.metadata == {"permission_ids": UNKNOWN_ID}
    still = await iam.list_role_permissions(iam_pb2.ListRolePermissionsRequest(role_id=role))
    assert len(still.permissions) == 2

    after = await iam.remove_role_permissions(iam_pb2.RemoveRolePermissionsRequest(role_id=role, permission_ids=[read]))
    assert [p.name for p in after.permissions] == ["project:create"]


async def test_grants_on_an_unknown_role_or_permission_write_nothing(container: Container, iam: IamService) -> None:
    role = await _role(container, "auditor")
    read = await _permission(container, "employee:read")

    with pytest.raises(RoleNotFound):
        await iam.assign_role_permissions(
            iam_pb2.AssignRolePermissionsRequest(role_id=UNKNOWN_ID, permission_ids=[read])
        )
    with pytest.raises(RoleNotFound):
        await iam.list_role_permissions(iam_pb2.ListRolePermissionsRequest(role_id=UNKNOWN_ID))
    with pytest.raises(PermissionNotFound):
        await iam.assign_role_permissions(
            iam_pb2.AssignRolePermissionsRequest(role_id=role, permission_ids=[read, UNKNOWN_ID])
        )

    listed = await iam.list_role_permissions(iam_pb2.ListRolePermissionsRequest(role_id=role))
    assert list(listed.permissions) == []


# -- batch resolution cost ----------------------------------------------------------------------

_executed: list[str] = []


class _CountingCursor(psycopg.AsyncCursor[Any]):
    """Records every statement sent through it."""

    async def execute(self, *args: Any, **kwargs: Any) -> Self:
        query = args[0] if args else kwargs["query"]
        _executed.append(query if isinstance(query, str) else repr(query))
        return await super().execute(*args, **kwargs)


class _CountingDatabase(Database):
    """The real database whose units of work count the statements they run."""

    @staticmethod
    @asynccontextmanager
    async def _counting(conn: AsyncConnection[Any]) -> AsyncIterator[AsyncConnection[Any]]:
        conn.cursor_factory = _CountingCursor
        try:
            yield conn
        finally:
            conn.cursor_factory = psycopg.AsyncCursor

    @asynccontextmanager
    async def transaction(self, *, lock_timeout_ms: int | None = None) -> AsyncIterator[AsyncConnection[Any]]:
        async with super().transaction(lock_timeout_ms=lock_timeout_ms) as conn, self._counting(conn):
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with super().connection() as conn, self._counting(conn):
            yield conn


async def test_batches_cost_the_same_number_of_statements_whatever_their_size(container: Container) -> None:
    iam = IamService(_CountingDatabase(container.db.pool), IamRepo())
    owner = await _user(container, "owner@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    user = await _user(container, "ann@example.com")
    roles = [await _role(container, f"role{i}") for i in range(12)]
    users = [await _user(container, f"user{i}@example.com") for i in range(12)]

    async def statements(call: Any) -> int:
        _executed.clear()
        await call
        return len(_executed)

    one_role = await statements(
        iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=user.public_id, role_ids=roles[:1]))
    )
    many_roles = await statements(
        iam.assign_user_roles(iam_pb2.AssignUserRolesRequest(user_id=user.public_id, role_ids=roles[1:]))
    )
    caller = _caller(owner, project, "owner")
    one_user = await statements(_add(iam, project, caller, [_new(users[0], MEMBER)]))
    many_users = await statements(_add(iam, project, caller, [_new(u, VIEWER) for u in users[1:]]))
    remove_many = await statements(_remove(iam, project, caller, users[1:]))

    assert one_role > 0
    assert many_roles == one_role
    assert many_users == one_user
    assert remove_many <= one_user + 1  # lock project, lock owners, read members, delete
    assert len(await _roles_held(container, user)) == 12


# -- project membership -------------------------------------------------------------------------


async def test_added_members_come_back_in_request_order_with_their_names(container: Container, iam: IamService) -> None:
    owner = await _user(container, "owner@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    zoe = await _user(container, "zoe@example.com", first_name="Zoe", last_name="Zed")
    bob = await _user(container, "bob@example.com", first_name="Bob", active=False)

    added = await _add(iam, project, _caller(owner, project, "owner"), [_new(zoe, ADMIN), _new(bob, VIEWER)])

    assert [(m.user_id, m.email, m.first_name, m.last_name, m.role) for m in added] == [
        (zoe.public_id, "zoe@example.com", "Zoe", "Zed", ADMIN),
        (bob.public_id, "bob@example.com", "Bob", "", VIEWER),  # inactive users may be added
    ]
    assert {m.project_id for m in added} == {project.public_id}
    listed = await _members(iam, project, _caller(owner, project, "owner"))
    assert [m.email for m in listed] == ["bob@example.com", "owner@example.com", "zoe@example.com"]
    assert listed[1].role == OWNER


async def test_adding_an_existing_member_or_an_unknown_user_adds_nobody(container: Container, iam: IamService) -> None:
    owner = await _user(container, "owner@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    existing = await _user(container, "existing@example.com")
    await _join(container, project, existing, "viewer")
    newcomer = await _user(container, "new@example.com")
    caller = _caller(owner, project, "owner")

    with pytest.raises(MemberExists) as exists:
        await _add(iam, project, caller, [_new(newcomer, MEMBER), _new(existing, ADMIN)])
    with pytest.raises(UserNotFound) as unknown:
        await _add(
            iam,
            project,
            caller,
            [_new(newcomer, MEMBER), iam_pb2.NewProjectMember(user_id=UNKNOWN_ID, role=MEMBER)],
        )

    assert exists.value.metadata == {"project_id": project.public_id, "user_ids": existing.public_id}
    assert unknown.value.metadata == {"user_ids": UNKNOWN_ID}
    assert await _memberships(container, project) == {"owner@example.com": "owner", "existing@example.com": "viewer"}


async def test_only_an_owner_may_grant_change_or_remove_the_owner_role(container: Container, iam: IamService) -> None:
    owner = await _user(container, "owner@example.com")
    admin = await _user(container, "admin@example.com")
    member = await _user(container, "member@example.com")
    newcomer = await _user(container, "new@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    await _join(container, project, admin, "admin")
    await _join(container, project, member, "member")
    as_admin = _caller(admin, project, "admin")

    with pytest.raises(OwnerRequired):
        await _add(iam, project, as_admin, [_new(newcomer, VIEWER), _new(member, OWNER)])
    with pytest.raises(OwnerRequired):
        await _update(iam, project, as_admin, member, OWNER)
    with pytest.raises(OwnerRequired):
        await _update(iam, project, as_admin, owner, ADMIN)
    with pytest.raises(OwnerRequired):
        await _remove(iam, project, as_admin, [member, owner])
    assert await _memberships(container, project) == {
        "owner@example.com": "owner",
        "admin@example.com": "admin",
        "member@example.com": "member",
    }

    # An admin still manages everyone else; an owner may also make owners.
    assert (await _update(iam, project, as_admin, member, VIEWER)).role == VIEWER
    await _add(iam, project, as_admin, [_new(newcomer, MEMBER)])
    promoted = await _update(iam, project, _caller(owner, project, "owner"), member, OWNER)
    assert promoted.role == OWNER
    assert promoted.email == "member@example.com"
    await _remove(iam, project, _caller(owner, project, "owner"), [member])
    assert await _memberships(container, project) == {
        "owner@example.com": "owner",
        "admin@example.com": "admin",
        "new@example.com": "member",
    }


async def test_the_last_owner_can_be_neither_demoted_nor_removed(container: Container, iam: IamService) -> None:
    owner = await _user(container, "owner@example.com")
    member = await _user(container, "member@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    await _join(container, project, member, "member")
    as_owner = _caller(owner, project, "owner")

    with pytest.raises(LastOwner):
        await _update(iam, project, as_owner, owner, ADMIN)
    with pytest.raises(LastOwner):
        await _remove(iam, project, as_owner, [member, owner])
    assert await _memberships(container, project) == {"owner@example.com": "owner", "member@example.com": "member"}

    # With a second owner, the first may step down.
    await _update(iam, project, as_owner, member, OWNER)
    assert (await _update(iam, project, as_owner, owner, ADMIN)).role == ADMIN
    with pytest.raises(LastOwner):
        await _remove(iam, project, _caller(member, project, "owner"), [member])


async def test_changing_or_removing_a_non_member_is_member_not_found_and_removes_nobody(
    container: Container, iam: IamService
) -> None:
    owner = await _user(container, "owner@example.com")
    member = await _user(container, "member@example.com")
    stranger = await _user(container, "stranger@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    await _join(container, project, member, "member")
    as_owner = _caller(owner, project, "owner")

    with pytest.raises(MemberNotFound) as on_update:
        await _update(iam, project, as_owner, stranger, VIEWER)
    with pytest.raises(MemberNotFound) as on_remove:
        await iam.remove_project_members(
            iam_pb2.RemoveProjectMembersRequest(
                project_id=project.public_id, user_ids=[member.public_id, stranger.public_id, UNKNOWN_ID]
            ),
            as_owner,
        )

    assert on_update.value.metadata == {"project_id": project.public_id, "user_ids": stranger.public_id}
    assert on_remove.value.metadata == {
        "project_id": project.public_id,
        "user_ids": f"{stranger.public_id},{UNKNOWN_ID}",
    }
    assert await _memberships(container, project) == {"owner@example.com": "owner", "member@example.com": "member"}


async def test_two_concurrent_removals_of_the_two_last_owners_cannot_both_succeed(
    container: Container, iam: IamService
) -> None:
    for round_ in range(5):
        first = await _user(container, f"first{round_}@example.com")
        second = await _user(container, f"second{round_}@example.com")
        project = await _project(container, f"Race {round_}")
        await _join(container, project, first, "owner")
        await _join(container, project, second, "owner")

        results = await asyncio.gather(
            _remove(iam, project, _caller(first, project, "owner"), [first]),
            _remove(iam, project, _caller(second, project, "owner"), [second]),
            return_exceptions=True,
        )

        assert sum(r is None for r in results) == 1, results
        assert sum(isinstance(r, LastOwner) for r in results) == 1, results
        assert list((await _memberships(container, project)).values()) == ["owner"]


async def test_two_concurrent_demotions_of_the_two_last_owners_cannot_both_succeed(
    container: Container, iam: IamService
) -> None:
    for round_ in range(5):
        first = await _user(container, f"first{round_}@example.com")
        second = await _user(container, f"second{round_}@example.com")
        project = await _project(container, f"Race {round_}")
        await _join(container, project, first, "owner")
        await _join(container, project, second, "owner")

        results = await asyncio.gather(
            _update(iam, project, _caller(first, project, "owner"), first, MEMBER),
            _update(iam, project, _caller(second, project, "owner"), second, MEMBER),
            return_exceptions=True,
        )

        assert sum(isinstance(r, iam_pb2.ProjectMember) for r in results) == 1, results
        assert sum(isinstance(r, LastOwner) for r in results) == 1, results
        assert sorted((await _memberships(container, project)).values()) == ["member", "owner"]


# -- deleted projects and "my projects" ----------------------------------------------------------


async def test_a_users_projects_are_its_live_memberships_sorted_by_name(container: Container, iam: IamService) -> None:
    ann = await _user(container, "ann@example.com")
    zulu, alpha, gone, foreign = (
        await _project(container, "Zulu"),
        await _project(container, "Alpha"),
        await _project(container, "Gone"),
        await _project(container, "Foreign"),
    )
    await _join(container, zulu, ann, "viewer")
    await _join(container, alpha, ann, "owner")
    await _join(container, gone, ann, "admin")
    await _delete_project(container, gone)
    assert foreign.public_id  # ann is not a member there

    theirs = await iam.list_user_projects(iam_pb2.ListUserProjectsRequest(user_id=ann.public_id))
    mine = await iam.list_my_projects(
        iam_pb2.ListMyProjectsRequest(), Caller(Principal.user(ann.id, ann.public_id), frozenset())
    )

    expected = [
        iam_pb2.UserProject(project_id=alpha.public_id, project_name="Alpha", role=OWNER),
        iam_pb2.UserProject(project_id=zulu.public_id, project_name="Zulu", role=VIEWER),
    ]
    assert list(theirs.projects) == expected
    assert list(mine.projects) == expected


async def test_api_keys_have_no_projects_of_their_own(container: Container, iam: IamService) -> None:
    project = await _project(container, "Acme")
    ref = ProjectRef(project.public_id, project.id)
    key = Principal.api_key("keykeykeykey22", ref, frozenset({"member:read"}))

    with pytest.raises(ApiKeyNotAllowed):
        await iam.list_my_projects(iam_pb2.ListMyProjectsRequest(), Caller(key, key.permissions, ref))


async def test_a_deleted_project_has_no_members_to_list_add_change_or_remove(
    container: Container, iam: IamService
) -> None:
    owner = await _user(container, "owner@example.com")
    member = await _user(container, "member@example.com")
    newcomer = await _user(container, "new@example.com")
    project = await _project(container, "Acme")
    await _join(container, project, owner, "owner")
    await _join(container, project, member, "member")
    # Authorized while the project was live; deleted before the call reaches the service.
    as_owner = _caller(owner, project, "owner")
    assert len(await _members(iam, project, as_owner)) == 2
    await _delete_project(container, project)

    with pytest.raises(ProjectNotFound):
        await _members(iam, project, as_owner)
    with pytest.raises(ProjectNotFound):
        await _add(iam, project, as_owner, [_new(newcomer, MEMBER)])
    with pytest.raises(ProjectNotFound):
        await _update(iam, project, as_owner, member, VIEWER)
    with pytest.raises(ProjectNotFound):
        await _remove(iam, project, as_owner, [member])
    assert await _memberships(container, project) == {"owner@example.com": "owner", "member@example.com": "member"}


async def test_a_live_project_without_members_lists_none(container: Container, iam: IamService) -> None:
    someone = await _user(container, "someone@example.com")
    project = await _project(container, "Acme")

    assert await _members(iam, project, _caller(someone, project, "admin")) == []
