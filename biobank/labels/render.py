"""Renderers: one label as ZPL, PNG or SVG; one or many labels as PDF.

All four draw the same ``Layout`` (whole printer dots). ZPL lets the printer draw the
barcode with its own commands; the others draw our module matrix, each module an
integer number of dots, so bar widths are never rounded differently bar to bar.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from xml.sax.saxutils import escape as xml_escape

from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from biobank.labels.barcodes import module_matrix
from biobank.labels.content import LabelContent
from biobank.labels.errors import LabelError
from biobank.labels.fonts import font_path, pil_font
from biobank.labels.layout import CodeItem, Layout, layout
from biobank.labels.templates import LabelTemplate

FORMATS: tuple[str, ...] = ("zpl", "png", "svg", "pdf")

_CONTENT_TYPES = {
    # No registered type exists for ZPL; it is 7-bit text (everything else is escaped).
    "zpl": "text/plain; charset=us-ascii",
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
}


def content_type_for(fmt: str) -> str:
    """The HTTP Content-Type of a rendered label in ``fmt``."""
    try:
        return _CONTENT_TYPES[fmt]
    except KeyError:
        raise _unknown_format(fmt) from None


def _unknown_format(fmt: object) -> LabelError:
    return LabelError(f"Unknown label format {fmt!r}; known formats: {', '.join(FORMATS)}.")


def render(content: LabelContent, template: LabelTemplate, fmt: str) -> bytes:
    """One label in ``fmt`` ("zpl", "png", "svg" or "pdf")."""
    if fmt == "zpl":
        return render_zpl(content, template)
    if fmt == "png":
        return render_png(content, template)
    if fmt == "svg":
        return render_svg(content, template)
    if fmt == "pdf":
        return render_pdf([content], template)
    raise _unknown_format(fmt)


def code_rects(code: CodeItem) -> list[tuple[int, int, int, int]]:
    """Dark rectangles (x, y, width, height) in dots: one per horizontal run of modules."""
    matrix = module_matrix(code.data, code.symbology)
    if (matrix.width, matrix.height) != (code.shape.width, code.shape.height):
        # The layout was computed from symbol_shape; drawing another size would overlap text.
        raise RuntimeError(f"{code.symbology} matrix for {code.data!r} does not match its shape")
    m = code.module
    if matrix.is_linear:
        return [(code.x + col * m, code.y, n * m, code.bar_height) for _, col, n in matrix.runs()]
    return [(code.x + col * m, code.y + row * m, n * m, m) for row, col, n in matrix.runs()]


# --- ZPL -------------------------------------------------------------------------------

# Bytes that may stand for themselves inside ^FD: printable ASCII except the format and
# control prefixes (^ ~), the ^FH hex indicator (_) and backslash (^FB line-break escape).
# Everything else, including each UTF-8 byte of non-ASCII text, is written as _XX, so no
# field can end itself or start a command, whatever the user typed.
_ZPL_ESCAPES: tuple[str, ...] = tuple(
    chr(b) if 0x20 <= b < 0x7F and chr(b) not in "^~_\\" else f"_{b:02X}" for b in range(256)
)


def zpl_escape(text: str) -> str:
    """``text`` as ^FH field data: UTF-8 (for ^CI28) with unsafe bytes as _XX."""
    return "".join([_ZPL_ESCAPES[b] for b in text.encode("utf-8")])


def render_zpl(content: LabelContent, template: LabelTemplate) -> bytes:
    """ZPL II for one label. The printer draws the barcode (^BC/^BQ/^BX) itself."""
    lay = layout(content, template)
    code = lay.code
    data = zpl_escape(code.data)
    out = [
        "^XA",
        "^CI28",  # field data is UTF-8
        f"^PW{lay.width}",
        f"^LL{lay.height}",
        "^LH0,0",
    ]
    origin = f"^FO{code.symbol_x},{code.symbol_y}"
    if code.symbology == "code128":
        # Mode A: the printer picks subsets B/C itself; no human-readable line (ours is text).
        out.append(f"{origin}^BY{code.module}^BCN,{code.bar_height},N,N,N,A^FH^FD{data}^FS")
    elif code.symbology == "qr":
        # Model 2, magnification = module size; "MA," = error correction M, automatic mode.
        out.append(f"{origin}^BQN,2,{code.module},M^FH^FDMA,{data}^FS")
    else:
        # ECC 200 with the same number of rows/columns as our matrix.
        q = code.shape.quiet_zone
        cols, rows = code.shape.width - 2 * q, code.shape.height - 2 * q
        out.append(f"{origin}^BXN,{code.module},200,{cols},{rows}^FH^FD{data}^FS")
    for t in lay.texts:
        # ^FT puts the origin on the baseline, as the other renderers do.
        out.append(f"^FT{t.x},{t.baseline}^A0N,{t.size},{t.size}^FH^FD{zpl_escape(t.text)}^FS")
    out += ["^PQ1", "^XZ", ""]
    return "\n".join(out).encode("ascii")


# --- PNG -------------------------------------------------------------------------------


def render_png(content: LabelContent, template: LabelTemplate) -> bytes:
    """A 1-bit PNG at the printer's resolution: one pixel per printer dot."""
    lay = layout(content, template)
    # Mode "1": a thermal head prints dots, not grey; text is rendered without smoothing.
    image = Image.new("1", (lay.width, lay.height), 1)
    draw = ImageDraw.Draw(image)
    for x, y, w, h in code_rects(lay.code):
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=0)  # Pillow corners are inclusive
    for t in lay.texts:
        draw.text((t.x, t.baseline), t.text, font=pil_font(t.size, t.bold), fill=0, anchor="ls")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", dpi=(template.dpi, template.dpi))
    return buffer.getvalue()


