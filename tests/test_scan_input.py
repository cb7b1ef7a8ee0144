"""Keyboard-wedge scan input: cleaning and resolving to one identifier. Pure, no database."""

from __future__ import annotations

import pytest

from biobank.identifiers import Kind, format_id
from biobank.scan_input import (
    MAX_SCAN_LENGTH,
    CleanScan,
    Removed,
    ScanError,
    clean_scan,
    parse_scan,
)

AS1 = format_id(Kind.ASPIRATE, 1)
AS2 = format_id(Kind.ASPIRATE, 2)


def _id_with_star_check(kind: Kind = Kind.PARTICIPANT) -> str:
    """The first identifier of ``kind`` whose Mod 37-2 check character is '*'."""
    for number in range(1, 10_000):
        value = format_id(kind, number)
        if value.endswith("*"):
            return value
    raise AssertionError("no identifier with check character '*' found")


STAR = _id_with_star_check()


def _error(raw: str) -> ScanError:
    with pytest.raises(ScanError) as info:
        parse_scan(raw)
    return info.value


def _kinds(clean: CleanScan) -> list[Removed]:
    return [r.kind for r in clean.removed]


# --- good input --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_resolves(kind: Kind) -> None:
    for number in (1, 42, 9_999_999, 12_345_678):  # 12_345_678 has more than 7 digits
        value = format_id(kind, number)
        scan = parse_scan(value)
        assert scan.parsed.kind is kind
        assert scan.parsed.number == number
        assert scan.value == value
        assert scan.removed == ()
        assert scan.raw == value


@pytest.mark.parametrize(
    "prefix", ["]C0", "]C1", "]Q1", "]Q3", "]Q6", "]d1", "]d2", "]E0", "]A0", "]e0"]
)
def test_aim_symbology_prefix_is_stripped(prefix: str) -> None:
    scan = parse_scan(prefix + AS1)
    assert scan.value == AS1
    assert [(r.kind, r.text) for r in scan.removed] == [(Removed.AIM_PREFIX, prefix)]


@pytest.mark.parametrize("substitute", ["+", "$", "¨"])
def test_aim_prefix_typed_through_another_keyboard_layout(substitute: str) -> None:
    scan = parse_scan(f"{substitute}d2{AS1}")
    assert scan.value == AS1
    assert _kinds(clean_scan(f"{substitute}d2{AS1}")) == [Removed.AIM_PREFIX_REMAPPED]


def test_layout_substitute_not_stripped_unless_an_identifier_follows() -> None:
    assert clean_scan("+C0ABC").text == "+C0ABC"
    assert clean_scan("$Q1").text == "$Q1"
    assert _error("+C0").code == "bad_format"


@pytest.mark.parametrize(
    ("raw", "removed"),
    [
        (f"  {AS1}  ", [Removed.WHITESPACE, Removed.WHITESPACE]),
        (f"{AS1}\r", [Removed.CONTROL]),
        (f"{AS1}\n", [Removed.CONTROL]),
        (f"{AS1}\r\n", [Removed.CONTROL]),
        (f"\t{AS1}\t", [Removed.CONTROL, Removed.CONTROL]),
        (f"\x1d{AS1}\x1e\x04", [Removed.CONTROL, Removed.CONTROL]),
        (f"\x00{AS1}\x00", [Removed.CONTROL, Removed.CONTROL]),
        (f"\ufeff\u200b{AS1}\u00a0", [Removed.CONTROL, Removed.WHITESPACE]),
        (f" ]C0{AS1}\r\n", [Removed.WHITESPACE, Removed.CONTROL, Removed.AIM_PREFIX]),
    ],
)
def test_surrounding_whitespace_and_control_characters(raw: str, removed: list[Removed]) -> None:
    scan = parse_scan(raw)
    assert scan.value == AS1
    assert [r.kind for r in scan.removed] == removed


def test_removed_text_is_exact_and_described_visibly() -> None:
    clean = clean_scan(f" ]Q1{AS1.lower()}\r\n")
    assert clean.text == AS1
    assert [(r.kind, r.text) for r in clean.removed] == [
        (Removed.WHITESPACE, " "),
        (Removed.CONTROL, "\r\n"),
        (Removed.AIM_PREFIX, "]Q1"),
        (Removed.LOWERCASE, AS1.lower()),
    ]
    assert "<CR><LF>" in clean.removed[1].description


