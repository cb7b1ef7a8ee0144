"""Read the CSV file a 2D tube-rack scanner (FluidX, Ziath, generic) exports.

Pure: no database. ``parse_rack_csv`` never raises on bad content; every problem becomes a
``RackCsvError`` with a line number and a field name, so the caller can show all of them at
once and refuse the import. It raises only on programmer errors (wrong argument types,
impossible geometry).

What is accepted:

* ``bytes`` (UTF-8, with or without a byte-order mark; UTF-16 with a BOM, as Excel's
  "Unicode text" export writes) or ``str``.
* Comma, semicolon or tab delimiters, detected from the first lines.
* A header line, recognised by its column names case-insensitively and ignoring spaces and
  punctuation (``Rack,Position,Tube``, ``Position,Barcode``, ``TubeRack,Well,TubeCode``,
  ``Rack ID;Tube Position;Tube Barcode`` ...); unknown extra columns are ignored. Without a
  header the columns are inferred: 3 = rack, position, tube; 2 = position, tube.
* Positions ``A1``, ``A01``, ``a01``, ``A-1``, all normalised to ``A1``.
* Tube markers: ``NO READ``/``NOREAD``/``NO CODE`` -> status ``no_read`` (a tube is there
  but its code could not be read); ``NO TUBE``/``EMPTY``/empty field -> ``empty``.
* Tube codes go through ``clean_scan`` (case and surrounding whitespace are tolerated). They
  are not required to be biobank identifiers: many racks hold pre-coded tubes. Each cell
  says whether its code is a valid identifier (``parsed``) or why not (``id_error``); the
  caller decides whether that matters.

Errors collected: undecodable or binary file, no recognisable columns, short lines,
unparseable or out-of-geometry positions, a position listed twice (the first line wins and
is the only one in ``cells``), the same tube in two positions (both kept), and more than
one rack barcode in one file. Positions of the geometry that no line mentions are listed
in ``missing`` (not an error: some exporters omit empty positions).
"""

from __future__ import annotations

import csv
import io
import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from biobank.identifiers import ParsedId
from biobank.scan_input import ScanError, clean_scan, parse_scan

CellStatus = Literal["ok", "no_read", "empty"]

# A 96- or 384-position export is a few kB; anything far bigger is not a rack export, and
# refusing it keeps a hostile upload from costing much.
MAX_FILE_SIZE = 1_000_000
# Rack lines are rack, position, tube and a few extras; also keeps csv's field limit away.
MAX_LINE_LENGTH = 1_000
# After this many errors the file is clearly wrong; more messages would not help anyone.
MAX_ERRORS = 200

# Column names after _header_key() (lowercase, letters and digits only).
RACK_COLUMNS = frozenset(
    {
        "rack",
        "rackid",
        "rackbarcode",
        "rackcode",
        "rackbc",
        "tuberack",
        "tuberackid",
        "tuberackbarcode",
        "plate",
        "plateid",
        "platebarcode",
    }
)
POSITION_COLUMNS = frozenset(
    {
        "position",
        "pos",
        "well",
        "wellposition",
        "tubeposition",
        "rackposition",
        "location",
        "coordinate",
        "coordinates",
        "slot",
    }
)
TUBE_COLUMNS = frozenset(
    {
        "tube",
        "tubeid",
        "tubebarcode",
        "tubecode",
        "tubebc",
        "barcode",
        "code",
        "sample",
        "sampleid",
        "samplebarcode",
        "2dbarcode",
        "datamatrix",
    }
)

# Tube-field markers after _marker_key() (uppercase, no spaces, '_', '-' or '/').
NO_READ_MARKERS = frozenset({"NOREAD", "NOCODE", "UNREADABLE", "READERROR"})
EMPTY_MARKERS = frozenset({"", "NOTUBE", "EMPTY"})

DELIMITERS = (",", ";", "\t")

_POSITION = re.compile(r"^([A-Z]{1,2})-?0*([0-9]{1,4})$")


@dataclass(frozen=True)
class RackCsvError:
    line: int  # 1-based line in the file; 0 when it concerns the whole file
    field: str  # "file", "header", "row", "rack", "position" or "tube"
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}, {self.field}: {self.message}"


@dataclass(frozen=True)
class RackCell:
    position: str  # normalised, e.g. "A1"
    tube: str | None  # cleaned code text for status "ok", else None
    status: CellStatus
    line: int
    parsed: ParsedId | None = None  # set when ``tube`` is a valid biobank identifier
    id_error: str | None = None  # why ``tube`` is not a valid identifier (for display)
    id_error_code: str | None = None  # ScanError.code of that problem


