"""JWT verification: the local development issuer, and external issuers trusted through a JWKS URL.

External issuers are exercised against a real HTTP server on a loopback socket, so the cache's
fetch, refresh and failure paths run over a real connection and can be counted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from internal.auth.errors import TokenRejected
from internal.auth.oidc import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    IssuerUnavailable,
    JwksCache,
    LocalIssuer,
    TokenVerifier,
    TrustedIssuer,
    UserMatch,
    VerifiedToken,
)
from tests.jwks_server import JwksServer, rsa_jwk

ISSUER = "https://idp.example.com/"
AUDIENCE = "altalune-api"
USER_ID = "23456789abcdef"


# --- helpers -----------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment(document: Any) -> str:
    return _b64url(json.dumps(document).encode())


def _claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims of the external issuer; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "idp-user-1",
        "email": "ada@example.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _local_claims(**overrides: Any) -> dict[str, Any]:
    return _claims(**{"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": USER_ID, "email_verified": None, **overrides})


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rs256(key: rsa.RSAPrivateKey, kid: str, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def _hs256(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An HS256 token built by hand: PyJWT refuses PEM-looking HMAC secrets, attackers do not."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _es256(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An ES256 token built by hand, for headers PyJWT would refuse to write."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(signing_input.encode(), key)
    return f"{signing_input}.{_b64url(signature)}"


async def _rejection(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    assert token not in caught.value.message
    return caught.value.reason


CacheFactory = Callable[..., JwksCache]


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture
async def make_cache() -> AsyncIterator[CacheFactory]:
    caches: list[JwksCache] = []

    def make(
        url: str, *, ttl_s: float = 600.0, min_refresh_s: float = 30.0, clock: Callable[[], float] | None = None
    ) -> JwksCache:
        cache = JwksCache(
            url, client=httpx.AsyncClient(timeout=2), ttl_s=ttl_s, min_refresh_s=min_refresh_s, clock=clock
        )
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()


def _external(cache: JwksCache) -> TokenVerifier:
    return TokenVerifier([TrustedIssuer(issuer=ISSUER, audience=AUDIENCE, keys=cache, match=UserMatch.EMAIL)])


# --- the local issuer --------------------------------------------------------------------------


@pytest.fixture
def local_key_path(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "local-issuer.pem"


@pytest.fixture
def local(local_key_path: Path) -> LocalIssuer:
    return LocalIssuer.load_or_create(local_key_path)


@pytest.fixture
def local_private_key(local: LocalIssuer, local_key_path: Path) -> ec.EllipticCurvePrivateKey:
    """The local issuer's own key, read from its file, to sign tokens `mint` would not produce."""
    key = serialization.load_pem_private_key(local_key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture
def local_verifier(local: LocalIssuer) -> TokenVerifier:
    return TokenVerifier([local.trusted()])


async def test_a_token_minted_by_the_local_issuer_verifies_to_the_user_public_id(
    local: LocalIssuer, local_verifier: TokenVerifier
) -> None:
    token = local.mint(user_public_id=USER_ID, email="owner@example.com", ttl_s=300)

    verified = await local_verifier.verify(token)

    assert verified == VerifiedToken(
        issuer=LOCAL_ISSUER, subject=USER_ID, email="owner@example.com", match=UserMatch.PUBLIC_ID
    )
    assert local_verifier.issuers == [LOCAL_ISSUER]


async def test_the_local_issuer_key_is_created_private_once_and_reloaded_from_its_file(
    local: LocalIssuer, local_key_path: Path
) -> None:
    assert stat.S_IMODE(local_key_path.stat().st_mode) == 0o600
    pem = local_key_path.read_bytes()

    reloaded = LocalIssuer.load_or_create(local_key_path)

    assert local_key_path.read_bytes() == pem
    assert reloaded.kid == local.kid
    token = local.mint(user_public_id=USER_ID, email="owner@example.com", ttl_s=300)
    assert (await TokenVerifier([reloaded.trusted()]).verify(token)).subject == USER_ID


async def test_a_local_token_expired_beyond_the_leeway_is_rejected_as_expired(
    local: LocalIssuer, local_verifier: TokenVerifier
) -> None:
    token = local.mint(user_public_id=USER_ID, email="owner@example.com", ttl_s=-120)

    assert await _rejection(local_verifier, token) == "TOKEN_EXPIRED"


async def test_a_local_token_expired_within_the_30_second_leeway_is_still_accepted(
    local: LocalIssuer, local_verifier: TokenVerifier
) -> None:
    token = local.mint(user_public_id=USER_ID, email="owner@example.com", ttl_s=-10)

    assert (await local_verifier.verify(token)).subject == USER_ID


async def test_a_token_from_another_local_issuer_key_is_rejected(tmp_path: Path, local_verifier: TokenVerifier) -> None:
    stranger = LocalIssuer.load_or_create(tmp_path / "elsewhere" / "local-issuer.pem")
    token = stranger.mint(user_public_id=USER_ID, email="owner@example.com", ttl_s=300)

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


async def test_a_token_signed_by_another_key_under_the_trusted_kid_is_rejected(
    local: LocalIssuer, local_verifier: TokenVerifier
) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(_local_claims(), impostor, algorithm="ES256", headers={"kid": local.kid})

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


async def test_a_token_with_a_tampered_payload_is_rejected(local: LocalIssuer, local_verifier: TokenVerifier) -> None:
    header, _, signature = local.mint(user_public_id=USER_ID, email="a@example.com", ttl_s=300).split(".")
    forged = f"{header}.{_segment(_local_claims(sub='zzzzzzzzzzzzzz'))}.{signature}"

    assert await _rejection(local_verifier, forged) == "TOKEN_INVALID"


@dataclass(frozen=True)
class _FromNow:
    """A timestamp claim `seconds` after the moment the test runs."""

    seconds: int
    as_text: bool = False

    def at_run(self) -> int | str:
        stamp = int(time.time()) + self.seconds
        return str(stamp) if self.as_text else stamp


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"aud": ["someone-else", "other"]}, id="wrong-audience-list"),
        pytest.param({"iss": "https://evil.example.com/"}, id="untrusted-issuer"),
        pytest.param({"iss": None}, id="no-issuer"),
        pytest.param({"aud": None}, id="no-audience"),
        pytest.param({"sub": None}, id="no-subject"),
        pytest.param({"exp": None}, id="no-expiry"),
        pytest.param({"nbf": _FromNow(3600)}, id="not-yet-valid"),
        pytest.param({"sub": "abc\u0000def"}, id="nul-in-subject"),
        pytest.param({"sub": 12345}, id="numeric-subject"),
        pytest.param({"email": "a\u0000@example.com"}, id="nul-in-email"),
        pytest.param({"exp": _FromNow(300, as_text=True)}, id="expiry-as-a-string"),
    ],
)
async def test_a_correctly_signed_local_token_with_wrong_claims_is_rejected(
    local: LocalIssuer,
    local_private_key: ec.EllipticCurvePrivateKey,
    local_verifier: TokenVerifier,
    overrides: dict[str, Any],
) -> None:
    # Times are taken when the test runs, not when it is collected: a long suite runs the unit
    # tests minutes after collection, which had expired the 300 s token before it was verified.
    claims = {name: value.at_run() if isinstance(value, _FromNow) else value for name, value in overrides.items()}
    token = jwt.encode(_local_claims(**claims), local_private_key, algorithm="ES256", headers={"kid": local.kid})

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