def test_lowercase_is_uppercased() -> None:
    scan = parse_scan(AS1.lower())
    assert scan.value == AS1
    assert [r.kind for r in scan.removed] == [Removed.LOWERCASE]
    assert parse_scan("]d2" + format_id(Kind.DOSE, 7).lower()).parsed.kind is Kind.DOSE


def test_star_check_character_is_kept() -> None:
    assert STAR.endswith("*")
    assert parse_scan(STAR).value == STAR
    assert parse_scan(f"]C0{STAR}\r\n").value == STAR
    assert parse_scan(STAR.lower()).value == STAR
    # Another kind, to show it is not a one-off.
    other = _id_with_star_check(Kind.UNIT)
    assert parse_scan(other).parsed.kind is Kind.UNIT


def test_single_trailing_star_is_never_stripped() -> None:
    # AS0000001 + '*' is the wrong check character; it must not become "AS0000001".
    error = _error(AS1[:-1] + "*")
    assert error.code == "bad_check_character"
    assert f"'{AS1[-1]}'" in error.message


def test_code39_start_stop_asterisks() -> None:
    scan = parse_scan(f"*{AS1}*")
    assert scan.value == AS1
    assert [(r.kind, r.text) for r in scan.removed] == [(Removed.CODE39_DELIMITERS, "**")]
    scan = parse_scan(f"*{STAR}*")
    assert scan.value == STAR
    assert [(r.kind, r.text) for r in scan.removed] == [(Removed.CODE39_DELIMITERS, "**")]
    # Ambiguous: "*PT0000099*" is read as PT0000099* (valid, check character '*') with only
    # the start '*' removed, rather than as the invalid PT0000099.
    scan = parse_scan(f"*{STAR[:-1]}*")
    assert scan.value == STAR
    assert [(r.kind, r.text) for r in scan.removed] == [(Removed.CODE39_DELIMITERS, "*")]


@pytest.mark.parametrize(
    "raw",
    [
        f"https://biobank.example.org/s/{AS1}",
        f"http://biobank.example.org/s/{AS1}/",
        f"HTTPS://BIOBANK.EXAMPLE.ORG/S/{AS1}",
        f"https://biobank.example.org/s/{AS1.lower()}?src=qr#x",
        f"]Q1https://biobank.example.org/{AS1}",
    ],
)
def test_url_last_path_segment(raw: str) -> None:
    scan = parse_scan(raw)
    assert scan.value == AS1
    assert Removed.URL in [r.kind for r in scan.removed]


def test_url_with_percent_encoded_star() -> None:
    assert parse_scan(f"https://h/s/{STAR[:-1]}%2A").value == STAR


def test_other_url_forms_are_left_alone() -> None:
    assert clean_scan(f"ftp://h/{AS1}").text == f"FTP://H/{AS1}"
    # identifiers.parse_id reports any text starting with two unknown letters ("HT") as
    # unknown_prefix; what matters here is that these do not resolve.
    for raw in ("https://biobank.example.org/", f"https://biobank.example.org/s?id={AS1}"):
        assert _error(raw).code in {"bad_format", "unknown_prefix"}


# --- hostile and malformed input ---------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "   ", "\r\n", "\t\x00\x1d"])
def test_empty(raw: str) -> None:
    error = _error(raw)
    assert error.code == "empty"
    assert error.raw == raw


@pytest.mark.parametrize("raw", ["]C0", "]d2\r\n", " ]Q1 "])
def test_only_symbology_prefix(raw: str) -> None:
    error = _error(raw)
    assert error.code == "empty"
    assert "symbology prefix" in error.message


def test_wrong_check_character_names_the_expected_one() -> None:
    wrong = AS1[:-1] + ("X" if AS1[-1] != "X" else "Y")
    error = _error(wrong)
    assert error.code == "bad_check_character"
    assert f"but '{AS1[-1]}' was expected" in error.message
    assert str(error) == error.message
    assert isinstance(error, ValueError)


def test_unknown_prefix_names_the_known_prefixes() -> None:
    error = _error("ZZ0000001A")
    assert error.code == "unknown_prefix"
    assert "'ZZ'" in error.message
    for kind in Kind:
        assert kind.value in error.message


@pytest.mark.parametrize(
    "raw", ["AS123", "AS-0000001W", "AS 0000001W", "12345678901", "1", "AS00000A1W"]
)
def test_malformed_shape(raw: str) -> None:
    assert _error(raw).code == "bad_format"


