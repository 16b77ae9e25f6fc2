"""RoleService against a real PostgreSQL: name uniqueness, masked updates, the built-in guards, the
in-use guard (user_roles is ON DELETE RESTRICT), grants deleted with the role, and the query declarations."""

from __future__ import annotations

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import common_pb2, role_pb2
from internal.auth.policy import access_rules, permission_catalog
from internal.container import Container, contract
from internal.domain.role.errors import RoleBuiltin, RoleInUse, RoleNameTaken, RoleNotFound
from internal.domain.role.repo import RoleRepo
from internal.domain.role.service import RoleService
from internal.errors import InvalidArgument
from internal.ids import new_public_id

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"
BUILTIN = ["admin", "member", "owner", "viewer"]


def _service(container: Container) -> RoleService:
    return RoleService(container.db, RoleRepo())


async def _create(roles: RoleService, name: str, description: str = "") -> role_pb2.Role:
    return (await roles.create_role(role_pb2.CreateRoleRequest(name=name, description=description))).role


async def _query(roles: RoleService, query: common_pb2.QueryRequest) -> role_pb2.QueryRolesResponse:
    return await roles.query_roles(role_pb2.QueryRolesRequest(query=query))


async def _builtin(roles: RoleService, name: str) -> role_pb2.Role:
    found = await _query(roles, common_pb2.QueryRequest(keyword=name, filters={"builtin": _values("true")}))
    (role,) = [r for r in found.data if r.name == name]
    return role


def _values(*values: str) -> common_pb2.StringList:
    return common_pb2.StringList(values=list(values))


