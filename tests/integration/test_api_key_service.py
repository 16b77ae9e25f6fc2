"""ApiKeyService against a real PostgreSQL: the secret shown once and never stored, scope rules, per-project
names, tenant isolation, activation that keeps the expiry, the computed status filter."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from connectrpc.code import Code
from google.protobuf.field_mask_pb2 import FieldMask
from psycopg import sql

from altalune.v1 import api_key_pb2, common_pb2, project_pb2
from internal.auth.credentials import ApiKeyHasher, display_prefix, parse_api_key
from internal.auth.principal import Caller, Principal
from internal.container import Container
from internal.domain.api_key.errors import (
    ApiKeyNameTaken,
    ApiKeyNotFound,
    ApiKeyOutlivesCaller,
    ApiKeyScopeExceedsCaller,
)
from internal.domain.api_key.repo import ApiKeyRepo
from internal.domain.api_key.service import ApiKeyService
from internal.errors import InvalidArgument
from internal.tenancy import ProjectNotFound
from tests.integration.projects import AsAuthorized, project_ref

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"
HASHER = ApiKeyHasher(b"x" * 32)
PROJECT_PERMISSIONS = frozenset(
    {
        "project:read",
        "project:write",
        "project:delete",
        "employee:read",
        "employee:write",
        "employee:delete",
        "apikey:read",
        "apikey:write",
        "apikey:delete",
        "member:read",
        "member:write",
    }
)
KEY_SHAPE = re.compile(r"^ak_([2-9a-hj-np-z]{14})_([2-9a-hj-np-z]{14})_([2-9a-hj-np-z]{40})$")


def _service(container: Container) -> AsAuthorized:
    return AsAuthorized(container, ApiKeyService(container.db, ApiKeyRepo(), HASHER))


def _caller(permissions: frozenset[str] = PROJECT_PERMISSIONS) -> Caller:
    return Caller(
        principal=Principal.user(1, "23456789abcdef"), permissions=permissions, project=None, project_role="owner"
    )


def _in_days(days: int) -> datetime:
    # Whole seconds: what goes in must compare equal to what comes back, whatever the precision.
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


async def _create_project(container: Container, name: str) -> str:
    response = await container.projects.create_project(
        project_pb2.CreateProjectRequest(name=name, timezone="Europe/Paris", environment=project_pb2.ENVIRONMENT_LIVE),
        caller=None,
    )
    return response.project.id


async def _create(
    service: AsAuthorized,
    project_id: str,
    *,
    name: str = "Deploy bot",
    scopes: tuple[str, ...] = ("employee:read",),
    expires_at: datetime | None = None,
    caller: Caller | None = None,
) -> api_key_pb2.CreateApiKeyResponse:
    return await service.create_api_key(
        api_key_pb2.CreateApiKeyRequest(
            project_id=project_id, name=name, scopes=scopes, expires_at=expires_at or _in_days(30)
        ),
        caller or _caller(),
    )


async def _get(service: AsAuthorized, project_id: str, key_id: str) -> api_key_pb2.ApiKey:
    response = await service.get_api_key(api_key_pb2.GetApiKeyRequest(project_id=project_id, id=key_id))
    return response.api_key


async def _query(
    service: AsAuthorized, project_id: str, query: common_pb2.QueryRequest | None = None
) -> api_key_pb2.QueryApiKeysResponse:
    return await service.query_api_keys(
        api_key_pb2.QueryApiKeysRequest(project_id=project_id, query=query or common_pb2.QueryRequest())
    )


async def _names(service: AsAuthorized, project_id: str, query: common_pb2.QueryRequest | None = None) -> list[str]:
    return [key.name for key in (await _query(service, project_id, query)).data]


def _status_query(*statuses: str) -> common_pb2.QueryRequest:
    return common_pb2.QueryRequest(
        filters={"status": common_pb2.StringList(values=statuses)},
        sorting=common_pb2.Sorting(field="name", order=common_pb2.SORT_ORDER_ASC),
    )


async def _expire(container: Container, key_id: str) -> None:
    """Move a key's expiry into the past (the contract refuses past expiries, so only SQL can)."""
    async with container.db.connection() as conn:
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 day' WHERE public_id = %s RETURNING id", (key_id,)
        )


