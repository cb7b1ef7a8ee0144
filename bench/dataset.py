"""A benchmark data set of N stored units, built in bulk on SQLite or PostgreSQL.

The object graph is the minimal valid one for a stored unit: participant → visits →
aspirate (processed) → processing (cryopreserved) → freezing run → unit (stored) → open
placement in a 9×9 box in a rack in an LN2 tank, and one ``store`` custody event per unit.
Every row respects the models' check and unique constraints; identifiers come from
``biobank.identifiers.format_id`` with numbers assigned here, and the ``IdSequence``
counters are set past them afterwards, so the application's own allocation carries on.
Simple-history rows are not written for the bulk rows (acceptable for a benchmark).

Storage layout: tank 1 always has exactly ``SUGGEST_TANK_BOXES`` boxes (100 racks of 10),
filled first, with 0–6 free positions scattered in each box (the free-position
suggestion figure runs on it); the other units fill tanks of up to 1,000 full boxes.

Use from a fresh process: ``Target.recreate()`` then ``django_setup(target)`` then
``build(target)``. Django settings are read once per process, so one process per database.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bench.rows import RowInserter, _chunks
from bench.target import REPO, Target

BOX_ROWS = BOX_COLUMNS = 9
BOX_CAPACITY = BOX_ROWS * BOX_COLUMNS
BOXES_PER_RACK = 10
BOXES_PER_TANK = 1000
SUGGEST_TANK_BOXES = 1000
MAX_FREE_PER_BOX = 6  # tank 1: box i has i % 7 free positions
UNITS_PER_PROCESSING = 10
BENCH_USER = "bench"
BENCH_PASSWORD = "bench-biobank"  # local benchmark databases only
VIAL_BOX_TYPE = "Bench vial box 9×9"
PLATE_BOX_TYPE = "Bench box 8×12"
OSLO = ZoneInfo("Europe/Oslo")
START = dt.date(2014, 1, 6)
SPAN_DAYS = 3650  # enrolments spread over ten years


def _fast_load(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Bulk-load settings for the build's own connection to the bench database only."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
    elif connection.vendor == "sqlite":  # WAL persists in the file; the rest is per connection
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB
            cursor.execute("PRAGMA temp_store=MEMORY")


# --- the storage plan --------------------------------------------------------------------


@dataclass
class BoxPlan:
    tank: int  # 0-based
    index_in_tank: int
    slots: list[int]  # occupied position indices (0-based, row by row)

    @property
    def rack(self) -> int:
        return self.index_in_tank // BOXES_PER_RACK

    @property
    def name(self) -> str:
        return f"Box {self.index_in_tank % BOXES_PER_RACK + 1:02d}"


def storage_plan(units: int) -> list[BoxPlan]:
    """Which box and position each unit goes to, in unit order."""
    boxes: list[BoxPlan] = []
    remaining = units
    everything = list(range(BOX_CAPACITY))
    for i in range(SUGGEST_TANK_BOXES):
        free = set(random.Random(i).sample(everything, i % (MAX_FREE_PER_BOX + 1)))
        slots = [s for s in everything if s not in free][: max(remaining, 0)]
        boxes.append(BoxPlan(0, i, slots))
        remaining -= len(slots)
    tank = 1
    while remaining > 0:
        for i in range(BOXES_PER_TANK):
            if remaining <= 0:
                break
            take = min(BOX_CAPACITY, remaining)
            boxes.append(BoxPlan(tank, i, everything[:take]))
            remaining -= take
        tank += 1
    return boxes


# --- the builder -------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxRow:
    id: int
    code: str
    path: str
    site_id: int


class Builder:
    """Creates the object graph in bulk with explicit primary keys (fresh database)."""

    def __init__(self, units: int, *, progress: bool = True) -> None:
        from django.contrib.auth import get_user_model

        from biobank.models import Arm, BoxType, Site, Study, VisitType

        self.n = units
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.study = Study.objects.get()
        sites = list(Site.objects.filter(study=self.study).order_by("code"))
        self.lab = next(s for s in sites if s.is_lab)
        self.sites = [self.lab, *(s for s in sites if s.pk != self.lab.pk)]
        self.arms = list(Arm.objects.filter(study=self.study).order_by("code"))
        self.visit_types = list(VisitType.objects.filter(study=self.study).order_by("order"))
        self.aspiration_types = [vt for vt in self.visit_types if vt.has_aspiration]
        self.n_processings = math.ceil(units / UNITS_PER_PROCESSING)
        self.n_participants = math.ceil(self.n_processings / len(self.aspiration_types))
        user_model = get_user_model()
        self.user = user_model.objects.filter(username=BENCH_USER).first()
        if self.user is None:
            self.user = user_model.objects.create_superuser(
                BENCH_USER, "bench@example.invalid", BENCH_PASSWORD
            )
        self.box_type, _ = BoxType.objects.get_or_create(
            name=VIAL_BOX_TYPE,
            defaults={"rows": BOX_ROWS, "columns": BOX_COLUMNS, "accepts": "any"},
        )
        BoxType.objects.get_or_create(
            name=PLATE_BOX_TYPE, defaults={"rows": 8, "columns": 12, "accepts": "any"}
        )
        self.labels = [
            self.box_type.position_label(s // BOX_COLUMNS + 1, s % BOX_COLUMNS + 1)
            for s in range(BOX_CAPACITY)
        ]
        self.max_numbers: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.visit_offsets = {vt.pk: round(vt.month * 30.44) for vt in self.visit_types}

    # -- helpers --

    def _bar(self, total: int, desc: str) -> Any:
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=f"{desc:<13}",
            unit=" rows",
            unit_scale=True,
            disable=not self.progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def _stage(self, name: str, total: int, make: Any, model: Any) -> None:
        """Insert ``make(i)`` for i in range(total), 10k rows per transaction."""
        from django.db import transaction

        start = time.perf_counter()
        insert = RowInserter(model)
        with self._bar(total, name) as bar:
            for chunk in _chunks(total):
                rows = [make(i) for i in chunk]
                with transaction.atomic():
                    insert(rows)
                bar.update(len(rows))
        self.timings[name] = time.perf_counter() - start
        self.counts[model._meta.label] = self.counts.get(model._meta.label, 0) + total

    def enrolled_on(self, p: int) -> dt.date:  # p: 0-based participant index
        return START + dt.timedelta(days=p * SPAN_DAYS // max(self.n_participants, 1))

    def collected_at(self, a: int) -> dt.datetime:  # a: 0-based aspirate index
        p, k = divmod(a, len(self.aspiration_types))
        vt = self.aspiration_types[k]
        day = self.enrolled_on(p) + dt.timedelta(days=self.visit_offsets[vt.pk])
        return dt.datetime.combine(day, dt.time(8, 30), tzinfo=OSLO)

    def site_id(self, p: int) -> int:
        return self.sites[p % len(self.sites)].pk

    # -- stages --

    def run(self) -> dict[str, int]:
        self.participants()
        self.visits()
        self.aspirates()
        self.processings()
        self.freezing_runs()
        self.storage()
        self.units()
        return self.finish()

    def participants(self) -> None:
        from biobank.identifiers import Kind, format_id
        from biobank.models import Participant

        def make(p: int) -> dict[str, Any]:
            site = self.sites[p % len(self.sites)]
            return {
                "id": p + 1,
                "code": format_id(Kind.PARTICIPANT, p + 1),
                "pseudonym": f"SMART-{site.code}-{p + 1:07d}",
                "study_id": self.study.pk,
                "site_id": site.pk,
                "arm_id": self.arms[p % len(self.arms)].pk,
                "enrolled_on": self.enrolled_on(p),
                "weight_kg": Decimal(60 + p % 40),
            }

        self._stage("participants", self.n_participants, make, Participant)
        self.max_numbers["PT"] = self.n_participants

    def visits(self) -> None:
        from biobank.models import Visit

        per = len(self.visit_types)

        def make(v: int) -> dict[str, Any]:
            p, k = divmod(v, per)
            vt = self.visit_types[k]
            return {
                "id": v + 1,
                "participant_id": p + 1,
                "visit_type_id": vt.pk,
                "scheduled_on": self.enrolled_on(p) + dt.timedelta(days=self.visit_offsets[vt.pk]),
            }

        self._stage("visits", self.n_participants * per, make, Visit)

    def _visit_id(self, a: int) -> int:
        p, k = divmod(a, len(self.aspiration_types))
        return p * len(self.visit_types) + self.visit_types.index(self.aspiration_types[k]) + 1

    def aspirates(self) -> None:
        from biobank.identifiers import Kind, format_id
        from biobank.models import Aspirate

        per = len(self.aspiration_types)
        user = self.user.pk

        def make(a: int) -> dict[str, Any]:
            p = a // per
            at = self.collected_at(a)
            return {
                "id": a + 1,
                "code": format_id(Kind.ASPIRATE, a + 1),
                "participant_id": p + 1,
                "visit_id": self._visit_id(a),
                "site_id": self.site_id(p),
                "status": "processed",
                "volume_ml": 60,
                "anticoagulant": "heparin",
                "collected_at": at,
                "collected_by": "Dr. Bench Collector",
                "recorded_by_id": user,
                "received_at": at + dt.timedelta(hours=6),
                "received_by_id": user,
                "transport_temperature_c": Decimal("20.5"),
                "condition": "intact",
            }

        self._stage("aspirates", self.n_processings, make, Aspirate)
        self.max_numbers["AS"] = self.n_processings

    def processings(self) -> None:
        from biobank.identifiers import Kind, format_id
        from biobank.models import Processing

        per = len(self.aspiration_types)
        user = self.user.pk

        def make(a: int) -> dict[str, Any]:
            at = self.collected_at(a)
            return {
                "id": a + 1,
                "code": format_id(Kind.PROCESSING, a + 1),
                "aspirate_id": a + 1,
                "participant_id": a // per + 1,
                "status": "cryopreserved",
                "started_at": at + dt.timedelta(hours=8),
                "started_by_id": user,
                "harvested_at": at + dt.timedelta(days=21),
                "harvest_passage": 2,
                "harvest_cell_count": 150_000_000,
                "harvest_viability_pct": Decimal("93.5"),
            }

        self._stage("processings", self.n_processings, make, Processing)
        self.max_numbers["PR"] = self.n_processings

    def freezing_runs(self) -> None:
        from biobank.identifiers import Kind, format_id
        from biobank.models import FreezingRun

        user = self.user.pk

        def make(a: int) -> dict[str, Any]:
            harvested = self.collected_at(a) + dt.timedelta(days=21)
            return {
                "id": a + 1,
                "code": format_id(Kind.FREEZING_RUN, a + 1),
                "processing_id": a + 1,
                "program": "-1 °C/min to -80 °C, then LN2",
                "rate_c_per_min": -1,
                "started_at": harvested + dt.timedelta(hours=2),
                "finished_at": harvested + dt.timedelta(hours=4),
                "operator_id": user,
            }

        self._stage("freezing runs", self.n_processings, make, FreezingRun)
        self.max_numbers["FR"] = self.n_processings

    def storage(self) -> None:
        """Tanks, racks (10 boxes each) and 9×9 boxes, with their materialised paths."""
        from biobank.identifiers import Kind, format_id
        from biobank.models import Container, StorageUnit
        from biobank.services.containers import SEPARATOR

        self.plan = storage_plan(self.n)
        tanks = []
        for t in range(self.plan[-1].tank + 1):
            site = self.sites[t % len(self.sites)]
            tanks.append(
                {
                    "id": t + 1,
                    "code": format_id(Kind.STORAGE_UNIT, t + 1),
                    "site_id": site.pk,
                    "name": f"Bench LN2 tank {t + 1:02d}",
                    "kind": "ln2_tank",
                    "min_temperature_c": -196,
                    "max_temperature_c": -150,
                    "active": True,
                    "_path": f"{site.code}{SEPARATOR}Bench LN2 tank {t + 1:02d}",
                }
            )
        racks: dict[tuple[int, int], dict[str, Any]] = {}
        for box in self.plan:
            if (box.tank, box.rack) not in racks:
                number = len(racks) + 1
                name = f"Rack {box.rack + 1:03d}"
                racks[(box.tank, box.rack)] = {
                    "id": number,
                    "code": format_id(Kind.CONTAINER, number),
                    "storage_unit_id": box.tank + 1,
                    "kind": "rack",
                    "name": name,
                    "path": f"{tanks[box.tank]['_path']}{SEPARATOR}{name}",
                    "depth": 0,
                    "active": True,
                }
        rack_list = list(racks.values())
        boxes = []
        for number, box in enumerate(self.plan, start=1):
            rack = racks[(box.tank, box.rack)]
            boxes.append(
                {
                    "id": len(rack_list) + number,
                    "code": format_id(Kind.BOX, number),
                    "storage_unit_id": box.tank + 1,
                    "parent_id": rack["id"],
                    "kind": "box",
                    "name": box.name,
                    "box_type_id": self.box_type.pk,
                    "path": f"{rack['path']}{SEPARATOR}{box.name}",
                    "depth": 1,
                    "active": True,
                }
            )
        self._stage("storage units", len(tanks), tanks.__getitem__, StorageUnit)
        containers = rack_list + boxes
        self._stage("containers", len(containers), containers.__getitem__, Container)
        self.tanks = tanks
        self.boxes = [
            BoxRow(b["id"], b["code"], b["path"], tanks[b["storage_unit_id"] - 1]["site_id"])
            for b in boxes
        ]
        self.max_numbers.update(SU=len(tanks), CT=len(rack_list), BX=len(boxes))

    def units(self) -> None:
        """Units, their open placements and their ``store`` events, 10k at a time."""
        from django.db import transaction

        from biobank.identifiers import Kind, format_id
        from biobank.models import AuditChainHead, CustodyEvent, Placement, ProductUnit
        from biobank.models.events import GENESIS_HASH, chain_hash

        start = time.perf_counter()
        chain_prev = GENESIS_HASH
        per = len(self.aspiration_types)
        user = self.user.pk
        slots = (
            (box, slot)
            for plan, box in zip(self.plan, self.boxes, strict=True)
            for slot in plan.slots
        )
        inserts = [RowInserter(m) for m in (ProductUnit, Placement, CustodyEvent)]
        harvested_of: dict[int, dt.datetime] = {}
        with self._bar(self.n, "units") as bar:
            for chunk in _chunks(self.n):
                units, placements, events = [], [], []
                for j in chunk:
                    a = j // UNITS_PER_PROCESSING
                    harvested = harvested_of.get(a)
                    if harvested is None:
                        harvested_of.clear()
                        harvested = harvested_of[a] = self.collected_at(a) + dt.timedelta(days=21)
                    placed_at = harvested + dt.timedelta(hours=5)
                    code = format_id(Kind.UNIT, j + 1)
                    participant_id = a // per + 1
                    box, slot = next(slots)
                    label = self.labels[slot]
                    units.append(
                        {
                            "id": j + 1,
                            "code": code,
                            "processing_id": a + 1,
                            "aspirate_id": a + 1,
                            "participant_id": participant_id,
                            "container_type": "cryovial",
                            "cell_number": 1_000_000,
                            "volume_ml": 1,
                            "freezing_run_id": a + 1,
                            "status": "stored",
                            "created_at": harvested + dt.timedelta(hours=1),
                        }
                    )
                    placements.append(
                        {
                            "id": j + 1,
                            "unit_id": j + 1,
                            "container_id": box.id,
                            "row": slot // BOX_COLUMNS + 1,
                            "column": slot % BOX_COLUMNS + 1,
                            "position": label,
                            "placed_at": placed_at,
                            "placed_by_id": user,
                        }
                    )
                    event = {
                        "id": j + 1,
                        "item_code": code,
                        "item_kind": "unit",
                        "participant_id": participant_id,
                        "unit_id": j + 1,
                        "action": "store",
                        "from_status": "frozen",
                        "to_status": "stored",
                        "actor_id": user,
                        "at": placed_at,
                        "recorded_at": placed_at,
                        "site_id": box.site_id,
                        "location": f"{box.path} {label}",
                        "data": {"container": box.code, "position": label},
                    }
                    # Hash-chained like every event the application writes (audit_verify).
                    event["prev_hash"] = chain_prev
                    event["row_hash"] = chain_prev = chain_hash(chain_prev, event)
                    events.append(event)
                with transaction.atomic():
                    for insert, rows in zip(inserts, (units, placements, events), strict=True):
                        insert(rows)
                bar.update(len(chunk))
        AuditChainHead.objects.update_or_create(
            pk=1, defaults={"last_hash": chain_prev, "last_event_id": self.n, "length": self.n}
        )
        for model in (ProductUnit, Placement, CustodyEvent):
            self.counts[model._meta.label] = self.n
        self.max_numbers["UN"] = self.n
        self.timings["units"] = time.perf_counter() - start

    def finish(self) -> dict[str, int]:
        """Counters past the numbers used, sequences past the ids used, planner statistics."""
        from django.core.management.color import no_style
        from django.db import connection

        from biobank import models as m

        start = time.perf_counter()
        for prefix, number in self.max_numbers.items():
            m.IdSequence.objects.update_or_create(prefix=prefix, defaults={"last_number": number})
        bulk_models = [
            m.Participant,
            m.Visit,
            m.Aspirate,
            m.Processing,
            m.FreezingRun,
            m.StorageUnit,
            m.Container,
            m.ProductUnit,
            m.Placement,
            m.CustodyEvent,
        ]
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), bulk_models):
                cursor.execute(sql)
            if connection.vendor == "postgresql":
                cursor.execute("VACUUM ANALYZE")
            else:
                cursor.execute("ANALYZE")
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.timings["finish"] = time.perf_counter() - start
        return self.counts


def build(target: Target, *, progress: bool = True) -> dict[str, Any]:
    """Migrate, load the trial definition and bulk-create ``target.units`` stored units.

    Call in a fresh process after ``target.recreate()`` and ``django_setup(target)``.
    """
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created

    from biobank.services.seeding import trial_definition_load

    began = time.perf_counter()
    connection_created.connect(_fast_load)
    call_command("migrate", verbosity=0, interactive=False)
    trial_definition_load(data=json.loads((REPO / "seeds" / "trial.json").read_text()))
    migrated = time.perf_counter() - began
    builder = Builder(target.units, progress=progress)
    counts = builder.run()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            size = cursor.fetchone()[0]
    else:
        size = target.sqlite_path.stat().st_size
    info = {
        "engine": target.engine,
        "units": target.units,
        "url": target.url,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - began, 1),
        "stages": {"migrate + trial": round(migrated, 1)}
        | {k: round(v, 1) for k, v in builder.timings.items()},
        "counts": counts,
        "boxes": len(builder.boxes),
        "tanks": len(builder.tanks),
        "suggest_tank": builder.tanks[0]["code"],
        "full_box": builder.boxes[0].code,
        "size_bytes": size,
    }
    target.marker.write_text(json.dumps(info, indent=2))
    return info
