"""params_from_proto and escape_like: a QueryRequest checked against a domain's allow-lists."""

from __future__ import annotations

import pytest

from altalune.v1 import common_pb2
from internal.errors import InvalidArgument
from internal.query.builder import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    FilterSpec,
    QueryParams,
    QueryResult,
    QuerySpec,
    escape_like,
    params_from_proto,
)

SPEC = QuerySpec(
    table="books",
    columns=("id", "title", "genre", "state"),
    keyword_columns=("title",),
    filters={
        "genre": FilterSpec("genre"),
        "state": FilterSpec("state", values=("draft", "published")),
    },
    sorts={"title": "title", "published_at": "published_on"},
    default_sort=("title", False),
)


def _request(**filters: list[str]) -> common_pb2.QueryRequest:
    return common_pb2.QueryRequest(filters={k: common_pb2.StringList(values=v) for k, v in filters.items()})


def test_no_query_at_all_means_page_one_of_the_default_size() -> None:
    assert params_from_proto(None, SPEC) == QueryParams(page=1, page_size=DEFAULT_PAGE_SIZE)
    assert DEFAULT_PAGE_SIZE == 20


def test_zero_pagination_values_mean_the_defaults() -> None:
    params = params_from_proto(common_pb2.QueryRequest(pagination=common_pb2.Pagination()), SPEC)

    assert (params.page, params.page_size) == (1, 20)


@pytest.mark.parametrize(("asked", "used"), [(1, 1), (37, 37), (100, 100), (101, 100), (10_000, 100)])
def test_the_page_size_is_clamped_to_the_maximum(asked: int, used: int) -> None:
    request = common_pb2.QueryRequest(pagination=common_pb2.Pagination(page=3, page_size=asked))

    params = params_from_proto(request, SPEC)

    assert MAX_PAGE_SIZE == 100
    assert (params.page, params.page_size) == (3, used)


def test_keyword_is_trimmed_and_filters_and_sorting_are_carried_over() -> None:
    request = _request(genre=["Poetry", "Essays"], state=["published"])
    request.keyword = "  moon \t"
    request.sorting.CopyFrom(common_pb2.Sorting(field="published_at", order=common_pb2.SORT_ORDER_DESC))

    params = params_from_proto(request, SPEC)

    assert params.keyword == "moon"
    assert params.filters == {"genre": ("Poetry", "Essays"), "state": ("published",)}
    assert (params.sort_field, params.sort_desc) == ("published_at", True)


def test_an_unspecified_sort_order_is_ascending() -> None:
    request = common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="title"))

    params = params_from_proto(request, SPEC)

    assert (params.sort_field, params.sort_desc) == ("title", False)


def test_an_unknown_filter_key_is_rejected_with_the_allowed_keys() -> None:
    with pytest.raises(InvalidArgument) as caught:
        params_from_proto(_request(author=["Woolf"]), SPEC)

    [violation] = caught.value.violations
    assert violation.field == 'query.filters["author"]'
    assert violation.reason == "query.filter_key"
    assert violation.description == "unknown filter key 'author'; allowed keys: genre, state"


def test_an_unknown_value_of_a_closed_filter_is_rejected_with_the_allowed_values() -> None:
    with pytest.raises(InvalidArgument) as caught:
        params_from_proto(_request(state=["draft", "burnt"]), SPEC)

    [violation] = caught.value.violations
    assert violation.field == 'query.filters["state"]'
    assert violation.reason == "query.filter_value"
    assert "'burnt'" in violation.description
    assert "draft, published" in violation.description


def test_any_value_of_an_open_filter_is_accepted() -> None:
    assert params_from_proto(_request(genre=["anything at all"]), SPEC).filters == {"genre": ("anything at all",)}


def test_an_unknown_sort_field_is_rejected_and_the_prefix_names_the_request_field() -> None:
    request = common_pb2.QueryRequest(sorting=common_pb2.Sorting(field="price"))

    with pytest.raises(InvalidArgument) as caught:
        params_from_proto(request, SPEC, field_prefix="q")

    [violation] = caught.value.violations
    assert violation.field == "q.sorting.field"
    assert "published_at, title" in violation.description


def test_all_problems_are_reported_together() -> None:
    request = _request(zeta=["1"], alpha=["2"], state=["gone"])
    request.sorting.CopyFrom(common_pb2.Sorting(field="price"))

    with pytest.raises(InvalidArgument) as caught:
        params_from_proto(request, SPEC)

    assert [v.field for v in caught.value.violations] == [
        'query.filters["alpha"]',
        'query.filters["state"]',
        'query.filters["zeta"]',
        "query.sorting.field",
    ]


@pytest.mark.parametrize(
    ("keyword", "pattern"),
    [
        ("plain", "plain"),
        ("100%", "100\\%"),
        ("snake_case", "snake\\_case"),
        ("C:\\dir", "C:\\\\dir"),
        ("\\%_", "\\\\\\%\\_"),
    ],
)
def test_escape_like_makes_wildcards_and_the_escape_character_literal(keyword: str, pattern: str) -> None:
    assert escape_like(keyword) == pattern


@pytest.mark.parametrize(("rows", "size", "pages"), [(0, 20, 0), (1, 20, 1), (20, 20, 1), (21, 20, 2), (25, 4, 7)])
def test_the_page_count_rounds_up(rows: int, size: int, pages: int) -> None:
    result: QueryResult[object] = QueryResult(rows=[], row_count=rows, page=1, page_size=size, catalog={})

    assert result.page_count == pages
    assert result.meta().page_count == pages


def test_meta_carries_the_catalog_keyed_by_filter_key() -> None:
    result: QueryResult[object] = QueryResult(
        rows=[], row_count=3, page=2, page_size=2, catalog={"genre": ["Poetry"], "state": ["draft", "published"]}
    )

    meta = result.meta()

    assert (meta.row_count, meta.page, meta.page_size, meta.page_count) == (3, 2, 2, 2)
    assert {k: list(v.values) for k, v in meta.filters.items()} == {
        "genre": ["Poetry"],
        "state": ["draft", "published"],
    }
