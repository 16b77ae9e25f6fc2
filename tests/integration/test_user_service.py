"""UserService against a real PostgreSQL: case-insensitive email uniqueness, masked updates, idempotent
activation, the self-deactivation guard, and the query keyword/filter/sort declarations."""

from __future__ import annotations

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from altalune.v1 import common_pb2, user_pb2
from internal.auth.principal import Caller, Principal
from internal.container import Container
from internal.domain.user.errors import CannotDeactivateSelf, UserEmailTaken, UserNotFound
from internal.domain.user.repo import UserRepo
from internal.domain.user.service import UserService
from internal.errors import InvalidArgument

pytestmark = pytest.mark.integration

UNKNOWN_ID = "23456789abcdef"


def _service(container: Container) -> UserService:
    return UserService(container.db, UserRepo())


async def _create(
    users: UserService, email: str = "ann@example.com", first_name: str = "Ann", last_name: str = "Lee"
) -> user_pb2.User:
    response = await users.create_user(
        user_pb2.CreateUserRequest(email=email, first_name=first_name, last_name=last_name)
    )
    return response.user


async def _query(users: UserService, query: common_pb2.QueryRequest) -> user_pb2.QueryUsersResponse:
    return await users.query_users(user_pb2.QueryUsersRequest(query=query))


async def _caller_for(container: Container, public_id: str) -> Caller:
    async with container.db.connection() as conn:
        cur = await conn.execute("SELECT id FROM users WHERE public_id = %s", (public_id,))
        row = await cur.fetchone()
    assert row is not None
    return Caller(principal=Principal.user(int(row[0]), public_id), permissions=frozenset())


async def test_a_created_user_is_active_and_reads_back_identically(container: Container) -> None:
    users = _service(container)

    created = await _create(users, email="Ann.Lee@Example.com", first_name="Ann", last_name="Lee")
    fetched = (await users.get_user(user_pb2.GetUserRequest(id=created.id))).user

    assert fetched == created
    assert len(created.id) == 14
    assert created.email == "Ann.Lee@Example.com"  # stored as given; only uniqueness ignores case
    assert (created.first_name, created.last_name, created.active) == ("Ann", "Lee", True)
    assert created.created_at == created.updated_at


async def test_emails_are_unique_case_insensitively(container: Container) -> None:
    users = _service(container)
    await _create(users, email="ann@example.com")

    with pytest.raises(UserEmailTaken) as caught:
        await _create(users, email="ANN@Example.COM", first_name="Other")

    assert caught.value.reason == "USER_EMAIL_TAKEN"
    assert caught.value.metadata == {"email": "ANN@Example.COM"}
    assert (await _query(users, common_pb2.QueryRequest())).meta.row_count == 1


async def test_changing_an_email_onto_another_users_email_is_refused_and_keeps_the_old_one(
    container: Container,
) -> None:
    users = _service(container)
    await _create(users, email="ann@example.com")
    bob = await _create(users, email="bob@example.com", first_name="Bob")

    with pytest.raises(UserEmailTaken):
        await users.update_user(
            user_pb2.UpdateUserRequest(id=bob.id, email="Ann@example.com", update_mask=FieldMask(paths=["email"]))
        )

    assert (await users.get_user(user_pb2.GetUserRequest(id=bob.id))).user.email == "bob@example.com"


async def test_a_user_may_change_the_case_of_their_own_email(container: Container) -> None:
    users = _service(container)
    ann = await _create(users, email="ann@example.com")

    updated = await users.update_user(
        user_pb2.UpdateUserRequest(id=ann.id, email="Ann@Example.com", update_mask=FieldMask(paths=["email"]))
    )

    assert updated.user.email == "Ann@Example.com"


async def test_an_update_changes_only_the_masked_fields_and_bumps_updated_at(container: Container) -> None:
    users = _service(container)
    ann = await _create(users, email="ann@example.com", first_name="Ann", last_name="Lee")

    updated = (
        await users.update_user(
            user_pb2.UpdateUserRequest(
                id=ann.id,
                email="ignored@example.com",
                first_name="Annie",
                last_name="",
                update_mask=FieldMask(paths=["first_name", "last_name"]),
            )
        )
    ).user

    assert (updated.email, updated.first_name, updated.last_name) == ("ann@example.com", "Annie", "")
    assert updated.created_at == ann.created_at
    assert updated.updated_at.ToDatetime() > ann.updated_at.ToDatetime()
    assert (await users.get_user(user_pb2.GetUserRequest(id=ann.id))).user == updated


async def test_an_unknown_user_is_not_found_for_every_call(container: Container) -> None:
    users = _service(container)
    me = await _create(users)
    caller = await _caller_for(container, me.id)

    with pytest.raises(UserNotFound) as caught:
        await users.get_user(user_pb2.GetUserRequest(id=UNKNOWN_ID))
    assert caught.value.reason == "USER_NOT_FOUND"
    assert caught.value.metadata == {"user_ids": UNKNOWN_ID}
    with pytest.raises(UserNotFound):
        await users.update_user(
            user_pb2.UpdateUserRequest(id=UNKNOWN_ID, first_name="X", update_mask=FieldMask(paths=["first_name"]))
        )
    with pytest.raises(UserNotFound):
        await users.activate_user(user_pb2.ActivateUserRequest(id=UNKNOWN_ID))
    with pytest.raises(UserNotFound):
        await users.deactivate_user(user_pb2.DeactivateUserRequest(id=UNKNOWN_ID), caller)


