"""Label rendering: every template, format and resolution decodes back to its identifier,
and no user text can inject printer commands. No database needed."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import re
import zoneinfo
from decimal import Decimal
from itertools import cycle
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image

from biobank.identifiers import Kind, format_id, parse_id
from biobank.labels import (
    ALLOWED_DPI,
    FORMATS,
    TEMPLATES,
    LabelContent,
    LabelError,
    LabelTemplate,
    content_type_for,
    get_template,
    module_matrix,
    render,
    render_pdf,
    render_png,
    render_svg,
    render_zpl,
)
from biobank.labels.content import dose_label_content, unit_label_content
from biobank.labels.layout import layout

from .barcodes import SVG_NS, decode, pdf_pages, png_codes, svg_raster


def _ids() -> list[str]:
    """Real identifiers of every kind, with letter, digit and '*' check characters."""
    ids = [format_id(kind, number) for kind in Kind for number in (1, 5)]
    ids += [format_id(Kind.DOSE, 8), format_id(Kind.UNIT, 289), format_id(Kind.BOX, 9999999)]
    return ids


IDS = _ids()
CASES = [
    (name, dpi, barcode)
    for (name, dpi), barcode in zip(
        [(name, dpi) for name in TEMPLATES for dpi in ALLOWED_DPI], cycle(IDS), strict=False
    )
]


def _content(barcode: str) -> LabelContent:
    return LabelContent(
        barcode=barcode,
        title="SMART-MS Ø",
        lines=("Haukeland, Bergen", "≤ −150 °C, 10 % DMSO"),
    )


def _unescape_fh(field: str) -> str:
    """Undo ^FH: _XX is one byte; the bytes are UTF-8 (^CI28)."""
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i] == "_":
            out.append(int(field[i + 1 : i + 3], 16))
            i += 3
        else:
            out += field[i].encode("ascii")
            i += 1
    return out.decode("utf-8")


def _zpl_commands(zpl: str) -> list[tuple[str, str]]:
    """(command, argument) for each raw ^ or ~ command, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"([\^~][A-Z0-9@]{2})([^\^~]*)", zpl)]


def _zpl_fields(zpl: str) -> list[str]:
    """The unescaped data of every ^FD field, after checking each one is ^FH-escaped."""
    commands = _zpl_commands(zpl)
    fields = []
    for index, (command, argument) in enumerate(commands):
        if command == "^FD":
            assert commands[index - 1] == ("^FH", ""), "every ^FD must follow ^FH"
            assert commands[index + 1][0] == "^FS"
            fields.append(_unescape_fh(argument))
    return fields


def test_ids_cover_every_kind_and_check_character_type() -> None:
    assert {parse_id(i).kind for i in IDS} == set(Kind)
    checks = {i[-1] for i in IDS}
    assert any(c.isalpha() for c in checks)
    assert any(c.isdigit() for c in checks)
    assert "*" in checks


@pytest.mark.parametrize(("name", "dpi", "barcode"), CASES)
def test_png_pdf_svg_decode_to_the_identifier(name: str, dpi: int, barcode: str) -> None:
    template = get_template(name, dpi)
    content = _content(barcode)

    png = Image.open(io.BytesIO(render_png(content, template)))
    assert png.size == (template.width_dots, template.height_dots)
    assert round(png.info["dpi"][0]) == dpi
    assert decode(png) == [barcode]

    pages = pdf_pages(render_pdf([content], template), dpi)
    assert len(pages) == 1
    assert decode(pages[0]) == [barcode]

    root, svg_image = svg_raster(render_svg(content, template))
    assert root.get("width") == f"{template.width_mm:g}mm"
    assert decode(svg_image) == [barcode]
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert texts == ["SMART-MS Ø", barcode, "Haukeland, Bergen", "≤ −150 °C, 10 % DMSO"]


