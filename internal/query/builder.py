"""Keyword, filters, sorting, paging, count and filter catalog for one table, in one round trip.

Page, count and catalog are three statements sent together in a psycopg pipeline, so the cost is a
fixed single network round trip whatever the number of filters. The catalog is the expensive one:
given a CatalogCache it is computed once per scope and filter combination, then reused briefly
(internal/query/catalog.py). Identifiers come only from a
domain's QuerySpec (never from the request), values are always bound parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from psycopg import AsyncConnection
from psycopg.rows import BaseRowFactory, dict_row

from altalune.v1 import common_pb2
from internal.errors import FieldViolation, InvalidArgument
from internal.postgres.statements import quoted
from internal.query.catalog import CatalogCache

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
CATALOG_LIMIT = 100


@dataclass(frozen=True, slots=True, init=False)
class FilterSpec:
    """A filter key: the column it matches, and for enum-like columns the closed value set.

    `values` takes any iterable of strings, in the order the catalog lists them; for an enum column
    pass the domain's EnumMapping (or its StrEnum), so the allowed values come from the one enum table.
    A computed key (a state that depends on several columns or on the clock) gives `predicates`:
    one trusted SQL condition per value, OR-ed for the values asked; its keys are then the allowed
    values and `column` is unused.
    """

    column: str
    values: tuple[str, ...] | None
    case_insensitive: bool
    predicates: Mapping[str, str] | None

    def __init__(
        self,
        column: str,
        values: Iterable[str] | None = None,
        case_insensitive: bool = True,
        predicates: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(values, str):
            raise TypeError(f"filter {column!r}: values must be a collection of strings, not one string")
        if values is None and predicates is not None:
            values = predicates
        # str() turns a StrEnum member into its plain value.
        allowed = tuple(str(value) for value in values) if values is not None else None
        if predicates is not None and set(predicates) != set(allowed or ()):
            raise ValueError(f"filter {column!r}: predicates must cover exactly the allowed values")
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "values", allowed)
        object.__setattr__(self, "case_insensitive", case_insensitive)
        object.__setattr__(self, "predicates", predicates)


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """What a domain declares: its table, columns, keyword columns, filter keys and sort keys."""

    table: str
    columns: tuple[str, ...]
    keyword_columns: tuple[str, ...]
    filters: Mapping[str, FilterSpec]
    # Sort key -> column; a sequence of names sorts each by the column of the same name.
    sorts: Mapping[str, str] | Sequence[str]
    default_sort: tuple[str, bool]
    tie_breaker: str = "id"
    scope_column: str | None = None
    extra_where: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sorts, Mapping):
            object.__setattr__(self, "sorts", {name: name for name in self.sorts})

    @property
    def sort_columns(self) -> Mapping[str, str]:
        return cast(Mapping[str, str], self.sorts)  # a mapping since __post_init__


@dataclass(frozen=True, slots=True)
class QueryParams:
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    keyword: str = ""
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sort_field: str | None = None
    sort_desc: bool = False


@dataclass(frozen=True, slots=True)
class QueryResult(Generic[T]):
    rows: list[T]
    row_count: int
    page: int
    page_size: int
    catalog: dict[str, list[str]]

    @property
    def page_count(self) -> int:
        return math.ceil(self.row_count / self.page_size) if self.row_count else 0

    def meta(self) -> common_pb2.QueryMeta:
        return common_pb2.QueryMeta(
            row_count=self.row_count,
            page_count=self.page_count,
            page=self.page,
            page_size=self.page_size,
            filters={k: common_pb2.FilterValues(values=v) for k, v in self.catalog.items()},
        )


def escape_like(keyword: str) -> str:
    """Make %, _ and \\ match literally in a LIKE pattern (escape character is backslash)."""
    return keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def params_from_proto(
    request: common_pb2.QueryRequest | None, spec: QuerySpec, *, field_prefix: str = "query"
) -> QueryParams:
    """Check a QueryRequest against the spec's allow-lists; unknown keys are INVALID_ARGUMENT.

    Services pass their request's `query` field as it is: an unset field reads as the empty
    QueryRequest, which means exactly the defaults (as None does).
    """
    if request is None:
        return QueryParams()
    violations: list[FieldViolation] = []
    filters: dict[str, tuple[str, ...]] = {}
    allowed_filters = ", ".join(sorted(spec.filters))
    for key in sorted(request.filters):
        values = tuple(request.filters[key].values)
        filter_spec = spec.filters.get(key)
        if filter_spec is None:
            violations.append(
                FieldViolation(
                    field=f'{field_prefix}.filters["{key}"]',
                    description=f"unknown filter key {key!r}; allowed keys: {allowed_filters}",
                    reason="query.filter_key",
                )
            )
            continue
        if filter_spec.values is not None:
            bad = [v for v in values if v not in filter_spec.values]
            if bad:
                violations.append(
                    FieldViolation(
                        field=f'{field_prefix}.filters["{key}"]',
                        description=f"unknown value(s) {', '.join(map(repr, bad))}; allowed: "
                        + ", ".join(filter_spec.values),
                        reason="query.filter_value",
                    )
                )
                continue
        filters[key] = values
    sort_field: str | None = None
    sort_desc = False
    if request.HasField("sorting") and request.sorting.field:
        sort_field = request.sorting.field
        if sort_field not in spec.sort_columns:
            violations.append(
                FieldViolation(
                    field=f"{field_prefix}.sorting.field",
                    description=f"unknown sort field {sort_field!r}; allowed: {', '.join(sorted(spec.sort_columns))}",
                    reason="query.sort_field",
                )
            )
        sort_desc = request.sorting.order == common_pb2.SORT_ORDER_DESC
    if violations:
        raise InvalidArgument(violations)
    page = request.pagination.page or 1
    page_size = min(request.pagination.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return QueryParams(
        page=page,
        page_size=page_size,
        keyword=request.keyword.strip(),
        filters=filters,
        sort_field=sort_field,
        sort_desc=sort_desc,
    )


@dataclass(frozen=True, slots=True)
class _Where:
    clause: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Condition:
    """A trusted SQL condition from code with its bound values, for what a QueryRequest cannot
    say (a time range): `occurred_at >= %(since)s`, {"since": ...}. Its names must not start with `f`
    followed by a digit, nor be `scope`, `keyword`, `limit` or `offset`."""

    sql: str
    values: Mapping[str, Any]


def _where(
    spec: QuerySpec,
    params: QueryParams,
    scope: Any,
    *,
    skip_filter: str | None = None,
    prefix: str = "",
    extra: Sequence[Condition] = (),
) -> _Where:
    """The WHERE clause; `prefix` keeps placeholder names apart when several clauses share params."""
    conditions: list[str] = [condition.sql for condition in extra]
    bound: dict[str, Any] = {name: value for condition in extra for name, value in condition.values.items()}
    if spec.scope_column is not None:
        conditions.append(f"{quoted(spec.scope_column)} = %({prefix}scope)s")
        bound[prefix + "scope"] = scope
    if spec.extra_where:
        conditions.append(spec.extra_where)
    if params.keyword and spec.keyword_columns:
        bound[prefix + "keyword"] = f"%{escape_like(params.keyword)}%"
        matches = " OR ".join(f"{quoted(c)} ILIKE %({prefix}keyword)s ESCAPE '\\'" for c in spec.keyword_columns)
        conditions.append(f"({matches})")
    for index, (key, values) in enumerate(sorted(params.filters.items())):
        if key == skip_filter:
            continue
        filter_spec = spec.filters[key]
        if filter_spec.predicates is not None:
            chosen = [filter_spec.predicates[v] for v in sorted(set(values))]
            conditions.append(f"({' OR '.join(chosen)})" if chosen else "FALSE")
            continue
        name = f"{prefix}f{index}"
        column = quoted(filter_spec.column)
        if filter_spec.case_insensitive and filter_spec.values is None:
            column = f"lower({column})"
            bound[name] = [v.lower() for v in values]
        else:
            bound[name] = list(values)
        conditions.append(f"{column} = ANY(%({name})s)")
    return _Where(clause=" AND ".join(conditions) if conditions else "TRUE", params=bound)


async def run_query(
    conn: AsyncConnection[Any],
    spec: QuerySpec,
    params: QueryParams,
    row_factory: BaseRowFactory[T],
    *,
    scope: Any = None,
    catalogs: CatalogCache | None = None,
    extra: Sequence[Condition] = (),
) -> QueryResult[T]:
    """Fetch one page, the total count and the filter catalog in one pipelined round trip."""
    table = quoted(spec.table)
    where = _where(spec, params, scope, extra=extra)
    sort_column, default_desc = spec.default_sort
    desc = params.sort_desc if params.sort_field else default_desc
    if params.sort_field:
        sort_column = spec.sort_columns[params.sort_field]
    direction = "DESC" if desc else "ASC"
    order = f"{quoted(sort_column)} {direction}, {quoted(spec.tie_breaker)} {direction}"
    columns = ", ".join(quoted(c) for c in spec.columns)
    # Page size and offset are bound too: every page of a query is the same statement text.
    page_sql = f"SELECT {columns} FROM {table} WHERE {where.clause} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s"
    page_params = {**where.params, "limit": params.page_size, "offset": (params.page - 1) * params.page_size}
    count_sql = f"SELECT count(*) AS n FROM {table} WHERE {where.clause}"

    dynamic_keys = [k for k, f in sorted(spec.filters.items()) if f.values is None]
    catalog_params: dict[str, Any] = {}
    catalog_columns: list[str] = []
    for key in dynamic_keys:
        # Facet semantics: a key's catalog ignores that key's own filter, so choices stay visible.
        facet = _where(spec, params, scope, skip_filter=key, prefix=f"{key}__", extra=extra)
        catalog_params.update(facet.params)
        column = quoted(spec.filters[key].column)
        catalog_columns.append(
            f"ARRAY(SELECT DISTINCT {column} FROM {table} WHERE {facet.clause} AND {column} IS NOT NULL "
            f"ORDER BY {column} LIMIT {CATALOG_LIMIT}) AS {quoted(key)}"
        )
    cache_key = CatalogCache.key(scope, catalog_params) if catalogs is not None and catalog_columns else None
    cached = catalogs.get(cache_key) if catalogs is not None and cache_key is not None else None
    async with conn.pipeline():
        page_cur = conn.cursor(row_factory=row_factory)
        await page_cur.execute(page_sql, page_params)
        count_cur = conn.cursor(row_factory=dict_row)
        await count_cur.execute(count_sql, where.params)
        catalog_cur = None
        if catalog_columns and cached is None:
            catalog_cur = conn.cursor(row_factory=dict_row)
            await catalog_cur.execute("SELECT " + ", ".join(catalog_columns), catalog_params)
    rows = await page_cur.fetchall()
    count_row = await count_cur.fetchone()
    catalog: dict[str, list[str]] = {key: list(f.values) for key, f in spec.filters.items() if f.values is not None}
    if cached is not None:
        catalog.update(cached)
    if catalog_cur is not None:
        catalog_row = await catalog_cur.fetchone()
        if catalog_row is not None:
            computed = {key: [str(v) for v in catalog_row[key]] for key in dynamic_keys}
            catalog.update(computed)
            if catalogs is not None and cache_key is not None:
                catalogs.put(cache_key, computed)
    return QueryResult(
        rows=rows,
        row_count=int(count_row["n"]) if count_row else 0,
        page=params.page,
        page_size=params.page_size,
        catalog=dict(sorted(catalog.items())),
    )
