"""Label stock: the physical size, printer resolution and barcode symbology of each label.

Pure data, no Django: the same template drives the ZPL, PNG, SVG and PDF renderers, and
every size in the renderers is derived from ``width_mm``/``height_mm`` at ``dpi``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

from biobank.labels.errors import LabelError
from biobank.numbers import ascii_int

Symbology = Literal["code128", "qr", "datamatrix"]
SYMBOLOGIES: tuple[str, ...] = get_args(Symbology)

# Zebra-compatible print heads: 8, 12 and 24 dots/mm.
ALLOWED_DPI: tuple[int, ...] = (203, 300, 600)
DEFAULT_DPI = 300

MM_PER_INCH = 25.4


def _check_dpi(dpi: object) -> None:
    # type() rather than isinstance(): True and 300.0 are not printer resolutions.
    if type(dpi) is not int or dpi not in ALLOWED_DPI:
        raise LabelError(f"dpi must be one of {', '.join(map(str, ALLOWED_DPI))} (got {dpi!r}).")


@dataclass(frozen=True)
class LabelTemplate:
    """One kind of label stock. Sizes are in millimetres; ``dpi`` is the printer's."""

    name: str
    title: str
    width_mm: float
    height_mm: float
    dpi: int
    symbology: Symbology
    # Unprinted border: die-cut labels shift by up to about a millimetre in the printer.
    margin_mm: float = 1.5

    def __post_init__(self) -> None:
        if not self.name:
            raise LabelError("Label template name must not be empty.")
        if self.symbology not in SYMBOLOGIES:
            raise LabelError(
                f"symbology must be one of {', '.join(SYMBOLOGIES)} (got {self.symbology!r})."
            )
        _check_dpi(self.dpi)
        for field in ("width_mm", "height_mm"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or not 5 <= value <= 300:
                raise LabelError(f"{field} must be between 5 and 300 mm (got {value!r}).")
        if not 0 <= self.margin_mm < min(self.width_mm, self.height_mm) / 4:
            raise LabelError(
                f"margin_mm is too large for a {self.width_mm}x{self.height_mm} label."
            )

    def dots(self, mm: float) -> int:
        """A length in mm as a whole number of printer dots at this template's dpi."""
        return round(mm * self.dpi / MM_PER_INCH)

    @property
    def width_dots(self) -> int:
        return self.dots(self.width_mm)

    @property
    def height_dots(self) -> int:
        return self.dots(self.height_mm)


def _t(
    name: str,
    title: str,
    width_mm: float,
    height_mm: float,
    symbology: Symbology,
    margin_mm: float = 1.5,
) -> LabelTemplate:
    return LabelTemplate(name, title, width_mm, height_mm, DEFAULT_DPI, symbology, margin_mm)


TEMPLATES: dict[str, LabelTemplate] = {
    t.name: t
    for t in (
        _t("aspirate", "Bone-marrow aspirate tube/bag", 50, 25, "code128"),
        _t("cryobag", "Cryobag", 70, 30, "code128"),
        # Cryovials are too small for a linear code that scanners can read: 2D only.
        _t("cryovial", "Cryovial", 38, 13, "datamatrix", margin_mm=1.0),
        _t("box", "Storage box", 50, 25, "qr"),
        _t("storage_unit", "Storage unit (tank, freezer)", 100, 50, "code128"),
        _t("participant", "Participant", 50, 25, "code128"),
        _t("shipper", "Shipper / transport box (2D)", 100, 50, "qr"),
        # Blinded: the label only shows what LabelContent carries, and the caller builds
        # the same content for MSC and placebo (DOMAIN.md, "Blinding").
        _t("dose", "Dose syringe (blinded)", 70, 40, "code128"),
    )
}


def get_template(name: str, dpi: int | str | None = None) -> LabelTemplate:
    """The template called ``name``, at ``dpi`` if given (203, 300 or 600)."""
    template = TEMPLATES.get(name) if isinstance(name, str) else None
    if template is None:
        raise LabelError(
            f"Unknown label template {name!r}; known templates: {', '.join(sorted(TEMPLATES))}."
        )
    if dpi is None:
        return template
    # A query-string value such as "300" is accepted; anything else must be an allowed int.
    if isinstance(dpi, str) and (number := ascii_int(dpi)) is not None:
        dpi = number
    _check_dpi(dpi)
    return replace(template, dpi=dpi)
