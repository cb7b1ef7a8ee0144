"""Chart inputs for a storage unit or participant, as the visibility policy lets a user see them.

Shared by the API (the image) and the admin pages (the <img> with its alt text), so the alt
text on a page always describes the image it shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from biobank.models import Participant, StorageUnit
from biobank.selectors.charts import box_occupancy, crossover_timeline, temperature_series

from . import charts


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
            "title": f"Temperature log — {unit.name} ({unit.code})",
            "points": temperature_series(storage_unit=unit, since=since),
            "low": float(unit.min_temperature_c),
            "high": float(unit.max_temperature_c),
        },
    )


def occupancy_spec(*, unit: StorageUnit) -> ChartSpec:
    boxes = [(b.parent, b.name, b.used, b.capacity) for b in box_occupancy(storage_unit=unit)]
    return ChartSpec(
        "occupancy", {"title": f"Occupancy — {unit.name} ({unit.code})", "boxes": boxes}
    )


def crossover_spec(*, participant: Participant, user: Any) -> ChartSpec:
    points = [
        (p.row, p.at, p.label, p.done)
        for p in crossover_timeline(participant=participant, user=user)
    ]
    return ChartSpec(
        "timeline",
        {"title": f"Crossover timeline — {participant.pseudonym}", "points": points},
    )
