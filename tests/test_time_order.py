"""Time order: a step is never dated before the step it follows, whoever enters it and when."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import (
    Aspirate,
    CustodyEvent,
    FreezingRun,
    Passage,
    ProductUnit,
    QcResult,
    Shipment,
)
from biobank.services.aspirates import aspirate_collect
from biobank.services.processing import passage_record, processing_harvest, qc_result_record
from biobank.services.qc_release import processing_qc_release
from biobank.services.shipment_receipt import shipment_receive
from biobank.services.shipments import shipment_pack, shipment_seal, shipment_ship
from biobank.services.units import UnitSpec, freezing_run_record, units_create

from .factories import (
    PASSWORD,
    make_aspirate,
    make_participant,
    make_processing,
    make_shipment,
    past,
    qa_signer,
    qc_pass,
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


def _passage_before_start(tech: Any) -> tuple[Callable[[], object], str, str]:
    product = make_processing(actor=tech)  # started 29 days ago
    at = product.started_at - dt.timedelta(hours=1)
    call = lambda: passage_record(  # noqa: E731
        processing=product, number=0, cell_count=2_000_000, viability_pct=Decimal("95"),
        actor=tech, passaged_at=at,
    )  # fmt: skip
    return call, "passaged_at", f"is before the start of {product.code}"


def _passage_before_the_one_before(tech: Any) -> tuple[Callable[[], object], str, str]:
    product = make_processing(actor=tech)
    first = _passage(product, tech, 0, days_ago=20)
    call = lambda: _passage(product, tech, 1, days_ago=21)  # noqa: E731
    return call, "passaged_at", f"is before passage P0 of {product.code} ({_local(first)})"


def _harvest_before_the_last_passage(tech: Any) -> tuple[Callable[[], object], str, str]:
    product = make_processing(actor=tech)
    last = _passage(product, tech, 1, days_ago=2)
    call = lambda: processing_harvest(  # noqa: E731
        processing=product, cell_count=120_000_000, viability_pct=Decimal("92"), passage=2,
        actor=tech, harvested_at=last - dt.timedelta(hours=1),
    )  # fmt: skip
    return call, "harvested_at", f"is before passage P1 of {product.code} ({_local(last)})"


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


def _passage(product: Any, tech: Any, number: int, *, days_ago: float) -> dt.datetime:
    at = timezone.now() - dt.timedelta(days=days_ago)
    passage_record(
        processing=product, number=number, cell_count=2_000_000, viability_pct=Decimal("95"),
        actor=tech, passaged_at=at,
    )  # fmt: skip
    return at


STEPS = {
    "qc result before the processing started": (_qc_before_start, QcResult),
    "passage before the processing started": (_passage_before_start, Passage),
    "passage before the passage before it": (_passage_before_the_one_before, Passage),
    "harvest before the last passage": (_harvest_before_the_last_passage, CustodyEvent),
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


def test_a_harvest_never_goes_back_to_an_earlier_passage(trial: Any, tech: Any) -> None:
    product = make_processing(actor=tech)
    _passage(product, tech, 0, days_ago=20)
    _passage(product, tech, 1, days_ago=10)
    with pytest.raises(ServiceError) as info:
        processing_harvest(
            processing=product, cell_count=120_000_000, viability_pct=Decimal("92"), passage=0,
            actor=tech,
        )  # fmt: skip
    assert (info.value.code, info.value.field) == ("passage_order", "passage")
    assert info.value.message == (
        f"{product.code} has passage P1 on record; it cannot be harvested at P0."
    )
    product.refresh_from_db()
    assert (product.status, product.harvested_at) == ("in_culture", None)
    processing_harvest(
        processing=product, cell_count=120_000_000, viability_pct=Decimal("92"), passage=2,
        actor=tech,
    )  # fmt: skip
    product.refresh_from_db()
    assert (product.status, product.harvest_passage) == ("harvested", 2)


def test_a_freezing_run_typed_in_after_the_qc_release_keeps_its_real_time(
    trial: Any, tech: Any
) -> None:
    product = make_processing(actor=tech, harvested=True)
    spec = UnitSpec(container_type="cryobag", cell_number=10_000_000, volume_ml=Decimal("10"))
    units = units_create(processing=product, specs=[spec], actor=tech, created_at=past(hours=3))
    qc_pass(processing=product, actor=tech)
    processing_qc_release(processing=product, actor=qa_signer(), password=PASSWORD)
    # Frozen before QA signed, entered after: the signature is a decision, not a step it took.
    finished = timezone.now() - dt.timedelta(minutes=10)
    freezing_run_record(
        processing=product, units=units, actor=tech,
        started_at=finished - dt.timedelta(hours=1), finished_at=finished,
    )  # fmt: skip
    product.refresh_from_db()
    assert product.status == "cryopreserved"
    assert list(
        CustodyEvent.objects.filter(processing=product)
        .order_by("at", "id")
        .values_list("action", flat=True)
    ) == ["start", "harvest", "cryopreserve", "qc_release"]


def test_a_step_out_of_order_names_the_input_its_time_came_from(trial: Any, tech: Any) -> None:
    growing = make_processing(actor=tech)  # started 29 days ago
    with pytest.raises(ServiceError) as info:
        processing_harvest(
            processing=growing, cell_count=120_000_000, viability_pct=Decimal("92"), passage=2,
            actor=tech, harvested_at=growing.started_at - dt.timedelta(hours=1),
        )  # fmt: skip
    assert (info.value.code, info.value.field) == ("time_order", "harvested_at")
    product = make_processing(actor=tech, harvested=True)
    spec = UnitSpec(container_type="cryobag", cell_number=10_000_000, volume_ml=Decimal("10"))
    units = units_create(processing=product, specs=[spec], actor=tech, created_at=past(hours=3))
    with pytest.raises(ServiceError) as info:
        freezing_run_record(
            processing=product, units=units, actor=tech,
            started_at=past(hours=5), finished_at=past(hours=4),
        )  # fmt: skip
    assert (info.value.code, info.value.field) == ("time_order", "finished_at")
    assert FreezingRun.objects.filter(processing=product).count() == 0
