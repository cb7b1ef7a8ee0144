"""Streamed CSV / JSON Lines writers and an XLSX writer (openpyxl, write-only mode)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

CSV_BATCH = 500  # rows per yielded chunk: fewer, larger writes without holding the export


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
        batch.append(writer.writerow(row))
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
            ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()
