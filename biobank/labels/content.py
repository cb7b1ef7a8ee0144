"""What is printed on a label: the identifier to encode, the human-readable text, and what
each kind of label carries, built from plain values (no models, no database).

The database side (``biobank.selectors.labels``) looks an identifier up and passes the
values here, so every rule about label text sits in one place and can be tested without a
database. Nothing here knows about trial arms: none of the builders takes an arm, a
treatment or anything derived from them, and a blinded dose label is the same
``LabelContent`` for MSC and placebo, so no renderer can leak the arm (DOMAIN.md,
"Blinding").
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from biobank.labels.errors import LabelError
from biobank.terms import BLINDED_PRODUCT, millions

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


# --- what each kind of label carries ---------------------------------------------------------

CLINICAL_TRIAL_ONLY = "For clinical trial use only"
AUTOLOGOUS_ONLY = "For autologous use only"

# Free text typed by people (collector names, container paths) is shortened so a long
# entry cannot push the label's fixed text off the stock; the identifier is never cut.
MAX_FREE_TEXT = 28
ELLIPSIS = "…"


def shorten(text: str, limit: int = MAX_FREE_TEXT, *, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis; ``keep_end`` keeps the tail
    (for paths, where the last part is the one that identifies the place)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    if keep_end:
        return ELLIPSIS + text[-(limit - 1) :].lstrip()
    return text[: limit - 1].rstrip() + ELLIPSIS


def _when(value: dt.datetime | dt.date, *, time: bool = True) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" if time else "%Y-%m-%d")
    return value.strftime("%Y-%m-%d")


def _expiry(expires_at: dt.datetime) -> str:
    """An expiry to the minute with its zone: without one it is ambiguous, and a product is
    unusable from that minute on (pass it in the site's local time)."""
    if not isinstance(expires_at, dt.datetime) or expires_at.utcoffset() is None:
        raise LabelError("expires_at must be a timezone-aware date-time.")
    return f"{expires_at:%Y-%m-%d %H:%M} {expires_at.tzname() or ''}".rstrip()


def _cells(cell_number: int) -> str:
    return f"{millions(cell_number)} cells"


def participant_label_content(*, code: str, pseudonym: str, study_code: str) -> LabelContent:
    """Participant ID label: pseudonym and study code, nothing else."""
    return LabelContent(barcode=code, title=pseudonym, lines=(study_code,))


def aspirate_label_content(
    *,
    code: str,
    pseudonym: str,
    study_code: str,
    visit_name: str,
    collected_at: dt.datetime,
    collected_by: str,
    small: bool = False,
) -> LabelContent:
    """Bone-marrow aspirate tube/bag: whose, which visit, when and by whom collected.
    ``small`` (a vial-sized label) keeps whose, which visit and when."""
    if small:
        return LabelContent(
            barcode=code,
            title=pseudonym,
            lines=(f"{visit_name} {_when(collected_at, time=False)}", study_code),
        )
    return LabelContent(
        barcode=code,
        title=pseudonym,
        lines=(
            f"BM aspirate · {visit_name} · {_when(collected_at)}",
            f"Coll. by {shorten(collected_by)}",
            f"{study_code} · {CLINICAL_TRIAL_ONLY}",
        ),
    )


def unit_label_content(
    *,
    code: str,
    pseudonym: str,
    study_code: str,
    visit_name: str,
    collected_on: dt.date | dt.datetime,
    cell_number: int,
    volume_ml: object,
    cryoprotectant: str,
    expires_at: dt.datetime,
    small: bool = False,
) -> LabelContent:
    """Cryobag or cryovial of a product. ``small`` (a 38×13 mm vial label) drops what it
    cannot hold; the label keeps whose, which visit and the expiry, the rest is in the
    database. ``expires_at``: timezone-aware, as for a dose."""
    visit = f"{visit_name} {_when(collected_on, time=False)}"
    expiry = _expiry(expires_at)
    if small:
        return LabelContent(
            barcode=code, title=pseudonym, lines=(visit, study_code, f"Exp {expiry}")
        )
    return LabelContent(
        barcode=code,
        title=pseudonym,
        lines=(
            f"Aspirate {visit}",
            f"{_cells(cell_number)} · {volume_ml} mL · {shorten(cryoprotectant, 16)}",
            f"Expires {expiry}",
            f"{study_code} · {AUTOLOGOUS_ONLY}",
            CLINICAL_TRIAL_ONLY,
        ),
    )


def processing_label_content(
    *, code: str, pseudonym: str, study_code: str, aspirate_code: str, started_at: dt.datetime
) -> LabelContent:
    """Culture vessel of a processing (isolation and expansion of one aspirate)."""
    return LabelContent(
        barcode=code,
        title=pseudonym,
        lines=(
            f"Culture of {aspirate_code} · {_when(started_at, time=False)}",
            f"{study_code} · {CLINICAL_TRIAL_ONLY}",
        ),
    )


def freezing_run_label_content(
    *, code: str, pseudonym: str, processing_code: str, started_at: dt.datetime
) -> LabelContent:
    """Record sheet of a controlled-rate freezing run."""
    return LabelContent(
        barcode=code,
        title="Freezing run",
        lines=(f"{processing_code} · {pseudonym}", _when(started_at)),
    )


def container_label_content(
    *, code: str, name: str, kind: str, path: str, box_type: str = ""
) -> LabelContent:
    """Box, rack, canister...: its name, what it is and where it lives."""
    lines = [shorten(f"{kind} · {box_type}" if box_type else kind)]
    if path and path != name:
        lines.append(shorten(path, keep_end=True))
    return LabelContent(barcode=code, title=shorten(name), lines=tuple(lines))


def storage_unit_label_content(
    *, code: str, name: str, kind: str, site: str, min_c: object, max_c: object
) -> LabelContent:
    """Tank or freezer: name, kind, site and the range it must hold."""
    return LabelContent(
        barcode=code,
        title=shorten(name, 40),
        lines=(shorten(kind, 40), shorten(site, 40), f"Range {min_c} … {max_c} °C"),
    )


def dose_label_content(
    *,
    study_code: str,
    participant_pseudonym: str,
    visit_name: str,
    dose_id: str,
    volume_ml: object,
    route: str,
    expires_at: dt.datetime,
    emergency_contact: str,
) -> LabelContent:
    """The blinded dose syringe label, the same for MSC and placebo (DOMAIN.md, "Blinding").

    There is deliberately no parameter for the treatment: two doses with the same values
    give the same content, and so the same bytes in every format. ``expires_at`` must be
    timezone-aware (pass it in the site's local time); an expiry without a zone is
    ambiguous on a product with a shelf life of hours.
    """
    return LabelContent(
        barcode=dose_id,
        title=BLINDED_PRODUCT,
        lines=(
            f"{study_code} · {participant_pseudonym} · {visit_name}",
            f"Route: {shorten(route, 16)} · {volume_ml} mL",
            f"Expires {_expiry(expires_at)}",
            CLINICAL_TRIAL_ONLY,
            f"Emergency: {emergency_contact}",
        ),
    )
