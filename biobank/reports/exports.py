"""Streamed CSV / JSON Lines writers and an XLSX writer (openpyxl, write-only mode)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

CSV_BATCH = 500  # rows per yielded chunk: fewer, larger writes without holding the export

# A spreadsheet runs a cell that starts like this as a formula (CSV injection): text typed by
# people (reasons, notes, locations) is written so it stays text. A number such as "-80.5"
# is left as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows as text, never runs: a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class _Line:
    """A file-like object that hands back what csv.writer writes."""

    def write(self, value: str) -> str:
        return value


def csv_stream(columns: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """Header then rows, yielded in batches; memory stays constant whatever the row count."""
    writer = csv.writer(_Line(), lineterminator="\n")
    yield writer.writerow(columns)
    batch: list[str] = []
    for row in rows:
        batch.append(writer.writerow([csv_cell(value) for value in row]))
        if len(batch) >= CSV_BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def jsonl_stream(columns: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    """One JSON object per line; the ``data`` column is embedded as an object, not a string."""
    data_at = columns.index("data") if "data" in columns else -1
    batch: list[str] = []
    for row in rows:
        obj = dict(zip(columns, row, strict=True))
        if data_at >= 0 and isinstance(row[data_at], str) and row[data_at]:
            obj["data"] = json.loads(row[data_at])
        batch.append(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        if len(batch) >= CSV_BATCH:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def xlsx_bytes(sheets: list[tuple[str, list[str], Iterable[list[Any]]]]) -> bytes:
    """A workbook with one sheet per (title, columns, rows); write-only keeps memory flat."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    for title, columns, rows in sheets:
        ws = wb.create_sheet(title=title[:31])
        header = []
        for name in columns:
            cell = WriteOnlyCell(ws, value=name)
            cell.font = Font(bold=True)
            header.append(cell)
        ws.freeze_panes = "A2"  # write-only sheets take this before the first row
        ws.append(header)
        for row in rows:
            ws.append([_text_cell(ws, value) for value in row])
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


# What XML 1.0 cannot hold (control characters but tab, LF and CR; lone surrogates; U+FFFE and
# U+FFFF): openpyxl refuses a cell with one, and the whole workbook with it.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"


def xlsx_text(value: str) -> str:
    """``value`` with each character a workbook cannot hold replaced, visibly, by U+FFFD."""
    return _NOT_XML.sub(REPLACEMENT, value)


def _text_cell(ws: Any, value: Any) -> Any:
    """A string as a text cell, kept exactly (openpyxl would make "=…" a formula) but for the
    characters a workbook cannot hold."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=xlsx_text(value))
    cell.data_type = "s"
    return cell
