"""Bearer tokens: reading the header, and the format, minting and hashing of API keys.

An API key reads ``ak_<project public id>_<key public id>_<secret>``: the ids let the lookup
name one project (so one partition) and one row; the 40-symbol secret carries 200 random bits. Only
HMAC-SHA256(pepper, key) is stored: the key is high-entropy, so a fast keyed hash is right, and
a slow password hash per request would be wasted work.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from internal.ids import PUBLIC_ID_ALPHABET

API_KEY_PREFIX = "ak_"
SECRET_LENGTH = 40  # symbols of 5 bits: 200 bits
SECRET_HINT_LENGTH = 4
_ID = "[2-9a-hj-np-z]{14}"
_API_KEY_SHAPE = re.compile(rf"^ak_({_ID})_({_ID})_([2-9a-hj-np-z]{{{SECRET_LENGTH}}})$")
# RFC 6750 b64token, bounded: anything longer is not one of ours or a sane JWT.
_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9._~+/=-]{1,8192})$")
PEPPER_MIN_BYTES = 32


class BadAuthorizationHeader(ValueError):
    """The authorization header is present but is not `Bearer <token>`."""


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of `authorization: Bearer <token>`; None when the header is absent."""
    value = headers.get("authorization")
    if value is None or value == "":
        return None
    match = _BEARER.fullmatch(value.strip())
    if match is None:
        raise BadAuthorizationHeader("authorization must be 'Bearer <token>'")
    return match.group(1)


@dataclass(frozen=True, slots=True)
class ApiKeyToken:
    project_public_id: str
    key_public_id: str
    secret: str
    token: str

    @property
    def hint(self) -> str:
        return self.secret[:SECRET_HINT_LENGTH]


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def parse_api_key(token: str) -> ApiKeyToken | None:
    match = _API_KEY_SHAPE.fullmatch(token)
    if match is None:
        return None
    return ApiKeyToken(match.group(1), match.group(2), match.group(3), token)


def mint_api_key(project_public_id: str, key_public_id: str) -> ApiKeyToken:
    bits = int.from_bytes(os.urandom(SECRET_LENGTH * 5 // 8), "big")
    secret = "".join(PUBLIC_ID_ALPHABET[(bits >> (5 * i)) & 31] for i in range(SECRET_LENGTH))
    token = f"{API_KEY_PREFIX}{project_public_id}_{key_public_id}_{secret}"
    return ApiKeyToken(project_public_id, key_public_id, secret, token)


def display_prefix(project_public_id: str, key_public_id: str, hint: str) -> str:
    """What lists and logs show of a key: enough to recognise it, useless to an attacker."""
    return f"{API_KEY_PREFIX}{project_public_id}_{key_public_id}_{hint}"


class ApiKeyHasher:
    """Keyed hash of whole API keys; verification compares in constant time."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < PEPPER_MIN_BYTES:
            raise ValueError(f"the API key pepper must have at least {PEPPER_MIN_BYTES} bytes")
        self._pepper = pepper

    def hash(self, token: str) -> bytes:
        return hmac.new(self._pepper, token.encode("ascii"), hashlib.sha256).digest()

    def matches(self, token: str, stored: bytes) -> bool:
        return hmac.compare_digest(self.hash(token), stored)


def create_secret_file(path: Path, content: bytes) -> bool:
    """Write `content` to `path` (0600) unless it exists; False if another process won the race.

    The content goes to a private temporary file first and is then hard-linked into place, so a
    reader never sees a half-written secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink()


def load_or_create_pepper(path: Path) -> bytes:
    """The pepper file's bytes, creating it (0600, 32 random bytes, hex) on first use."""
    if not path.exists():
        create_secret_file(path, os.urandom(32).hex().encode() + b"\n")
    return bytes.fromhex(path.read_text().strip())
