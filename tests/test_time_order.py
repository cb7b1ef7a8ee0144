"""Time order: a step is never dated before the step it follows, whoever enters it and when."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Aspirate, CustodyEvent, FreezingRun, ProductUnit, QcResult, Shipment
from biobank.services.aspirates import aspirate_collect
from biobank.services.processing import qc_result_record
from biobank.services.shipment_receipt import shipment_receive
from biobank.services.shipments import shipment_pack, shipment_seal, shipment_ship
from biobank.services.units import UnitSpec, freezing_run_record, units_create

from .factories import (
    PASSWORD,
    make_aspirate,
    make_participant,
    make_processing,
    make_shipment,
    ship_items,
)


def _local(at: dt.datetime) -> str:
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S}"


def _qc_before_start(tech: Any) -> tuple[Callable[[], object], str, str]:
    product = make_processing(actor=tech)  # started 29 days ago
    at = product.started_at - dt.timedelta(days=1)
    call = lambda: qc_result_record(  # noqa: E731
        processing=product, test="sterility", result="negative", passed=True, actor=tech,
        tested_at=at,
    )  # fmt: skip
    return (
        call,
        "tested_at",
        f"is before the start of {product.code} ({_local(product.started_at)})",
    )


def _fill_before_harvest(tech: Any) -> tuple[Callable[[], object], str, str]:
    product = make_processing(actor=tech, harvested=True)  # harvested 8 days ago
    spec = UnitSpec(container_type="cryobag", cell_number=10_000_000, volume_ml=Decimal("10"))
    at = product.harvested_at - dt.timedelta(days=1)
    call = lambda: units_create(  # noqa: E731
        processing=product, specs=[spec], actor=tech, created_at=at
    )
    return call, "created_at", f"is before the harvest of {product.code}"


def _freezing_before_harvest(tech: Any) -> tuple[Callable[[], object], str, str]:
    product = make_processing(actor=tech, harvested=True)
    spec = UnitSpec(container_type="cryobag", cell_number=10_000_000, volume_ml=Decimal("10"))
    units = units_create(processing=product, specs=[spec], actor=tech)
    at = product.harvested_at - dt.timedelta(hours=2)
    call = lambda: freezing_run_record(  # noqa: E731
        processing=product, units=units, actor=tech,
        started_at=at, finished_at=at + dt.timedelta(hours=1),
    )  # fmt: skip
    return call, "started_at", f"is before the harvest of {product.code}"


def _ship_before_seal(tech: Any) -> tuple[Callable[[], object], str, str]:
    aspirate = make_aspirate(actor=tech, participant=make_participant(actor=tech, site_code="UNN"))
    shipment = make_shipment(tech, "UNN", "HUS", "ambient")
    shipment_pack(shipment=shipment, scan=aspirate.code, actor=tech)
    shipment_seal(shipment=shipment, actor=tech, password=PASSWORD)
    call = lambda: shipment_ship(  # noqa: E731
        shipment=shipment, actor=tech, at=timezone.now() - dt.timedelta(hours=4)
    )
    return call, "at", f"is before the seal signature of {shipment.code}"


def _received_before_shipping(tech: Any) -> tuple[Callable[[], object], str, str]:
    aspirate = make_aspirate(actor=tech, participant=make_participant(actor=tech, site_code="UNN"))
    shipment = ship_items(make_shipment(tech, "UNN", "HUS", "ambient"), [aspirate.code], tech)
    at = shipment.shipped_at - dt.timedelta(minutes=5)
    call = lambda: shipment_receive(shipment=shipment, actor=tech, at=at)  # noqa: E731
    return call, "at", f"is before the shipping of {shipment.code} ({_local(shipment.shipped_at)})"


def _collected_before_enrolment(tech: Any) -> tuple[Callable[[], object], str, str]:
    participant = make_participant(actor=tech)  # enrolled 2025-03-01
    at = dt.datetime(2025, 2, 28, 9, 0, tzinfo=dt.UTC)
    call = lambda: aspirate_collect(  # noqa: E731
        visit=participant.visits.get(visit_type__code="BASELINE"), volume_ml=Decimal("50"),
        anticoagulant="heparin", collected_at=at, collected_by="Dr. A", actor=tech,
    )  # fmt: skip
    return call, "collected_at", "was enrolled (2025-03-01)"


STEPS = {
    "qc result before the processing started": (_qc_before_start, QcResult),
    "unit filled before the harvest": (_fill_before_harvest, ProductUnit),
    "freezing run before the harvest": (_freezing_before_harvest, FreezingRun),
    "shipped before the seal signature": (_ship_before_seal, Shipment),
    "shipment received before it was shipped": (_received_before_shipping, CustodyEvent),
    "aspirate collected before enrolment": (_collected_before_enrolment, Aspirate),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_a_step_dated_before_the_step_it_follows_is_refused(
    trial: Any, tech: Any, name: str
) -> None:
    make, model = STEPS[name]
    call, field, words = make(tech)
    before = model.objects.count()
    with pytest.raises(ServiceError) as info:
        call()
    assert (info.value.code, info.value.field) == ("time_order", field)
    assert info.value.message.startswith(f"{field} ") and words in info.value.message
    assert model.objects.count() == before