@dataclass
class RackRead:
    rack: str | None
    cells: list[RackCell] = field(default_factory=list)
    errors: list[RackCsvError] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # geometry positions no line mentions
    delimiter: str | None = None
    has_header: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def cell(self, position: str) -> RackCell | None:
        key = normalise_position(position)
        return next((c for c in self.cells if c.position == key), None)


def normalise_position(raw: str) -> str | None:
    """``"a01"`` -> ``"A1"``; None if it is not a row-letter + column-number position."""
    match = _POSITION.match(raw.strip().upper())
    if match is None:
        return None
    return f"{match.group(1)}{int(match.group(2))}"


def parse_rack_csv(
    data: bytes | str,
    *,
    rows: int = 8,
    cols: int = 12,
    row_labels: Sequence[str] | None = None,
) -> RackRead:
    """Parse a rack-scanner export for a ``rows`` x ``cols`` rack; see the module doc.

    ``row_labels`` names the rows top to bottom (default ``A``, ``B``, ... for ``rows``
    rows); a string such as ``"ABCDEFGHI"`` works as well as a list.
    """
    if not isinstance(data, bytes | str):
        raise TypeError(f"parse_rack_csv() takes bytes or str, not {type(data).__name__}")
    labels = _row_labels(rows, cols, row_labels)
    return _Parser(labels, cols).parse(data)


class _TooManyErrors(Exception):
    pass


