"""Command barcodes (pure label code, no database)."""

from __future__ import annotations

import pytest

from biobank.labels.commands import COMMANDS, command_for, command_sheet_pdf, command_sheet_zpl


def test_command_for_ignores_case_and_spaces() -> None:
    assert command_for(" cmd-undo\r\n").action == "undo"  # type: ignore[union-attr]
    assert command_for("CMD-FINISH").action == "done"  # type: ignore[union-attr]
    assert command_for("UN0000001Q") is None and command_for("") is None


def test_no_command_looks_like_an_identifier() -> None:
    from biobank.identifiers import PREFIXES

    assert all(c.barcode[:2] not in PREFIXES for c in COMMANDS)
    assert len({c.barcode for c in COMMANDS}) == len(COMMANDS)


def test_sheet_holds_every_command() -> None:
    zpl = command_sheet_zpl().decode()
    assert zpl.count("^XA") == len(COMMANDS) == 5
    for command in COMMANDS:
        assert f"^FD{command.barcode}^FS" in zpl
    translated = command_sheet_zpl({"CMD-UNDO": ("ANGRE", "Angre siste skanning")}).decode()
    assert "^FDANGRE^FS" in translated and "^FDCMD-UNDO^FS" in translated
    pdf = command_sheet_pdf()
    assert pdf.startswith(b"%PDF") and command_sheet_pdf() == pdf  # deterministic


@pytest.mark.parametrize(
    ("scanned", "barcode"),
    [
        ("]C0CMD-UNDO", "CMD-UNDO"),  # AIM symbology prefix (Code 128)
        ("]C0cmd-finish\r", "CMD-FINISH"),
        ("*CMD-AUTO*", "CMD-AUTO"),  # Code 39 start/stop characters
        ("CMD+UNDO", "CMD-UNDO"),  # US-layout scanner, Norwegian keyboard
        ("¨C0CMD+CHECKOUT", "CMD-CHECKOUT"),  # ... with its AIM prefix, "]" typed as "¨"
        ("CMDßUNDO", "CMD-UNDO"),  # US-layout scanner, German keyboard
        ("+C0CMDßCHECKIN", "CMD-CHECKIN"),
        ("cmdßundo", "CMD-UNDO"),
        ("CMD'FINISH", "CMD-FINISH"),  # Spanish/Italian/Swiss keyboard
        ("CMD/AUTO", "CMD-AUTO"),  # Nordic or German scanner, US keyboard
    ],
)
def test_a_printed_command_reads_back_whatever_the_scanner_adds(scanned: str, barcode: str) -> None:
    command = command_for(scanned)
    assert command is not None and command.barcode == barcode


def test_cleaning_a_scan_still_reads_only_a_whole_command() -> None:
    assert command_for("]C0CMD+UNDO") is COMMANDS[0]
    for scanned in ("]C0", "CMD", "CMD--UNDO", "CMD-UNDOX", "XCMD-UNDO", "¨C0UN0000001Q"):
        assert command_for(scanned) is None, scanned