async def test_deactivate_and_activate_are_idempotent(container: Container) -> None:
    users = _service(container)
    admin = await _create(users, email="admin@example.com")
    ann = await _create(users, email="ann@example.com")
    caller = await _caller_for(container, admin.id)

    again_active = (await users.activate_user(user_pb2.ActivateUserRequest(id=ann.id))).user
    assert again_active == ann  # nothing changed, not even updated_at

    off = (await users.deactivate_user(user_pb2.DeactivateUserRequest(id=ann.id), caller)).user
    assert off.active is False
    assert off.updated_at.ToDatetime() > ann.updated_at.ToDatetime()
    still_off = (await users.deactivate_user(user_pb2.DeactivateUserRequest(id=ann.id), caller)).user
    assert still_off == off
    assert (await users.get_user(user_pb2.GetUserRequest(id=ann.id))).user.active is False

    on = (await users.activate_user(user_pb2.ActivateUserRequest(id=ann.id))).user
    assert on.active is True
    assert on.updated_at.ToDatetime() > off.updated_at.ToDatetime()


async def test_a_caller_cannot_deactivate_themselves(container: Container) -> None:
    users = _service(container)
    me = await _create(users, email="me@example.com")
    caller = await _caller_for(container, me.id)

    with pytest.raises(CannotDeactivateSelf) as caught:
        await users.deactivate_user(user_pb2.DeactivateUserRequest(id=me.id), caller)

    assert caught.value.reason == "CANNOT_DEACTIVATE_SELF"
    assert (await users.get_user(user_pb2.GetUserRequest(id=me.id))).user.active is True


async def test_query_keyword_matches_email_and_names_case_insensitively(container: Container) -> None:
    users = _service(container)
    ann = await _create(users, email="ann@acme.test", first_name="Ann", last_name="Lee")
    bob = await _create(users, email="bob@other.test", first_name="Bob", last_name="Acmeson")
    await _create(users, email="cy@other.test", first_name="Cy", last_name="Young")

    by_keyword = await _query(users, common_pb2.QueryRequest(keyword="ACME"))
    by_first_name = await _query(users, common_pb2.QueryRequest(keyword="cy"))

    assert {u.id for u in by_keyword.data} == {ann.id, bob.id}
    assert by_keyword.meta.row_count == 2
    assert [u.email for u in by_first_name.data] == ["cy@other.test"]


async def test_query_filters_on_active_and_lists_the_filter_values(container: Container) -> None:
    users = _service(container)
    admin = await _create(users, email="admin@example.com")
    ann = await _create(users, email="ann@example.com")
    bob = await _create(users, email="bob@example.com")
    caller = await _caller_for(container, admin.id)
    await users.deactivate_user(user_pb2.DeactivateUserRequest(id=ann.id), caller)

    inactive = await _query(users, common_pb2.QueryRequest(filters={"active": common_pb2.StringList(values=["false"])}))
    active = await _query(users, common_pb2.QueryRequest(filters={"active": common_pb2.StringList(values=["true"])}))

    assert [u.id for u in inactive.data] == [ann.id]
    assert {u.id for u in active.data} == {admin.id, bob.id}
    assert list(active.meta.filters["active"].values) == ["true", "false"]
    with pytest.raises(InvalidArgument) as caught:
        await _query(users, common_pb2.QueryRequest(filters={"active": common_pb2.StringList(values=["yes"])}))
    assert caught.value.violations[0].reason == "query.filter_value"


async def test_query_sorts_by_the_declared_fields_and_pages(container: Container) -> None:
    users = _service(container)
    for email, first, last in [("b@x.test", "Zoe", "Adams"), ("c@x.test", "Amy", "Young"), ("a@x.test", "Max", "Lu")]:
        await _create(users, email=email, first_name=first, last_name=last)

    def sorted_by(field: str, order: common_pb2.SortOrder = common_pb2.SORT_ORDER_ASC) -> common_pb2.QueryRequest:
        return common_pb2.QueryRequest(sorting=common_pb2.Sorting(field=field, order=order))

    by_email = await _query(users, sorted_by("email"))
    by_first_desc = await _query(users, sorted_by("first_name", common_pb2.SORT_ORDER_DESC))
    by_last = await _query(users, sorted_by("last_name"))
    newest_first = await _query(users, common_pb2.QueryRequest())
    second_page = await _query(
        users,
        common_pb2.QueryRequest(
            sorting=sorted_by("email").sorting, pagination=common_pb2.Pagination(page=2, page_size=2)
        ),
    )

    assert [u.email for u in by_email.data] == ["a@x.test", "b@x.test", "c@x.test"]
    assert [u.first_name for u in by_first_desc.data] == ["Zoe", "Max", "Amy"]
    assert [u.last_name for u in by_last.data] == ["Adams", "Lu", "Young"]
    assert [u.email for u in newest_first.data] == ["a@x.test", "c@x.test", "b@x.test"]
    assert [u.email for u in second_page.data] == ["c@x.test"]
    assert (second_page.meta.row_count, second_page.meta.page_count) == (3, 2)
    with pytest.raises(InvalidArgument):
        await _query(users, sorted_by("active"))