class _Parser:
    def __init__(self, labels: tuple[str, ...], cols: int) -> None:
        self.labels = labels
        self.cols = cols
        self.read = RackRead(rack=None)
        self.rack_line = 0
        self.seen_positions: dict[str, int] = {}
        self.seen_tubes: dict[str, RackCell] = {}

    def parse(self, data: bytes | str) -> RackRead:
        try:
            self._parse(data)
        except _TooManyErrors:
            self.read.errors.append(RackCsvError(0, "file", f"Stopped after {MAX_ERRORS} errors."))
        if self.seen_positions or not self.read.errors:
            self.read.missing = [
                f"{label}{col}"
                for label in self.labels
                for col in range(1, self.cols + 1)
                if f"{label}{col}" not in self.seen_positions
            ]
        return self.read

    def error(self, line: int, field_name: str, message: str) -> None:
        if len(self.read.errors) >= MAX_ERRORS:
            raise _TooManyErrors
        self.read.errors.append(RackCsvError(line, field_name, message))

    def _parse(self, data: bytes | str) -> None:
        text = self._decode(data)
        if text is None:
            return
        if not text.strip():
            self.error(0, "file", "The file is empty.")
            return
        for number, physical in enumerate(text.splitlines(), start=1):
            if len(physical) > MAX_LINE_LENGTH:
                self.error(
                    number,
                    "file",
                    f"Line {number} is {len(physical)} characters long; rack scanner lines are "
                    "short. This is not a rack scanner export.",
                )
                return
        delimiter = _detect_delimiter(text)
        if delimiter is None:
            self.error(
                0,
                "file",
                "This is not a rack scanner CSV file: no lines with columns separated by "
                "commas, semicolons or tabs.",
            )
            return
        self.read.delimiter = delimiter

        columns: dict[str, int] | None = None
        width = 0
        data_lines = 0
        try:
            for line, end, row in _records(text, delimiter):
                if end > line:
                    # Rack exports never quote values across lines; this is a stray quote
                    # that swallowed the lines after it.
                    self.error(
                        line,
                        "row",
                        f"A quoted value runs from line {line} to line {end} (a stray '\"'?); "
                        "those lines were not read.",
                    )
                    continue
                if columns is None:
                    columns = self._columns(line, row)
                    if columns is None:
                        return
                    width = len(row)
                    if self.read.has_header:
                        continue
                data_lines += 1
                self._row(line, row, columns, width)
        except csv.Error as exc:
            self.error(0, "file", f"The file could not be read as CSV: {exc}.")
            return

        if text.count('"') % 2 and not any(e.field == "row" for e in self.read.errors):
            # csv reads an unclosed quote on the last line to the end of the file silently.
            line = text[: text.rindex('"')].count("\n") + 1
            self.error(line, "row", "A '\"' is never closed; the value after it may be wrong.")
        if data_lines == 0:
            self.error(0, "file", "The file contains no tube positions.")
        elif not self.seen_positions:
            self.error(
                0,
                "file",
                f"None of the {data_lines} lines has a usable position: is this a rack "
                "scanner export for this rack?",
            )

    def _decode(self, data: bytes | str) -> str | None:
        if len(data) > MAX_FILE_SIZE:
            self.error(
                0,
                "file",
                f"The file is too large ({len(data)} bytes or characters; limit "
                f"{MAX_FILE_SIZE}): a rack scanner export is a few kilobytes.",
            )
            return None
        if isinstance(data, str):
            text = data.removeprefix("\ufeff")
        elif data.startswith(b"PK\x03\x04"):
            self.error(
                0,
                "file",
                "This is an Excel workbook or other zip file, not CSV. Export the rack "
                "scan as CSV.",
            )
            return None
        elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
            try:
                text = data.decode("utf-16")
            except UnicodeDecodeError:
                self.error(0, "file", "The file starts like UTF-16 text but is not.")
                return None
            text = text.removeprefix("\ufeff")
        else:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = data[: exc.start].count(b"\n") + 1
                self.error(
                    line,
                    "file",
                    f"Byte 0x{data[exc.start]:02X} is not UTF-8 text: this is not a text "
                    "CSV file, or it was saved in another encoding (save as CSV UTF-8).",
                )
                return None
        if "\x00" in text:
            line = text[: text.index("\x00")].count("\n") + 1
            self.error(line, "file", "The file contains NUL bytes: it is not a text CSV file.")
            return None
        return text

    def _columns(self, line: int, row: list[str]) -> dict[str, int] | None:
        """Column indexes from the header, or inferred from the first data line."""
        keys = [_header_key(cell) for cell in row]
        known = RACK_COLUMNS | POSITION_COLUMNS | TUBE_COLUMNS
        if any(key in known for key in keys):
            self.read.has_header = True
            columns: dict[str, int] = {}
            for name, names in (
                ("rack", RACK_COLUMNS),
                ("position", POSITION_COLUMNS),
                ("tube", TUBE_COLUMNS),
            ):
                index = next((i for i, key in enumerate(keys) if key in names), None)
                if index is not None:
                    columns[name] = index
            for name, names in (("position", POSITION_COLUMNS), ("tube", TUBE_COLUMNS)):
                if name not in columns:
                    self.error(
                        line,
                        "header",
                        f"The header has no {name} column (one of: {_names(names)}).",
                    )
            return columns if "position" in columns and "tube" in columns else None

        # No header. The column count decides (3 = rack, position, tube; 2 = position,
        # tube); with more columns, or a 3-column file whose first column holds the
        # positions (e.g. a trailing delimiter), the shape of the values decides.
        first, second = (self._in_geometry(c) for c in ([*row, "", ""])[:2])
        if len(row) == 2:
            return {"position": 0, "tube": 1}
        if len(row) >= 3 and second:
            return {"rack": 0, "position": 1, "tube": 2}
        if len(row) >= 3 and first:
            return {"position": 0, "tube": 1}
        if len(row) == 3:
            return {"rack": 0, "position": 1, "tube": 2}
        self.error(
            line,
            "header",
            f"No header line, and {len(row)} column(s) cannot be matched to rack, position "
            "and tube. Expected 2 columns (position, tube), 3 (rack, position, tube) or a "
            "header line such as 'Rack,Position,Tube'.",
        )
        return None

    def _row(self, line: int, row: list[str], columns: dict[str, int], width: int) -> None:
        needed = max(columns.values()) + 1
        if len(row) < needed:
            self.error(line, "row", f"The line has {len(row)} field(s); {needed} expected.")
            return
        if any(cell.strip() for cell in row[width:]):
            self.error(
                line,
                "row",
                f"The line has {len(row)} fields but the first line has {width}: "
                "unexpected extra values.",
            )
            return

        if "rack" in columns:
            self._rack(line, row[columns["rack"]])

        raw_position = row[columns["position"]]
        position = normalise_position(raw_position)
        if position is None:
            self.error(
                line,
                "position",
                f"{_quote(raw_position)} is not a position: expected a row letter and a "
                "column number such as A1 or A01.",
            )
            return
        if not self._in_geometry(position):
            self.error(
                line,
                "position",
                f"Position {position} is outside this {len(self.labels)} x {self.cols} rack "
                f"(rows {self.labels[0]}-{self.labels[-1]}, columns 1-{self.cols}).",
            )
            return
        if position in self.seen_positions:
            self.error(
                line,
                "position",
                f"Position {position} is listed again (first on line "
                f"{self.seen_positions[position]}); only the first is used.",
            )
            return
        self.seen_positions[position] = line

        cell = _cell(position, row[columns["tube"]], line)
        if cell.tube is not None:
            earlier = self.seen_tubes.get(cell.tube)
            if earlier is not None:
                self.error(
                    line,
                    "tube",
                    f"Tube {cell.tube} is in two positions: {earlier.position} (line "
                    f"{earlier.line}) and {position}. A tube can only be in one place.",
                )
            else:
                self.seen_tubes[cell.tube] = cell
        self.read.cells.append(cell)

    def _rack(self, line: int, raw: str) -> None:
        rack = clean_scan(raw).text
        if not rack:
            return
        if self.read.rack is None:
            self.read.rack = rack
            self.rack_line = line
        elif rack != self.read.rack:
            self.error(
                line,
                "rack",
                f"Rack {_quote(rack)} differs from rack {self.read.rack} on line "
                f"{self.rack_line}: one file must describe one rack.",
            )

    def _in_geometry(self, raw: str) -> bool:
        position = normalise_position(raw)
        if position is None:
            return False
        match = _POSITION.match(position)
        assert match is not None  # normalise_position output always matches
        return match.group(1) in self.labels and 1 <= int(match.group(2)) <= self.cols