async def _stored_expiry(container: Container, key_id: str) -> datetime:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT expires_at FROM api_keys WHERE public_id = %s", (key_id,))
        row = await cur.fetchone()
    assert row is not None
    expires_at: datetime = row[0]
    return expires_at


async def test_create_returns_the_whole_key_once_in_the_key_format(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    expires_at = _in_days(90)

    created = await _create(service, project_id, scopes=("employee:read", "employee:write"), expires_at=expires_at)

    match = KEY_SHAPE.fullmatch(created.secret)
    assert match is not None, created.secret
    assert match.group(1) == project_id
    assert match.group(2) == created.api_key.id
    token = parse_api_key(created.secret)
    assert token is not None
    key = created.api_key
    assert key.prefix == display_prefix(project_id, key.id, match.group(3)[:4])
    assert created.secret.startswith(key.prefix)
    assert key.prefix != created.secret
    assert (key.project_id, key.name, list(key.scopes), key.active) == (
        project_id,
        "Deploy bot",
        ["employee:read", "employee:write"],
        True,
    )
    assert key.expires_at.ToDatetime(tzinfo=UTC) == expires_at
    assert not key.HasField("last_used_at")
    assert key.created_at == key.updated_at
    # Each key has its own secret.
    other = await _create(service, project_id, name="Other bot")
    assert other.secret != created.secret
    assert other.api_key.id != key.id


async def test_the_database_holds_only_the_keyed_hash_of_the_key(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    created = await _create(service, project_id)
    token = parse_api_key(created.secret)
    assert token is not None

    async with container.db.connection() as conn:
        cur = await conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'api_keys'::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum"
        )
        columns = [str(row[0]) for row in await cur.fetchall()]
        cur = await conn.execute(
            sql.SQL("SELECT {} FROM api_keys").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns)
            )
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT secret_hash, secret_hint FROM api_keys WHERE public_id = %s", (token.key_public_id,)
        )
        stored = await cur.fetchone()

    assert "secret_hash" in columns
    assert len(rows) == 1
    for value in rows[0]:
        assert value is None or (created.secret not in value and token.secret not in value), value
    assert stored is not None
    assert bytes(stored[0]) == HASHER.hash(created.secret)
    assert token.secret.encode() not in bytes(stored[0])
    assert stored[1] == token.secret[:4]


