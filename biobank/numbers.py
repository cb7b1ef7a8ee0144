"""Whole numbers as people type them: ASCII digits only.

``str.isdigit()`` is true for "²", which ``int()`` refuses (a 500), and for "٣" or "３", which
``int()`` reads as 3 (a silent reinterpretation). Every input that takes a number asks here.
"""

from __future__ import annotations


def ascii_int(text: str) -> int | None:
    """The number ``text`` spells in ASCII digits (surrounding spaces allowed), else None."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None
