"""The one font used for measuring and drawing text, so all formats lay out alike.

DejaVu Sans Condensed (narrow, covers Norwegian letters, °, ≤, ×, superscripts) when the
system has it; otherwise Bitstream Vera, which ships with reportlab and so is always
installed with this project; Pillow's built-in font as a last resort.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

_SYSTEM_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),
)
_SYSTEM_FILES = {False: "DejaVuSansCondensed.ttf", True: "DejaVuSansCondensed-Bold.ttf"}
_REPORTLAB_FILES = {False: "Vera.ttf", True: "VeraBd.ttf"}

# Vertical metrics as fractions of the font size (em): the baseline sits ASCENT below
# the top of a line so that "Å" fits, and lines are LEADING apart.
ASCENT = 0.93
LEADING = 1.2

PilFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=2)
def font_path(bold: bool) -> str | None:
    for directory in _SYSTEM_DIRS:
        candidate = directory / _SYSTEM_FILES[bold]
        if candidate.is_file():
            return str(candidate)
    try:
        import reportlab

        candidate = Path(reportlab.__file__).parent / "fonts" / _REPORTLAB_FILES[bold]
    except ImportError:  # pragma: no cover - reportlab is a project dependency
        return None
    return str(candidate) if candidate.is_file() else None


@lru_cache(maxsize=512)
def pil_font(size: int, bold: bool) -> PilFont:
    """``size`` is the em size in pixels (= printer dots)."""
    path = font_path(bold)
    if path is None:
        return ImageFont.load_default(size=size)
    # BASIC layout: no shaping or kerning, the same advance widths reportlab uses.
    return ImageFont.truetype(path, size=size, layout_engine=ImageFont.Layout.BASIC)


@lru_cache(maxsize=8192)
def text_width(text: str, size: int, bold: bool) -> int:
    """Advance width of ``text`` in dots at em ``size``, rounded up."""
    return math.ceil(pil_font(size, bold).getlength(text))