def _cell(position: str, raw_tube: str, line: int) -> RackCell:
    clean = clean_scan(raw_tube)
    marker = _marker_key(clean.text)
    if marker in NO_READ_MARKERS:
        return RackCell(position=position, tube=None, status="no_read", line=line)
    if marker in EMPTY_MARKERS:
        return RackCell(position=position, tube=None, status="empty", line=line)
    try:
        parsed = parse_scan(raw_tube)
    except ScanError as exc:
        return RackCell(
            position=position,
            tube=clean.text,
            status="ok",
            line=line,
            id_error=exc.message,
            id_error_code=exc.code,
        )
    return RackCell(
        position=position, tube=clean.text, status="ok", line=line, parsed=parsed.parsed
    )


def _records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """Non-blank CSV records with the first and last (1-based) line each occupies."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    for row in reader:
        if any(cell.strip() for cell in row):
            yield start, reader.line_num, row
        start = reader.line_num + 1


def _detect_delimiter(text: str) -> str | None:
    """The delimiter that splits the first lines into the most consistent columns.

    Hand-rolled instead of ``csv.Sniffer``, which happily picks letters or spaces as the
    delimiter of a short file.
    """
    sample = [line for line in text.splitlines() if line.strip()][:20]
    best: tuple[int, int, int] | None = None
    chosen = None
    for priority, delimiter in enumerate(reversed(DELIMITERS)):
        try:
            counts = [len(next(csv.reader([line], delimiter=delimiter))) for line in sample]
        except csv.Error:
            continue
        split = sum(1 for count in counts if count >= 2)
        if split == 0:
            continue
        consistent = max(counts.count(c) for c in set(counts))
        score = (split, consistent, priority)  # ties go to comma, then semicolon
        if best is None or score > best:
            best, chosen = score, delimiter
    return chosen


def _row_labels(rows: int, cols: int, row_labels: Sequence[str] | None) -> tuple[str, ...]:
    if rows < 1 or cols < 1:
        raise ValueError("a rack has at least one row and one column")
    if row_labels is None:
        if rows > 26:
            raise ValueError("more than 26 rows: pass row_labels")
        return tuple(string.ascii_uppercase[:rows])
    labels = tuple(label.upper() for label in row_labels)
    if len(labels) != rows or len(set(labels)) != rows:
        raise ValueError(f"row_labels must name {rows} distinct rows")
    if not all(re.fullmatch(r"[A-Z]{1,2}", label) for label in labels):
        raise ValueError("row labels are one or two letters")
    return labels


def _header_key(cell: str) -> str:
    return re.sub(r"[^a-z0-9]", "", cell.lower())


def _marker_key(text: str) -> str:
    return re.sub(r"[\s_\-/]", "", text.upper())


def _names(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


def _quote(text: str) -> str:
    """Quote a value from the file for a message, shortened so hostile input stays small."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    return repr(shown)
