"""Reading labels back as a scanner would: the barcodes in PNG, PDF and SVG output."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pypdfium2 as pdfium
import zxingcpp
from PIL import Image, ImageDraw

SVG_NS = "{http://www.w3.org/2000/svg}"


def decode(image: Image.Image) -> list[str]:
    """The texts of the barcodes found in ``image``, sorted."""
    return sorted(result.text for result in zxingcpp.read_barcodes(image.convert("L")))


def png_codes(data: bytes) -> list[str]:
    return decode(Image.open(io.BytesIO(data)))


def pdf_pages(data: bytes, dpi: int = 300) -> list[Image.Image]:
    """Each page of a PDF, rasterised at ``dpi``."""
    return [page.render(scale=dpi / 72).to_pil() for page in pdfium.PdfDocument(data)]


def pdf_codes(data: bytes, dpi: int = 300) -> list[list[str]]:
    """The barcodes found on each page of a PDF."""
    return [decode(page) for page in pdf_pages(data, dpi)]


def svg_raster(svg: bytes) -> tuple[ET.Element, Image.Image]:
    """Parse the SVG and redraw its rectangles (the barcode modules) to decode them."""
    root = ET.fromstring(svg)
    _, _, width, height = (int(v) for v in root.get("viewBox", "").split())
    image = Image.new("1", (width, height), 1)
    draw = ImageDraw.Draw(image)
    for rect in root.iter(f"{SVG_NS}rect"):
        if rect.get("fill") == "#fff":
            continue
        x, y, w, h = (int(rect.get(a, "0")) for a in ("x", "y", "width", "height"))
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=0)
    return root, image


def svg_codes(svg: bytes) -> list[str]:
    return decode(svg_raster(svg)[1])