async def test_the_control_token_signed_like_the_rejected_ones_is_accepted(
    local: LocalIssuer, local_private_key: ec.EllipticCurvePrivateKey, local_verifier: TokenVerifier
) -> None:
    """Guards the tests above and below: their tokens fail because of what they vary, not how they are signed."""
    token = jwt.encode(_local_claims(), local_private_key, algorithm="ES256", headers={"kid": local.kid})
    by_hand = _es256(local_private_key, {"alg": "ES256", "typ": "JWT", "kid": local.kid}, _local_claims())

    assert (await local_verifier.verify(token)).subject == USER_ID
    assert (await local_verifier.verify(by_hand)).subject == USER_ID


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_an_unsigned_alg_none_token_is_rejected(
    local: LocalIssuer, local_verifier: TokenVerifier, alg: str
) -> None:
    token = f"{_segment({'alg': alg, 'typ': 'JWT', 'kid': local.kid})}.{_segment(_local_claims())}."

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(
            lambda key: key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            id="pem",
        ),
        pytest.param(
            lambda key: key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            id="der",
        ),
        pytest.param(
            lambda key: key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
            id="raw-point",
        ),
    ],
)
async def test_an_hs256_token_keyed_with_the_public_key_bytes_is_rejected(
    local: LocalIssuer,
    local_private_key: ec.EllipticCurvePrivateKey,
    local_verifier: TokenVerifier,
    secret: Callable[[ec.EllipticCurvePublicKey], bytes],
) -> None:
    token = _hs256(
        secret(local_private_key.public_key()), {"alg": "HS256", "typ": "JWT", "kid": local.kid}, _local_claims()
    )

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