@pytest.mark.parametrize(("name", "dpi", "barcode"), CASES)
def test_zpl_structure(name: str, dpi: int, barcode: str) -> None:
    template = get_template(name, dpi)
    zpl = render_zpl(_content(barcode), template).decode("ascii")
    commands = _zpl_commands(zpl)
    names = [c for c, _ in commands]
    assert names[0] == "^XA" and names[-1] == "^XZ"
    assert names.count("^XA") == 1 and names.count("^XZ") == 1
    assert "^CI" in names and dict(commands)["^CI"] == "28\n"
    assert dict(commands)["^PW"].strip() == str(round(template.width_mm * dpi / 25.4))
    assert dict(commands)["^LL"].strip() == str(round(template.height_mm * dpi / 25.4))
    native = {"code128": "^BC", "qr": "^BQ", "datamatrix": "^BX"}[template.symbology]
    assert names.count(native) == 1
    # ^BY and ^BQ take 1-10 dots per module; more is silently clamped by the printer.
    code = layout(_content(barcode), template).code
    assert 1 <= code.module <= 10
    by = dict(commands).get("^BY", "").strip()
    assert by in ("", str(code.module))
    assert not {"^BC", "^BQ", "^BX"} - {native} & set(names)
    fields = _zpl_fields(zpl)
    code_field = fields[0].removeprefix("MA,") if native == "^BQ" else fields[0]
    assert code_field == barcode
    assert fields[1:] == ["SMART-MS Ø", barcode, "Haukeland, Bergen", "≤ −150 °C, 10 % DMSO"]