@pytest.mark.parametrize(
    "raw",
    [
        "'; DROP TABLE biobank_unit; --",
        "' OR '1'='1",
        f"{AS1}' OR 1=1 --",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "%s%s%s%n",
    ],
)
def test_injection_like_text_is_just_not_an_identifier(raw: str) -> None:
    error = _error(raw)
    assert error.code in {"bad_format", "unknown_prefix"}
    assert error.raw == raw


def test_too_long() -> None:
    error = _error("A" * 10_000)
    assert error.code == "too_long"
    assert "10000" in error.message
    assert len(error.message) < 200  # the input is not echoed back
    assert _error(AS1 * 7).code == "too_long"  # 70 characters
    # The limit counts the code, not the CR/LF/spaces around it.
    assert _error("A" * MAX_SCAN_LENGTH + "\r\n" * 50).code != "too_long"


def test_ten_thousand_control_characters_are_just_empty() -> None:
    assert _error("\r\n" * 5_000).code == "empty"


@pytest.mark.parametrize(
    "raw",
    [
        "ÅS0000001W",  # Nordic letter where a wedge with the wrong layout typed it
        "ＡＳ０００００００１Ｗ",  # fullwidth
        "AS٠٠٠٠٠٠١W",  # Arabic-Indic digits (re's \d would accept them)
        "😀",
        AS1 + "é",
        "straße",
    ],
)
def test_unicode_is_rejected_with_the_character_named(raw: str) -> None:
    error = _error(raw)
    assert error.code == "bad_character"
    assert "U+" in error.message


@pytest.mark.parametrize("raw", ["AS00\x0000001W", f"{AS1[:5]}\x1d{AS1[5:]}", "AS\x7f0000001W"])
def test_control_characters_inside_the_code(raw: str) -> None:
    error = _error(raw)
    assert error.code == "non_printable"
    assert "U+" in error.message


def test_nul_bytes_only_around_the_code_are_removed() -> None:
    assert parse_scan(f"\x00\x00{AS1}\x00").value == AS1


@pytest.mark.parametrize(
    "raw",
    [
        AS1 + AS2,
        AS1 + " " + AS2,
        AS1 + "\r" + AS2,
        AS1 + "\t" + AS2,
        f"]C0{AS1}]C0{AS2}",
        (AS1 + AS2).lower(),
        format_id(Kind.PROCESSING, 1) + AS1,  # first ends in a digit check character
        STAR + AS1,
        AS1 + STAR,
    ],
)
def test_double_scan(raw: str) -> None:
    error = _error(raw)
    assert error.code == "double_scan"
    assert len(error.parts) == 2
    assert "Enter" in error.message


def test_double_scan_names_both_codes() -> None:
    error = _error(AS1 + AS2)
    assert [p.value for p in error.parts] == [AS1, AS2]
    assert AS1 in error.message and AS2 in error.message
    assert "Two codes" in error.message


def test_same_code_scanned_twice_and_three_codes() -> None:
    assert "same code" in _error(AS1 + AS1).message
    error = _error(AS1 + AS2 + format_id(Kind.UNIT, 3))
    assert error.code == "double_scan"
    assert len(error.parts) == 3


def test_valid_id_followed_by_junk_is_not_a_double_scan() -> None:
    assert _error(AS1 + "AS0000002X").code == "bad_format"
    assert _error(AS1 + "X").code == "bad_format"


HOSTILE = [
    "",
    "\x00" * 100,
    "A" * 10_000,
    "]" * 500,
    "*",
    "**",
    "]C",
    "]",
    "https://",
    "http://[",
    f"https://[::1/{AS1}",
    "https://h/%00%FF",
    "http:///",
    "\ud800",  # lone surrogate
    "\u202e" + AS1,  # right-to-left override
    "+C0" * 30,
    "*" * 64,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_input_never_raises_anything_but_scan_error(raw: str) -> None:
    clean_scan(raw)  # never raises on content
    try:
        parse_scan(raw)
    except ScanError as error:
        assert error.code
        assert error.message


@pytest.mark.parametrize("raw", [None, b"AS0000001W", 123])
def test_non_string_is_a_programmer_error(raw: object) -> None:
    with pytest.raises(TypeError):
        clean_scan(raw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_scan(raw)  # type: ignore[arg-type]
