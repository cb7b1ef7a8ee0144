"""Test data built through the public services, so tests start from states the app can reach."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from biobank.models import (
    Aspirate,
    BoxType,
    Container,
    Participant,
    Processing,
    ProductUnit,
    Site,
    StorageUnit,
    Study,
)
from biobank.services.aspirates import aspirate_collect, aspirate_receive
from biobank.services.processing import processing_harvest, processing_start
from biobank.services.seeding import trial_definition_load
from biobank.services.storage import container_create, storage_unit_create, unit_place
from biobank.services.trial import participant_enroll
from biobank.services.units import UnitSpec, freezing_run_record, units_create

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
_counter = itertools.count(1)


def load_trial() -> Study:
    trial_definition_load(data=json.loads((SEEDS / "trial.json").read_text()))
    return Study.objects.get(code="NCT04749667")


def make_user(username: str | None = None, *, unblinded: bool = True, **extra: Any) -> Any:
    User = get_user_model()
    user = User.objects.create_user(
        username=username or f"tech{next(_counter)}",
        password="correct-horse-battery",
        is_staff=True,
        **extra,
    )
    perms = Permission.objects.filter(content_type__app_label="biobank")
    if not unblinded:
        perms = perms.exclude(codename="view_allocation")
    user.user_permissions.set(perms)
    return User.objects.get(pk=user.pk)  # fresh object: no stale permission cache


def make_participant(*, actor: Any, site_code: str = "HUS", arm: str = "A") -> Participant:
    study = Study.objects.get(code="NCT04749667")
    return participant_enroll(
        study=study,
        site=Site.objects.get(code=site_code),
        pseudonym=f"TEST-{site_code}-{next(_counter):03d}",
        enrolled_on=dt.date(2025, 3, 1),
        arm=study.arms.get(code=arm),
        weight_kg=Decimal("70.0"),
        actor=actor,
    )


def past(days: float = 0, hours: float = 0) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=days, hours=hours)


def make_aspirate(
    *, actor: Any, participant: Participant | None = None, visit: str = "BASELINE"
) -> Aspirate:
    participant = participant or make_participant(actor=actor)
    return aspirate_collect(
        visit=participant.visits.get(visit_type__code=visit),
        volume_ml=Decimal("55.0"),
        anticoagulant="heparin",
        collected_at=past(days=30),
        collected_by="Dr. Test",
        actor=actor,
    )


def make_accepted_aspirate(*, actor: Any, **kwargs: Any) -> Aspirate:
    aspirate = make_aspirate(actor=actor, **kwargs)
    aspirate_receive(
        aspirate=aspirate,
        decision="accept",
        actor=actor,
        temperature_c=Decimal("20.0"),
        condition="intact",
        received_at=past(days=29, hours=20),
    )
    return aspirate


def make_processing(*, actor: Any, harvested: bool = False, **kwargs: Any) -> Processing:
    aspirate = make_accepted_aspirate(actor=actor, **kwargs)
    processing = processing_start(aspirate=aspirate, actor=actor, started_at=past(days=29))
    if harvested:
        processing_harvest(
            processing=processing,
            cell_count=120_000_000,
            viability_pct=Decimal("92.0"),
            passage=2,
            actor=actor,
            harvested_at=past(days=8),
        )
    return processing


def make_units(
    *, actor: Any, count: int = 2, frozen: bool = True, stored: bool = False, **kwargs: Any
) -> list[ProductUnit]:
    processing = make_processing(actor=actor, harvested=True, **kwargs)
    units = units_create(
        processing=processing,
        specs=[
            UnitSpec(
                container_type="cryobag",
                cell_number=min(25_000_000, 120_000_000 // count),
                volume_ml=Decimal("10"),
            )
            for _ in range(count)
        ],
        actor=actor,
        created_at=past(days=8),
    )
    if frozen:
        freezing_run_record(
            processing=processing,
            units=units,
            started_at=past(days=7, hours=3),
            finished_at=past(days=7, hours=1),
            actor=actor,
        )
    if stored:
        box = make_box(actor=actor)
        for unit in units:
            unit_place(unit=unit, container=box, actor=actor, at=past(days=7))
    for unit in units:
        unit.refresh_from_db()
    return units


def make_storage_unit(
    *, actor: Any, name: str | None = None, site_code: str = "HUS"
) -> StorageUnit:
    return storage_unit_create(
        site=Site.objects.get(code=site_code),
        name=name or f"LN2 tank {next(_counter)}",
        kind="ln2_tank",
        min_temperature_c=Decimal("-196"),
        max_temperature_c=Decimal("-150"),
        actor=actor,
    )


def make_box_type(
    *, rows: int = 9, columns: int = 9, accepts: str = "any", **extra: Any
) -> BoxType:
    box_type, _ = BoxType.objects.get_or_create(
        name=f"{rows}x{columns} {accepts} {extra}",
        defaults={"rows": rows, "columns": columns, "accepts": accepts, **extra},
    )
    return box_type


def make_box(
    *,
    actor: Any,
    storage_unit: StorageUnit | None = None,
    parent: Container | None = None,
    rows: int = 9,
    columns: int = 9,
    accepts: str = "any",
    name: str | None = None,
) -> Container:
    if parent is None:
        storage_unit = storage_unit or make_storage_unit(actor=actor)
        parent = container_create(
            name=f"Rack {next(_counter)}", kind="rack", storage_unit=storage_unit, actor=actor
        )
    return container_create(
        name=name or f"Box {next(_counter)}",
        kind="box",
        parent=parent,
        box_type=make_box_type(rows=rows, columns=columns, accepts=accepts),
        actor=actor,
    )
