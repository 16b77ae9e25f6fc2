"""An external OpenID Connect issuer, trusted through its JWKS URL, as clients see it.

Each test runs a real server on a private database, configured with ALTALUNE_OIDC_ISSUER /
_AUDIENCE / _JWKS_URL pointing at a JWKS endpoint served over HTTP on 127.0.0.1 (a
ThreadingHTTPServer in a thread, whose document the test changes and whose requests it counts).
The bootstrap administrator (local issuer) creates a project and the user "Ada@Example.com", a
project MEMBER. Tokens from the external issuer name users by their verified email, so an RS256
token for "ada@example.com" (other case) must act as Ada; everything else must be refused with
`unauthenticated` and the precise reason, on every transport.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from altalune.v1 import iam_pb2, project_pb2
from internal.auth import oidc
from internal.server.app import AltaluneServer
from tests import conftest
from tests.conftest import admin_token_for
from tests.e2e.clients import TRANSPORTS, Outcome, Rpc, Transport, bearer, open_transport
from tests.jwks_server import JwksServer, ec_jwk, rsa_jwk

pytestmark = pytest.mark.e2e

ISSUER = "https://idp.test/"
AUDIENCE = "altalune-api"
KID = "idp-rsa-1"
ROTATED_KID = "idp-rsa-2"
EC_KID = "idp-ec-1"
ADA_EMAIL = "Ada@Example.com"
ADA_TOKEN_EMAIL = "ada@example.com"  # the issuer's spelling differs in case on purpose
# JwksCache refetches on an unknown kid at most once per min_refresh_s (10 s in the container).
PAST_MIN_REFRESH_S = 11.0

GET_PROJECT = Rpc.of("ProjectService", "GetProject")
CREATE_PROJECT = Rpc.of("ProjectService", "CreateProject")
CREATE_USER = Rpc.of("UserService", "CreateUser")
DEACTIVATE_USER = Rpc.of("UserService", "DeactivateUser")
ADD_MEMBERS = Rpc.of("IamService", "AddProjectMembers")


# --- the identity provider: keys, tokens, a JWKS endpoint ----------------------------------------


@dataclass(frozen=True)
class Keys:
    signing: rsa.RSAPrivateKey  # published as KID
    rotated: rsa.RSAPrivateKey  # published as ROTATED_KID by the rotation test
    stranger: rsa.RSAPrivateKey  # never published
    ec_key: ec.EllipticCurvePrivateKey  # published as EC_KID by the ES256 test


@pytest.fixture(scope="module")
def keys() -> Keys:
    """RSA-2048 generation is slow-ish: once per module."""

    def rsa_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return Keys(rsa_key(), rsa_key(), rsa_key(), ec.generate_private_key(ec.SECP256R1()))


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for Ada from the external issuer; an override of None drops the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "idp|ada",
        "email": ADA_TOKEN_EMAIL,
        "email_verified": True,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def rs256(key: rsa.RSAPrivateKey, kid: str = KID, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def es256(key: ec.EllipticCurvePrivateKey, kid: str = EC_KID, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def jwks(keys: Keys) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(rsa_jwk(keys.signing, KID))
    try:
        yield server
    finally:
        server.stop()


class ShiftedClock:
    """Stands in for the `time` module inside internal.auth.oidc: monotonic time can jump ahead."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time()


