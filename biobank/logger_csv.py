"""Temperature logger CSV files: parsing and excursion analysis (pure code, no database).

Accepted files (see the README, "Shipping"):
- text in UTF-8 (with or without a BOM), UTF-16 with a BOM, or Windows-1252;
- separated by ``,``, ``;`` or tab (the header line decides); decimal commas are accepted when
  the separator is not a comma (or when the value is quoted);
- any preamble lines (serial number, start time...) before a header line that names a time
  column (``time``, ``timestamp``, ``date/time``, ``datetime``, ``tid``...) and a temperature
  column (a name containing ``temp`` or ``°C``), or separate ``date`` and ``time`` columns;
- times in ISO 8601 (``2026-11-20T08:00:00+01:00``) or day-first (``20.11.2026 08:00``,
  ``20/11/2026 08:00:00``); a time without a zone is in ``default_tz`` (the site's zone);
- temperatures like ``-151.2``, ``−151,2``, ``-151.2 °C``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import parser as date_parser

from biobank.moments import is_plausible, out_of_range_message

MAX_BYTES = 5 * 1024 * 1024
MAX_READINGS = 200_000


class LoggerCsvError(ValueError):
    def __init__(self, message: str, *, code: str = "bad_logger_file", line: int | None = None):
        text = f"Line {line}: {message}" if line else message
        super().__init__(text)
        self.message = text
        self.code = code
        self.line = line


@dataclass(frozen=True)
class Reading:
    at: dt.datetime
    temperature_c: Decimal


def decode(data: bytes) -> str:
    """Bytes → text: BOMs honoured (UTF-8, UTF-16), else UTF-8, else Windows-1252."""
    if len(data) > MAX_BYTES:
        raise LoggerCsvError(
            f"The file is {len(data):,} bytes; at most {MAX_BYTES:,} are accepted.",
            code="file_too_large",
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


_TIME_NAMES = ("timestamp", "date/time", "datetime", "date time", "time", "tid", "dato", "date")


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("\ufeff", "").strip().strip('"').lower())


def _columns(header: list[str]) -> tuple[int, int | None, int] | None:
    """(time or date column, separate time column or None, temperature column)."""
    names = [_norm(h) for h in header]
    temp = next(
        (i for i, n in enumerate(names) if "temp" in n or "°c" in n or n in ("c", "deg c")), None
    )
    if temp is None:
        return None
    if "date" in names and "time" in names:
        return names.index("date"), names.index("time"), temp
    for wanted in _TIME_NAMES:
        for i, n in enumerate(names):
            if i != temp and (n == wanted or n.startswith(wanted + " ") or n.startswith(wanted)):
                return i, None, temp
    return None


def _delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (";", "\t", ",")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")


def parse_temperature(raw: str, *, line: int) -> Decimal:
    text = raw.strip().replace("\u2212", "-").replace("°C", "").replace("°", "").strip()
    text = text.replace(" ", "")
    if not _NUMBER.match(text):
        raise LoggerCsvError(f"'{raw}' is not a temperature.", code="bad_temperature", line=line)
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation as exc:  # pragma: no cover - the pattern already checked
        raise LoggerCsvError(f"'{raw}' is not a number.", line=line) from exc
    if not (Decimal(-273) <= value <= Decimal(100)):
        raise LoggerCsvError(
            f"{value} °C is outside −273 … 100 °C.", code="bad_temperature", line=line
        )
    return value


def parse_time(raw: str, *, line: int, default_tz: dt.tzinfo) -> dt.datetime:
    text = raw.strip()
    if not text:
        raise LoggerCsvError("The time is empty.", code="bad_time", line=line)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            value = date_parser.parse(text, dayfirst=True)
        except (ValueError, OverflowError) as exc:
            raise LoggerCsvError(
                f"'{raw}' is not a date-time.", code="bad_time", line=line
            ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=default_tz)
    if not is_plausible(value):
        raise LoggerCsvError(out_of_range_message(f"The time '{raw}'"), code="bad_time", line=line)
    try:
        value.astimezone(dt.UTC)  # a zone offset of a day or more (+99:00) raises here
    except (ValueError, OverflowError) as exc:
        raise LoggerCsvError(
            f"'{raw}' has an impossible time zone offset.", code="bad_time", line=line
        ) from exc
    return value


def parse_logger_csv(data: bytes | str, *, default_tz: dt.tzinfo | str = "UTC") -> list[Reading]:
    """Readings in time order; a ``LoggerCsvError`` names the line and the problem."""
    tz = ZoneInfo(default_tz) if isinstance(default_tz, str) else default_tz
    text = decode(data) if isinstance(data, bytes) else data.lstrip("\ufeff")
    if "\x00" in text:
        raise LoggerCsvError(
            "This is not a text file (it contains NUL bytes): export the logger as CSV.",
            code="not_text",
        )
    try:
        return _parse(text, tz)
    except csv.Error as exc:
        raise LoggerCsvError(f"The CSV cannot be read: {exc}.", code="bad_csv") from exc


def _parse(text: str, tz: dt.tzinfo) -> list[Reading]:
    lines = text.splitlines()
    header_at = None
    for index, line in enumerate(lines[:50]):
        cells = next(csv.reader([line], delimiter=_delimiter(line)), [])
        if _columns(cells) is not None:
            header_at = index
            break
    if header_at is None:
        raise LoggerCsvError(
            "No header line with a time column and a temperature column was found in the "
            "first 50 lines (e.g. 'Time;Temperature (°C)').",
            code="no_header",
        )
    delimiter = _delimiter(lines[header_at])
    rows = csv.reader(io.StringIO("\n".join(lines[header_at:])), delimiter=delimiter)
    header = next(rows)
    columns = _columns(header)
    assert columns is not None
    time_col, clock_col, temp_col = columns
    needed = max(c for c in (time_col, clock_col, temp_col) if c is not None)
    readings: list[Reading] = []
    for offset, row in enumerate(rows, start=1):
        number = header_at + 1 + offset
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= needed:
            raise LoggerCsvError(
                f"expected at least {needed + 1} columns separated by '{delimiter}', "
                f"found {len(row)}.",
                code="bad_row",
                line=number,
            )
        stamp = row[time_col] if clock_col is None else f"{row[time_col]} {row[clock_col]}"
        readings.append(
            Reading(
                parse_time(stamp, line=number, default_tz=tz),
                parse_temperature(row[temp_col], line=number),
            )
        )
        if len(readings) > MAX_READINGS:
            raise LoggerCsvError(f"More than {MAX_READINGS:,} readings.", code="too_many")
    if not readings:
        raise LoggerCsvError("The file has a header but no readings.", code="no_readings")
    readings.sort(key=lambda r: r.at)
    return readings


@dataclass(frozen=True)
class Excursion:
    start: dt.datetime
    end: dt.datetime
    side: str  # "above" or "below"
    limit_c: Decimal
    peak_c: Decimal

    @property
    def minutes(self) -> float:
        return round((self.end - self.start).total_seconds() / 60, 1)

    @property
    def beyond_c(self) -> Decimal:
        return abs(self.peak_c - self.limit_c)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "minutes": self.minutes,
            "side": self.side,
            "limit_c": str(self.limit_c),
            "peak_c": str(self.peak_c),
            "beyond_c": str(self.beyond_c),
        }

    def describe(self) -> str:
        return (
            f"{self.minutes:g} min {self.side} {self.limit_c} °C from {self.start:%Y-%m-%d %H:%M}"
            f", peak {self.peak_c} °C ({self.beyond_c} °C beyond)"
        )


def excursions_find(readings: list[Reading], low: Decimal, high: Decimal) -> list[Excursion]:
    """Periods outside [low, high]: from the first reading outside to the next one inside
    (or the last reading), so the duration counts the time until the logger saw recovery."""
    found: list[Excursion] = []
    current: dict[str, Any] | None = None
    for reading in readings:
        t = reading.temperature_c
        side = "above" if t > high else "below" if t < low else None
        if current is not None and side != current["side"]:
            found.append(_close(current, reading.at))
            current = None
        if side is not None:
            if current is None:
                current = {"start": reading.at, "side": side, "peak": t}
            elif (side == "above" and t > current["peak"]) or (
                side == "below" and t < current["peak"]
            ):
                current["peak"] = t
            current["last"] = reading.at
    if current is not None:
        found.append(_close(current, current["last"]))
    for exc in found:
        object.__setattr__(exc, "limit_c", high if exc.side == "above" else low)
    return found


def _close(current: dict[str, Any], end: dt.datetime) -> Excursion:
    return Excursion(current["start"], end, current["side"], Decimal(0), current["peak"])


def excursion_summary(excursions: list[Excursion], low: Decimal, high: Decimal) -> dict[str, Any]:
    """What is stored with the logger file and attached to each quarantine (empty if none)."""
    if not excursions:
        return {}
    worst = max(excursions, key=lambda e: e.beyond_c)
    return {
        "range_c": [str(low), str(high)],
        "count": len(excursions),
        "total_minutes": round(sum(e.minutes for e in excursions), 1),
        "worst": worst.as_dict(),
        "periods": [e.as_dict() for e in excursions[:20]],
        "text": "; ".join(e.describe() for e in excursions[:5]),
    }