async def test_a_token_whose_algorithm_does_not_match_the_key_of_its_kid_is_rejected(
    local: LocalIssuer, local_verifier: TokenVerifier
) -> None:
    token = jwt.encode(_local_claims(), _rsa_key(), algorithm="RS256", headers={"kid": local.kid})

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


@pytest.mark.parametrize("kid", [None, 7, ["kid"], "unknown-kid"])
async def test_a_token_without_a_known_string_kid_is_rejected(
    local: LocalIssuer, local_private_key: ec.EllipticCurvePrivateKey, local_verifier: TokenVerifier, kid: Any
) -> None:
    header: dict[str, Any] = (
        {"alg": "ES256", "typ": "JWT"} if kid is None else {"alg": "ES256", "typ": "JWT", "kid": kid}
    )
    token = _es256(local_private_key, header, _local_claims())

    assert await _rejection(local_verifier, token) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        f"{_segment({'alg': 'ES256'})}..",
        f"{_segment({'alg': 'ES256'})}.{_b64url(b'not json')}.{_b64url(b'sig')}",
        f"{_segment({'alg': 'ES256'})}.{_segment(['a', 'list'])}.{_b64url(b'sig')}",
        f"{_segment(['a', 'list'])}.{_segment({'sub': 'x'})}.{_b64url(b'sig')}",
        "ak_not_an_api_key",
    ],
)
async def test_garbage_is_rejected_as_an_invalid_token(local_verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        await local_verifier.verify(token)

    assert caught.value.reason == "TOKEN_INVALID"


# --- external issuers through a JWKS URL ------------------------------------------------------


async def test_an_external_rs256_token_verifies_to_its_email(jwks_server: JwksServer, make_cache: CacheFactory) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url))

    verified = await verifier.verify(_rs256(key, "k1"))

    assert verified == VerifiedToken(
        issuer=ISSUER, subject="idp-user-1", email="ada@example.com", match=UserMatch.EMAIL
    )
    assert jwks_server.requests == 1


async def test_an_external_es256_key_from_the_jwks_is_accepted(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "ec1", "use": "sig"}
    jwks_server.publish(jwk)
    token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "ec1"})

    assert (await _external(make_cache(jwks_server.url)).verify(token)).email == "ada@example.com"


async def test_cached_keys_serve_later_tokens_without_another_fetch(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url))

    for n in range(10):
        await verifier.verify(_rs256(key, "k1", sub=f"user-{n}"))

    assert jwks_server.requests == 1


async def test_concurrent_verifications_on_a_cold_cache_share_one_fetch(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url))

    results = await asyncio.gather(*(verifier.verify(_rs256(key, "k1", sub=f"user-{n}")) for n in range(20)))

    assert sorted(r.subject for r in results) == sorted(f"user-{n}" for n in range(20))
    assert jwks_server.requests == 1


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"email_verified": False}, id="email-not-verified"),
        pytest.param({"email": None}, id="no-email"),
        pytest.param({"email": None, "email_verified": None}, id="no-email-claims"),
        pytest.param({"email": ""}, id="empty-email"),
        pytest.param({"email": ["ada@example.com"]}, id="email-not-a-string"),
    ],
)
async def test_an_external_token_without_a_verified_email_is_rejected(
    jwks_server: JwksServer, make_cache: CacheFactory, overrides: dict[str, Any]
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))

    assert await _rejection(_external(make_cache(jwks_server.url)), _rs256(key, "k1", **overrides)) == "TOKEN_INVALID"


