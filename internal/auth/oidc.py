"""JWT bearer tokens: verification against trusted issuers, and the local development issuer.

An external OpenID Connect issuer is trusted through its JWKS URL: keys are cached, refreshed
after `ttl_s`, and re-fetched when a token names an unknown `kid` (at most once per
`min_refresh_s`, so random kids cannot make us hammer the issuer). Only RS256 and ES256 are
accepted, and the algorithm must match the key: no `none`, no HMAC confusion.

The local issuer exists so a fresh install has an administrator without any identity provider:
`altalune bootstrap` creates its EC P-256 key in the secrets directory and mints a token for
the owner. A server trusts it only when that key file exists and ALTALUNE_LOCAL_ISSUER is on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from internal.auth.credentials import create_secret_file
from internal.auth.errors import TokenExpired, TokenInvalid
from internal.logs import get_logger

log = get_logger(__name__)

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
LOCAL_ISSUER = "altalune-local"
LOCAL_AUDIENCE = "altalune"
LEEWAY_S = 30


class UserMatch(StrEnum):
    """How a verified token names our user."""

    PUBLIC_ID = "public_id"  # `sub` is the user's public id (the local issuer)
    EMAIL = "email"  # the verified `email` claim (external issuers: their `sub` is theirs, not ours)


class IssuerUnavailable(Exception):
    """The issuer's keys cannot be fetched and none are cached: our problem, not the client's."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    issuer: str
    subject: str
    email: str | None
    match: UserMatch


class KeySource(Protocol):
    async def key(self, kid: str) -> jwt.PyJWK | None: ...


class StaticKeys:
    """Keys known at start-up (the local issuer's)."""

    def __init__(self, keys: Mapping[str, jwt.PyJWK]) -> None:
        self._keys = dict(keys)

    async def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)