def test_linear_bars_are_whole_dots_and_at_least_two_dots_at_203() -> None:
    for name, template in TEMPLATES.items():
        if template.symbology != "code128":
            continue
        template = get_template(name, 203)
        content = _content(IDS[0])
        code = layout(content, template).code
        assert code.module >= 2, name
        png = Image.open(io.BytesIO(render_png(content, template))).convert("L")
        row = [png.getpixel((x, code.y + code.bar_height // 2)) for x in range(png.width)]
        runs = [
            len(m.group()) for m in re.finditer(r"0+|1+", "".join("0" if p else "1" for p in row))
        ]
        bar_runs = runs[1:-1]  # without the quiet zones at both ends
        assert all(r % code.module == 0 for r in bar_runs), name
        pattern = module_matrix(IDS[0], "code128").rows[0].strip("0")
        assert sum(bar_runs) == len(pattern) * code.module


def test_pdf_sheet_decodes_every_identifier() -> None:
    ids = [format_id(kind, n) for kind in list(Kind)[:5] for n in (3, 4)]
    assert len(set(ids)) == 10
    contents = [LabelContent(i, "Sheet", ("line",)) for i in ids]
    for name in ("aspirate", "cryovial"):
        template = get_template(name, 300)
        pages = pdf_pages(render_pdf(contents, template, sheet=True), 300)
        assert len(pages) == 1
        width, height = pages[0].size  # A4 at 300 dpi
        assert abs(width - 2480) <= 1 and abs(height - 3508) <= 1
        assert sorted(decode(pages[0])) == sorted(ids), name


def test_pdf_sheet_continues_on_new_pages() -> None:
    ids = [format_id(Kind.STORAGE_UNIT, n) for n in range(1, 8)]
    template = get_template("storage_unit", 203)  # 100x50 mm: 5 per A4 page
    pages = pdf_pages(render_pdf([LabelContent(i) for i in ids], template, sheet=True), 203)
    assert len(pages) == 2
    assert sorted(decode(pages[0]) + decode(pages[1])) == ids


def test_pdf_single_labels_one_page_each_at_label_size() -> None:
    ids = IDS[:3]
    template = get_template("cryobag", 203)
    document = pdfium.PdfDocument(render_pdf([LabelContent(i) for i in ids], template))
    assert len(document) == 3
    width_pt, height_pt = document[0].get_size()
    assert abs(width_pt - 70 / 25.4 * 72) < 0.5 and abs(height_pt - 30 / 25.4 * 72) < 0.5


HOSTILE_TITLE = "^XZ^XA^FDPWNED^FS"
HOSTILE_LINES = (
    "~JR",
    "_5E_7E",
    "Ø å °C",
    "two\nlines\r\nhere\t!",
    "back\\slash \\& <script>&amp;</script>",
    "~DGR:X.GRF,1,1,FF^FS^XZ",
)


def test_hostile_text_cannot_inject_zpl() -> None:
    barcode = format_id(Kind.DOSE, 8)
    content = LabelContent(barcode, HOSTILE_TITLE, HOSTILE_LINES)
    template = get_template("dose", 203)
    raw = render_zpl(content, template)
    zpl = raw.decode("ascii")  # everything non-ASCII is escaped
    assert "~" not in zpl
    names = [c for c, _ in _zpl_commands(zpl)]
    texts = ["^FT", "^A0", "^FH", "^FD", "^FS"] * (2 + len(HOSTILE_LINES))
    expected = ["^XA", "^CI", "^PW", "^LL", "^LH", "^FO", "^BY", "^BC", "^FH", "^FD", "^FS"]
    assert names == [*expected, *texts, "^PQ", "^XZ"]
    assert "PWNED" not in zpl.replace("_5EFDPWNED", "")
    cleaned = [
        line.replace("\r\n", "  ").replace("\n", " ").replace("\t", " ") for line in HOSTILE_LINES
    ]
    assert list(content.lines) == cleaned
    assert _zpl_fields(zpl) == [barcode, HOSTILE_TITLE, barcode, *cleaned]


def test_hostile_text_in_svg_png_pdf() -> None:
    barcode = format_id(Kind.DOSE, 8)
    content = LabelContent(barcode, HOSTILE_TITLE, HOSTILE_LINES)
    template = get_template("dose", 300)
    root, image = svg_raster(render_svg(content, template))
    assert [t.text for t in root.iter(f"{SVG_NS}text")] == [
        HOSTILE_TITLE,
        barcode,
        *content.lines,
    ]
    assert not list(root.iter(f"{SVG_NS}script"))
    assert decode(image) == [barcode]
    assert decode(Image.open(io.BytesIO(render_png(content, template)))) == [barcode]
    assert decode(pdf_pages(render_pdf([content], template), 300)[0]) == [barcode]


def test_text_is_normalised_once_for_every_format() -> None:
    content = LabelContent("PT0000001E", "a\u030a", ("x\u202ey", "\ud800"))
    assert content.title == "å"  # NFC
    assert content.lines == ("x\ufffdy", "\ufffd")
    assert LabelContent("PT0000001E", lines=["a", "b"]).lines == ("a", "b")


def test_output_depends_only_on_content() -> None:
    """The blinded dose label: equal content gives byte-identical output in every format,
    so nothing but the content (identical for MSC and placebo) can show on it."""
    template = get_template("dose", 300)

    def dose_content() -> LabelContent:
        return LabelContent(
            format_id(Kind.DOSE, 3),
            "SMART-MS — MSC or 0.9 % NaCl",
            ("Participant PT0000003", "Month 6 · intrathecal", "Expiry 2025-06-01 14:00"),
        )

    for fmt in FORMATS:
        assert render(dose_content(), template, fmt) == render(dose_content(), template, fmt)


def test_render_dispatch_and_content_types() -> None:
    content = _content(IDS[0])
    template = get_template("participant")
    assert render(content, template, "zpl").startswith(b"^XA")
    assert render(content, template, "png").startswith(b"\x89PNG")
    assert render(content, template, "svg").startswith(b"<?xml")
    assert render(content, template, "pdf").startswith(b"%PDF")
    assert content_type_for("png") == "image/png"
    assert content_type_for("pdf") == "application/pdf"
    assert content_type_for("svg") == "image/svg+xml"
    assert content_type_for("zpl").startswith("text/plain")


def test_errors() -> None:
    assert issubclass(LabelError, ValueError)
    with pytest.raises(LabelError, match="aspirate"):
        get_template("nope")
    for bad in (250, 0, "abc", 300.0, True, "72"):
        with pytest.raises(LabelError, match="dpi"):
            get_template("aspirate", bad)  # type: ignore[arg-type]
    assert get_template("aspirate", "600").dpi == 600
    assert get_template("aspirate").dpi in ALLOWED_DPI
    content = _content(IDS[0])
    with pytest.raises(LabelError, match="format"):
        render(content, get_template("aspirate"), "bmp")
    with pytest.raises(LabelError, match="format"):
        content_type_for("bmp")
    with pytest.raises(LabelError, match="symbology"):
        LabelTemplate("x", "X", 50, 25, 300, "ean13")  # type: ignore[arg-type]
    with pytest.raises(LabelError, match="width_mm"):
        LabelTemplate("x", "X", 0, 25, 300, "qr")
    for bad_code in ("AB^FS", "A B", "", "Ø1", "A_B", "x" * 49):
        with pytest.raises(LabelError, match="barcode"):
            LabelContent(bad_code)
    with pytest.raises(LabelError, match="lines"):
        LabelContent("AB1", lines="not a tuple")  # type: ignore[arg-type]
    with pytest.raises(LabelError, match="does not fit"):
        render_png(LabelContent("AB1", lines=("x",) * 30), get_template("cryovial"))
    with pytest.raises(LabelError, match="does not fit"):
        render_zpl(LabelContent("AB1", lines=("W" * 150,)), get_template("cryovial"))
    with pytest.raises(LabelError, match="No labels"):
        render_pdf([], get_template("box"))


# --- what dose and unit labels carry (moved from test_labels_api: no database) ------------


def _dose(**changes: Any) -> dict[str, Any]:
    values = {
        "study_code": "NCT04749667",
        "participant_pseudonym": "SMART-HUS-01",
        "visit_name": "Month 6",
        "dose_id": format_id(Kind.DOSE, 7),
        "volume_ml": Decimal("10.0"),
        "route": "intrathecal",
        "expires_at": dt.datetime(2025, 9, 1, 14, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Oslo")),
        "emergency_contact": "Haukeland University Hospital, Neurology: +47 55 97 50 00",
    }
    return {**values, **changes}


def test_dose_label_is_identical_for_msc_and_placebo() -> None:
    # Two doses (one MSC, one saline in the lab's records) with the same label values.
    msc, placebo = dose_label_content(**_dose()), dose_label_content(**_dose())
    assert msc == placebo
    for fmt in FORMATS:
        for dpi in (203, 300):
            template = get_template("dose", dpi)
            assert render(msc, template, fmt) == render(placebo, template, fmt)
    text = " ".join([msc.title, *msc.lines])
    assert msc.title == "MSC or 0.9 % NaCl"
    for part in (
        "NCT04749667",
        "SMART-HUS-01",
        "Month 6",
        "intrathecal",
        "10.0 mL",
        "2025-09-01 14:30",
    ):
        assert part in text
    assert "For clinical trial use only" in msc.lines
    assert any(line.startswith("Emergency: Haukeland") for line in msc.lines)
    # There is no way to tell the function what the dose contains.
    parameters = set(inspect.signature(dose_label_content).parameters)
    assert not parameters & {"arm", "treatment", "product", "is_placebo", "contents"}


def test_dose_label_prints_the_doses_route() -> None:
    content = dose_label_content(**_dose(route="intravenous"))
    assert "Route: intravenous · 10.0 mL" in content.lines


@pytest.mark.parametrize(
    ("cells", "printed"),
    [
        (72_560_000, "72.56×10⁶ cells"),
        (72_599_999, "72.59×10⁶ cells"),
        (9_990_000, "9.99×10⁶ cells"),
    ],
)
def test_unit_label_never_rounds_the_cells_up(cells: int, printed: str) -> None:
    content = unit_label_content(
        code=format_id(Kind.UNIT, 3),
        pseudonym="SMART-HUS-01",
        study_code="NCT04749667",
        visit_name="Baseline",
        collected_on=dt.date(2025, 9, 1),
        cell_number=cells,
        volume_ml=Decimal("5.0"),
        cryoprotectant="10 % DMSO",
        expires_at=dt.datetime(2027, 9, 1, 14, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Oslo")),
    )
    assert any(line.startswith(printed) for line in content.lines), content.lines


@pytest.mark.parametrize(
    ("small", "printed"),
    [(False, "Expires 2027-09-01 14:30 CEST"), (True, "Exp 2027-09-01 14:30 CEST")],
)
def test_a_units_label_prints_its_expiry_with_the_zone(small: bool, printed: str) -> None:
    unit = {
        "code": format_id(Kind.UNIT, 3),
        "pseudonym": "SMART-HUS-01",
        "study_code": "NCT04749667",
        "visit_name": "Baseline",
        "collected_on": dt.date(2025, 9, 1),
        "cell_number": 25_000_000,
        "volume_ml": Decimal("10.0"),
        "cryoprotectant": "10 % DMSO",
        "small": small,
    }
    oslo = dt.datetime(2027, 9, 1, 14, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Oslo"))
    content = unit_label_content(**unit, expires_at=oslo)
    assert printed in content.lines
    # Every stock holds it: the vial's 38×13 mm label as well as the bag's.
    stock = get_template("cryovial" if small else "cryobag")
    assert png_codes(render(content, stock, "png")) == [format_id(Kind.UNIT, 3)]
    with pytest.raises(LabelError, match="timezone-aware"):
        unit_label_content(**unit, expires_at=dt.datetime(2027, 9, 1, 14, 30))


def test_dose_label_decodes_and_refuses_a_naive_expiry() -> None:
    content = dose_label_content(**_dose())
    png = render(content, get_template("dose"), "png")
    assert png_codes(png) == [format_id(Kind.DOSE, 7)]
    with pytest.raises(LabelError, match="timezone-aware"):
        dose_label_content(**_dose(expires_at=dt.datetime(2025, 9, 1, 14, 30)))


# --- the shipper label ---------------------------------------------------------------------


def _shipper(shipper_id: str, logger_serial: str) -> LabelContent:
    from biobank.labels.shipping import shipper_label_content

    return shipper_label_content(
        code=format_id(Kind.SHIPMENT, 12),
        from_site="HUS",
        to_site="STO",
        kind="LN2 dry shipper (≤ −150 °C)",
        shipper_id=shipper_id,
        logger_serial=logger_serial,
    )


def test_shipper_and_logger_ids_are_printed_whole() -> None:
    # The longest ids the model holds (64), and of the widest letter: wrapped, never cut.
    shipper_id, serial = "CX-" + "W" * 61, "LOG-" + "8" * 60
    content = _shipper(shipper_id, serial)
    assert "…" not in " ".join(content.lines)
    assert content.lines == (
        "LN2 dry shipper (≤ −150 °C)",
        "Shipper",
        shipper_id[:32],
        shipper_id[32:],
        "Logger",
        serial[:32],
        serial[32:],
    )
    for dpi in ALLOWED_DPI:
        stock = get_template("shipper", dpi)
        texts = [t.text for t in layout(content, stock).texts]
        assert shipper_id[:32] in texts and shipper_id[32:] in texts and serial[32:] in texts
        assert decode(Image.open(io.BytesIO(render_png(content, stock)))) == [content.barcode]
    # Short ids stay on one line with their name.
    assert _shipper("CX-100", "L-9").lines[1:] == ("Shipper CX-100", "Logger L-9")


def test_a_shipper_id_that_cannot_fit_is_refused_not_cut() -> None:
    content = _shipper("W" * 3000, "")
    assert "".join(content.lines[2:]) == "W" * 3000
    with pytest.raises(LabelError, match="does not fit"):
        render_zpl(content, get_template("shipper"))