async def test_an_email_verified_claim_of_the_string_false_is_not_taken_as_verified(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))

    token = _rs256(key, "k1", email_verified="false")

    assert await _rejection(_external(make_cache(jwks_server.url)), token) == "TOKEN_INVALID"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "another-api"}, id="wrong-audience"),
        pytest.param({"iss": "https://idp.example.com/other/"}, id="untrusted-issuer"),
        pytest.param({"exp": int(time.time()) - 120}, id="expired"),
    ],
)
async def test_an_external_token_with_wrong_claims_is_rejected(
    jwks_server: JwksServer, make_cache: CacheFactory, overrides: dict[str, Any]
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    expected = "TOKEN_EXPIRED" if "exp" in overrides else "TOKEN_INVALID"

    assert await _rejection(_external(make_cache(jwks_server.url)), _rs256(key, "k1", **overrides)) == expected


async def test_an_hmac_key_published_in_the_jwks_is_never_used(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    secret = secrets.token_bytes(32)
    jwks_server.publish({"kty": "oct", "k": _b64url(secret), "kid": "h1", "alg": "HS256", "use": "sig"})
    token = _hs256(secret, {"alg": "HS256", "typ": "JWT", "kid": "h1"}, _claims())

    assert await _rejection(_external(make_cache(jwks_server.url)), token) == "TOKEN_INVALID"


async def test_an_encryption_key_in_the_jwks_is_not_trusted_for_signatures(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    signing, encryption = _rsa_key(), _rsa_key()
    jwks_server.publish(rsa_jwk(signing, "sig1"), {**rsa_jwk(encryption, "enc1"), "use": "enc"})
    verifier = _external(make_cache(jwks_server.url))

    assert (await verifier.verify(_rs256(signing, "sig1"))).email == "ada@example.com"
    assert await _rejection(verifier, _rs256(encryption, "enc1")) == "TOKEN_INVALID"


async def test_a_rotated_key_with_a_new_kid_is_fetched_once_and_accepted(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    old, new = _rsa_key(), _rsa_key()
    jwks_server.publish(rsa_jwk(old, "old"))
    verifier = _external(make_cache(jwks_server.url, ttl_s=600.0, min_refresh_s=0.0))
    await verifier.verify(_rs256(old, "old"))
    assert jwks_server.requests == 1

    jwks_server.publish(rsa_jwk(old, "old"), rsa_jwk(new, "new"))

    assert (await verifier.verify(_rs256(new, "new"))).subject == "idp-user-1"
    assert jwks_server.requests == 2
    # Both keys are now cached: neither token costs another fetch.
    await verifier.verify(_rs256(new, "new"))
    await verifier.verify(_rs256(old, "old"))
    assert jwks_server.requests == 2


async def test_a_key_withdrawn_from_the_jwks_stops_verifying_once_the_cache_expires(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    old, new = _rsa_key(), _rsa_key()
    jwks_server.publish(rsa_jwk(old, "old"))
    verifier = _external(make_cache(jwks_server.url, ttl_s=0.2, min_refresh_s=0.1))
    await verifier.verify(_rs256(old, "old"))

    jwks_server.publish(rsa_jwk(new, "new"))
    await asyncio.sleep(0.3)

    assert await _rejection(verifier, _rs256(old, "old")) == "TOKEN_INVALID"
    assert jwks_server.requests == 2
    assert (await verifier.verify(_rs256(new, "new"))).subject == "idp-user-1"
    assert jwks_server.requests == 2


async def test_a_flood_of_unknown_kids_causes_at_most_one_fetch_per_min_refresh_interval(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url, ttl_s=600.0, min_refresh_s=1.0))
    await verifier.verify(_rs256(key, "k1"))
    assert jwks_server.requests == 1

    def flood(n: int) -> list[str]:
        return [_rs256(key, secrets.token_hex(8)) for _ in range(n)]

    # Right after a fetch: unknown kids are not worth asking the issuer about.
    for token in flood(50):
        assert await _rejection(verifier, token) == "TOKEN_INVALID"
    assert jwks_server.requests == 1

    # Once min_refresh_s has passed, a flood (concurrent, then sequential) is worth one fetch.
    await asyncio.sleep(1.05)
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in flood(50)), return_exceptions=True)
    for token in flood(50):
        assert await _rejection(verifier, token) == "TOKEN_INVALID"

    assert all(isinstance(o, TokenRejected) and o.reason == "TOKEN_INVALID" for o in outcomes), outcomes
    assert jwks_server.requests == 2
    assert (await verifier.verify(_rs256(key, "k1"))).subject == "idp-user-1"


async def test_an_unreachable_jwks_with_nothing_cached_makes_the_issuer_unavailable(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    jwks_server.stop()
    verifier = _external(make_cache(jwks_server.url))

    with pytest.raises(IssuerUnavailable):
        await verifier.verify(_rs256(key, "k1"))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(503, None, id="http-503"),
        pytest.param(404, None, id="http-404"),
        pytest.param(200, b"<html>maintenance</html>", id="not-json"),
        pytest.param(200, b'{"no_keys": []}', id="no-keys-member"),
        pytest.param(200, b"[1, 2]", id="json-array"),
    ],
)
async def test_a_failing_jwks_with_nothing_cached_makes_the_issuer_unavailable(
    jwks_server: JwksServer, make_cache: CacheFactory, status: int, body: bytes | None
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    jwks_server.status, jwks_server.body = status, body
    verifier = _external(make_cache(jwks_server.url))

    with pytest.raises(IssuerUnavailable):
        await verifier.verify(_rs256(key, "k1"))
    assert jwks_server.requests == 1


async def test_cached_keys_keep_verifying_when_the_jwks_server_goes_down(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url, ttl_s=0.2, min_refresh_s=0.1))
    await verifier.verify(_rs256(key, "k1"))

    jwks_server.stop()
    await asyncio.sleep(0.3)  # the cache is stale: the next verification tries to refresh, and fails

    assert (await verifier.verify(_rs256(key, "k1"))).email == "ada@example.com"
    assert (await verifier.verify(_rs256(key, "k1", sub="again"))).subject == "again"


async def test_cached_keys_keep_verifying_when_the_jwks_server_answers_errors(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url, ttl_s=0.2, min_refresh_s=0.1))
    await verifier.verify(_rs256(key, "k1"))

    jwks_server.status = 503
    await asyncio.sleep(0.3)

    # A different token (another subject): the verified-token memo cannot answer, the key cache must.
    assert (await verifier.verify(_rs256(key, "k1", sub="after-outage"))).subject == "after-outage"
    assert jwks_server.requests == 2  # the refresh was attempted, failed, and the cached key served


