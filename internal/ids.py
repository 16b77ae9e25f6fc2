"""Public ids: 14 characters of an alphabet without look-alikes (0/o, 1/i), 70 random bits."""

from __future__ import annotations

import os
import re

PUBLIC_ID_ALPHABET = "23456789abcdefghjklmnpqrstuvwxyz"
PUBLIC_ID_LENGTH = 14
PUBLIC_ID_PATTERN = re.compile(r"^[2-9a-hj-np-z]{14}$")


def new_public_id() -> str:
    """A fresh public id: 70 bits from the OS CSPRNG, 5 bits per symbol (32 symbols: no bias)."""
    bits = int.from_bytes(os.urandom(9), "big")
    return "".join(PUBLIC_ID_ALPHABET[(bits >> (5 * i)) & 31] for i in range(PUBLIC_ID_LENGTH))


def is_public_id(value: str) -> bool:
    """True if value has the exact shape of a public id."""
    return PUBLIC_ID_PATTERN.fullmatch(value) is not None
