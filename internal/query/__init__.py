"""The one list-query builder every QueryXs RPC uses; a domain only declares a QuerySpec."""

from internal.query.builder import (
    Condition,
    FilterSpec,
    QueryParams,
    QueryResult,
    QuerySpec,
    params_from_proto,
    run_query,
)
from internal.query.catalog import CatalogCache

__all__ = [
    "CatalogCache",
    "Condition",
    "FilterSpec",
    "QueryParams",
    "QueryResult",
    "QuerySpec",
    "params_from_proto",
    "run_query",
]
