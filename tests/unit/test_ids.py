"""Public ids: the only ids clients ever see."""

from __future__ import annotations

from collections import Counter

import pytest

from altalune.v1 import project_pb2
from internal.ids import PUBLIC_ID_ALPHABET, PUBLIC_ID_LENGTH, is_public_id, new_public_id
from internal.validation import RequestValidator


def test_a_new_public_id_has_fourteen_characters_of_the_alphabet() -> None:
    for _ in range(1000):
        public_id = new_public_id()
        assert len(public_id) == PUBLIC_ID_LENGTH == 14
        assert set(public_id) <= set(PUBLIC_ID_ALPHABET)
        assert is_public_id(public_id)


def test_the_alphabet_has_no_look_alike_characters() -> None:
    assert len(PUBLIC_ID_ALPHABET) == len(set(PUBLIC_ID_ALPHABET)) == 32
    assert not set(PUBLIC_ID_ALPHABET) & set("01io")
    assert PUBLIC_ID_ALPHABET.lower() == PUBLIC_ID_ALPHABET


def test_new_public_ids_do_not_repeat_and_use_the_whole_alphabet() -> None:
    ids = [new_public_id() for _ in range(20_000)]

    assert len(set(ids)) == len(ids)
    counts = Counter("".join(ids))
    assert set(counts) == set(PUBLIC_ID_ALPHABET)
    # 280,000 draws over 32 symbols: each should appear ~8750 times; a biased generator would not.
    assert min(counts.values()) > 8000
    assert max(counts.values()) < 9500


@pytest.mark.parametrize(
    "value",
    [
        "",
        "23456789abcde",  # 13
        "23456789abcdefg",  # 15
        "23456789abcdeo",  # o
        "23456789abcde0",  # 0
        "23456789abcde1",  # 1
        "23456789abcdei",  # i
        "23456789ABCDEF",  # upper case
        "23456789abcde ",
        "23456789abcdef\n",
    ],
)
def test_anything_but_the_exact_public_id_shape_is_refused(value: str) -> None:
    assert not is_public_id(value)


def test_the_contracts_id_rule_accepts_every_generated_id_and_refuses_look_alikes() -> None:
    validator = RequestValidator()

    for _ in range(200):
        assert validator.violations(project_pb2.GetProjectRequest(id=new_public_id())) == []
    assert [v.field for v in validator.violations(project_pb2.GetProjectRequest(id="23456789abcde0"))] == ["id"]