async def test_after_a_failed_refresh_unknown_kids_do_not_refetch_before_min_refresh_s(
    jwks_server: JwksServer, make_cache: CacheFactory
) -> None:
    """On a clock the test moves, so a slow machine cannot stretch the 10 s window."""
    now = [1000.0]
    key = _rsa_key()
    jwks_server.publish(rsa_jwk(key, "k1"))
    verifier = _external(make_cache(jwks_server.url, ttl_s=60.0, min_refresh_s=10.0, clock=lambda: now[0]))
    await verifier.verify(_rs256(key, "k1"))
    jwks_server.status = 503
    now[0] += 61.0
    await verifier.verify(_rs256(key, "k1", sub="stale"))  # stale: one refresh, which fails; the cached key serves
    assert jwks_server.requests == 2
    unknown = [_rs256(key, secrets.token_hex(8)) for _ in range(20)]

    now[0] += 9.9
    for token in unknown:
        assert await _rejection(verifier, token) == "TOKEN_INVALID"
    assert jwks_server.requests == 2

    now[0] += 0.2  # past min_refresh_s: one more attempt, still failing
    assert await _rejection(verifier, unknown[0]) == "TOKEN_INVALID"
    assert jwks_server.requests == 3


@pytest.mark.parametrize(
    "unusable",
    [
        pytest.param({"kid": "odd", "kty": "OTHER"}, id="unknown-kty"),
        pytest.param({"kid": "odd", "kty": "RSA", "n": "AQ", "e": "AQAB"}, id="malformed-rsa"),
        pytest.param("not-an-object", id="not-an-object"),
    ],
)
async def test_an_unusable_entry_in_the_jwks_does_not_hide_the_usable_keys(
    jwks_server: JwksServer, make_cache: CacheFactory, unusable: Any
) -> None:
    key = _rsa_key()
    jwks_server.publish(unusable, rsa_jwk(key, "k1"))

    assert (await _external(make_cache(jwks_server.url)).verify(_rs256(key, "k1"))).email == "ada@example.com"


async def test_a_verified_token_is_remembered_but_never_past_its_expiry(tmp_path: Path) -> None:
    issuer = LocalIssuer.load_or_create(tmp_path / "issuer.pem")
    verifier = TokenVerifier([issuer.trusted()], cache_s=60.0)
    token = issuer.mint(user_public_id=USER_ID, email="ada@example.com", ttl_s=-29)  # within the 30 s leeway
    assert (await verifier.verify(token)).subject == USER_ID
    other = TokenVerifier([issuer.trusted()], cache_s=60.0)
    await other.verify(token)
    await asyncio.sleep(1.2)  # now over 30 s past exp: beyond the leeway, memo or not
    for candidate in (verifier, other):
        with pytest.raises(TokenRejected) as rejected:
            await candidate.verify(token)
        assert rejected.value.reason == "TOKEN_EXPIRED"
