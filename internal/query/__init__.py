"""The one list-query builder every QueryXs RPC uses; a domain only declares a QuerySpec."""

from internal.query.builder import (
    FilterSpec,
    QueryParams,
    QueryResult,
    QuerySpec,
    params_from_proto,
    run_query,
)

__all__ = ["FilterSpec", "QueryParams", "QueryResult", "QuerySpec", "params_from_proto", "run_query"]
