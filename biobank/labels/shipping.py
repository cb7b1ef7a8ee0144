"""Shipment documents: the manifest PDF, the logger trace chart and the shipper label content.

Pure functions over plain values (no models, no database). The caller decides what a user may
see (``biobank.visibility``) and passes only those rows: nothing here knows about arms.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from biobank.labels.content import LabelContent, shorten
from biobank.labels.fonts import font_path

# An identifier's line: "Shipper <id>" up to LINE_CHARS, else the name and then the id over
# lines of ID_LINE_CHARS. The model's longest ids (64 characters) fit the shipper stock so.
LINE_CHARS = 40
ID_LINE_CHARS = 32


def _wrap(value: str, width: int) -> list[str]:
    """``value`` over lines of ``width`` characters (the last shorter), nothing left out or
    added: the lines joined are ``value``. Fixed breaks keep a 64-character id on two lines."""
    return [value[i : i + width] for i in range(0, len(value), width)]


def identifier_lines(name: str, value: str) -> list[str]:
    """A device id as printed: never shortened (it is checked against the shipper or the
    logger itself), wrapped when long; a label that still cannot hold it is refused by the
    layout (``LabelError``), never printed cut."""
    if len(name) + 1 + len(value) <= LINE_CHARS:
        return [f"{name} {value}"]
    return [name, *_wrap(value, ID_LINE_CHARS)]


def shipper_label_content(
    *, code: str, from_site: str, to_site: str, kind: str, shipper_id: str, logger_serial: str
) -> LabelContent:
    """The label on the outside of the shipper: its 2D code, route, kind and devices. Only the
    free text (kind, route) may be shortened; the shipper id and logger serial never are."""
    lines = [shorten(kind, LINE_CHARS)]
    if shipper_id:
        lines += identifier_lines("Shipper", shipper_id)
    if logger_serial:
        lines += identifier_lines("Logger", logger_serial)
    return LabelContent(
        barcode=code, title=shorten(f"{from_site} → {to_site}", LINE_CHARS), lines=tuple(lines)
    )


def _fonts() -> tuple[str, str]:
    from biobank.labels.render import _pdf_fonts

    return _pdf_fonts() if font_path(False) else ("Helvetica", "Helvetica-Bold")


def render_manifest_pdf(
    *, title: str, header: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]], footer: str
) -> bytes:
    """An A4 manifest: the shipment's facts, one table row per item, the seal signature."""
    regular, bold = _fonts()
    styles = getSampleStyleSheet()
    for style in styles.byName.values():
        style.fontName = regular
    styles["Title"].fontName = bold
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=title,
        invariant=True,
    )
    story: list[Any] = [Paragraph(escape(title), styles["Title"])]
    facts = Table(
        [[escape(k), Paragraph(escape(v), styles["Normal"])] for k, v in header],
        colWidths=[40 * mm, 140 * mm],
    )
    facts.setStyle(
        TableStyle([("FONTNAME", (0, 0), (0, -1), bold), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    )
    story += [facts, Spacer(1, 6 * mm)]
    data = [["#", "ID", "Kind", "Participant", "What", "State", "Checked"]]
    for index, row in enumerate(rows, start=1):
        state = row["state_display"] + (" (damaged)" if row.get("damaged") else "")
        data.append(
            [
                str(index),
                row["code"],
                row["kind"],
                row["participant"],
                Paragraph(escape(row["description"]), styles["BodyText"]),
                Paragraph(escape(state), styles["BodyText"]),
                "☐",
            ]
        )
    table = Table(
        data,
        colWidths=[8 * mm, 28 * mm, 18 * mm, 30 * mm, 52 * mm, 34 * mm, 12 * mm],
        repeatRows=1,
    )
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, 0), (-1, 0), bold),
                ("FONTNAME", (0, 1), (-1, -1), regular),
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [table, Spacer(1, 6 * mm), Paragraph(escape(footer), styles["Normal"])]
    doc.build(story)
    return buffer.getvalue()


@dataclass(frozen=True)
class Trace:
    """A temperature logger's readings against the shipment's allowed range, shown in ``tz``."""

    times: Sequence[dt.datetime]
    temperatures: Sequence[Decimal]
    low: Decimal
    high: Decimal
    tz: dt.tzinfo | None = None


def render_trace_svg(trace: Trace, *, title: str) -> bytes:
    """The logger trace as an SVG line chart with the allowed range shaded (matplotlib, Agg:
    no display needed). Returns the SVG bytes; the page gives it alt text."""
    times, temperatures, low, high = trace.times, trace.temperatures, trace.low, trace.high
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "biobank"  # stable ids: same trace, same bytes
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        values = [float(t) for t in temperatures]
        ax.axhspan(float(low), float(high), color="#d8f0d8", label=f"allowed {low} … {high} °C")
        ax.plot(list(times), values, color="#1f4e9a", linewidth=1.2, label="logger")
        outside = [(t, v) for t, v in zip(times, values, strict=True) if not low <= v <= high]
        if outside:
            ax.scatter(
                *zip(*outside, strict=True), color="#c0392b", s=10, zorder=3, label="outside"
            )
        ax.set_ylabel("°C")
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d.%m %H:%M", tz=trace.tz))
        ax.grid(True, linewidth=0.3)
        ax.legend(loc="best", fontsize=7)
        fig.autofmt_xdate()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        return buffer.getvalue()
    finally:
        plt.close(fig)


def trace_alt_text(trace: Trace, *, excursion: str) -> str:
    """What the chart of the same trace shows, in words and in its time zone (for screen
    readers and the printed page)."""
    allowed = f"allowed range {trace.low} … {trace.high} °C."
    if not trace.times:
        return f"Temperature logger trace: no readings; {allowed}"
    first, last = (
        t.astimezone(trace.tz) if trace.tz else t for t in (trace.times[0], trace.times[-1])
    )
    text = (
        f"Temperature logger trace, {len(trace.times)} readings from {first:%Y-%m-%d %H:%M} to "
        f"{last:%Y-%m-%d %H:%M}; lowest {min(trace.temperatures)} °C, highest "
        f"{max(trace.temperatures)} °C; {allowed}"
    )
    return text + (f" Excursion: {excursion}." if excursion else " No excursion.")