async def test_get_and_query_never_return_the_secret(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    created = await _create(service, project_id)
    token = parse_api_key(created.secret)
    assert token is not None

    get = await service.get_api_key(api_key_pb2.GetApiKeyRequest(project_id=project_id, id=created.api_key.id))
    query = await _query(service, project_id)

    assert get.api_key == created.api_key
    assert list(query.data) == [created.api_key]
    for message in (get, query):
        wire = message.SerializeToString()
        assert token.secret.encode() not in wire
        assert created.secret.encode() not in wire
        assert token.secret not in str(message)


async def test_a_global_permission_is_not_a_valid_scope(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    # The caller even holds it: the catalog refuses it before the caller is considered.
    caller = _caller(PROJECT_PERMISSIONS | {"user:read"})

    with pytest.raises(InvalidArgument) as caught:
        await _create(service, project_id, scopes=("employee:read", "user:read"), caller=caller)

    assert [(v.field, v.reason) for v in caught.value.violations] == [("scopes[1]", "scopes.project_permission")]
    assert await _names(service, project_id) == []


async def test_unknown_scopes_are_refused_each_with_its_index(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")

    with pytest.raises(InvalidArgument) as caught:
        await _create(service, project_id, scopes=("employee:fly", "employee:read", "nothing:here"))

    assert caught.value.code == Code.INVALID_ARGUMENT
    assert [(v.field, v.reason) for v in caught.value.violations] == [
        ("scopes[0]", "scopes.project_permission"),
        ("scopes[2]", "scopes.project_permission"),
    ]
    assert await _names(service, project_id) == []


async def test_a_key_cannot_be_stronger_than_its_creator(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    caller = _caller(frozenset({"apikey:write", "employee:read"}))

    with pytest.raises(ApiKeyScopeExceedsCaller) as caught:
        await _create(service, project_id, scopes=("employee:read", "employee:delete", "apikey:delete"), caller=caller)

    assert caught.value.code == Code.PERMISSION_DENIED
    assert caught.value.reason == "API_KEY_SCOPE_EXCEEDS_CALLER"
    assert caught.value.metadata == {"project_id": project_id, "scopes": "employee:delete,apikey:delete"}
    assert await _names(service, project_id) == []
    # Within the caller's own permissions it is fine.
    created = await _create(service, project_id, scopes=("employee:read",), caller=caller)
    assert list(created.api_key.scopes) == ["employee:read"]


async def test_names_are_unique_within_a_project_case_insensitively(container: Container) -> None:
    service = _service(container)
    project_a = await _create_project(container, "Acme")
    project_b = await _create_project(container, "Globex")
    await _create(service, project_a, name="Deploy bot")

    with pytest.raises(ApiKeyNameTaken) as caught:
        await _create(service, project_a, name="DEPLOY Bot")

    assert caught.value.code == Code.ALREADY_EXISTS
    assert caught.value.reason == "API_KEY_NAME_TAKEN"
    assert caught.value.metadata == {"project_id": project_a, "name": "DEPLOY Bot"}
    assert await _names(service, project_a) == ["Deploy bot"]
    # Another project may use the same name.
    other = await _create(service, project_b, name="Deploy bot")
    assert other.api_key.project_id == project_b


async def test_renaming_onto_a_taken_name_is_refused(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    await _create(service, project_id, name="Deploy bot")
    ci = (await _create(service, project_id, name="CI")).api_key

    with pytest.raises(ApiKeyNameTaken):
        await service.update_api_key(
            api_key_pb2.UpdateApiKeyRequest(
                project_id=project_id, id=ci.id, name="deploy bot", update_mask=FieldMask(paths=["name"])
            ),
            _caller(),
        )

    assert (await _get(service, project_id, ci.id)).name == "CI"


async def test_a_key_of_one_project_is_not_found_through_another(container: Container) -> None:
    service = _service(container)
    project_a = await _create_project(container, "Acme")
    project_b = await _create_project(container, "Globex")
    key = (await _create(service, project_a)).api_key

    with pytest.raises(ApiKeyNotFound) as caught:
        await _get(service, project_b, key.id)
    assert caught.value.code == Code.NOT_FOUND
    assert caught.value.reason == "API_KEY_NOT_FOUND"
    assert caught.value.metadata == {"project_id": project_b, "api_key_id": key.id}
    with pytest.raises(ApiKeyNotFound):
        await service.update_api_key(
            api_key_pb2.UpdateApiKeyRequest(
                project_id=project_b, id=key.id, name="Mallory", update_mask=FieldMask(paths=["name"])
            ),
            _caller(),
        )
    with pytest.raises(ApiKeyNotFound):
        await service.deactivate_api_key(api_key_pb2.DeactivateApiKeyRequest(project_id=project_b, id=key.id))
    with pytest.raises(ApiKeyNotFound):
        await service.activate_api_key(api_key_pb2.ActivateApiKeyRequest(project_id=project_b, id=key.id))
    with pytest.raises(ApiKeyNotFound):
        await service.delete_api_key(api_key_pb2.DeleteApiKeyRequest(project_id=project_b, id=key.id))
    assert await _names(service, project_b) == []

    assert await _get(service, project_a, key.id) == key


async def test_calls_naming_an_unknown_project_are_project_not_found(container: Container) -> None:
    service = _service(container)

    with pytest.raises(ProjectNotFound):
        await _create(service, UNKNOWN_ID)
    with pytest.raises(ProjectNotFound):
        await _get(service, UNKNOWN_ID, UNKNOWN_ID)


async def test_deactivate_and_activate_change_only_active_never_the_expiry(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    expires_at = _in_days(45)
    key = (await _create(service, project_id, expires_at=expires_at)).api_key
    await asyncio.sleep(0.01)

    off = (
        await service.deactivate_api_key(api_key_pb2.DeactivateApiKeyRequest(project_id=project_id, id=key.id))
    ).api_key
    assert off.active is False
    assert off.expires_at == key.expires_at
    assert off.updated_at.ToDatetime() > key.updated_at.ToDatetime()
    assert await _stored_expiry(container, key.id) == expires_at
    await asyncio.sleep(0.01)

    on = (await service.activate_api_key(api_key_pb2.ActivateApiKeyRequest(project_id=project_id, id=key.id))).api_key
    assert on.active is True
    assert on.expires_at == key.expires_at
    assert on.updated_at.ToDatetime() > off.updated_at.ToDatetime()
    assert await _stored_expiry(container, key.id) == expires_at
    assert (on.name, list(on.scopes), on.created_at) == (key.name, list(key.scopes), key.created_at)
    assert await _get(service, project_id, key.id) == on


async def test_activating_an_expired_key_does_not_revive_it(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    key = (await _create(service, project_id)).api_key
    await service.deactivate_api_key(api_key_pb2.DeactivateApiKeyRequest(project_id=project_id, id=key.id))
    await _expire(container, key.id)
    expired_at = await _stored_expiry(container, key.id)

    on = (await service.activate_api_key(api_key_pb2.ActivateApiKeyRequest(project_id=project_id, id=key.id))).api_key

    assert on.active is True
    assert on.expires_at.ToDatetime(tzinfo=UTC) == expired_at
    assert expired_at < datetime.now(UTC)
    assert await _names(service, project_id, _status_query("expired")) == [key.name]
    assert await _names(service, project_id, _status_query("active")) == []


async def test_the_status_filter_is_computed_from_active_and_the_expiry(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    await _create(service, project_id, name="a-live")
    off = (await _create(service, project_id, name="b-off")).api_key
    old = (await _create(service, project_id, name="c-old")).api_key
    off_and_old = (await _create(service, project_id, name="d-off-old")).api_key
    for key in (off, off_and_old):
        await service.deactivate_api_key(api_key_pb2.DeactivateApiKeyRequest(project_id=project_id, id=key.id))
    for key in (old, off_and_old):
        await _expire(container, key.id)

    assert await _names(service, project_id, _status_query("active")) == ["a-live"]
    assert await _names(service, project_id, _status_query("inactive")) == ["b-off", "d-off-old"]
    assert await _names(service, project_id, _status_query("expired")) == ["c-old"]
    assert await _names(service, project_id, _status_query("active", "expired")) == ["a-live", "c-old"]
    assert await _names(service, project_id, _status_query()) == []
    response = await _query(service, project_id, _status_query("inactive"))
    assert response.meta.row_count == 2
    assert list(response.meta.filters["status"].values) == ["active", "inactive", "expired"]
    # Combined with the keyword.
    query = _status_query("inactive")
    query.keyword = "old"
    assert await _names(service, project_id, query) == ["d-off-old"]

    with pytest.raises(InvalidArgument) as caught:
        await _query(service, project_id, _status_query("revoked"))
    assert caught.value.violations[0].reason == "query.filter_value"


async def test_query_keyword_sorting_and_default_order(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    for name, days in (("Deploy bot", 10), ("CI runner", 30), ("deploy-staging", 20)):
        await _create(service, project_id, name=name, expires_at=_in_days(days))
        await asyncio.sleep(0.01)

    assert await _names(service, project_id) == ["deploy-staging", "CI runner", "Deploy bot"]
    assert await _names(service, project_id, common_pb2.QueryRequest(keyword="DEPLOY")) == [
        "deploy-staging",
        "Deploy bot",
    ]
    by_expiry = common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="expires_at", order=common_pb2.SORT_ORDER_ASC))
    assert await _names(service, project_id, by_expiry) == ["Deploy bot", "deploy-staging", "CI runner"]
    with pytest.raises(InvalidArgument):
        await _query(service, project_id, common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="secret_hash")))


async def test_an_update_changes_only_the_masked_fields(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    before = (await _create(service, project_id, scopes=("employee:read",), expires_at=_in_days(30))).api_key
    await asyncio.sleep(0.01)

    # scopes and expires_at are set in the request but not masked: they must not be written.
    renamed = (
        await service.update_api_key(
            api_key_pb2.UpdateApiKeyRequest(
                project_id=project_id,
                id=before.id,
                name="Renamed",
                scopes=["employee:delete"],
                expires_at=_in_days(300),
                update_mask=FieldMask(paths=["name"]),
            ),
            _caller(),
        )
    ).api_key
    assert renamed.name == "Renamed"
    assert (list(renamed.scopes), renamed.expires_at, renamed.prefix, renamed.active) == (
        list(before.scopes),
        before.expires_at,
        before.prefix,
        before.active,
    )
    assert renamed.updated_at.ToDatetime() > before.updated_at.ToDatetime()

    new_expiry = _in_days(200)
    changed = (
        await service.update_api_key(
            api_key_pb2.UpdateApiKeyRequest(
                project_id=project_id,
                id=before.id,
                scopes=["employee:read", "employee:write"],
                expires_at=new_expiry,
                update_mask=FieldMask(paths=["scopes", "expires_at"]),
            ),
            _caller(),
        )
    ).api_key
    assert list(changed.scopes) == ["employee:read", "employee:write"]
    assert changed.expires_at.ToDatetime(tzinfo=UTC) == new_expiry
    assert changed.name == "Renamed"
    assert await _get(service, project_id, before.id) == changed


async def test_an_update_of_scopes_is_checked_like_a_create(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    key = (await _create(service, project_id)).api_key

    def request(*scopes: str) -> api_key_pb2.UpdateApiKeyRequest:
        return api_key_pb2.UpdateApiKeyRequest(
            project_id=project_id, id=key.id, scopes=scopes, update_mask=FieldMask(paths=["scopes"])
        )

    with pytest.raises(InvalidArgument) as invalid:
        await service.update_api_key(request("employee:read", "project:create"), _caller())
    assert [(v.field, v.reason) for v in invalid.value.violations] == [("scopes[1]", "scopes.project_permission")]
    with pytest.raises(ApiKeyScopeExceedsCaller) as exceeded:
        await service.update_api_key(request("employee:write"), _caller(frozenset({"apikey:write", "employee:read"})))
    assert exceeded.value.metadata["scopes"] == "employee:write"

    assert await _get(service, project_id, key.id) == key


async def test_a_deleted_key_is_gone(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    key = (await _create(service, project_id, name="Doomed")).api_key
    kept = (await _create(service, project_id, name="Kept")).api_key

    await service.delete_api_key(api_key_pb2.DeleteApiKeyRequest(project_id=project_id, id=key.id))

    with pytest.raises(ApiKeyNotFound):
        await _get(service, project_id, key.id)
    with pytest.raises(ApiKeyNotFound):
        await service.delete_api_key(api_key_pb2.DeleteApiKeyRequest(project_id=project_id, id=key.id))
    assert await _names(service, project_id) == ["Kept"]
    assert await _get(service, project_id, kept.id) == kept
    # Its name is free again.
    await _create(service, project_id, name="Doomed")


async def test_an_api_key_cannot_make_or_keep_a_key_alive_past_its_own_expiry(container: Container) -> None:
    service = _service(container)
    project_id = await _create_project(container, "Acme")
    own_expiry = _in_days(10)
    ref = await project_ref(container, project_id)
    as_key = Caller(
        principal=Principal.api_key("keykeykeykey22", ref, frozenset({"apikey:write"}), own_expiry),
        permissions=frozenset({"apikey:write", "employee:read"}),
        project=ref,
    )

    with pytest.raises(ApiKeyOutlivesCaller) as caught:
        await _create(service, project_id, name="Successor", expires_at=_in_days(20), caller=as_key)
    assert caught.value.code == Code.PERMISSION_DENIED
    assert caught.value.metadata["max_expires_at"] == own_expiry.isoformat().replace("+00:00", "Z")
    assert await _names(service, project_id) == []

    # Up to its own expiry is fine; a user is not limited.
    short = await _create(service, project_id, name="Short", expires_at=own_expiry, caller=as_key)
    with pytest.raises(ApiKeyOutlivesCaller):
        await service.update_api_key(
            api_key_pb2.UpdateApiKeyRequest(
                project_id=project_id,
                id=short.api_key.id,
                expires_at=_in_days(30),
                update_mask=FieldMask(paths=["expires_at"]),
            ),
            as_key,
        )
    assert (await _get(service, project_id, short.api_key.id)).expires_at.ToDatetime(tzinfo=UTC) == own_expiry
    extended = await service.update_api_key(
        api_key_pb2.UpdateApiKeyRequest(
            project_id=project_id,
            id=short.api_key.id,
            expires_at=_in_days(30),
            update_mask=FieldMask(paths=["expires_at"]),
        ),
        _caller(),
    )
    assert extended.api_key.expires_at.ToDatetime(tzinfo=UTC) == _in_days(30)
