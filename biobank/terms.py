"""Words and numbers as people read them, the same on every surface (pure: no database, so
labels, models and messages all use these)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_FLOOR, Decimal

from django.utils import timezone

MILLION = Decimal(1_000_000)

# The product name on anything a blinded person sees (EU CTR 536/2014 Annex VI).
BLINDED_PRODUCT = "MSC or 0.9 % NaCl"


def millions(cells: int | Decimal) -> str:
    """Cells as a person reads them: 72500000 -> '72.5×10⁶', 65250000 -> '65.25×10⁶'.

    Rounded down, never up: a label or a message must not promise cells that are not there.
    """
    text = f"{(Decimal(cells) / MILLION).quantize(Decimal('0.01'), rounding=ROUND_FLOOR):.2f}"
    return f"{text[:-1] if text.endswith('0') else text}×10⁶"


def local_minute(at: dt.datetime) -> str:
    """A time as people read it: in the site's zone (settings.TIME_ZONE), to the minute. The
    database holds UTC; formatting a stored value directly would print UTC unlabelled."""
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M}"


def local_second(at: dt.datetime) -> str:
    """As ``local_minute``, to the second: where two times a minute apart are compared (a
    time-order refusal, a field's old and new value in its history)."""
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S}"