# --- SVG -------------------------------------------------------------------------------

_SVG_FONTS = "'DejaVu Sans Condensed','DejaVu Sans','Arial Narrow',sans-serif"


def render_svg(content: LabelContent, template: LabelTemplate) -> bytes:
    """SVG in printer dots (viewBox) at the label's physical size (width/height in mm)."""
    lay = layout(content, template)
    w, h = lay.width, lay.height
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{template.width_mm:g}mm"'
        f' height="{template.height_mm:g}mm" viewBox="0 0 {w} {h}">',
        f'<rect width="{w}" height="{h}" fill="#fff"/>',
        '<g fill="#000" shape-rendering="crispEdges">',
    ]
    out += [
        f'<rect x="{x}" y="{y}" width="{rw}" height="{rh}"/>'
        for x, y, rw, rh in code_rects(lay.code)
    ]
    out += ["</g>", f'<g fill="#000" font-family="{_SVG_FONTS}" xml:space="preserve">']
    for t in lay.texts:
        weight = ' font-weight="bold"' if t.bold else ""
        # textLength pins the measured width, so a viewer's substitute font cannot overflow.
        out.append(
            f'<text x="{t.x}" y="{t.baseline}" font-size="{t.size}"{weight}'
            f' textLength="{t.width}" lengthAdjust="spacingAndGlyphs">{xml_escape(t.text)}</text>'
        )
    out += ["</g>", "</svg>", ""]
    return "\n".join(out).encode("utf-8")


# --- PDF -------------------------------------------------------------------------------

SHEET_MARGIN_MM = 10.0
SHEET_GUTTER_MM = 3.0


@lru_cache(maxsize=1)
def _pdf_fonts() -> tuple[str, str]:
    """Embed the layout font so PDF text measures like the PNG; Helvetica (Latin-1) if
    no TrueType file exists."""
    regular, bold = font_path(False), font_path(True)
    if regular is None or bold is None:
        return "Helvetica", "Helvetica-Bold"
    pdfmetrics.registerFont(TTFont("BiobankLabelSans", regular))
    pdfmetrics.registerFont(TTFont("BiobankLabelSans-Bold", bold))
    return "BiobankLabelSans", "BiobankLabelSans-Bold"


def _draw_pdf_label(canvas: Canvas, lay: Layout, left: float, bottom: float) -> None:
    scale = 72 / lay.template.dpi  # points per dot
    top = bottom + lay.height * scale
    path = canvas.beginPath()
    for x, y, w, h in code_rects(lay.code):
        path.rect(left + x * scale, top - (y + h) * scale, w * scale, h * scale)
    canvas.setFillGray(0)
    canvas.drawPath(path, stroke=0, fill=1)
    regular, bold = _pdf_fonts()
    for t in lay.texts:
        canvas.setFont(bold if t.bold else regular, t.size * scale)
        canvas.drawString(left + t.x * scale, top - t.baseline * scale, t.text)


def render_pdf(
    contents: Sequence[LabelContent], template: LabelTemplate, sheet: bool = False
) -> bytes:
    """Vector PDF: one label per page at label size (for a label printer's PDF driver), or
    with ``sheet=True`` as many labels per A4 page as fit, with light cut outlines."""
    if isinstance(contents, LabelContent):
        contents = [contents]
    if not contents:
        raise LabelError("No labels to render: contents is empty.")
    layouts = [layout(content, template) for content in contents]
    scale = 72 / template.dpi
    label_w, label_h = layouts[0].width * scale, layouts[0].height * scale
    buffer = io.BytesIO()
    # invariant: no timestamp or random ID, so the same labels give the same bytes.
    canvas = Canvas(buffer, pagesize=(label_w, label_h) if not sheet else A4, invariant=True)
    if not sheet:
        for lay in layouts:
            _draw_pdf_label(canvas, lay, 0, 0)
            canvas.showPage()
        canvas.save()
        return buffer.getvalue()

    page_w, page_h = A4
    margin, gutter = SHEET_MARGIN_MM * mm, SHEET_GUTTER_MM * mm
    cols = int((page_w - 2 * margin + gutter) // (label_w + gutter))
    rows = int((page_h - 2 * margin + gutter) // (label_h + gutter))
    if cols < 1 or rows < 1:
        raise LabelError(f"The {template.name} label is too large for an A4 sheet.")
    # Centre the grid so a slightly misfed sheet still has labels inside the paper.
    left0 = (page_w - (cols * label_w + (cols - 1) * gutter)) / 2
    top0 = (page_h - (rows * label_h + (rows - 1) * gutter)) / 2  # from the top edge

    def snap(points: float) -> float:
        # Labels start on the template's dot grid (from the top-left corner), so a
        # raster at that dpi has every module on whole pixels, without grey edges.
        return round(points / scale) * scale

    per_page = cols * rows
    for index, lay in enumerate(layouts):
        slot = index % per_page
        if index and slot == 0:
            canvas.showPage()
        left = snap(left0 + (slot % cols) * (label_w + gutter))
        bottom = page_h - snap(top0 + (slot // cols) * (label_h + gutter)) - label_h
        canvas.setStrokeGray(0.8)
        canvas.setLineWidth(0.25)
        canvas.rect(left, bottom, label_w, label_h, stroke=1, fill=0)
        _draw_pdf_label(canvas, lay, left, bottom)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
