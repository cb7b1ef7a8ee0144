"""Whole numbers as people type them: ASCII digits only.

``str.isdigit()`` is true for "²", which ``int()`` refuses (a 500), and for "٣" or "３", which
``int()`` reads as 3. Code that reads a number out of text itself (box positions, identifiers,
printer ids, a label's dpi, date parts in a query string, list files) asks here, so a code or
a position has one spelling. Form and serializer fields parse their own values: they refuse
"²" and read a full-width "３" as the 3 it shows.
"""

from __future__ import annotations


def ascii_int(text: str) -> int | None:
    """The number ``text`` spells in ASCII digits (surrounding spaces allowed), else None."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (4,300): no number anyone typed
        return None
