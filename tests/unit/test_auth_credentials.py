"""Bearer credentials: the authorization header, the API key format, its keyed hash and the pepper file."""

from __future__ import annotations

import re
import stat
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from internal.auth.credentials import (
    ApiKeyHasher,
    ApiKeyToken,
    BadAuthorizationHeader,
    bearer_token,
    display_prefix,
    load_or_create_pepper,
    looks_like_api_key,
    mint_api_key,
    parse_api_key,
)
from internal.ids import PUBLIC_ID_ALPHABET, new_public_id

_SYMBOL = f"[{re.escape(PUBLIC_ID_ALPHABET)}]"
_KEY_SHAPE = re.compile(rf"ak_({_SYMBOL}{{14}})_({_SYMBOL}{{14}})_({_SYMBOL}{{40}})")


def _other_symbol(symbol: str) -> str:
    """A different symbol of the public-id alphabet: the change keeps the key well-formed."""
    return PUBLIC_ID_ALPHABET[(PUBLIC_ID_ALPHABET.index(symbol) + 1) % len(PUBLIC_ID_ALPHABET)]


def _replace(text: str, index: int, symbol: str) -> str:
    return text[:index] + symbol + text[index + 1 :]


# --- the authorization header ----------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json", "x-authorization": "Bearer abc"}])
def test_no_authorization_header_means_no_token(headers: dict[str, str]) -> None:
    assert bearer_token(headers) is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("bEaReR abc", "abc"),
        ("Bearer   abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/=", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/="),
        ("Bearer ak_23456789abcdef_ghjkmnpqrstuvw_x", "ak_23456789abcdef_ghjkmnpqrstuvw_x"),
    ],
)
def test_the_bearer_scheme_is_case_insensitive_and_yields_the_token(value: str, token: str) -> None:
    assert bearer_token({"authorization": value}) == token


@pytest.mark.parametrize(
    "value",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Token abc",
        "Bearer",
        "Bearer ",
        "Bearerabc",
        "Bearer\tabc",
        "Bearer abc def",
        "Bearer abc\ndef",
        "Bearer abc!",
        'Bearer ab"c',
        "Bearer abc,def",
        "Bearer abc;def",
        "Bearer ab\u00e9c",
        "Bearer \uff41bc",  # fullwidth letter: not an ASCII b64token character
        "abc",
    ],
)
def test_an_authorization_header_that_is_not_bearer_and_a_b64token_is_refused(value: str) -> None:
    with pytest.raises(BadAuthorizationHeader):
        bearer_token({"authorization": value})


def test_a_token_of_8192_characters_is_accepted_and_one_more_is_refused() -> None:
    longest = "a" * 8192

    assert bearer_token({"authorization": f"Bearer {longest}"}) == longest
    with pytest.raises(BadAuthorizationHeader):
        bearer_token({"authorization": f"Bearer {longest}a"})


# --- API key format ----------------------------------------------------------------------------


def test_a_minted_api_key_has_the_documented_shape_and_parses_back_to_itself() -> None:
    project_id, key_id = new_public_id(), new_public_id()

    minted = mint_api_key(project_id, key_id)

    match = _KEY_SHAPE.fullmatch(minted.token)
    assert match is not None, minted.token
    assert match.groups() == (project_id, key_id, minted.secret)
    assert minted.hint == minted.secret[:4]
    assert looks_like_api_key(minted.token)
    assert parse_api_key(minted.token) == ApiKeyToken(project_id, key_id, minted.secret, minted.token)


def test_two_mints_for_the_same_ids_give_different_secrets() -> None:
    project_id, key_id = new_public_id(), new_public_id()

    first, second = mint_api_key(project_id, key_id), mint_api_key(project_id, key_id)

    assert first.token != second.token
    assert first.secret != second.secret


def test_minted_secrets_do_not_repeat_and_use_the_whole_alphabet() -> None:
    project_id, key_id = new_public_id(), new_public_id()
    secrets = [mint_api_key(project_id, key_id).secret for _ in range(2000)]

    assert len(set(secrets)) == len(secrets)
    counts = Counter("".join(secrets))
    assert set(counts) == set(PUBLIC_ID_ALPHABET)
    # 80,000 draws over 32 symbols: each should appear ~2500 times; a biased or stuck encoder would not.
    assert min(counts.values()) > 2150
    assert max(counts.values()) < 2850
    # Every position of the secret varies (a short random source would leave the tail constant).
    for position in range(40):
        assert len({secret[position] for secret in secrets}) > 20, position


