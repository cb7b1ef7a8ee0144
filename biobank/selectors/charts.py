"""Chart data: storage temperatures, box occupancy and a participant's crossover timeline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from biobank import visibility
from biobank.models import (
    DoseStatus,
    Participant,
    StorageUnit,
    TemperatureReading,
    Treatment,
)
from biobank.selectors.storage import boxes_with_occupancy


def temperature_series(
    *, storage_unit: StorageUnit, since: dt.datetime | None = None
) -> list[tuple[dt.datetime, float, bool]]:
    qs = TemperatureReading.objects.filter(storage_unit=storage_unit)
    if since is not None:
        qs = qs.filter(at__gte=since)
    return [
        (at, float(t), bool(out))
        for at, t, out in qs.order_by("at").values_list("at", "temperature_c", "out_of_range")
    ]


@dataclass
class BoxOccupancy:
    code: str
    name: str
    parent: str
    used: int
    capacity: int


def box_occupancy(*, storage_unit: StorageUnit) -> list[BoxOccupancy]:
    rows = boxes_with_occupancy(storage_unit=storage_unit).values_list(
        "code", "name", "parent__name", "used", "capacity"
    )
    return [
        BoxOccupancy(code=code, name=name, parent=parent or "", used=used, capacity=capacity)
        for code, name, parent, used, capacity in rows
    ]


@dataclass
class TimelinePoint:
    row: str
    at: dt.date
    label: str
    done: bool


def crossover_timeline(*, participant: Participant, user: Any) -> list[TimelinePoint]:
    """Visits, aspirations and doses of one participant; dose wording by the policy."""
    blinded = not visibility.can_see_allocation(user)
    points = []
    for v in participant.visits.select_related("visit_type").order_by("visit_type__order"):
        points.append(
            TimelinePoint("Visits", v.done_on or v.scheduled_on, v.visit_type.code, bool(v.done_on))
        )
    for a in participant.aspirates.select_related("visit__visit_type"):
        points.append(
            TimelinePoint(
                "Aspiration",
                timezone.localdate(a.collected_at),
                a.visit.visit_type.code,
                True,
            )
        )
    for d in participant.doses.active().select_related("visit__visit_type"):
        when = d.administered_at or d.ready_at or d.prepared_at
        # Blinded pages name no product at all (not even the blinded pack name).
        product = "blinded dose" if blinded else Treatment(d.treatment).label.split(" (")[0]
        points.append(
            TimelinePoint(
                "Dose",
                timezone.localdate(when),  # the lab's day, as the visits' dates are
                f"{d.visit.visit_type.code}: {product}",
                d.status == DoseStatus.ADMINISTERED,
            )
        )
    return points
