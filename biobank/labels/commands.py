"""Command barcodes: scanned like any code, they steer a scan page without the mouse.

Pure data and rendering (no database): the scan pages map each barcode to an action, and
the sheet below prints them all (PDF for an office printer, ZPL for a label printer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from biobank.labels.content import LabelContent
from biobank.labels.render import render_pdf, render_zpl
from biobank.labels.templates import get_template
from biobank.scan_input import AIM_BRACKET_SUBSTITUTES, clean_scan


@dataclass(frozen=True)
class Command:
    barcode: str
    action: str  # what a scan page does: see ScanPage.command
    title: str
    hint: str


# Letters and one hyphen only, and no identifier prefix (PT, AS, UN, BX, ...) starts with
# "CMD". The letters come out the same on every layout the lab uses; the hyphen does not
# (see HYPHEN_VARIANTS), so reading a command accepts what each layout types for it.
COMMANDS: tuple[Command, ...] = (
    Command("CMD-UNDO", "undo", "UNDO", "Undo the last scan"),
    Command("CMD-FINISH", "done", "FINISH", "Finish the box / the check"),
    Command("CMD-CHECKOUT", "mode-out", "CHECK OUT", "Check-out mode"),
    Command("CMD-CHECKIN", "mode-in", "CHECK IN", "Check-in mode"),
    Command("CMD-AUTO", "mode-auto", "AUTO", "Automatic in/out mode"),
)
BY_BARCODE: dict[str, Command] = {c.barcode: c for c in COMMANDS}
TEMPLATE = "cryobag"  # 70×30 mm, Code 128: large enough to scan from a sheet at arm's length


# What a scanner set to a US layout types for "-" on the computer's layout: "+" Nordic
# (the Norwegian sites), "ß" German, "'" Spanish/Italian/Swiss; "/" the other way round.
HYPHEN_VARIANTS = "+ß'/"
_HYPHEN = str.maketrans(dict.fromkeys(HYPHEN_VARIANTS, "-"))
# An AIM prefix typed on a mismatched layout (¨C0, +C0, $C0): scan_input strips those only
# before an identifier's shape, so the one before a command is stripped here.
_REMAPPED_AIM = re.compile(
    f"^[{re.escape(''.join(sorted(AIM_BRACKET_SUBSTITUTES)))}][A-Za-z][0-9A-Za-z](?=CMD)", re.I
)
_LONGEST = max(len(c.barcode) for c in COMMANDS)


def command_for(raw: str) -> Command | None:
    """The command a scanned text stands for, or None. What the scanner adds is cleaned as
    for any scan (spaces, control characters, an AIM prefix such as ]C0, *...*, case) and
    the hyphen is read in each layout's form: CMD+UNDO and CMDßUNDO are CMD-UNDO."""
    if not isinstance(raw, str):
        return None
    text = _REMAPPED_AIM.sub("", clean_scan(raw).text)
    if len(text) > _LONGEST:
        return None
    return BY_BARCODE.get(text.translate(_HYPHEN).upper())


def _contents(titles: dict[str, tuple[str, str]] | None = None) -> list[LabelContent]:
    # ``titles`` lets the caller print translated words; the barcode never changes.
    out = []
    for c in COMMANDS:
        title, hint = (titles or {}).get(c.barcode, (c.title, c.hint))
        out.append(LabelContent(barcode=c.barcode, title=title, lines=(hint,)))
    return out


def command_sheet_pdf(titles: dict[str, tuple[str, str]] | None = None) -> bytes:
    """An A4 sheet of every command barcode."""
    return render_pdf(_contents(titles), get_template(TEMPLATE), sheet=True)


def command_sheet_zpl(titles: dict[str, tuple[str, str]] | None = None) -> bytes:
    """Every command barcode as one ZPL stream, one label each."""
    template = get_template(TEMPLATE)
    return b"".join(render_zpl(content, template) for content in _contents(titles))
