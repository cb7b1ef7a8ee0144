"""Barcode module matrices, quiet zones included, so renderers can draw whole dots.

Library image writers scale a symbol to a requested size and blur or drop modules when
the scale is not a whole number of printer dots; here each module is one cell of a
matrix and the renderer picks an integer number of dots per module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import qrcode
import zxingcpp
from barcode.codex import Code128
from qrcode.constants import ERROR_CORRECT_M

from biobank.labels.errors import LabelError
from biobank.labels.templates import Symbology

# Minimum quiet zones in modules: Code 128 10X (ISO/IEC 15417), QR 4X (ISO/IEC 18004);
# Data Matrix needs 1X (ISO/IEC 16022), 2X leaves room for print registration.
QUIET_ZONE: dict[str, int] = {"code128": 10, "qr": 4, "datamatrix": 2}

_DARK_RUN = re.compile("1+")


@dataclass(frozen=True)
class ModuleMatrix:
    """Rows of '1' (dark) / '0' (light) modules. A linear code has one row."""

    symbology: Symbology
    data: str
    rows: tuple[str, ...]
    quiet_zone: int

    @property
    def width(self) -> int:
        return len(self.rows[0])

    @property
    def height(self) -> int:
        return len(self.rows)

    @property
    def is_linear(self) -> bool:
        return self.symbology == "code128"

    def runs(self) -> list[tuple[int, int, int]]:
        """Dark runs as (row, first column, length): one rectangle per run, not per module."""
        return [
            (y, m.start(), m.end() - m.start())
            for y, row in enumerate(self.rows)
            for m in _DARK_RUN.finditer(row)
        ]


@dataclass(frozen=True)
class SymbolShape:
    """Size of a symbol in modules (quiet zone included), without building its matrix."""

    width: int
    height: int
    quiet_zone: int


def _pad(rows: list[str], quiet_zone: int, linear: bool) -> tuple[str, ...]:
    side = "0" * quiet_zone
    padded = [side + row + side for row in rows]
    if linear:
        return tuple(padded)
    blank = "0" * len(padded[0])
    return (blank,) * quiet_zone + tuple(padded) + (blank,) * quiet_zone


@lru_cache(maxsize=1024)
def code128_matrix(data: str) -> ModuleMatrix:
    try:
        # python-barcode only supplies the bar/space module string (start..stop).
        pattern = Code128(data).build()[0]
    except Exception as exc:  # the library raises several types for bad input
        raise LabelError(f"barcode {data!r} cannot be encoded as Code 128: {exc}") from exc
    qz = QUIET_ZONE["code128"]
    return ModuleMatrix("code128", data, _pad([pattern], qz, linear=True), qz)


def _qr(data: str) -> qrcode.QRCode:
    # border=0: the quiet zone is added by _pad like for the other symbologies.
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0, box_size=1)
    qr.add_data(data)
    return qr


@lru_cache(maxsize=1024)
def qr_matrix(data: str) -> ModuleMatrix:
    qr = _qr(data)
    qr.make(fit=True)
    rows = ["".join("1" if dark else "0" for dark in row) for row in qr.get_matrix()]
    qz = QUIET_ZONE["qr"]
    return ModuleMatrix("qr", data, _pad(rows, qz, linear=False), qz)


@lru_cache(maxsize=1024)
def datamatrix_matrix(data: str) -> ModuleMatrix:
    try:
        symbol = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.DataMatrix)
    except Exception as exc:
        raise LabelError(f"barcode {data!r} cannot be encoded as Data Matrix: {exc}") from exc
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape
    pixels = memoryview(image).tobytes()  # 8-bit grey, 0 = dark
    rows = [
        "".join("1" if pixels[y * width + x] < 128 else "0" for x in range(width))
        for y in range(height)
    ]
    qz = QUIET_ZONE["datamatrix"]
    return ModuleMatrix("datamatrix", data, _pad(rows, qz, linear=False), qz)


_BUILDERS = {"code128": code128_matrix, "qr": qr_matrix, "datamatrix": datamatrix_matrix}


def module_matrix(data: str, symbology: Symbology) -> ModuleMatrix:
    """The module matrix of ``data`` in ``symbology``, quiet zone included."""
    try:
        builder = _BUILDERS[symbology]
    except KeyError:
        raise LabelError(f"Unknown symbology {symbology!r}.") from None
    return builder(data)


@lru_cache(maxsize=4096)
def symbol_shape(data: str, symbology: Symbology) -> SymbolShape:
    """Symbol size for layout. QR uses the version fit only: building the matrix picks
    the best of 8 masks, which is ~50x slower and not needed when the printer draws it.
    """
    if symbology == "qr":
        version = _qr(data).best_fit()
        qz = QUIET_ZONE["qr"]
        side = 17 + 4 * version + 2 * qz
        return SymbolShape(side, side, qz)
    matrix = module_matrix(data, symbology)
    return SymbolShape(matrix.width, matrix.height, matrix.quiet_zone)
