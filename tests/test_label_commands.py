"""Command barcodes (pure label code, no database)."""

from __future__ import annotations

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
