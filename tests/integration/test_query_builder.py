"""The shared query builder as users meet it: QueryEmployees and QueryProjects on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from altalune.v1 import common_pb2, employee_pb2, project_pb2
from internal.container import Container
from internal.errors import InvalidArgument
from internal.query.builder import MAX_PAGE_SIZE
from tests.integration.projects import employees

pytestmark = pytest.mark.integration


async def _create_project(container: Container, name: str, *, description: str = "", timezone: str = "UTC") -> str:
    response = await container.projects.create_project(
        project_pb2.CreateProjectRequest(
            name=name, description=description, timezone=timezone, environment=project_pb2.ENVIRONMENT_LIVE
        )
    )
    return response.project.id


async def _employee(
    container: Container,
    project_id: str,
    email: str,
    *,
    name: str = "Ann",
    role: str = "Staff",
    department: str = "Ops",
    status: employee_pb2.EmployeeStatus = employee_pb2.EMPLOYEE_STATUS_ACTIVE,
) -> str:
    response = await employees(container).create_employee(
        employee_pb2.CreateEmployeeRequest(
            project_id=project_id, name=name, email=email, role=role, department=department, status=status
        )
    )
    return response.employee.id


def _request(
    *,
    keyword: str = "",
    filters: Mapping[str, Sequence[str]] | None = None,
    sort: str = "",
    desc: bool = False,
    page: int = 0,
    page_size: int = 0,
) -> common_pb2.QueryRequest:
    request = common_pb2.QueryRequest(
        keyword=keyword,
        pagination=common_pb2.Pagination(page=page, page_size=page_size),
        filters={k: common_pb2.StringList(values=list(v)) for k, v in (filters or {}).items()},
    )
    if sort:
        request.sorting.CopyFrom(
            common_pb2.Sorting(field=sort, order=common_pb2.SORT_ORDER_DESC if desc else common_pb2.SORT_ORDER_ASC)
        )
    return request


async def _employees(
    container: Container, project_id: str, query: common_pb2.QueryRequest
) -> employee_pb2.QueryEmployeesResponse:
    return await employees(container).query_employees(
        employee_pb2.QueryEmployeesRequest(project_id=project_id, query=query)
    )


async def _ids(container: Container, project_id: str, query: common_pb2.QueryRequest) -> set[str]:
    return {e.id for e in (await _employees(container, project_id, query)).data}


async def _project_names(container: Container, query: common_pb2.QueryRequest) -> list[str]:
    response = await container.projects.query_projects(project_pb2.QueryProjectsRequest(query=query))
    return [p.name for p in response.data]


# --- keyword -------------------------------------------------------------------------------------


async def test_the_keyword_matches_name_email_role_and_department_case_insensitively(container: Container) -> None:
    project = await _create_project(container, "Acme")
    by_name = await _employee(container, project, "zoe@example.com", name="Zoe Zebra")
    by_email = await _employee(container, project, "ann.zebra@example.com")
    by_role = await _employee(container, project, "kim@example.com", role="Zebra Keeper")
    by_department = await _employee(container, project, "lee@example.com", department="ZEBRA Unit")
    await _employee(container, project, "bob@example.com", name="Bob")

    found = await _ids(container, project, _request(keyword="zEbRa"))

    assert found == {by_name, by_email, by_role, by_department}


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [("%", "R%D"), ("_", "R_D"), ("\\", "R\\D"), ("r_d", "R_D"), ("%D", "R%D")],
)
async def test_like_wildcards_in_the_keyword_match_only_themselves(
    container: Container, keyword: str, expected: str
) -> None:
    project = await _create_project(container, "Acme")
    departments = ["R%D", "R_D", "R\\D", "RxD", "Rabc", "R"]
    for n, department in enumerate(departments):
        await _employee(container, project, f"p{n}@example.com", department=department)

    response = await _employees(container, project, _request(keyword=keyword))

    assert [e.department for e in response.data] == [expected]
    assert response.meta.row_count == 1


async def test_project_keyword_matches_name_and_description_with_literal_wildcards(container: Container) -> None:
    await _create_project(container, "Data_Lake")
    await _create_project(container, "DataXLake")
    await _create_project(container, "Billing", description="Keeps 100% of the INVOICES")
    await _create_project(container, "Archive", description="keeps 100 invoices")

    assert await _project_names(container, _request(keyword="_")) == ["Data_Lake"]
    assert await _project_names(container, _request(keyword="100%")) == ["Billing"]
    assert await _project_names(container, _request(keyword="invoices")) == ["Archive", "Billing"]


# --- allow-lists ---------------------------------------------------------------------------------


async def test_an_unknown_filter_key_is_rejected_naming_the_allowed_keys(container: Container) -> None:
    project = await _create_project(container, "Acme")

    with pytest.raises(InvalidArgument) as caught:
        await _employees(container, project, _request(filters={"colour": ["red"]}))

    [violation] = caught.value.violations
    assert violation.field == 'query.filters["colour"]'
    assert "department, role, status" in violation.description


async def test_an_unknown_sort_field_is_rejected_naming_the_allowed_fields(container: Container) -> None:
    project = await _create_project(container, "Acme")

    with pytest.raises(InvalidArgument) as caught:
        await _employees(container, project, _request(sort="salary"))

    [violation] = caught.value.violations
    assert violation.field == "query.sorting.field"
    assert "salary" in violation.description
    assert "department" in violation.description


async def test_an_unknown_value_for_the_status_filter_is_rejected(container: Container) -> None:
    project = await _create_project(container, "Acme")

    with pytest.raises(InvalidArgument) as caught:
        await _employees(container, project, _request(filters={"status": ["active", "retired"]}))

    [violation] = caught.value.violations
    assert violation.field == 'query.filters["status"]'
    assert "'retired'" in violation.description
    assert "'active'" not in violation.description


async def test_every_unknown_key_and_sort_field_is_reported_at_once(container: Container) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await container.projects.query_projects(
            project_pb2.QueryProjectsRequest(query=_request(filters={"owner": ["x"], "colour": ["y"]}, sort="size"))
        )

    assert sorted(v.field for v in caught.value.violations) == [
        'query.filters["colour"]',
        'query.filters["owner"]',
        "query.sorting.field",
    ]


# --- filters and the catalog ----------------------------------------------------------------------


@pytest.fixture
async def staff(container: Container) -> tuple[str, dict[str, str]]:
    """Five employees of one project, keyed by a nickname, plus one in another project."""
    project = await _create_project(container, "Acme")
    other = await _create_project(container, "Globex")
    inactive = employee_pb2.EMPLOYEE_STATUS_INACTIVE
    people = {
        "a": await _employee(container, project, "a@example.com", role="Engineer", department="R&D"),
        "b": await _employee(container, project, "b@example.com", role="Engineer", department="Sales"),
        "c": await _employee(container, project, "c@example.com", role="Designer", department="R&D", status=inactive),
        "d": await _employee(container, project, "d@example.com", role="Manager", department="Sales"),
        "e": await _employee(container, project, "e@example.com", role="Designer", department="Ops"),
    }
    await _employee(container, other, "x@example.com", role="Astronaut", department="Space")
    return project, people


async def test_filters_are_anded_across_keys_and_ored_within_a_key(
    container: Container, staff: tuple[str, dict[str, str]]
) -> None:
    project, people = staff

    async def found(filters: Mapping[str, Sequence[str]]) -> set[str]:
        ids = await _ids(container, project, _request(filters=filters))
        return {nick for nick, employee_id in people.items() if employee_id in ids}

    assert await found({"role": ["Engineer", "Designer"]}) == {"a", "b", "c", "e"}
    assert await found({"role": ["Engineer", "Designer"], "department": ["R&D"]}) == {"a", "c"}
    assert await found({"role": ["Engineer", "Designer"], "department": ["R&D"], "status": ["active"]}) == {"a"}
    assert await found({"status": ["inactive"]}) == {"c"}
    assert await found({"role": ["engineer"]}) == {"a", "b"}  # text filters ignore case
    assert await found({"role": ["Astronaut"]}) == set()  # another tenant's rows never show


async def test_the_catalog_keys_are_the_filter_keys_and_each_ignores_only_its_own_filter(
    container: Container, staff: tuple[str, dict[str, str]]
) -> None:
    project, people = staff

    response = await _employees(container, project, _request(filters={"role": ["Engineer"], "department": ["Sales"]}))

    assert [e.id for e in response.data] == [people["b"]]
    catalog = {key: list(values.values) for key, values in response.meta.filters.items()}
    assert set(catalog) == {"status", "role", "department"}
    assert catalog["role"] == ["Engineer", "Manager"]  # roles in Sales: the role filter itself is ignored
    assert catalog["department"] == ["R&D", "Sales"]  # departments of engineers
    assert catalog["status"] == ["active", "inactive"]


async def test_the_catalog_honours_the_keyword_and_never_lists_other_tenants_values(
    container: Container, staff: tuple[str, dict[str, str]]
) -> None:
    project, _ = staff

    unfiltered = await _employees(container, project, _request())
    with_keyword = await _employees(container, project, _request(keyword="design"))

    assert list(unfiltered.meta.filters["role"].values) == ["Designer", "Engineer", "Manager"]
    assert list(unfiltered.meta.filters["department"].values) == ["Ops", "R&D", "Sales"]
    assert list(with_keyword.meta.filters["role"].values) == ["Designer"]
    assert list(with_keyword.meta.filters["department"].values) == ["Ops", "R&D"]


async def test_a_catalog_fed_back_as_filters_is_accepted(
    container: Container, staff: tuple[str, dict[str, str]]
) -> None:
    project, people = staff
    meta = (await _employees(container, project, _request())).meta

    again = await _employees(container, project, _request(filters={k: list(v.values) for k, v in meta.filters.items()}))

    assert {e.id for e in again.data} == set(people.values())


# --- sorting and paging -------------------------------------------------------------------------


@pytest.mark.parametrize("desc", [False, True], ids=["ascending", "descending"])
async def test_paging_through_rows_with_equal_sort_keys_visits_each_row_exactly_once(
    container: Container, desc: bool
) -> None:
    project = await _create_project(container, "Acme")
    created = [await _employee(container, project, f"e{n}@example.com", department="Support") for n in range(25)]

    seen: list[str] = []
    lengths: list[int] = []
    metas: list[common_pb2.QueryMeta] = []
    for page in range(1, 9):
        response = await _employees(container, project, _request(sort="department", desc=desc, page=page, page_size=4))
        seen += [e.id for e in response.data]
        lengths.append(len(response.data))
        metas.append(response.meta)

    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == set(created)
    assert {(m.row_count, m.page_count, m.page_size) for m in metas} == {(25, 7, 4)}
    assert [m.page for m in metas] == list(range(1, 9))
    assert lengths == [4, 4, 4, 4, 4, 4, 1, 0]  # page 7 holds the last row; page 8 is past the end


async def test_descending_order_is_the_exact_reverse_of_ascending_order_even_among_ties(container: Container) -> None:
    project = await _create_project(container, "Acme")
    for n in range(9):
        await _employee(container, project, f"e{n}@example.com", department="Support" if n % 2 else "Sales")

    ascending = [e.id for e in (await _employees(container, project, _request(sort="department", page_size=50))).data]
    descending = [
        e.id for e in (await _employees(container, project, _request(sort="department", desc=True, page_size=50))).data
    ]

    assert descending == list(reversed(ascending))


async def test_employees_are_listed_newest_first_by_default(container: Container) -> None:
    project = await _create_project(container, "Acme")
    created = [await _employee(container, project, f"e{n}@example.com") for n in range(5)]

    listed = [e.id for e in (await _employees(container, project, _request())).data]

    assert listed == list(reversed(created))


async def test_projects_sort_by_name_in_either_direction(container: Container) -> None:
    for name in ("beta", "Alpha", "gamma"):
        await _create_project(container, name)

    assert await _project_names(container, _request()) == ["Alpha", "beta", "gamma"]
    assert await _project_names(container, _request(sort="name", desc=True)) == ["gamma", "beta", "Alpha"]


async def test_an_empty_query_uses_page_one_of_twenty_rows(container: Container) -> None:
    project = await _create_project(container, "Acme")
    await asyncio.gather(*(_employee(container, project, f"e{n}@example.com") for n in range(23)))

    response = await _employees(container, project, _request())

    assert len(response.data) == 20
    assert (response.meta.page, response.meta.page_size, response.meta.row_count, response.meta.page_count) == (
        1,
        20,
        23,
        2,
    )


async def test_a_page_size_above_the_maximum_is_clamped_to_the_maximum(container: Container) -> None:
    project = await _create_project(container, "Acme")
    total = MAX_PAGE_SIZE + 5
    for start in range(0, total, 15):
        await asyncio.gather(
            *(_employee(container, project, f"e{n}@example.com") for n in range(start, min(start + 15, total)))
        )

    response = await _employees(container, project, _request(page_size=500))

    assert MAX_PAGE_SIZE == 100
    assert len(response.data) == 100
    assert (response.meta.page_size, response.meta.row_count, response.meta.page_count) == (100, 105, 2)


async def test_deleted_projects_are_left_out_of_project_queries_and_counts(container: Container) -> None:
    kept = await _create_project(container, "Kept")
    gone = await _create_project(container, "Gone")
    await container.projects.delete_project(project_pb2.DeleteProjectRequest(id=gone))

    response = await container.projects.query_projects(project_pb2.QueryProjectsRequest(query=_request()))

    assert [p.id for p in response.data] == [kept]
    assert response.meta.row_count == 1


async def test_project_catalog_lists_time_zones_in_use_and_the_fixed_environments(container: Container) -> None:
    await _create_project(container, "Paris", timezone="Europe/Paris")
    await _create_project(container, "Tokyo", timezone="Asia/Tokyo")
    await _create_project(container, "Paris Two", timezone="Europe/Paris")

    response = await container.projects.query_projects(
        project_pb2.QueryProjectsRequest(query=_request(filters={"timezone": ["Europe/Paris"]}))
    )

    assert [p.name for p in response.data] == ["Paris", "Paris Two"]
    assert list(response.meta.filters["timezone"].values) == ["Asia/Tokyo", "Europe/Paris"]
    assert list(response.meta.filters["environment"].values) == ["live", "sandbox"]
