"""The one module that owns barcode identifiers: their kinds, check character and parsing.

An identifier is a two-letter kind prefix, a zero-padded sequence number (at least
``NUMBER_WIDTH`` digits) and one ISO/IEC 7064 Mod 37-2 check character, e.g. ``AS0000001W``.
Allocation of the number is in ``biobank.services.identifiers`` (a locked counter row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
NUMBER_WIDTH = 7


class Kind(StrEnum):
    """Every labelled kind of thing, keyed by its barcode prefix."""

    PARTICIPANT = "PT"
    ASPIRATE = "AS"
    PROCESSING = "PR"
    FREEZING_RUN = "FR"
    UNIT = "UN"
    STORAGE_UNIT = "SU"
    CONTAINER = "CT"
    BOX = "BX"
    DOSE = "DS"
    SHIPMENT = "SH"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").lower()


def with_article(noun: str) -> str:
    """The noun with its indefinite article, for messages: "an aspirate", "a unit", "a box".
    "an" before a vowel sound: a, e, i, o, and u unless it sounds "you" (unit, user, usual)."""
    first = noun[:1].lower()
    vowel = first in "aeio" or (first == "u" and not noun.lower().startswith(("uni", "us", "ut")))
    return f"{'an' if noun and vowel else 'a'} {noun}"


PREFIXES: dict[str, Kind] = {k.value: k for k in Kind}


class IdentifierError(ValueError):
    """A string that is not a valid identifier; ``code`` says why, ``str()`` says it to a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_character(data: str) -> str:
    """ISO/IEC 7064 Mod 37-2 check character for ``data`` (characters 0-9, A-Z, ``*``)."""
    total = 0
    for char in data.upper():
        value = ALPHABET.find(char)
        if value < 0 or char == "*":
            raise IdentifierError(
                "bad_character", f"'{char}' cannot appear in an identifier (only 0-9 and A-Z)."
            )
        # Horner's form of sum(value * 2**position) with the rightmost data character at 1.
        total = ((total + value) * 2) % 37
    return ALPHABET[(38 - total) % 37]


def format_id(kind: Kind, number: int) -> str:
    if number < 1:
        raise ValueError("identifier numbers start at 1")
    data = f"{kind.value}{number:0{NUMBER_WIDTH}d}"
    return data + check_character(data)


_SHAPE = re.compile(rf"^([A-Z]{{2}})([0-9]{{{NUMBER_WIDTH},}})([0-9A-Z*])$")


@dataclass(frozen=True)
class ParsedId:
    kind: Kind
    number: int
    value: str


def parse_id(raw: str) -> ParsedId:
    """Validate a cleaned identifier string; raise ``IdentifierError`` naming the problem."""
    value = raw.strip().upper()
    if not value:
        raise IdentifierError("empty", "No identifier was given.")
    match = _SHAPE.match(value)
    if match is None:
        prefix = value[:2]
        # Only call it a prefix problem when the rest looks like an identifier's number.
        if re.match(r"^[A-Z]{2}\d", value) and prefix not in PREFIXES:
            raise IdentifierError("unknown_prefix", _unknown_prefix(prefix, value))
        raise IdentifierError(
            "bad_format",
            f"'{value}' is not an identifier: expected two letters, at least {NUMBER_WIDTH} "
            "digits and a check character, e.g. AS0000001W.",
        )
    prefix, digits, check = match.groups()
    kind = PREFIXES.get(prefix)
    if kind is None:
        raise IdentifierError("unknown_prefix", _unknown_prefix(prefix, value))
    expected = check_character(prefix + digits)
    if check != expected:
        raise IdentifierError(
            "bad_check_character",
            f"'{value}' has check character '{check}' but '{expected}' was expected: "
            "the barcode was misread or mistyped.",
        )
    return ParsedId(kind=kind, number=int(digits), value=value)


def is_valid_id(raw: str, kind: Kind | None = None) -> bool:
    try:
        parsed = parse_id(raw)
    except IdentifierError:
        return False
    return kind is None or parsed.kind == kind


def _unknown_prefix(prefix: str, value: str) -> str:
    known = ", ".join(f"{k.value} ({k.label})" for k in Kind)
    return f"'{value}' starts with unknown prefix '{prefix}'. Known prefixes: {known}."
