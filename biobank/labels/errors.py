"""The one exception type of the label library."""

from __future__ import annotations


class LabelError(ValueError):
    """A label cannot be made as asked: bad template, dpi, format or content.

    A ``ValueError`` so callers that validate input can catch it with the rest; the
    message names the offending field so it can be shown to a person as is.
    """
