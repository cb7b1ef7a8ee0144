"""Command barcodes: scanned like any code, they steer a scan page without the mouse.

Pure data and rendering (no database): the scan pages map each barcode to an action, and
the sheet below prints them all (PDF for an office printer, ZPL for a label printer).
"""

from __future__ import annotations

from dataclasses import dataclass

from biobank.labels.content import LabelContent
from biobank.labels.render import render_pdf, render_zpl
from biobank.labels.templates import get_template


@dataclass(frozen=True)
class Command:
    barcode: str
    action: str  # what a scan page does: see ScanPage.command
    title: str
    hint: str


# Letters and one hyphen only: a keyboard-wedge scanner types them the same on every layout
# the lab uses, and no identifier prefix (PT, AS, UN, BX, ...) starts with "CMD".
COMMANDS: tuple[Command, ...] = (
    Command("CMD-UNDO", "undo", "UNDO", "Undo the last scan"),
    Command("CMD-FINISH", "done", "FINISH", "Finish the box / the check"),
    Command("CMD-CHECKOUT", "mode-out", "CHECK OUT", "Check-out mode"),
    Command("CMD-CHECKIN", "mode-in", "CHECK IN", "Check-in mode"),
    Command("CMD-AUTO", "mode-auto", "AUTO", "Automatic in/out mode"),
)
BY_BARCODE: dict[str, Command] = {c.barcode: c for c in COMMANDS}
TEMPLATE = "cryobag"  # 70×30 mm, Code 128: large enough to scan from a sheet at arm's length


def command_for(raw: str) -> Command | None:
    """The command a scanned text stands for, or None (case and spaces ignored)."""
    return BY_BARCODE.get((raw or "").strip().upper())


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
