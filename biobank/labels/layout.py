"""Where everything goes on a label, in whole printer dots, shared by all renderers.

Measuring once here (with the font in ``fonts``) keeps ZPL, PNG, SVG and PDF output
the same label, and keeps every barcode module a whole number of dots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from biobank.labels.barcodes import SymbolShape, symbol_shape
from biobank.labels.content import LabelContent
from biobank.labels.errors import LabelError
from biobank.labels.fonts import ASCENT, LEADING, text_width
from biobank.labels.templates import LabelTemplate, Symbology

# Preferred text sizes (em, mm) and the smallest the body text may shrink to: ~1.5 mm
# is still legible from a thermal head at 203 dpi (12 dots).
TITLE_MM = 3.2
ID_MM = 2.8
LINE_MM = 2.4
MIN_LINE_MM = 1.5
SHRINK = 0.93

GAP_MM = 0.8  # between the code (with its quiet zone) and text
# Code 128 bar height: at least 5 mm for hand scanners; more than 15 mm helps nobody.
MIN_BAR_MM = 5.0
MAX_BAR_MM = 15.0
# Largest module: bigger is easier to scan but steals room from the text. ZPL's ^BY and
# ^BQ take at most 10 dots per module.
MAX_MODULE_MM = {"code128": 0.5, "qr": 0.6, "datamatrix": 0.6}
MAX_MODULE_DOTS = 10


@dataclass(frozen=True)
class TextItem:
    x: int
    baseline: int
    size: int  # em size in dots
    bold: bool
    text: str
    width: int  # measured advance width in dots


@dataclass(frozen=True)
class CodeItem:
    symbology: Symbology
    data: str
    x: int  # top-left corner of the symbol *including* its quiet zone
    y: int
    module: int  # dots per module
    shape: SymbolShape
    bar_height: int  # linear codes: bar height in dots; 2D: shape.height * module

    @property
    def width(self) -> int:
        return self.shape.width * self.module

    @property
    def symbol_x(self) -> int:
        """Left edge of the first dark module (where ZPL's ^FO goes)."""
        return self.x + self.shape.quiet_zone * self.module

    @property
    def symbol_y(self) -> int:
        if self.symbology == "code128":
            return self.y
        return self.y + self.shape.quiet_zone * self.module


@dataclass(frozen=True)
class Layout:
    template: LabelTemplate
    width: int
    height: int
    code: CodeItem
    texts: tuple[TextItem, ...]


@dataclass(frozen=True)
class _Line:
    text: str
    mm: float
    bold: bool
    centre_on_code: bool = False


def _lines(content: LabelContent, linear: bool) -> list[_Line]:
    lines = []
    if content.title:
        lines.append(_Line(content.title, TITLE_MM, bold=True))
    # The identifier is always printed in clear so a person can type it if a scan fails.
    lines.append(_Line(content.barcode, ID_MM, bold=not linear, centre_on_code=linear))
    lines.extend(_Line(line, LINE_MM, bold=False) for line in content.lines)
    return lines


def _size(template: LabelTemplate, mm: float, scale: float) -> int:
    return max(1, round(mm * scale * template.dpi / 25.4))


def _advance(size: int) -> int:
    return math.ceil(size * LEADING)


def layout(content: LabelContent, template: LabelTemplate) -> Layout:
    """Place the code and the text; raise ``LabelError`` if they cannot fit."""
    shape = symbol_shape(content.barcode, template.symbology)
    if template.symbology == "code128":
        return _linear(content, template, shape)
    return _matrix(content, template, shape)


def _max_module(template: LabelTemplate) -> int:
    return max(1, min(MAX_MODULE_DOTS, template.dots(MAX_MODULE_MM[template.symbology])))


def _too_long(content: LabelContent, template: LabelTemplate) -> LabelError:
    return LabelError(
        f"barcode {content.barcode!r} is too long for the {template.name} label "
        f"({template.width_mm}x{template.height_mm} mm at {template.dpi} dpi)."
    )


def _fit_text(
    lines: list[_Line], template: LabelTemplate, max_width: int, max_height: int
) -> tuple[list[int], int]:
    """Largest scale (<= 1) at which every line fits ``max_width`` and all lines together
    fit ``max_height``: returns the sizes in dots and the total height."""
    scale = 1.0
    while True:
        sizes = [_size(template, line.mm, scale) for line in lines]
        height = sum(_advance(size) for size in sizes)
        problem = ""
        if height > max_height:
            problem = f"{len(lines)} lines of text are too many"
        else:
            for line, size in zip(lines, sizes, strict=True):
                if text_width(line.text, size, line.bold) > max_width:
                    problem = f"{line.text[:40]!r} is too wide"
                    break
        if not problem:
            return sizes, height
        scale *= SHRINK
        if _size(template, LINE_MM, scale) < template.dots(MIN_LINE_MM):
            raise LabelError(
                f"The text does not fit the {template.name} label ({template.width_mm}x"
                f"{template.height_mm} mm) even at the smallest font: {problem}."
            )


def _stack(
    lines: list[_Line], sizes: list[int], x: int, top: int, code: CodeItem | None = None
) -> tuple[list[TextItem], int]:
    """Text items from ``top`` down; returns them and the y below the last line."""
    items = []
    y = top
    for line, size in zip(lines, sizes, strict=True):
        width = text_width(line.text, size, line.bold)
        left = x
        if line.centre_on_code and code is not None:
            left = code.x + (code.width - width) // 2
        if line.text:
            items.append(
                TextItem(left, y + round(size * ASCENT), size, line.bold, line.text, width)
            )
        y += _advance(size)
    return items, y


def _linear(content: LabelContent, template: LabelTemplate, shape: SymbolShape) -> Layout:
    width, height = template.width_dots, template.height_dots
    margin = template.dots(template.margin_mm)
    module = min(_max_module(template), (width - 2 * margin) // shape.width)
    if module < 1:
        raise _too_long(content, template)
    gap = template.dots(GAP_MM) // 2  # the quiet zone is horizontal only; keep text close
    min_bar = template.dots(MIN_BAR_MM)
    lines = _lines(content, linear=True)
    above = lines[:1] if content.title else []
    below = lines[len(above) :]
    sizes, text_height = _fit_text(
        lines, template, width - 2 * margin, height - 2 * margin - min_bar - 2 * gap
    )
    bar = min(template.dots(MAX_BAR_MM), height - 2 * margin - text_height - 2 * gap)
    # Centre the whole block vertically when the bars hit their maximum height.
    top = margin + (height - 2 * margin - text_height - 2 * gap - bar) // 2
    code_x = (width - shape.width * module) // 2
    texts, y = _stack(above, sizes[: len(above)], margin, top)
    code = CodeItem(template.symbology, content.barcode, code_x, y + gap, module, shape, bar)
    more, _ = _stack(below, sizes[len(above) :], margin, code.y + bar + gap, code)
    return Layout(template, width, height, code, tuple(texts + more))


def _matrix(content: LabelContent, template: LabelTemplate, shape: SymbolShape) -> Layout:
    width, height = template.width_dots, template.height_dots
    margin = template.dots(template.margin_mm)
    inner_w, inner_h = width - 2 * margin, height - 2 * margin
    # The code takes the full height but at most half the width; the rest is text.
    module = min(_max_module(template), inner_h // shape.height, inner_w // 2 // shape.width)
    if module < 1:
        raise _too_long(content, template)
    side_h = shape.height * module
    code = CodeItem(
        template.symbology,
        content.barcode,
        margin,
        margin + (inner_h - side_h) // 2,
        module,
        shape,
        side_h,
    )
    text_x = margin + code.width + template.dots(GAP_MM)
    lines = _lines(content, linear=False)
    sizes, text_height = _fit_text(lines, template, width - margin - text_x, inner_h)
    texts, _ = _stack(lines, sizes, text_x, margin + (inner_h - text_height) // 2)
    return Layout(template, width, height, code, tuple(texts))