@pytest.mark.parametrize("illegal", ["0", "1", "i", "o", "A", "-", "_", " "])
@pytest.mark.parametrize("position", [3, 16, 20, 31, 35, 70])
def test_a_key_with_a_character_outside_the_alphabet_does_not_parse(illegal: str, position: int) -> None:
    token = mint_api_key(new_public_id(), new_public_id()).token

    assert parse_api_key(_replace(token, position, illegal)) is None


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1], id="secret-one-short"),
        pytest.param(lambda t: t + "a", id="secret-one-long"),
        pytest.param(lambda t: t[:-20], id="secret-truncated"),
        pytest.param(lambda t: "sk_" + t[3:], id="wrong-prefix"),
        pytest.param(lambda t: "AK_" + t[3:], id="upper-case-prefix"),
        pytest.param(lambda t: "ak-" + t[3:], id="prefix-with-dash"),
        pytest.param(lambda t: t[3:], id="no-prefix"),
        pytest.param(lambda t: "ak_" + t, id="doubled-prefix"),
        pytest.param(lambda t: t[:3] + t[4:], id="project-id-one-short"),
        pytest.param(lambda t: t[:18] + "2" + t[18:], id="key-id-one-long"),
        pytest.param(lambda t: t.replace("_", "-"), id="dashes-for-underscores"),
        pytest.param(lambda t: t + "\n", id="trailing-newline"),
        pytest.param(lambda t: " " + t, id="leading-space"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_a_key_of_the_wrong_shape_does_not_parse(mangle: Callable[[str], str]) -> None:
    token = mint_api_key(new_public_id(), new_public_id()).token
    mangled = mangle(token)
    assert mangled != token

    assert parse_api_key(mangled) is None


def test_the_display_prefix_reveals_the_ids_and_only_the_four_character_hint_of_the_secret() -> None:
    project_id, key_id = new_public_id(), new_public_id()
    minted = mint_api_key(project_id, key_id)

    shown = display_prefix(project_id, key_id, minted.hint)

    assert shown == f"ak_{project_id}_{key_id}_{minted.secret[:4]}"
    assert minted.token.startswith(shown)
    assert len(shown) == len(minted.token) - 36
    assert minted.secret[4:] not in shown
    assert parse_api_key(shown) is None


# --- keyed hash --------------------------------------------------------------------------------


def test_the_hasher_matches_exactly_the_key_it_hashed() -> None:
    hasher = ApiKeyHasher(b"p" * 32)
    token = mint_api_key(new_public_id(), new_public_id()).token
    other = mint_api_key(new_public_id(), new_public_id()).token

    stored = hasher.hash(token)

    assert hasher.matches(token, stored)
    assert not hasher.matches(other, stored)
    assert token.encode() not in stored


def test_the_hash_is_deterministic_for_a_pepper_so_a_stored_hash_keeps_matching() -> None:
    token = mint_api_key(new_public_id(), new_public_id()).token

    assert ApiKeyHasher(b"p" * 32).hash(token) == ApiKeyHasher(b"p" * 32).hash(token)
    assert ApiKeyHasher(b"p" * 32).matches(token, ApiKeyHasher(b"p" * 32).hash(token))


@pytest.mark.parametrize("position", [0, 3, 10, 17, 25, 32, 40, 60, 72])
def test_changing_any_one_character_of_the_key_breaks_the_match(position: int) -> None:
    hasher = ApiKeyHasher(b"p" * 32)
    token = mint_api_key(new_public_id(), new_public_id()).token
    stored = hasher.hash(token)
    symbol = token[position]
    changed = _replace(token, position, _other_symbol(symbol) if symbol in PUBLIC_ID_ALPHABET else "x")
    assert changed != token

    assert not hasher.matches(changed, stored)


def test_a_different_pepper_gives_a_different_hash_and_no_match() -> None:
    token = mint_api_key(new_public_id(), new_public_id()).token
    first, second = ApiKeyHasher(b"a" * 32), ApiKeyHasher(b"a" * 31 + b"b")

    assert first.hash(token) != second.hash(token)
    assert not second.matches(token, first.hash(token))


def test_a_pepper_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ApiKeyHasher(b"p" * 31)
    with pytest.raises(ValueError, match="32 bytes"):
        ApiKeyHasher(b"")

    ApiKeyHasher(b"p" * 32)  # the minimum itself is fine


# --- pepper file -------------------------------------------------------------------------------


def test_the_pepper_file_is_created_private_with_32_random_bytes_in_hex(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "api-key-pepper"

    pepper = load_or_create_pepper(path)

    assert len(pepper) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n?", content), content
    assert bytes.fromhex(content.strip()) == pepper
    ApiKeyHasher(pepper)  # long enough to be used


def test_the_pepper_file_is_read_back_unchanged_on_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "api-key-pepper"
    first = load_or_create_pepper(path)
    content = path.read_bytes()

    second = load_or_create_pepper(path)

    assert second == first
    assert path.read_bytes() == content


def test_each_new_pepper_file_gets_its_own_random_pepper(tmp_path: Path) -> None:
    peppers = {load_or_create_pepper(tmp_path / f"pepper-{n}") for n in range(5)}

    assert len(peppers) == 5


def test_racing_creators_of_the_pepper_all_end_up_with_the_same_one(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pepper"
    with ThreadPoolExecutor(max_workers=8) as pool:
        peppers = list(pool.map(lambda _: load_or_create_pepper(path), range(16)))
    assert len(set(peppers)) == 1
    assert len(peppers[0]) == 32
    assert sorted(p.name for p in path.parent.iterdir()) == ["pepper"]  # no temporary files left behind
