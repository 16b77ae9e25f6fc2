"""Filter catalogs kept briefly, so paging through a list does not rescan it for every page.

A catalog (the distinct values of each free-text filter key, for a UI's filter choices) costs one
`SELECT DISTINCT` scan per key; the page and the count are cheap next to it. Catalogs are kept per
scope (project) and per facet condition for `ttl_s` seconds, and forgotten at once when this
process writes to the scope, so a caller sees its own writes; a write made by another worker process
shows in the catalog within `ttl_s`. Page and count are never cached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

DEFAULT_TTL_S = 10.0
DEFAULT_CAPACITY = 4096

Catalog = dict[str, list[str]]


def _frozen(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value  # type: ignore[no-any-return]


class CatalogCache:
    """One per repository (so per table and per database); bounded, least recently used out first."""

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S, capacity: int = DEFAULT_CAPACITY) -> None:
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._entries: OrderedDict[tuple[Hashable, Hashable], tuple[float, Catalog]] = OrderedDict()

    @staticmethod
    def key(scope: Any, params: Mapping[str, Any]) -> tuple[Hashable, Hashable]:
        """The scope and every bound value of the catalog statement (its shape follows from them)."""
        return scope, tuple(sorted((name, _frozen(value)) for name, value in params.items()))

    def get(self, key: tuple[Hashable, Hashable]) -> Catalog | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, catalog = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return catalog

    def put(self, key: tuple[Hashable, Hashable], catalog: Catalog) -> None:
        self._entries[key] = (time.monotonic() + self._ttl_s, catalog)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, scope: Any) -> None:
        """Drop every catalog of `scope` (after a write to it)."""
        for key in [k for k in self._entries if k[0] == scope]:
            del self._entries[key]
