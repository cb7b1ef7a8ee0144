"""Expiry at every step that uses the material: a syringe never outlives its units, a dose is
not released on expired units, and an expired syringe does not travel."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Dose, Signature
from biobank.services.doses import dose_prepare, dose_release
from biobank.services.roles import LAB, QA
from biobank.services.shipments import shipment_pack, shipment_seal, shipment_ship

from .factories import (
    PASSWORD,
    api_as,
    make_dose,
    make_participant,
    make_processing,
    make_ready_in_window,
    make_shipment,
    make_units,
    past,
    qa_signer,
    record_weight,
)


def _local(at: dt.datetime) -> str:
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M}"


def test_a_syringe_made_from_units_never_outlives_them(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="B", ready=False)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    keeps = min(u.expires_at() for u in dose.units.all())
    first = min(dose.units.all(), key=lambda u: u.expires_at())
    # Six hours of syringe shelf life: made ready one hour before the unit expires, it would
    # be given after.
    with time_machine.travel(keeps - dt.timedelta(hours=1)):
        ready_at = timezone.now()
        with pytest.raises(ServiceError) as info:
            make_ready_in_window(dose=dose, actor=roles[LAB])
    assert (info.value.code, info.value.field) == ("unit_expired", "ready_at")
    assert info.value.message == (
        f"{first.code} keeps until {_local(keeps)}; a dose made ready at {_local(ready_at)} "
        f"would expire after it ({_local(ready_at + dt.timedelta(hours=6))})."
    )
    dose.refresh_from_db()
    assert (dose.status, dose.expires_at) == ("released", None)
    with time_machine.travel(keeps - dt.timedelta(hours=6)):
        make_ready_in_window(dose=dose, actor=roles[LAB])
    dose.refresh_from_db()
    assert dose.status == "ready" and dose.expires_at == keeps


def test_a_dose_on_expired_units_is_not_released(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="B", ready=False)
    unit = min(dose.units.all(), key=lambda u: u.expires_at())
    late = unit.expires_at() + dt.timedelta(minutes=1)
    with time_machine.travel(late), pytest.raises(ServiceError) as info:
        dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    assert (info.value.code, info.value.field) == ("unit_expired", "dose")
    expired_on = f"{timezone.localtime(unit.expires_at()):%Y-%m-%d}"
    assert info.value.message == (
        f"{unit.code} EXPIRED on {expired_on}: the dose cannot be released."
    )
    dose.refresh_from_db()
    assert dose.status == "prepared"
    assert sorted(u.status for u in dose.units.all()) == ["stored", "stored"]
    assert not Signature.objects.filter(meaning="dose_release").exists()


def _ready_saline_dose_for_trondheim(actor: Any) -> Dose:
    participant = make_participant(actor=actor, site_code="STO", arm="A")
    visit = participant.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=actor)
    dose = dose_prepare(visit=visit, actor=actor)
    dose_release(dose=dose, actor=qa_signer(), password=PASSWORD)
    make_ready_in_window(dose=dose, actor=actor)
    dose.refresh_from_db()
    return dose


def test_an_expired_syringe_is_neither_packed_nor_shipped(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    dose = _ready_saline_dose_for_trondheim(lab)
    assert dose.expires_at is not None
    message = f"{dose.code} EXPIRED at {_local(dose.expires_at)}: it cannot be shipped."
    late = dose.expires_at + dt.timedelta(minutes=1)
    with time_machine.travel(late), pytest.raises(ServiceError) as info:
        shipment_pack(shipment=make_shipment(lab, "HUS", "STO", "cool"), scan=dose.code, actor=lab)
    assert (info.value.code, info.value.field, info.value.message) == ("expired", "scan", message)
    packed = make_shipment(lab, "HUS", "STO", "cool")
    shipment_pack(shipment=packed, scan=dose.code, actor=lab)
    shipment_seal(shipment=packed, actor=lab, password=PASSWORD)
    with time_machine.travel(late), pytest.raises(ServiceError) as info:
        shipment_ship(shipment=packed, actor=lab)
    assert (info.value.code, info.value.message) == ("expired", message)
    packed.refresh_from_db()
    dose.refresh_from_db()
    assert (packed.status, dose.status) == ("sealed", "ready")


def test_a_units_expiry_is_shown_in_the_api_and_the_unit_list(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    unit = make_units(actor=tech, count=1)[0]
    expires = unit.created_at + dt.timedelta(days=730)  # seeds/trial.json: 730 days
    body = api_as(tech).get(f"/api/units/{unit.code}/").json()
    assert (dt.datetime.fromisoformat(body["expires_at"]), body["expired"]) == (expires, False)
    listed = admin_client_tech.get("/admin/biobank/productunit/")
    assert listed.status_code == 200
    assert f'<td class="field-expiry">{_local(expires)}</td>' in listed.content.decode()
    with time_machine.travel(expires):
        admin_client_tech.force_login(tech)  # the first session has expired by then
        body = api_as(tech).get(f"/api/units/{unit.code}/").json()
        listed = admin_client_tech.get("/admin/biobank/productunit/").content.decode()
    assert body["expired"] is True
    assert f"{_local(expires)} (expired)" in listed


def test_a_fresh_products_dosing_limit_is_shown_once_harvested(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    growing = make_processing(actor=tech)
    harvested = make_processing(actor=tech, harvested_at=past(hours=3))
    limit = harvested.harvested_at + dt.timedelta(hours=48)  # seeds/trial.json: 48 hours
    api = api_as(tech)
    assert api.get(f"/api/processings/{growing.code}/").json()["fresh_expires_at"] is None
    shown = api.get(f"/api/processings/{harvested.code}/").json()["fresh_expires_at"]
    assert dt.datetime.fromisoformat(shown) == limit
    page = admin_client_tech.get(f"/admin/biobank/processing/{harvested.pk}/change/")
    assert page.status_code == 200 and _local(limit) in page.content.decode()
    page = admin_client_tech.get(f"/admin/biobank/processing/{growing.pk}/change/")
    assert "– (not harvested)" in page.content.decode()
