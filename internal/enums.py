"""One table per enum maps proto numbers, domain members and database strings (the member's value)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Generic, TypeVar

E = TypeVar("E", bound=StrEnum)


class EnumMapping(Generic[E]):
    """Built from (domain member, proto number) pairs; the DB string is the member's value."""

    def __init__(self, pairs: Sequence[tuple[E, int]]) -> None:
        self._to_proto = dict(pairs)
        self._from_proto = {number: member for member, number in pairs}
        self._from_db = {member.value: member for member, _ in pairs}

    def to_proto(self, member: E) -> int:
        return self._to_proto[member]

    def from_proto(self, number: int) -> E:
        """Raises KeyError for UNSPECIFIED or unknown numbers (validation rejects those first)."""
        return self._from_proto[number]

    def from_db(self, value: str) -> E:
        return self._from_db[value]

    def db_values(self) -> tuple[str, ...]:
        return tuple(self._from_db)
