"""Storing a 96-unit box: the set-up (a fresh box and frozen units, not timed) and the
in-process figures of the services (``units_store``, ``units_move``, rack-scan import)."""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

from bench.dataset import PLATE_BOX_TYPE
from bench.timing import ms

STORE_UNITS = 96


def fresh_frozen_units(count: int) -> list[str]:
    """``count`` new frozen, unplaced units (codes from the application's counter, rows in
    bulk, not timed): what a freezing run leaves for the lab to store."""
    from django.db import transaction
    from django.db.models import F

    from biobank.identifiers import Kind, format_id
    from biobank.models import FreezingRun, IdSequence, ProductUnit

    run = FreezingRun.objects.select_related("processing").order_by("pk").first()
    with transaction.atomic():
        IdSequence.objects.filter(prefix=Kind.UNIT.value).update(
            last_number=F("last_number") + count
        )
        last = IdSequence.objects.get(prefix=Kind.UNIT.value).last_number
    codes = [format_id(Kind.UNIT, n) for n in range(last - count + 1, last + 1)]
    ProductUnit.objects.bulk_create(
        (
            ProductUnit(
                code=code,
                processing=run.processing,
                aspirate_id=run.processing.aspirate_id,
                participant_id=run.processing.participant_id,
                container_type="cryovial",
                cell_number=1_000_000,
                volume_ml=1,
                freezing_run=run,
                status="frozen",
                created_at=run.finished_at,
            )
            for code in codes
        ),
        batch_size=5000,
    )
    return codes


def _store_setup(count: int) -> tuple[Any, list[Any], Any]:
    """An empty 8×12 box in an intake tank and ``count`` fresh frozen units (not timed)."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from biobank.models import (
        BoxType,
        Container,
        ProductUnit,
        Site,
        StorageUnit,
    )
    from biobank.services.containers import container_create, storage_unit_create

    user = get_user_model().objects.get(username="bench")
    lab = Site.objects.get(is_lab=True)
    tank = StorageUnit.objects.filter(site=lab, name="Bench intake tank").first()
    if tank is None:
        tank = storage_unit_create(
            site=lab,
            name="Bench intake tank",
            kind="ln2_tank",
            min_temperature_c=Decimal(-196),
            max_temperature_c=Decimal(-150),
            actor=user,
        )
    rack = Container.objects.filter(storage_unit=tank, parent=None, name="Intake rack").first()
    if rack is None:
        rack = container_create(name="Intake rack", kind="rack", storage_unit=tank, actor=user)
    box = container_create(
        name=f"Intake box {time.strftime('%Y%m%d-%H%M%S')}-{random.randrange(10**6):06d}",
        kind="box",
        parent=rack,
        box_type=BoxType.objects.get(name=PLATE_BOX_TYPE),
        actor=user,
    )
    codes = fresh_frozen_units(count)
    units = list(ProductUnit.objects.filter(code__in=codes).order_by("code"))
    return box, units, user


def box_positions(box: Any) -> list[str]:
    """Every position label of a box, row by row (A1, A2, … H12)."""
    box_type = box.box_type
    return [box_type.position_label(r, c) for r, c in box_type.positions()]


def store_route(code: str) -> str | None:
    """The bulk-store API route for a box, if the project has one (looked up, not assumed)."""
    from django.urls import NoReverseMatch, reverse

    for name in ("containers-store", "boxes-store"):
        with contextlib.suppress(NoReverseMatch):
            return reverse(name, kwargs={"code": code})
    return None


def _store_body(box: Any, units: list[Any]) -> dict[str, Any]:
    positions = box_positions(box)
    return {
        "placements": [
            {"unit": u.code, "position": p} for u, p in zip(units, positions, strict=False)
        ]
    }


def store_box_service() -> dict[str, Any]:
    """Store 96 frozen units into an empty 8×12 box: one set-based ``units_store`` call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.services.storage import StoreItem, units_store

    box, units, user = _store_setup(STORE_UNITS)
    positions = box_positions(box)
    items = [StoreItem(u, p) for u, p in zip(units, positions, strict=False)]
    with CaptureQueriesContext(connection) as ctx:
        start, cpu = time.perf_counter(), time.process_time()
        units_store(container=box, items=items, actor=user)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    stored = box.placements.open().count()
    return {
        "mode": "services only: units_store of 96 units",
        "box": box.code,
        "units": len(units),
        "stored": stored,
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "cpu_ms": ms(cpu),
        "queries": len(ctx.captured_queries),
    }


def move_box_service() -> dict[str, Any]:
    """Move 96 stored units from one 8×12 box into another: one ``units_move`` call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.services.storage import MoveItem, StoreItem, units_move, units_store

    box, units, user = _store_setup(STORE_UNITS)
    units_store(container=box, items=[StoreItem(u) for u in units], actor=user)
    other, _, _ = _store_setup(0)
    items = [MoveItem(u, other) for u in units]
    with CaptureQueriesContext(connection) as ctx:
        start, cpu = time.perf_counter(), time.process_time()
        units_move(items=items, actor=user, reason="bench")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "mode": "services only: units_move of 96 units to another box",
        "box": other.code,
        "units": len(units),
        "stored": other.placements.open().count(),
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "cpu_ms": ms(cpu),
        "queries": len(ctx.captured_queries),
    }


def store_box_rack_scan() -> dict[str, Any]:
    """The same 96 units stored by a rack-scanner import: ``rack_scan_apply`` of a CSV
    (what the admin's rack-import page applies in one request), one transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.rack_csv import parse_rack_csv
    from biobank.services.racks import rack_scan_apply

    box, units, user = _store_setup(STORE_UNITS)
    positions = box_positions(box)
    csv = "".join(f"{p},{u.code}\n" for p, u in zip(positions, units, strict=False)).encode()
    with CaptureQueriesContext(connection) as ctx:
        start, cpu = time.perf_counter(), time.process_time()
        read = parse_rack_csv(csv, rows=box.box_type.rows, cols=box.box_type.columns)
        counts = rack_scan_apply(box=box, read=read, actor=user)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "mode": "rack-scan import (rack_scan_apply)",
        "box": box.code,
        "units": len(units),
        "stored": counts["stored"],
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "cpu_ms": ms(cpu),
        "queries": len(ctx.captured_queries),
    }
