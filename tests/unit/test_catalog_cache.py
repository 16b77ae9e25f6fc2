"""CatalogCache: entries live ttl_s, are kept per scope and facet values, and a write forgets its scope."""

from __future__ import annotations

import time

import pytest

from internal.query.catalog import CatalogCache


def test_an_entry_is_returned_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache = CatalogCache(ttl_s=10)
    key = CatalogCache.key(7, {"role__keyword": "%ann%", "role__f0": ["r&d"]})
    cache.put(key, {"role": ["Engineer"]})

    now[0] += 9.9
    assert cache.get(key) == {"role": ["Engineer"]}
    now[0] += 0.2
    assert cache.get(key) is None


def test_keys_tell_scopes_and_bound_values_apart() -> None:
    cache = CatalogCache()
    cache.put(CatalogCache.key(1, {"k": ["a"]}), {"k": ["one"]})

    assert cache.get(CatalogCache.key(2, {"k": ["a"]})) is None, "another project never sees this catalog"
    assert cache.get(CatalogCache.key(1, {"k": ["b"]})) is None
    assert cache.get(CatalogCache.key(1, {"k": ("a",)})) == {"k": ["one"]}


def test_forget_drops_only_the_scope_written_to() -> None:
    cache = CatalogCache()
    mine, other = CatalogCache.key(1, {}), CatalogCache.key(2, {})
    cache.put(mine, {"k": ["x"]})
    cache.put(CatalogCache.key(1, {"f": "y"}), {"k": ["y"]})
    cache.put(other, {"k": ["z"]})

    cache.forget(1)

    assert cache.get(mine) is None
    assert cache.get(CatalogCache.key(1, {"f": "y"})) is None
    assert cache.get(other) == {"k": ["z"]}


def test_the_least_recently_used_entry_goes_first_when_full() -> None:
    cache = CatalogCache(capacity=2)
    a, b, c = (CatalogCache.key(n, {}) for n in (1, 2, 3))
    cache.put(a, {"k": ["a"]})
    cache.put(b, {"k": ["b"]})
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, {"k": ["c"]})

    assert cache.get(b) is None
    assert cache.get(a) == {"k": ["a"]}
    assert cache.get(c) == {"k": ["c"]}
