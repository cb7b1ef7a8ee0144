"""The participant chain report as a PDF (reportlab platypus), from the report's dict.

The PDF shows exactly what the JSON holds, so both copies carry the same content hash.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from biobank.labels.fonts import font_path
from biobank.selectors.audit_export import event_extra_columns


@lru_cache(maxsize=1)
def _fonts() -> tuple[str, str]:
    """A TrueType font with °, ≤, →, × and Norwegian letters; Helvetica if none is found."""
    regular, bold = font_path(False), font_path(True)
    if not (regular and bold):
        return "Helvetica", "Helvetica-Bold"
    pdfmetrics.registerFont(TTFont("ReportSans", regular))
    pdfmetrics.registerFont(TTFont("ReportSans-Bold", bold))
    return "ReportSans", "ReportSans-Bold"


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _fonts()
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("t", parent=base["Title"], fontName=bold, fontSize=18),
        "h1": ParagraphStyle("h1", parent=base["Heading2"], fontName=bold, spaceBefore=8),
        "h2": ParagraphStyle("h2", parent=base["Heading4"], fontName=bold, spaceBefore=4),
        "body": ParagraphStyle("b", parent=base["BodyText"], fontName=regular, fontSize=9),
        "cell": ParagraphStyle("c", fontName=regular, fontSize=7, leading=8.5),
        "head": ParagraphStyle("h", fontName=bold, fontSize=7, leading=8.5),
        "mono": ParagraphStyle("m", fontName=regular, fontSize=8, leading=10),
    }


def _text(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value) or "–"
    return str(value)


SHORT = 14  # characters that fit in the narrowest column at 7 pt

PAGE = landscape(A4)
MARGIN = 12 * mm
# The frame's width inside the margins and its 6 pt padding: what a table may take.
WIDTH = PAGE[0] - 2 * MARGIN - 12
# A cell's text beyond this is cut, with a mark: the PDF stays a readable size and renders
# whatever was typed; the JSON (and the audit export) hold every character.
CELL_MAX = 4000
CONTINUED = "… (continued in the JSON/CSV)"
# Columns of free text get twice the width of the others.
WIDE = frozenset(
    {"reason", "status_reason", "end_reason", "message", "data", "release", "record", "name"}
)


def _cut(text: str) -> str:
    return text if len(text) <= CELL_MAX else text[:CELL_MAX] + CONTINUED


def _widths(columns: list[tuple[str, str]]) -> list[float]:
    """Fixed widths filling the page: a table left to size itself from its content can get a
    column too narrow for its padding (reportlab's negative-width error)."""
    weights = [2 if key in WIDE else 1 for key, _title in columns]
    return [WIDTH * w / sum(weights) for w in weights]


def _table(
    rows: list[dict[str, Any]],
    columns: list[tuple[str, str]],
    st: dict[str, ParagraphStyle],
    widths: list[float] | None = None,
) -> Table | Paragraph:
    if not rows:
        return Paragraph("None recorded.", st["body"])
    regular = _fonts()[0]
    data: list[list[Any]] = [[Paragraph(escape(title), st["head"]) for _key, title in columns]]
    for row in rows:
        cells: list[Any] = []
        for key, _title in columns:
            text = _cut(_text(row.get(key)))
            # Paragraphs wrap but cost ~10× a plain cell: only for text that may need it.
            cells.append(Paragraph(escape(text), st["cell"]) if len(text) > SHORT else text)
        data.append(cells)
    # Rows split across pages: a long reason can make a row taller than a page (LayoutError).
    table = Table(data, colWidths=widths or _widths(columns), repeatRows=1, splitInRow=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 1), (-1, -1), regular, 7, 8.5),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 2),
                ("RIGHTPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return table


def _kv(pairs: list[tuple[str, Any]], st: dict[str, ParagraphStyle]) -> Table:
    data = [
        [Paragraph(escape(k), st["head"]), Paragraph(escape(_cut(_text(v))), st["mono"])]
        for k, v in pairs
    ]
    table = Table(data, colWidths=[45 * mm, 200 * mm], splitInRow=1)
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


UNIT_COLUMNS = [
    ("code", "Unit"),
    ("processing", "Processing"),
    ("container_type", "Type"),
    ("cell_number", "Cells"),
    ("volume_ml", "mL"),
    ("freezing_run", "Freezing run"),
    ("status", "Status"),
    ("status_reason", "Reason"),
]
PLACEMENT_COLUMNS = [
    ("unit", "Unit"),
    ("storage_unit", "Storage unit"),
    ("path", "Location"),
    ("container", "Box"),
    ("position", "Pos."),
    ("placed_at", "Placed"),
    ("checked_out_at", "Checked out"),
    ("ended_at", "Ended"),
    ("end_reason", "Reason"),
]
CHECK_COLUMNS = [
    ("dose", "Dose"),
    ("stage", "Stage"),
    ("checked_at", "At"),
    ("dose_scan", "Dose scan"),
    ("participant_scan", "Participant scan"),
    ("matched", "Match"),
    ("message", "Message"),
]


# The tables under each processing in the report, by key: their columns.
PROCESSING_TABLES = {
    "passages": [
        ("number", "Passage"),
        ("at", "At"),
        ("cell_count", "Cells"),
        ("viability_pct", "Viability %"),
    ],
    "qc": [
        ("test", "QC test"),
        ("result", "Result"),
        ("passed", "Passed"),
        ("tested_at", "Tested"),
    ],
    "freezing_runs": [
        ("code", "Freezing run"),
        ("program", "Program"),
        ("started_at", "Start"),
        ("finished_at", "End"),
    ],
}


def report_pdf(report: dict[str, Any]) -> bytes:
    """Render ``ParticipantReport.as_dict()``; every custody event gets its own table row."""
    st = _styles()
    cover, content = report["cover"], report["content"]
    person = content["participant"]
    story: list[Any] = [
        Paragraph(escape(f"Participant chain report — {person['pseudonym']}"), st["title"]),
        Spacer(1, 6 * mm),
        _kv(
            [
                ("Participant", f"{person['pseudonym']} ({person['code']})"),
                ("Study / site", f"{person['study']} / {person['site']}"),
                ("Report time", cover["generated_at"]),
                ("Requested by", cover["requested_by"]),
                ("Version", "BLINDED" if cover["blinded"] else "Unblinded (cell lab / QA)"),
                ("Content hash", cover["content_hash"]),
                ("Hash algorithm", cover["hash_algorithm"]),
                ("Custody events", len(content["events"])),
            ],
            st,
        ),
        Spacer(1, 4 * mm),
        Paragraph(
            "An accurate and complete copy of the records for this participant (21 CFR "
            "11.10(b)). The JSON version of this report carries the same content and hash.",
            st["body"],
        ),
        PageBreak(),
        Paragraph("Participant", st["h1"]),
        _kv([(k.replace("_", " "), v) for k, v in person.items()], st),
        Paragraph("Visits", st["h1"]),
        _table(
            content["visits"],
            [
                ("visit", "Visit"),
                ("name", "Name"),
                ("scheduled_on", "Planned"),
                ("done_on", "Done"),
            ],
            st,
        ),
        Paragraph("Aspirates", st["h1"]),
        _table(
            content["aspirates"],
            [
                ("code", "Aspirate"),
                ("visit", "Visit"),
                ("status", "Status"),
                ("collected_at", "Collected"),
                ("collected_by", "By"),
                ("site", "Site"),
                ("volume_ml", "mL"),
                ("anticoagulant", "Anticoag."),
                ("received_at", "Received"),
                ("transport_temperature_c", "°C"),
                ("condition", "Condition"),
                ("status_reason", "Reason"),
            ],
            st,
        ),
    ]
    if "processing" in content:
        story.append(Paragraph("Processing and QC", st["h1"]))
        for pr in content["processing"]:
            story.append(Paragraph(escape(f"{pr['code']} (from {pr['aspirate']})"), st["h2"]))
            story.append(
                _kv(
                    [
                        (k.replace("_", " "), pr[k])
                        for k in (
                            "status",
                            "started_at",
                            "harvested_at",
                            "harvest_passage",
                            "harvest_cell_count",
                            "harvest_viability_pct",
                            "status_reason",
                            "qc_release",
                        )
                    ],
                    st,
                )
            )
            for n, (key, columns) in enumerate(PROCESSING_TABLES.items()):
                if n:
                    story.append(Spacer(1, 2 * mm))
                story.append(_table(pr[key], columns, st))
    if "units" in content:
        story.append(Paragraph("Units and storage history", st["h1"]))
        places = [{"unit": u["code"], **p} for u in content["units"] for p in u["storage_history"]]
        story += [
            _table(content["units"], UNIT_COLUMNS, st),
            Spacer(1, 2 * mm),
            _table(places, PLACEMENT_COLUMNS, st),
        ]
    story.append(Paragraph("Doses and identity checks", st["h1"]))
    dose_cols = [
        ("code", "Dose"),
        ("visit", "Visit"),
        ("product", "Product"),
        ("status", "Status"),
        ("route", "Route"),
        ("prepared_at", "Planned"),
        ("ready_at", "Ready"),
        ("expires_at", "Expires"),
        ("administered_at", "Administered"),
        ("administered_by", "By"),
        ("release", "Release signature"),
    ]
    if content["doses"] and "unit" in content["doses"][0]:
        dose_cols[3:3] = [
            ("unit", "Unit"),
            ("post_thaw_cell_count", "Post-thaw cells"),
            ("post_thaw_viability_pct", "Viab. %"),
        ]
    story.append(_table(content["doses"], dose_cols, st))
    checks = [{"dose": d["code"], **c} for d in content["doses"] for c in d["identity_checks"]]
    story += [Spacer(1, 2 * mm), _table(checks, CHECK_COLUMNS, st)]
    story.append(Paragraph("Signatures", st["h1"]))
    story.append(
        _table(
            content["signatures"],
            [
                ("signed_at", "Signed"),
                ("signer", "Signer"),
                ("meaning", "Meaning"),
                ("record", "Record"),
            ],
            st,
        )
    )
    story.append(Paragraph("Emergency unblinding", st["h1"]))
    story.append(
        _table(
            [{"reason": u["reason"], **(u["signature"] or {})} for u in content["unblindings"]],
            [
                ("signed_at", "Signed"),
                ("signer", "By"),
                ("meaning", "Meaning"),
                ("reason", "Reason"),
            ],
            st,
        )
    )
    story.append(Paragraph("Deviations", st["h1"]))
    story.append(
        _table(
            content["deviations"],
            [("at", "At"), ("item_code", "Item"), ("what", "What"), ("reason", "Reason")],
            st,
        )
    )
    for title, rows in content.get("sections", {}).items():
        story.append(Paragraph(escape(title), st["h1"]))
        columns = list(rows[0]) if rows else []
        story.append(_table(rows, [(c, c.replace("_", " ")) for c in columns], st))
    story.append(Paragraph(f"Chain of custody ({len(content['events'])} events)", st["h1"]))
    # The hash-chain columns the report's events carry (the export's further columns): none
    # in a blinded report.
    first = content["events"][0] if content["events"] else {}
    extra = [c for c in event_extra_columns() if c in first]
    events = [
        {
            **e,
            "n": f"#{e['n']}",
            "status": f"{e['from_status'] or '–'} → {e['to_status']}",
            "where": e["site"] or e["location"],
            "data": json.dumps(e["data"], ensure_ascii=False, sort_keys=True) if e["data"] else "",
            "chain": " ".join(f"{k}={e[k]}" for k in extra if e.get(k) not in (None, "")),
        }
        for e in content["events"]
    ]
    event_cols = [
        ("n", "#"),
        ("at", "When (UTC)"),
        ("item_code", "Item"),
        ("action", "Step"),
        ("status", "Status"),
        ("user", "By"),
        ("where", "Where"),
        ("reason", "Reason"),
        ("data", "Data"),
    ]
    widths = [10 * mm, 38 * mm, 28 * mm, 28 * mm, 36 * mm, 20 * mm, 22 * mm, 32 * mm, 47 * mm]
    if extra:
        event_cols.append(("chain", "Hash chain"))
        widths = [w * 0.85 for w in widths] + [38 * mm]
    story.append(_table(events, event_cols, st, widths))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(_fonts()[0], 7)
        canvas.drawString(
            15 * mm,
            8 * mm,
            f"{person['pseudonym']} · {cover['generated_at']} · "
            f"{'BLINDED' if cover['blinded'] else 'unblinded'} · "
            f"SHA-256 {cover['content_hash'][:16]}… · page {doc.page}",
        )
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=14 * mm,
        title=f"Participant chain report {person['code']}",
        author=cover["requested_by"],
        subject=f"content SHA-256 {cover['content_hash']}",
        creator="SMART-MS biobank",
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
