"""Test data built through the public services, so tests start from states the app can reach."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import close_old_connections, connection
from django.utils import timezone
from rest_framework.test import APIClient

from biobank.errors import ServiceError
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
from biobank.services.aspirates import aspirate_collect, aspirate_receive_by_condition
from biobank.services.containers import container_create, storage_unit_create
from biobank.services.processing import processing_harvest, processing_start
from biobank.services.seeding import trial_definition_load
from biobank.services.storage import unit_store
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
    *,
    actor: Any,
    participant: Participant | None = None,
    visit: str = "BASELINE",
    collected_at: dt.datetime | None = None,
) -> Aspirate:
    participant = participant or make_participant(actor=actor)
    return aspirate_collect(
        visit=participant.visits.get(visit_type__code=visit),
        volume_ml=Decimal("55.0"),
        anticoagulant="heparin",
        collected_at=collected_at or past(days=30),
        collected_by="Dr. Test",
        actor=actor,
    )


def accept_intact(
    *, aspirate: Aspirate, actor: Any, received_at: dt.datetime | None = None
) -> None:
    """Receive an aspirate at room temperature, intact: the receipt scan accepts it."""
    aspirate_receive_by_condition(
        aspirate=aspirate,
        actor=actor,
        condition="intact",
        temperature_c=Decimal("20.0"),
        received_at=received_at or past(days=29, hours=20),
    )


def make_accepted_aspirate(*, actor: Any, **kwargs: Any) -> Aspirate:
    aspirate = make_aspirate(actor=actor, **kwargs)
    accept_intact(aspirate=aspirate, actor=actor)
    return aspirate


def make_processing(
    *,
    actor: Any,
    harvested: bool = False,
    harvested_at: dt.datetime | None = None,
    **kwargs: Any,
) -> Processing:
    """A processing started from an accepted aspirate; harvested (120×10⁶ cells) if asked,
    eight days ago unless ``harvested_at`` says when."""
    aspirate = make_accepted_aspirate(actor=actor, **kwargs)
    processing = processing_start(aspirate=aspirate, actor=actor, started_at=past(days=29))
    if harvested or harvested_at:
        processing_harvest(
            processing=processing,
            cell_count=120_000_000,
            viability_pct=Decimal("92.0"),
            passage=2,
            actor=actor,
            harvested_at=harvested_at or past(days=8),
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
            unit_store(unit=unit, container=box, actor=actor, at=past(days=7))
    for unit in units:
        unit.refresh_from_db()
    return units


def make_storage_unit(
    *,
    actor: Any,
    name: str | None = None,
    site_code: str = "HUS",
    kind: str = "ln2_tank",
    range_c: tuple[str, str] = ("-196", "-150"),
) -> StorageUnit:
    """An LN2 tank unless told otherwise (kind, and its range in °C as text)."""
    return storage_unit_create(
        site=Site.objects.get(code=site_code),
        name=name or f"{kind} {next(_counter)}",
        kind=kind,
        min_temperature_c=Decimal(range_c[0]),
        max_temperature_c=Decimal(range_c[1]),
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


def make_printer(
    *,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 9100,
    dpi: int = 300,
    label_template: str = "cryobag",
    active: bool = True,
) -> Any:
    from biobank.models import Printer

    return Printer.objects.create(
        name=name or f"Zebra {next(_counter)}",
        host=host,
        port=port,
        dpi=dpi,
        label_template=label_template,
        active=active,
    )


PASSWORD = "correct-horse-battery"


def api_as(user: Any) -> APIClient:
    """The REST API as ``user`` (JSON bodies, as the API parses JSON only)."""
    client = APIClient()
    client.default_format = "json"
    client.force_authenticate(user)
    return client


def run_at_once(*calls: Callable[[], object]) -> list[str]:
    """Run ``calls`` in threads released together by a barrier (a real race needs PostgreSQL).

    Returns each call's outcome, sorted: "ok", "<status> <code>" of a refusal, or
    "unexpected: ..." for any other exception (a thread's exception would otherwise be lost).
    """
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            call()
            outcomes.append("ok")
        except ServiceError as exc:
            outcomes.append(f"{exc.status_code} {exc.code}")
        except Exception as exc:
            outcomes.append(f"unexpected: {exc!r}")
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def qc_pass(*, processing: Processing, actor: Any) -> None:
    from biobank.services.processing import qc_result_record

    for test, result, value in [
        ("sterility", "negative", None),
        ("mycoplasma", "negative", None),
        ("endotoxin", "0.2 EU/mL", Decimal("0.2")),
        ("immunophenotype", "meets ISCT", None),
        ("viability", "92 %", Decimal("92")),
    ]:
        qc_result_record(
            processing=processing, test=test, result=result, value=value, passed=True, actor=actor
        )


def make_released_product_units(
    *, actor: Any, participant: Participant, count: int = 2, visit: str = "BASELINE"
) -> list[ProductUnit]:
    """Stored units of a QC-passed, QC-released product of this participant."""
    from biobank.services.qc_release import processing_qc_release

    units = make_units(actor=actor, count=count, stored=True, participant=participant, visit=visit)
    processing = units[0].processing
    qc_pass(processing=processing, actor=actor)
    processing_qc_release(processing=processing, actor=qa_signer(), password=PASSWORD)
    return units


def make_fresh_product(
    *, actor: Any, participant: Participant, harvested_hours_ago: float = 3
) -> Processing:
    """A QC-passed, QC-released baseline product, harvested ``harvested_hours_ago`` hours ago
    and never frozen: dosed fresh."""
    from biobank.services.qc_release import processing_qc_release

    processing = make_processing(
        actor=actor,
        participant=participant,
        visit="BASELINE",
        harvested_at=past(hours=harvested_hours_ago),
    )
    qc_pass(processing=processing, actor=actor)
    processing_qc_release(processing=processing, actor=qa_signer(), password=PASSWORD)
    return processing


def qa_signer() -> Any:
    """A QA person who signs releases in tests where the actor's role does not matter."""
    User = get_user_model()
    existing = User.objects.filter(username="qa-signer").first()
    return existing or make_user("qa-signer")


DOSE_WEIGHT = Decimal("45.0")  # target 45×10⁶: both 25×10⁶ units of make_units(count=2)


def record_weight(*, visit: Any, actor: Any, weight_kg: Decimal = DOSE_WEIGHT) -> Any:
    from biobank.services.dose_plan import visit_weight_record

    return visit_weight_record(visit=visit, weight_kg=weight_kg, actor=actor)


def make_ready_in_window(*, dose: Any, actor: Any, ready_at: Any = None) -> Any:
    """Make a released dose ready with counts inside its window (95 % of each unit at 95 %)."""
    from biobank.services.doses import UnitCount, dose_make_ready

    links = list(dose.dose_units.select_related("unit"))
    if dose.processing_id is not None:
        count = int(dose.target_cells / Decimal("0.95"))
        return dose_make_ready(
            dose=dose,
            actor=actor,
            ready_at=ready_at,
            post_thaw_cell_count=count,
            post_thaw_viability_pct=Decimal("95"),
        )
    if not links:
        return dose_make_ready(dose=dose, actor=actor, ready_at=ready_at, saline_lot="NACL-24-117")
    share = Decimal(dose.target_cells) / len(links) / Decimal("0.95")
    return dose_make_ready(
        dose=dose,
        actor=actor,
        ready_at=ready_at,
        unit_counts=[
            UnitCount(link.unit.code, min(int(share), link.unit.cell_number), Decimal("95"))
            for link in links
        ],
    )


def make_dose(
    *, actor: Any, arm: str = "A", visit: str = "M6", ready: bool = True, units: int = 2
) -> Any:
    """A dose for a participant's treatment visit (arm A at M6 = placebo; B at M6 = MSC).
    An MSC dose draws on two 25×10⁶ units; `units` above 2 leaves spares in storage."""
    from biobank.services.doses import dose_prepare, dose_release

    participant = make_participant(actor=actor, arm=arm)
    if (arm, visit) in (("B", "M6"), ("A", "BASELINE")):
        other = "BASELINE" if visit == "M6" else "M6"
        make_released_product_units(actor=actor, participant=participant, visit=other, count=units)
    the_visit = participant.visits.get(visit_type__code=visit)
    record_weight(visit=the_visit, actor=actor)
    dose = dose_prepare(visit=the_visit, actor=actor)
    if ready:
        dose_release(dose=dose, actor=qa_signer(), password=PASSWORD)
        make_ready_in_window(dose=dose, actor=actor)
    dose.refresh_from_db()
    return dose


# --- shipments -------------------------------------------------------------------------------


def make_shipment(actor: Any, from_site: str, to_site: str, kind: str, **extra: Any) -> Any:
    """A planned shipment between two sites given by code, e.g. ("HUS", "STO")."""
    from biobank.services.shipments import shipment_create

    return shipment_create(
        from_site=Site.objects.get(code=from_site),
        to_site=Site.objects.get(code=to_site),
        kind=kind,
        actor=actor,
        **extra,
    )


def ship_items(shipment: Any, codes: list[str], actor: Any) -> Any:
    """Pack these items, seal and ship: the shipment is in transit."""
    from biobank.services.shipments import shipment_pack, shipment_seal, shipment_ship

    for code in codes:
        shipment_pack(shipment=shipment, scan=code, actor=actor)
    shipment_seal(shipment=shipment, actor=actor, password=PASSWORD)
    return shipment_ship(shipment=shipment, actor=actor, courier="Bring", tracking_ref="T1")


def make_unit_for_trondheim(actor: Any) -> tuple[ProductUnit, Any]:
    """A participant of St. Olav in arm B: a released unit reserved by the month-6 dose, and
    that dose."""
    from biobank.services.doses import dose_prepare, dose_release

    participant = make_participant(actor=actor, site_code="STO", arm="B")
    make_released_product_units(actor=actor, participant=participant, count=2)
    visit = participant.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=actor)
    dose = dose_prepare(visit=visit, actor=actor)
    dose_release(dose=dose, actor=qa_signer(), password=PASSWORD)
    unit = dose.units.order_by("code").first()
    assert unit.status == "released"
    return unit, dose


