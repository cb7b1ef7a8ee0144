"""Chart inputs for a storage unit or participant, as the visibility policy lets a user see them.

Shared by the API (the image) and the admin pages (the <img> with its alt text), so the alt
text on a page always describes the image it shows.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

from biobank.models import Participant, StorageUnit
from biobank.selectors.charts import box_occupancy, crossover_timeline, temperature_series

from . import charts


def _printable(name: str) -> str:
    """A typed name as a chart may show it: a control character (a newline, a vertical tab)
    is no glyph, and makes the SVG's XML invalid; each becomes a space."""
    return " ".join("".join(" " if unicodedata.category(c)[0] == "C" else c for c in name).split())


@dataclass(frozen=True)
class ChartSpec:
    """What to draw: the chart function's name and its keyword arguments (without ``fmt``)."""

    kind: str
    args: dict[str, Any]

    def render(self, fmt: str) -> charts.Chart:
        return getattr(charts, f"{self.kind}_chart")(**self.args, fmt=fmt)

    @property
    def alt(self) -> str:
        return getattr(charts, f"{self.kind}_alt")(**self.args)


def temperature_spec(*, unit: StorageUnit, since: dt.datetime | None = None) -> ChartSpec:
    return ChartSpec(
        "temperature",
        {
            "title": f"Temperature log — {_printable(unit.name)} ({unit.code})",
            "points": temperature_series(storage_unit=unit, since=since),
            "low": float(unit.min_temperature_c),
            "high": float(unit.max_temperature_c),
        },
    )


def occupancy_spec(*, unit: StorageUnit) -> ChartSpec:
    boxes = [
        (_printable(b.parent), _printable(b.name), b.used, b.capacity)
        for b in box_occupancy(storage_unit=unit)
    ]
    return ChartSpec(
        "occupancy",
        {"title": f"Occupancy — {_printable(unit.name)} ({unit.code})", "boxes": boxes},
    )


def crossover_spec(*, participant: Participant, user: Any) -> ChartSpec:
    points = [
        (p.row, p.at, p.label, p.done)
        for p in crossover_timeline(participant=participant, user=user)
    ]
    return ChartSpec(
        "timeline",
        {"title": f"Crossover timeline — {_printable(participant.pseudonym)}", "points": points},
    )
