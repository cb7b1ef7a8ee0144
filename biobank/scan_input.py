"""Turn what a keyboard-wedge barcode scanner typed into an identifier, or say why not.

Pure functions, no database. Validation of the identifier itself (shape, prefix, check
character) belongs to ``biobank.identifiers``; this module only removes what scanners
add around a code and translates ``IdentifierError`` into a ``ScanError`` a person at
the bench can act on.

What ``clean_scan`` removes, in this order (each removal is reported):

1. Leading and trailing whitespace and invisible characters: CR, LF, TAB, GS (0x1D),
   RS (0x1E), EOT (0x04), NUL, DEL, no-break and zero-width spaces, a byte-order mark.
   Characters *inside* the code are never removed; they make the scan fail instead.
2. One AIM symbology identifier at the start (ISO/IEC 15424): ``]`` + code letter +
   modifier, e.g. ``]C0`` Code 128, ``]C1`` GS1-128, ``]Q1`` QR, ``]d2`` DataMatrix.
   When the scanner's keyboard layout does not match the computer's, the ``]`` key
   arrives as another character (``+`` German/Spanish/Italian, ``$`` French, ``¨``
   Nordic, the layout used at the trial's Norwegian sites). Those are stripped only
   when what follows has the exact shape of an identifier, because they could
   otherwise be part of something else.
3. A URL, as a QR label may carry ``https://host/s/AS0000001W``: only ``http``/``https``
   URLs, and only the last non-empty path segment is kept (percent-decoded); query
   strings and fragments are ignored. Any other URL form is left as is and will fail
   validation, which is safer than guessing.
4. Code 39 start/stop asterisks ``*...*`` when a scanner is set to transmit them. A
   single trailing ``*`` is left alone: ``*`` is a valid Mod 37-2 check character.
   ``*PT0000099*`` is read as the identifier ``PT0000099*`` (only the start ``*``
   removed) because that is a valid identifier whose check character is ``*``.
5. Lowercase ASCII letters are uppercased (caps-lock, or a scanner set to lowercase).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from biobank.identifiers import IdentifierError, ParsedId, is_valid_id, parse_id

# A keyboard-wedge scan is a single identifier (10-11 characters) or a short URL; anything
# longer was pasted, is a different kind of code, or is hostile input. Checked before any
# other work so a huge string is never echoed back or processed further.
MAX_SCAN_LENGTH = 64

# Characters that a scanner's keyboard layout may type in place of ``]`` (see module doc).
AIM_BRACKET_SUBSTITUTES = frozenset("+$¨")

_AIM = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
_AIM_REMAPPED = re.compile(r"^[+$¨][A-Za-z][0-9A-Za-z](?=[A-Za-z]{2}[0-9]{7,}[0-9A-Za-z*]$)")
# Any AIM identifier inside a string: used only to split a double scan into its parts.
_AIM_ANYWHERE = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_URL = re.compile(r"^https?://", re.IGNORECASE)
# The shortest possible identifier: two letters, NUMBER_WIDTH (7) digits, a check character.
_MIN_ID_LENGTH = 10


class Removed(StrEnum):
    """What ``clean_scan`` took away or changed."""

    WHITESPACE = "whitespace"  # spaces around the code
    CONTROL = "control"  # CR, LF, TAB, GS, NUL ... around the code
    AIM_PREFIX = "aim_prefix"  # ]C0, ]Q1, ]d2 ...
    AIM_PREFIX_REMAPPED = "aim_prefix_remapped"  # +C0, $Q1, ¨d2 (keyboard layout mismatch)
    URL = "url"  # everything but the last path segment of a URL
    CODE39_DELIMITERS = "code39_delimiters"  # *...*
    LOWERCASE = "lowercase"  # letters uppercased; ``text`` is the text before


_DESCRIPTIONS = {
    Removed.WHITESPACE: "spaces around the code",
    Removed.CONTROL: "control characters around the code",
    Removed.AIM_PREFIX: "scanner symbology prefix",
    Removed.AIM_PREFIX_REMAPPED: "scanner symbology prefix (keyboard layout mismatch)",
    Removed.URL: "web address around the code",
    Removed.CODE39_DELIMITERS: "Code 39 start/stop characters",
    Removed.LOWERCASE: "lowercase letters (converted to uppercase)",
}


@dataclass(frozen=True)
class Removal:
    kind: Removed
    text: str  # exactly what was removed (for LOWERCASE: the text before uppercasing)

    @property
    def description(self) -> str:
        return f"{_DESCRIPTIONS[self.kind]}: {_show(self.text)}"


@dataclass(frozen=True)
class CleanScan:
    """A candidate identifier (not yet validated) and what was removed to get it."""

    raw: str
    text: str
    removed: tuple[Removal, ...] = ()


@dataclass(frozen=True)
class ParsedScan:
    """A scan that resolved to a valid identifier."""

    raw: str
    parsed: ParsedId
    removed: tuple[Removal, ...] = ()

    @property
    def value(self) -> str:
        return self.parsed.value


class ScanError(ValueError):
    """A scan that is not one valid identifier.

    ``code`` is one of: ``empty``, ``too_long``, ``non_printable``, ``bad_character``,
    ``double_scan``, or an ``IdentifierError`` code passed through (``bad_format``,
    ``unknown_prefix``, ``bad_check_character``). ``str()`` / ``message`` is meant for
    the person holding the scanner. ``parts`` holds the identifiers of a double scan.
    """

    def __init__(
        self, code: str, message: str, raw: str, *, parts: tuple[ParsedId, ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.raw = raw
        self.parts = parts


def clean_scan(raw: str) -> CleanScan:
    """Remove what a scanner adds around a code. Never raises on content; see module doc."""
    if not isinstance(raw, str):
        raise TypeError(f"clean_scan() takes str, not {type(raw).__name__}")
    removed: list[Removal] = []

    text, lead, trail = _strip_invisible(raw)
    for part in (lead, trail):
        if part:
            kind = Removed.WHITESPACE if _all_spaces(part) else Removed.CONTROL
            removed.append(Removal(kind, part))

    if match := _AIM.match(text):
        removed.append(Removal(Removed.AIM_PREFIX, match.group()))
        text = text[match.end() :]
    elif match := _AIM_REMAPPED.match(text):
        removed.append(Removal(Removed.AIM_PREFIX_REMAPPED, match.group()))
        text = text[match.end() :]

    if _URL.match(text):
        try:
            path = urlsplit(text).path
        except ValueError:  # e.g. "http://[" (bad IPv6 host): leave it to fail validation
            path = ""
        segments = [s for s in path.split("/") if s]
        if segments:
            last = unquote(segments[-1])
            removed.append(Removal(Removed.URL, text))
            text = last

    if len(text) >= 2 and text.startswith("*") and text.endswith("*"):
        inner = text[1:-1]
        # Code 39 cannot carry ``*`` in its data, so a leading ``*`` is always a start
        # character; the trailing one is kept when it makes the code a valid identifier.
        if is_valid_id(inner + "*"):
            removed.append(Removal(Removed.CODE39_DELIMITERS, "*"))
            text = inner + "*"
        else:
            removed.append(Removal(Removed.CODE39_DELIMITERS, "**"))
            text = inner

    # Only ASCII: str.upper() would turn e.g. "ß" into "SS" and hide garbage.
    if text.isascii() and text != text.upper():
        removed.append(Removal(Removed.LOWERCASE, text))
        text = text.upper()

    return CleanScan(raw=raw, text=text, removed=tuple(removed))


def parse_scan(raw: str) -> ParsedScan:
    """Clean a scan and validate it as exactly one identifier, or raise ``ScanError``."""
    if not isinstance(raw, str):
        raise TypeError(f"parse_scan() takes str, not {type(raw).__name__}")
    trimmed, _, _ = _strip_invisible(raw)
    if len(trimmed) > MAX_SCAN_LENGTH:
        raise ScanError(
            "too_long",
            f"The scan is {len(trimmed)} characters long; an identifier scan is at most "
            f"{MAX_SCAN_LENGTH}. Was text pasted into the field, or a different barcode scanned?",
            raw,
        )

    clean = clean_scan(raw)
    text = clean.text
    if not text:
        aim = [r.text for r in clean.removed if r.kind == Removed.AIM_PREFIX]
        if aim:
            message = (
                f"The scan contained only the scanner's symbology prefix '{aim[0]}' and no "
                "code. Scan the label again."
            )
        elif raw:
            message = "The scan contained only spaces or control characters. Scan again."
        else:
            message = "Nothing was scanned. Put the cursor in the field and scan the label."
        raise ScanError("empty", message, raw)

    bad = _bad_characters(text)
    error: IdentifierError | None = None
    if not bad:  # parse_id's regex would accept non-ASCII digits, so only ASCII reaches it
        try:
            return ParsedScan(raw=raw, parsed=parse_id(text), removed=clean.removed)
        except IdentifierError as exc:
            error = exc

    parts = _split_multiple(text)
    if parts:
        codes = ", ".join(p.value for p in parts)
        if len({p.value for p in parts}) == 1:
            what = "The same code was scanned more than once"
        else:
            what = f"{'Two' if len(parts) == 2 else len(parts)} codes were scanned"
        raise ScanError(
            "double_scan",
            f"{what} into one field without Enter in between ({codes}). "
            "Clear the field and scan one label at a time.",
            raw,
            parts=parts,
        )

    if bad:
        controls = [c for c in bad if _is_invisible(c)]
        shown = ", ".join(f"{_show(c)} (U+{ord(c):04X})" for c in dict.fromkeys(bad))
        if controls:
            raise ScanError(
                "non_printable",
                f"The scan contains invisible control characters inside the code: {shown}. "
                "Check the scanner's configuration (e.g. GS1 separators) and scan again.",
                raw,
            )
        raise ScanError(
            "bad_character",
            f"The scan contains characters that no label in this biobank carries: {shown}. "
            "Identifiers use only A-Z, 0-9 and *. If letters look wrong, the scanner's "
            "keyboard layout may not match the computer's.",
            raw,
        )

    assert error is not None  # parse_id failed on a printable ASCII text
    raise ScanError(error.code, error.message, raw) from error


def _strip_invisible(raw: str) -> tuple[str, str, str]:
    """Return (core, leading, trailing) with whitespace/control characters split off."""
    start = 0
    end = len(raw)
    while start < end and _is_invisible(raw[start]):
        start += 1
    while end > start and _is_invisible(raw[end - 1]):
        end -= 1
    return raw[start:end], raw[:start], raw[end:]


def _is_invisible(char: str) -> bool:
    # Cc: C0/C1 controls incl. CR LF TAB GS RS EOT NUL DEL; Cf: zero-width, BOM;
    # Z*: spaces and line/paragraph separators.
    return char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _all_spaces(text: str) -> bool:
    return all(unicodedata.category(c) == "Zs" for c in text)


def _bad_characters(text: str) -> list[str]:
    """Characters that are not printable ASCII (space excluded: parse_id reports it)."""
    return [c for c in text if not (" " <= c <= "~")]


def _split_multiple(text: str) -> tuple[ParsedId, ...]:
    """If ``text`` is two or more valid identifiers run together, return them; else ()."""
    # Separators a second scan may bring: its own AIM prefix, or Enter typed as CR/LF/TAB
    # into a field that does not submit on Enter.
    chunks = [c for c in re.split(r"[\s\x00-\x1f\x7f]+", _AIM_ANYWHERE.sub(" ", text)) if c]
    parts: list[ParsedId] = []
    for chunk in chunks:
        found = _split_concatenated(chunk.upper())
        if found is None:
            return ()
        parts.extend(found)
    return tuple(parts) if len(parts) >= 2 else ()


def _split_concatenated(text: str) -> list[ParsedId] | None:
    """Split ``text`` into consecutive valid identifiers, or None if it cannot be.

    No identifier is a prefix of another valid run of identifiers in practice (each
    begins with two letters, which cannot follow the digits of a valid one), but
    backtracking keeps this correct without relying on that. Length is bounded by
    MAX_SCAN_LENGTH, so the search is tiny.
    """
    if not text:
        return []
    for end in range(_MIN_ID_LENGTH, len(text) + 1):
        try:
            head = parse_id(text[:end])
        except IdentifierError:
            continue
        rest = _split_concatenated(text[end:])
        if rest is not None:
            return [head, *rest]
    return None


def _show(text: str) -> str:
    """Quote text for a message, making invisible characters visible."""
    names = {"\r": "CR", "\n": "LF", "\t": "TAB", "\x1d": "GS", "\x1e": "RS", "\x04": "EOT"}
    out = []
    for char in text:
        if char in names:
            out.append(f"<{names[char]}>")
        elif char == "\x00":
            out.append("<NUL>")
        elif _is_invisible(char) and char != " ":
            out.append(f"<U+{ord(char):04X}>")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"
