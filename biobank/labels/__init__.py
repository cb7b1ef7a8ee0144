"""Label rendering for the biobank: pure functions, no models, no database.

Build a ``LabelContent`` (identifier + text), pick a template with ``get_template`` and
call ``render`` (or one of the ``render_*`` functions). Nothing here knows about trial
arms, so a dose label can only differ between MSC and placebo if its content does.
"""

from biobank.labels.barcodes import ModuleMatrix, module_matrix
from biobank.labels.content import LabelContent, clean_text
from biobank.labels.errors import LabelError
from biobank.labels.render import (
    FORMATS,
    content_type_for,
    render,
    render_pdf,
    render_png,
    render_svg,
    render_zpl,
    zpl_escape,
)
from biobank.labels.templates import ALLOWED_DPI, TEMPLATES, LabelTemplate, get_template

__all__ = [
    "ALLOWED_DPI",
    "FORMATS",
    "TEMPLATES",
    "LabelContent",
    "LabelError",
    "LabelTemplate",
    "ModuleMatrix",
    "clean_text",
    "content_type_for",
    "get_template",
    "module_matrix",
    "render",
    "render_pdf",
    "render_png",
    "render_svg",
    "render_zpl",
    "zpl_escape",
]