async def _count(container: Container, statement: str, value: object) -> int:
    async with container.db.connection() as conn:
        cur = await conn.execute(statement, (value,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_created_role_is_not_builtin_and_reads_back_identically(container: Container) -> None:
    roles = _service(container)

    created = await _create(roles, "auditor", "Reads the audit trail")
    fetched = (await roles.get_role(role_pb2.GetRoleRequest(id=created.id))).role

    assert fetched == created
    assert len(created.id) == 14
    assert (created.name, created.description, created.builtin) == ("auditor", "Reads the audit trail", False)


async def test_role_names_are_unique(container: Container) -> None:
    roles = _service(container)
    await _create(roles, "auditor")

    with pytest.raises(RoleNameTaken) as caught:
        await _create(roles, "auditor", "again")
    assert caught.value.reason == "ROLE_NAME_TAKEN"
    assert caught.value.metadata == {"name": "auditor"}
    with pytest.raises(RoleNameTaken):
        await _create(roles, "admin")  # a built-in name is taken too


async def test_renaming_onto_a_taken_name_is_refused_and_keeps_the_old_name(container: Container) -> None:
    roles = _service(container)
    await _create(roles, "auditor")
    other = await _create(roles, "support")

    with pytest.raises(RoleNameTaken):
        await roles.update_role(
            role_pb2.UpdateRoleRequest(id=other.id, name="auditor", update_mask=FieldMask(paths=["name"]))
        )

    assert (await roles.get_role(role_pb2.GetRoleRequest(id=other.id))).role.name == "support"


async def test_an_update_changes_only_the_masked_fields(container: Container) -> None:
    roles = _service(container)
    role = await _create(roles, "auditor", "Reads the audit trail")

    renamed = (
        await roles.update_role(
            role_pb2.UpdateRoleRequest(
                id=role.id, name="reviewer", description="ignored", update_mask=FieldMask(paths=["name"])
            )
        )
    ).role
    described = (
        await roles.update_role(
            role_pb2.UpdateRoleRequest(
                id=role.id, name="ignored", description="", update_mask=FieldMask(paths=["description"])
            )
        )
    ).role

    assert (renamed.name, renamed.description) == ("reviewer", "Reads the audit trail")
    assert renamed.updated_at.ToDatetime() > role.updated_at.ToDatetime()
    assert (described.name, described.description) == ("reviewer", "")
    assert (await roles.get_role(role_pb2.GetRoleRequest(id=role.id))).role == described


async def test_a_builtin_role_cannot_be_renamed_but_its_description_can_change(container: Container) -> None:
    roles = _service(container)
    admin = await _builtin(roles, "admin")

    with pytest.raises(RoleBuiltin) as caught:
        await roles.update_role(
            role_pb2.UpdateRoleRequest(
                id=admin.id, name="superuser", description="x", update_mask=FieldMask(paths=["name", "description"])
            )
        )
    assert caught.value.reason == "ROLE_BUILTIN"
    assert caught.value.metadata == {"role_id": admin.id, "name": "admin"}
    assert (await roles.get_role(role_pb2.GetRoleRequest(id=admin.id))).role == admin  # nothing changed

    described = (
        await roles.update_role(
            role_pb2.UpdateRoleRequest(
                id=admin.id, description="Runs the place", update_mask=FieldMask(paths=["description"])
            )
        )
    ).role
    kept_name = (
        await roles.update_role(
            role_pb2.UpdateRoleRequest(id=admin.id, name="admin", update_mask=FieldMask(paths=["name"]))
        )
    ).role

    assert (described.name, described.description, described.builtin) == ("admin", "Runs the place", True)
    assert kept_name.name == "admin"


async def test_a_builtin_role_cannot_be_deleted(container: Container) -> None:
    roles = _service(container)
    viewer = await _builtin(roles, "viewer")

    with pytest.raises(RoleBuiltin) as caught:
        await roles.delete_role(role_pb2.DeleteRoleRequest(id=viewer.id))

    assert caught.value.reason == "ROLE_BUILTIN"
    assert (await roles.get_role(role_pb2.GetRoleRequest(id=viewer.id))).role == viewer


async def test_a_role_held_by_a_user_cannot_be_deleted(container: Container) -> None:
    roles = _service(container)
    role = await _create(roles, "auditor")
    async with container.db.connection() as conn:
        await conn.execute(
            "WITH u AS (INSERT INTO users (public_id, email, first_name) VALUES (%s, 'ann@example.com', 'Ann') "
            "RETURNING id) INSERT INTO user_roles (user_id, role_id) "
            "SELECT u.id, r.id FROM u, roles r WHERE r.public_id = %s",
            (new_public_id(), role.id),
        )

    with pytest.raises(RoleInUse) as caught:
        await roles.delete_role(role_pb2.DeleteRoleRequest(id=role.id))

    assert caught.value.reason == "ROLE_IN_USE"
    assert caught.value.metadata == {"role_id": role.id}
    assert (await roles.get_role(role_pb2.GetRoleRequest(id=role.id))).role == role


async def test_a_deleted_role_is_gone_with_its_grants_and_its_name_is_free(container: Container) -> None:
    roles = _service(container)
    role = await _create(roles, "auditor")
    async with container.db.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO role_permissions (role_id, permission_id) "
            "SELECT r.id, p.id FROM roles r, permissions p WHERE r.public_id = %s AND p.scope = 'global' "
            "RETURNING role_id",
            (role.id,),
        )
        internal_ids = {int(row[0]) for row in await cur.fetchall()}
    (internal_id,) = internal_ids
    grants = "SELECT count(*) FROM role_permissions WHERE role_id = %s"
    global_permissions = {
        name for name, scope in permission_catalog(access_rules(contract()).values()).items() if scope == "global"
    }
    assert await _count(container, grants, internal_id) == len(global_permissions)

    await roles.delete_role(role_pb2.DeleteRoleRequest(id=role.id))

    with pytest.raises(RoleNotFound):
        await roles.get_role(role_pb2.GetRoleRequest(id=role.id))
    assert await _count(container, grants, internal_id) == 0
    assert (await _create(roles, "auditor")).id != role.id


async def test_an_unknown_role_is_not_found_for_get_update_and_delete(container: Container) -> None:
    roles = _service(container)

    with pytest.raises(RoleNotFound) as caught:
        await roles.get_role(role_pb2.GetRoleRequest(id=UNKNOWN_ID))
    assert caught.value.reason == "ROLE_NOT_FOUND"
    assert caught.value.metadata == {"role_ids": UNKNOWN_ID}
    with pytest.raises(RoleNotFound):
        await roles.update_role(
            role_pb2.UpdateRoleRequest(id=UNKNOWN_ID, name="x1", update_mask=FieldMask(paths=["name"]))
        )
    with pytest.raises(RoleNotFound):
        await roles.update_role(
            role_pb2.UpdateRoleRequest(id=UNKNOWN_ID, description="x", update_mask=FieldMask(paths=["description"]))
        )
    with pytest.raises(RoleNotFound):
        await roles.delete_role(role_pb2.DeleteRoleRequest(id=UNKNOWN_ID))


async def test_query_defaults_to_name_order_and_filters_on_builtin(container: Container) -> None:
    roles = _service(container)
    await _create(roles, "zeta")
    await _create(roles, "auditor")

    everything = await _query(roles, common_pb2.QueryRequest())
    builtin = await _query(roles, common_pb2.QueryRequest(filters={"builtin": _values("true")}))
    custom = await _query(roles, common_pb2.QueryRequest(filters={"builtin": _values("false")}))

    assert [r.name for r in everything.data] == sorted([*BUILTIN, "auditor", "zeta"])
    assert [r.name for r in builtin.data] == BUILTIN
    assert all(r.builtin for r in builtin.data)
    assert [r.name for r in custom.data] == ["auditor", "zeta"]
    assert list(everything.meta.filters["builtin"].values) == ["true", "false"]
    with pytest.raises(InvalidArgument):
        await _query(roles, common_pb2.QueryRequest(filters={"builtin": _values("maybe")}))


async def test_query_keyword_matches_name_and_description_and_sorts(container: Container) -> None:
    roles = _service(container)
    auditor = await _create(roles, "auditor", "Reads the AUDIT trail")
    support = await _create(roles, "support", "Answers tickets")

    by_description = await _query(roles, common_pb2.QueryRequest(keyword="audit"))
    by_name = await _query(roles, common_pb2.QueryRequest(keyword="SUPP"))
    newest_first = await _query(
        roles,
        common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="created_at", order=common_pb2.SORT_ORDER_DESC)),
    )
    name_desc = await _query(
        roles, common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="name", order=common_pb2.SORT_ORDER_DESC))
    )

    assert [r.id for r in by_description.data] == [auditor.id]
    assert [r.id for r in by_name.data] == [support.id]
    assert [r.id for r in newest_first.data[:2]] == [support.id, auditor.id]
    assert [r.name for r in name_desc.data] == sorted([*BUILTIN, "auditor", "support"], reverse=True)