def logger_csv(start: dt.datetime, temps: list[str], *, minutes: int = 10) -> bytes:
    """A temperature logger's Norwegian-Excel style export: BOM, preamble, ';' separators and
    decimal commas; one reading every ``minutes`` from ``start``."""
    lines = ["Serienummer;LOG-4711", "Tid;Temperatur (°C)"]
    for i, t in enumerate(temps):
        at = (start + dt.timedelta(minutes=i * minutes)).astimezone(dt.UTC)
        lines.append(f"{at:%d.%m.%Y %H:%M:%S}Z;{t}".replace("Z;", "+00:00;"))
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def logger_clean(shipment: Any, actor: Any) -> Any:
    """Upload a logger trace that stayed within the shipment kind's range: a shipment that
    carries a logger is received only after its file."""
    from biobank.services.shipment_receipt import shipment_logger_upload

    low, high = shipment.temperature_range
    middle = str((low + high) / 2)
    data = logger_csv(past(hours=3), [middle, middle, middle])
    return shipment_logger_upload(shipment=shipment, data=data, filename="clean.csv", actor=actor)


def custody_steps(code: str) -> list[tuple[str, str | None, str]]:
    """An item's custody log as (action, site code, shipment code), in time order."""
    from biobank.models import CustodyEvent

    return [
        (e.action, e.site.code if e.site else None, e.data.get("shipment", ""))
        for e in CustodyEvent.objects.filter(item_code=code).order_by("at", "id")
    ]


# The API's collection of each kind of item (its steps are /api/<collection>/<code>/<step>/).
API_COLLECTION = {
    "participant": "participants",
    "aspirate": "aspirates",
    "processing": "processings",
    "unit": "units",
    "container": "containers",
    "dose": "doses",
    "shipment": "shipments",
}


def site(code: str) -> Site:
    return Site.objects.get(code=code)


def sto_units(tech: Any, count: int = 1, **kwargs: Any) -> list[ProductUnit]:
    """Units made at the Bergen lab for a St. Olav (Trondheim) participant."""
    participant = make_participant(actor=tech, site_code="STO")
    return make_units(actor=tech, count=count, participant=participant, **kwargs)