@pytest.fixture
def jwks_clock(monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    clock = ShiftedClock()
    monkeypatch.setattr(oidc, "time", clock)
    return clock


# --- the service ------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def oidc_server(database_url: str, jwks: JwksServer) -> AsyncIterator[AltaluneServer]:
    async with conftest.running_server(
        database_url, ALTALUNE_OIDC_ISSUER=ISSUER, ALTALUNE_OIDC_AUDIENCE=AUDIENCE, ALTALUNE_OIDC_JWKS_URL=jwks.url
    ) as running:
        yield running


@dataclass(frozen=True)
class World:
    admin_token: str
    project: str  # Ada is a MEMBER here
    other_project: str  # Ada has no access here
    ada: str  # Ada's public id


async def ok(t: Transport, rpc: Rpc[Any, Any], token: str, **fields: Any) -> Any:
    return (await t.call(rpc, rpc.request(**fields), headers=bearer(token))).ok()


@pytest_asyncio.fixture
async def world(oidc_server: AltaluneServer) -> AsyncIterator[World]:
    admin = admin_token_for(oidc_server)
    t = open_transport("grpc", grpc_port=oidc_server.grpc_port, http_port=oidc_server.http_port)
    try:
        env = project_pb2.ENVIRONMENT_LIVE
        project = (await ok(t, CREATE_PROJECT, admin, name="OIDC", timezone="UTC", environment=env)).project.id
        other = (await ok(t, CREATE_PROJECT, admin, name="Elsewhere", timezone="UTC", environment=env)).project.id
        ada = (await ok(t, CREATE_USER, admin, email=ADA_EMAIL, first_name="Ada", last_name="Lovelace")).user
        assert ada.email == ADA_EMAIL
        member = iam_pb2.NewProjectMember(user_id=ada.id, role=iam_pb2.PROJECT_ROLE_MEMBER)
        await ok(t, ADD_MEMBERS, admin, project_id=project, members=[member])
        yield World(admin_token=admin, project=project, other_project=other, ada=ada.id)
    finally:
        await t.close()


@pytest_asyncio.fixture(params=TRANSPORTS)
async def client(request: pytest.FixtureRequest, oidc_server: AltaluneServer) -> AsyncIterator[Transport]:
    """One transport that sends no credential unless the call adds one."""
    transport = open_transport(request.param, grpc_port=oidc_server.grpc_port, http_port=oidc_server.http_port)
    try:
        yield transport
    finally:
        await transport.close()


async def get_project(t: Transport, token: str, project: str) -> Outcome[Any]:
    return await t.call(GET_PROJECT, GET_PROJECT.request(id=project), headers=bearer(token))


async def assert_accepted(t: Transport, token: str, world: World) -> None:
    got = (await get_project(t, token, world.project)).ok()
    assert got.project.id == world.project, t.name


async def assert_refused(t: Transport, token: str, world: World, reason: str) -> None:
    failure = (await get_project(t, token, world.project)).failed()
    assert (failure.code, failure.reason) == ("unauthenticated", reason), (t.name, failure)
    assert token not in failure.message


# --- the tests --------------------------------------------------------------------------------------


async def test_a_verified_email_token_from_the_external_issuer_acts_as_that_user(
    client: Transport, world: World, keys: Keys, jwks: JwksServer
) -> None:
    token = rs256(keys.signing)

    await assert_accepted(client, token, world)

    # It is Ada (a member of one project only), not some more powerful principal.
    elsewhere = (await get_project(client, token, world.other_project)).failed()
    assert (elsewhere.code, elsewhere.reason) == ("not_found", "PROJECT_NOT_FOUND")
    assert jwks.requests == 1  # the keys were fetched once, on first use, and then cached


Bad = Callable[[Keys], str]

REFUSED: dict[str, tuple[Bad, str]] = {
    "email-not-verified": (lambda k: rs256(k.signing, email_verified=False), "TOKEN_INVALID"),
    "email-verified-missing": (lambda k: rs256(k.signing, email_verified=None), "TOKEN_INVALID"),
    "wrong-audience": (lambda k: rs256(k.signing, aud="someone-else"), "TOKEN_INVALID"),
    "expired": (
        lambda k: rs256(k.signing, iat=int(time.time()) - 900, exp=int(time.time()) - 120),
        "TOKEN_EXPIRED",
    ),
    "unpublished-key-under-the-published-kid": (lambda k: rs256(k.stranger, KID), "TOKEN_INVALID"),
    "unpublished-key-with-its-own-kid": (lambda k: rs256(k.stranger, "idp-rsa-unknown"), "TOKEN_INVALID"),
    "email-of-no-user": (lambda k: rs256(k.signing, email="nobody@example.com"), "USER_UNKNOWN"),
}


@pytest.mark.parametrize("case", REFUSED)
async def test_an_unacceptable_external_token_is_refused_with_its_reason(
    case: str, client: Transport, world: World, keys: Keys
) -> None:
    make, reason = REFUSED[case]

    await assert_accepted(client, rs256(keys.signing), world)  # control: the issuer is trusted
    await assert_refused(client, make(keys), world, reason)


async def test_a_token_signed_by_a_rotated_key_works_on_its_first_use(
    client: Transport, world: World, keys: Keys, jwks: JwksServer, jwks_clock: ShiftedClock
) -> None:
    before = rs256(keys.signing)
    await assert_accepted(client, before, world)
    assert jwks.requests == 1

    jwks.publish(rsa_jwk(keys.signing, KID), rsa_jwk(keys.rotated, ROTATED_KID))
    jwks_clock.offset = PAST_MIN_REFRESH_S  # the last fetch is older than the refetch rate limit
    await assert_accepted(client, rs256(keys.rotated, ROTATED_KID), world)

    assert jwks.requests == 2  # the unknown kid made the server refetch, exactly once
    await assert_accepted(client, before, world)  # the old key is still published and trusted
    assert jwks.requests == 2


async def test_a_deactivated_user_is_refused_on_the_next_call_with_the_same_token(
    client: Transport, world: World, keys: Keys
) -> None:
    token = rs256(keys.signing)
    await assert_accepted(client, token, world)  # verified, and remembered by the server

    deactivated = await ok(client, DEACTIVATE_USER, world.admin_token, id=world.ada)
    assert deactivated.user.active is False

    await assert_refused(client, token, world, "USER_INACTIVE")


async def test_an_es256_key_in_the_jwks_is_accepted(
    client: Transport, world: World, keys: Keys, jwks: JwksServer
) -> None:
    jwks.publish(rsa_jwk(keys.signing, KID), ec_jwk(keys.ec_key, EC_KID))

    await assert_accepted(client, es256(keys.ec_key), world)
    # Control: the same EC token under a kid the JWKS does not publish is not.
    await assert_refused(client, es256(keys.ec_key, "idp-ec-unknown"), world, "TOKEN_INVALID")


async def test_the_local_issuer_admin_token_keeps_working_alongside_the_external_issuer(
    client: Transport, world: World, keys: Keys
) -> None:
    await assert_accepted(client, world.admin_token, world)
    await assert_accepted(client, rs256(keys.signing), world)
    await assert_accepted(client, world.admin_token, world)
    # The admin sees what Ada cannot: the token is the admin's, not mapped to an external user.
    elsewhere = (await get_project(client, world.admin_token, world.other_project)).ok()
    assert elsewhere.project.id == world.other_project
