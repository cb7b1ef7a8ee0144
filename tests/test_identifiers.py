from __future__ import annotations

import pytest

from biobank.identifiers import (
    ALPHABET,
    IdentifierError,
    Kind,
    check_character,
    format_id,
    is_valid_id,
    parse_id,
    with_article,
)
from biobank.services.identifiers import identifier_allocate

from .factories import run_at_once


@pytest.mark.parametrize(
    ("data", "expected"),
    [("G123498654321", "H"), ("A999818123456", "N"), ("G123489654321", "Y")],
)
def test_published_mod37_2_vectors(data: str, expected: str) -> None:
    assert check_character(data) == expected


def test_every_kind_formats_and_parses_back() -> None:
    for kind in Kind:
        for number in (1, 9, 1234567, 12345678):
            value = format_id(kind, number)
            assert value == value.upper()
            assert value.startswith(kind.value)
            parsed = parse_id(value)
            assert (parsed.kind, parsed.number, parsed.value) == (kind, number, value)


def test_every_single_character_substitution_is_caught() -> None:
    value = format_id(Kind.UNIT, 4711)
    for index in range(2, len(value)):
        for char in ALPHABET:
            if char == value[index]:
                continue
            mutated = value[:index] + char + value[index + 1 :]
            assert not is_valid_id(mutated), mutated


def test_adjacent_transpositions_are_caught() -> None:
    value = format_id(Kind.ASPIRATE, 1234567)
    for index in range(2, len(value) - 1):
        if value[index] == value[index + 1]:
            continue
        swapped = value[:index] + value[index + 1] + value[index] + value[index + 2 :]
        assert not is_valid_id(swapped), swapped


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ZZ0000001A", "unknown_prefix"),
        ("AS12", "bad_format"),
        ("AS0000001", "bad_format"),
        ("AS00000A1W", "bad_format"),
        ("AS0000001Q", "bad_check_character"),
    ],
)
def test_parse_errors_name_the_problem(raw: str, code: str) -> None:
    with pytest.raises(IdentifierError) as info:
        parse_id(raw)
    assert info.value.code == code
    assert info.value.message


def test_wrong_check_character_message_says_which_is_expected() -> None:
    good = format_id(Kind.BOX, 3)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(IdentifierError, match=f"'{good[-1]}' was expected") as info:
        parse_id(bad)
    assert info.value.code == "bad_check_character"


def test_lowercase_and_whitespace_are_normalised() -> None:
    value = format_id(Kind.PARTICIPANT, 42)
    assert parse_id(f"  {value.lower()}\n").value == value


def test_allocation_is_sequential_per_kind(db: None) -> None:
    first = identifier_allocate(kind=Kind.UNIT)
    second = identifier_allocate(kind=Kind.UNIT)
    other = identifier_allocate(kind=Kind.BOX)
    assert parse_id(second).number == parse_id(first).number + 1
    assert parse_id(other).kind is Kind.BOX


@pytest.mark.django_db(transaction=True)
def test_concurrent_allocation_never_repeats(postgres_only: None) -> None:
    results: list[str] = []

    def allocate() -> None:
        results.extend(identifier_allocate(kind=Kind.ASPIRATE) for _ in range(25))

    assert run_at_once(*[allocate] * 4) == ["ok"] * 4
    assert len(results) == 100
    assert len(set(results)) == 100


def test_kind_names_take_the_right_article() -> None:
    assert {kind.label: with_article(kind.label) for kind in Kind} == {
        "participant": "a participant",
        "aspirate": "an aspirate",
        "processing": "a processing",
        "freezing run": "a freezing run",
        "unit": "a unit",
        "storage unit": "a storage unit",
        "container": "a container",
        "box": "a box",
        "dose": "a dose",
        "shipment": "a shipment",
    }
    assert [with_article(w) for w in ("item", "empty box", "open placement", "upload")] == [
        "an item",
        "an empty box",
        "an open placement",
        "an upload",
    ]
