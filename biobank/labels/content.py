"""What is printed on a label: the identifier to encode and the human-readable text.

Nothing here knows about trial arms: a blinded dose label is built from the same
``LabelContent`` for MSC and placebo, so the renderers cannot leak the arm.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from biobank.labels.errors import LabelError

# Every symbology and every ZPL barcode command takes these literally: no space, no ZPL
# prefixes (^ ~), no ^FH/^BX escape character (_), no ^BC invocation character (>).
BARCODE_PATTERN = re.compile(r"^[0-9A-Za-z*+\-./:=&$%]{1,48}$")

# Bidi overrides/isolates could make the printed text read differently from the data.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_TEXT_LENGTH = 200


def clean_text(text: str) -> str:
    """Normalise user text to one printable line, the same in every output format.

    NFC so that "å" typed as a + combining ring prints as one glyph; control characters
    (newline, tab, U+2028, ...) become a space because a label line is one line; characters that
    cannot be encoded or printed (lone surrogates, non-characters, bidi overrides) become
    U+FFFD so the substitution is visible rather than silent.
    """
    text = unicodedata.normalize("NFC", text)
    if text.isascii() and text.isprintable():
        return text  # the common case, without the per-character walk
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif category == "Cs" or char in _BIDI_CONTROLS or char in "\ufffe\uffff":
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True)
class LabelContent:
    """``barcode`` is encoded (and printed under/next to the code); ``title`` and ``lines``
    are free text. Text is cleaned on construction (see ``clean_text``), so what the
    object holds is exactly what every renderer prints.
    """

    barcode: str
    title: str = ""
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.barcode, str) or not BARCODE_PATTERN.match(self.barcode):
            raise LabelError(
                f"barcode {self.barcode!r} cannot be encoded: use 1-48 characters from "
                "A-Z, a-z, 0-9 and * + - . / : = & $ %."
            )
        if not isinstance(self.title, str):
            raise LabelError(f"title must be text (got {type(self.title).__name__}).")
        if isinstance(self.lines, str) or not isinstance(self.lines, Iterable):
            raise LabelError("lines must be a sequence of strings, not a single string.")
        lines = tuple(self.lines)
        for index, line in enumerate(lines, start=1):
            if not isinstance(line, str):
                raise LabelError(f"line {index} must be text (got {type(line).__name__}).")
        # frozen: object.__setattr__ is the documented way to normalise in __post_init__.
        object.__setattr__(self, "title", clean_text(self.title))
        object.__setattr__(self, "lines", tuple(clean_text(line) for line in lines))
        for name, value in (
            ("title", self.title),
            *((f"line {i}", v) for i, v in enumerate(self.lines, start=1)),
        ):
            if len(value) > MAX_TEXT_LENGTH:
                raise LabelError(f"{name} is longer than {MAX_TEXT_LENGTH} characters.")