class JwksCache:
    """An issuer's JWKS over HTTPS, cached; concurrent misses share one fetch."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        ttl_s: float = 600.0,
        min_refresh_s: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._url = url
        # Injectable, so tests of the refresh timing need no real waiting; by default the module's
        # monotonic clock, looked up on each call.
        self._clock = clock or _monotonic
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._last_attempt = float("-inf")
        self._loaded = False
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if self._lock.locked():
            async with self._lock:  # a fetch is in flight: its result is ours too
                pass
        now = self._clock()
        # Whatever the trigger (expiry or an unknown kid), at most one attempt per min_refresh_s,
        # successful or not: random kids and a down issuer cost one request each period.
        if now - self._last_attempt > self._min_refresh_s and (
            now - self._fetched_at > self._ttl_s or kid not in self._keys
        ):
            await self._refresh()
        if not self._loaded:
            raise IssuerUnavailable(f"no keys from {self._url} yet")
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        started = self._clock()
        async with self._lock:
            if self._last_attempt >= started:
                return  # someone else tried while we waited
            self._last_attempt = self._clock()
            try:
                reply = await self._client.get(self._url)
                reply.raise_for_status()
                keys = _parse_jwks(reply.json())
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                # Keep serving the keys we have.
                log.warning("JWKS fetch failed", url=self._url, error=type(exc).__name__)
                return
            self._keys = keys
            self._loaded = True
            self._fetched_at = self._clock()
            self.fetches += 1

    async def close(self) -> None:
        await self._client.aclose()


def _parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    entries = document["keys"]
    if not isinstance(entries, list):
        raise ValueError("JWKS `keys` is not a list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue  # a key we cannot use (other type, bad material): skip it, keep the rest
        if key.algorithm_name in ALLOWED_ALGORITHMS:
            keys[kid] = key
    return keys


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    issuer: str
    audience: str
    keys: KeySource
    match: UserMatch


class TokenVerifier:
    """Verifies a JWT against the issuer its `iss` names, if that issuer is trusted.

    A verified token is remembered for at most `cache_s` (and never past its expiry), because a
    browser sends the same token on every call and the signature check costs ~150 us of CPU. Only
    the signature and claims are remembered: the user behind it is looked up on every call, so
    deactivation still holds from the next request, and a remembered token is honoured only while
    its signing key is still published.
    """

    def __init__(self, issuers: Sequence[TrustedIssuer], *, cache_s: float = 60.0, cache_size: int = 10_000) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        self._cache_s = cache_s
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[VerifiedToken, float, str]] = OrderedDict()

    @property
    def issuers(self) -> list[str]:
        return sorted(self._issuers)

    async def verify(self, token: str) -> VerifiedToken:
        remembered = self._verified.pop(token, None)
        if remembered is not None:
            verified, until, kid = remembered
            # Still unexpired and its key still published (a dict lookup unless the JWKS is due).
            if time.time() < until and await self._issuers[verified.issuer].keys.key(kid) is not None:
                self._verified[token] = remembered
                return verified
        verified, expires_at, kid = await self._verify(token)
        self._verified[token] = (verified, min(expires_at + LEEWAY_S, time.time() + self._cache_s), kid)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return verified

    async def _verify(self, token: str) -> tuple[VerifiedToken, float, str]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenInvalid("the bearer token is neither an API key nor a JWT") from None
        algorithm = header.get("alg")
        kid = header.get("kid")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise TokenInvalid("the token's algorithm is not accepted (RS256 or ES256 only)")
        issuer = self._issuers.get(str(unverified.get("iss", "")))
        if issuer is None:
            raise TokenInvalid("the token's issuer is not trusted")
        key = await issuer.keys.key(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenInvalid("the token's signing key is unknown")
        if key.algorithm_name != algorithm:
            raise TokenInvalid("the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the token has expired") from None
        except jwt.PyJWTError:
            raise TokenInvalid("the token failed verification") from None
        # Claims are typed as RFC 7519 says: a NumericDate is a number (PyJWT also takes a numeric
        # string), an identifier is a string; NUL and other control characters are never valid and
        # PostgreSQL refuses NUL outright.
        if not _is_number(claims["exp"]) or not _is_clean_text(claims["sub"]):
            raise TokenInvalid("the token's claims are malformed")
        email = claims.get("email")
        if email is not None and not _is_clean_text(email):
            raise TokenInvalid("the token's claims are malformed")
        # Users are found by email, so the issuer must vouch for it: the boolean true, nothing less.
        verified_email = isinstance(email, str) and email and claims.get("email_verified") is True
        if issuer.match is UserMatch.EMAIL and not verified_email:
            raise TokenInvalid("the token carries no verified email")
        verified = VerifiedToken(
            issuer=issuer.issuer,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
            match=issuer.match,
        )
        return verified, float(claims["exp"]), str(kid)


def _monotonic() -> float:
    return time.monotonic()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_clean_text(value: object) -> bool:
    return isinstance(value, str) and value.isprintable()


class LocalIssuer:
    """The development issuer: an EC P-256 key in the secrets directory."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._private_key = private_key
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(public_der).digest()[:12]).decode().rstrip("=")

    @classmethod
    def load(cls, path: Path) -> LocalIssuer:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> LocalIssuer:
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            create_secret_file(path, pem)  # if another process created one first, we load theirs
        return cls.load(path)

    def public_jwk(self) -> dict[str, Any]:
        document = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._private_key.public_key()))
        return {**document, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def trusted(self) -> TrustedIssuer:
        return TrustedIssuer(
            issuer=LOCAL_ISSUER,
            audience=LOCAL_AUDIENCE,
            keys=StaticKeys({self.kid: jwt.PyJWK(self.public_jwk())}),
            match=UserMatch.PUBLIC_ID,
        )

    def mint(self, *, user_public_id: str, email: str, ttl_s: int) -> str:
        now = int(time.time())
        claims = {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": user_public_id,
            "email": email,
            "iat": now,
            "exp": now + ttl_s,
        }
        return jwt.encode(claims, self._private_key, algorithm="ES256", headers={"kid": self.kid})
