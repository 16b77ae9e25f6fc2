"""PermissionService against a real PostgreSQL: the seeded catalog read back through Get and Query, with
the scope enum mapping, the scope filter, keyword and sort declarations."""

from __future__ import annotations

import pytest

from altalune.v1 import common_pb2, permission_pb2
from internal.auth.policy import access_rules, permission_catalog
from internal.container import Container, contract
from internal.domain.permission.errors import PermissionNotFound
from internal.domain.permission.repo import PermissionRepo
from internal.domain.permission.service import PermissionService
from internal.errors import InvalidArgument

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"
PROTO_SCOPES = {"global": permission_pb2.PERMISSION_SCOPE_GLOBAL, "project": permission_pb2.PERMISSION_SCOPE_PROJECT}


def _service(container: Container) -> PermissionService:
    return PermissionService(container.db, PermissionRepo())


async def _query(
    permissions: PermissionService, query: common_pb2.QueryRequest
) -> permission_pb2.QueryPermissionsResponse:
    return await permissions.query_permissions(permission_pb2.QueryPermissionsRequest(query=query))


def _scope(*values: str) -> common_pb2.QueryRequest:
    return common_pb2.QueryRequest(
        filters={"scope": common_pb2.StringList(values=list(values))}, pagination=common_pb2.Pagination(page_size=100)
    )


async def _seeded(container: Container) -> dict[str, tuple[str, str, str]]:
    """name -> (public id, scope, description), straight from the table."""
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT name, public_id, scope, description FROM permissions")
        return {str(n): (str(p), str(s), str(d)) for n, p, s, d in await cur.fetchall()}


async def test_the_scope_filter_returns_the_seeded_permissions_of_that_scope_in_name_order(
    container: Container,
) -> None:
    permissions = _service(container)
    seeded = await _seeded(container)

    global_ = await _query(permissions, _scope("global"))
    project = await _query(permissions, _scope("project"))
    both = await _query(permissions, _scope("global", "project"))

    for response, scope in ((global_, "global"), (project, "project")):
        expected = sorted(name for name, (_, s, _) in seeded.items() if s == scope)
        assert [p.name for p in response.data] == expected
        assert response.meta.row_count == len(expected)
        assert all(p.scope == PROTO_SCOPES[scope] for p in response.data)
        assert all((p.id, p.description) == seeded[p.name][::2] for p in response.data)
    catalog = permission_catalog(access_rules(contract()).values())
    assert global_.meta.row_count == sum(scope == "global" for scope in catalog.values())
    assert project.meta.row_count == sum(scope == "project" for scope in catalog.values())
    assert {"user:read", "role:delete", "permission:read", "iam:write"} <= {p.name for p in global_.data}
    assert {"employee:read", "apikey:write", "member:write"} <= {p.name for p in project.data}
    assert both.meta.row_count == len(seeded)
    assert list(both.meta.filters["scope"].values) == ["global", "project"]


async def test_an_unknown_scope_value_is_invalid(container: Container) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await _query(_service(container), _scope("tenant"))

    assert caught.value.violations[0].reason == "query.filter_value"


async def test_a_permission_reads_back_by_its_public_id(container: Container) -> None:
    permissions = _service(container)
    seeded = await _seeded(container)
    public_id, _, description = seeded["member:write"]

    permission = (await permissions.get_permission(permission_pb2.GetPermissionRequest(id=public_id))).permission

    assert (permission.id, permission.name, permission.description) == (public_id, "member:write", description)
    assert permission.scope == permission_pb2.PERMISSION_SCOPE_PROJECT
    assert permission.HasField("created_at")


async def test_an_unknown_permission_is_not_found(container: Container) -> None:
    with pytest.raises(PermissionNotFound) as caught:
        await _service(container).get_permission(permission_pb2.GetPermissionRequest(id=UNKNOWN_ID))

    assert caught.value.reason == "PERMISSION_NOT_FOUND"
    assert caught.value.metadata == {"permission_ids": UNKNOWN_ID}


async def test_query_keyword_matches_name_and_description_and_sorts(container: Container) -> None:
    permissions = _service(container)

    by_name = await _query(permissions, common_pb2.QueryRequest(keyword="APIKEY"))
    by_description = await _query(permissions, common_pb2.QueryRequest(keyword="CATALOG"))
    name_desc = await _query(
        permissions,
        common_pb2.QueryRequest(
            keyword="role:", sorting=common_pb2.Sorting(field="name", order=common_pb2.SORT_ORDER_DESC)
        ),
    )
    first_page = await _query(permissions, common_pb2.QueryRequest(pagination=common_pb2.Pagination(page_size=3)))

    assert [p.name for p in by_name.data] == ["apikey:delete", "apikey:read", "apikey:write"]
    assert [p.name for p in by_description.data] == ["permission:read"]
    assert [p.name for p in name_desc.data] == ["role:write", "role:read", "role:delete"]
    assert [p.name for p in first_page.data] == ["apikey:delete", "apikey:read", "apikey:write"]
    assert first_page.meta.page_count == -(-len(permission_catalog(access_rules(contract()).values())) // 3)
    with pytest.raises(InvalidArgument):
        await _query(permissions, common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="scope")))
