"""One table per enum maps proto numbers, domain members and database strings (the member's value).

The table is the one place a domain lists its enum: the filter catalog takes its values from it
(`FilterSpec(..., values=STATUSES)`), and tests/integration check the migrations' CHECK lists against
it. Generic in both the domain enum and the generated proto enum type, so `to_proto` hands a message
constructor exactly the type it declares.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Generic, TypeVar

E = TypeVar("E", bound=StrEnum)
P = TypeVar("P", bound=int)  # a generated proto enum (an int subclass in the stubs)


class EnumMapping(Generic[E, P]):
    """Built from (domain member, proto number) pairs; the DB string is the member's value."""

    def __init__(self, pairs: Sequence[tuple[E, P]]) -> None:
        self._to_proto: dict[E, P] = dict(pairs)
        self._from_proto: dict[int, E] = {number: member for member, number in pairs}
        self._from_db: dict[str, E] = {member.value: member for member, _ in pairs}
        self._db_to_proto: dict[str, P] = {member.value: number for member, number in pairs}

    def to_proto(self, member: E) -> P:
        return self._to_proto[member]

    def from_proto(self, number: int) -> E:
        """Raises KeyError for UNSPECIFIED or unknown numbers (validation rejects those first)."""
        return self._from_proto[number]

    def from_db(self, value: str) -> E:
        return self._from_db[value]

    def db_to_proto(self, value: str) -> P:
        """A selected column straight to the message: one lookup, on every row a list returns."""
        return self._db_to_proto[value]

    def db_values(self) -> tuple[str, ...]:
        """The database strings, in the table's order."""
        return tuple(self._from_db)

    def members(self) -> tuple[E, ...]:
        return tuple(self._to_proto)

    def __iter__(self) -> Iterator[str]:
        """The database strings: a mapping stands wherever a list of allowed values is expected."""
        return iter(self._from_db)
