"""Quarantine: only QA lifts it, with a reason and an e-signature; a lifted unit goes back to
where it was; a receipt outside the study's transport limits is quarantined, not accepted."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import (
    Aspirate,
    CustodyEvent,
    DoseUnit,
    Placement,
    ProductUnit,
    Signature,
    Study,
)
from biobank.services.aspirates import aspirate_receive_by_condition
from biobank.services.roles import CLINICIAN, LAB, QA
from biobank.services.units import unit_transition

from .factories import (
    PASSWORD,
    api_as,
    make_aspirate,
    make_unit_for_trondheim,
    make_units,
    past,
)

pytestmark = pytest.mark.django_db

REASON = "Logger trace reviewed: excursion within stability data"


def _quarantined_unit(actor: Any, where: str) -> ProductUnit:
    """A unit quarantined from ``where``: stored (in a box), frozen (out of storage, as after a
    shipment) or released (reserved by its dose)."""
    if where == "released":
        unit, _ = make_unit_for_trondheim(actor)
    else:
        unit = make_units(actor=actor, count=1, stored=where == "stored")[0]
    unit_transition(unit=unit, action="quarantine", actor=actor, reason="dropped on the floor")
    return unit


def _quarantined_aspirate(actor: Any) -> Aspirate:
    """Received four hours after collection, at 31.5 °C: the receipt scan quarantines it."""
    aspirate = _receive_by_condition(actor, "31.5", 4)
    assert aspirate.status == "quarantined"
    return aspirate


def _quarantined(kind: str, actor: Any) -> tuple[Any, str]:
    """A quarantined item and its lift step's API path."""
    if kind == "unit":
        unit = _quarantined_unit(actor, "stored")
        return unit, f"/api/units/{unit.code}/lift-quarantine/"
    aspirate = _quarantined_aspirate(actor)
    return aspirate, f"/api/aspirates/{aspirate.code}/lift-quarantine/"


def _lift(qa: Any, unit: ProductUnit) -> None:
    response = api_as(qa).post(
        f"/api/units/{unit.code}/lift-quarantine/", {"password": PASSWORD, "reason": REASON}
    )
    assert response.status_code == 200, response.content


LIFTS = [("unit", "lift_quarantine", "stored"), ("aspirate", "lift_quarantine", "accepted")]


# --- who lifts a quarantine, and how ---------------------------------------------------------


@pytest.mark.parametrize(("kind", "step", "_"), LIFTS)
def test_the_lab_technician_may_not_lift_a_quarantine(
    roles: dict[str, Any], kind: str, step: str, _: str
) -> None:
    item, path = _quarantined(kind, roles[LAB])
    response = api_as(roles[LAB]).post(path, {"password": PASSWORD, "reason": REASON})
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    item.refresh_from_db()
    assert item.status == "quarantined"
    assert CustodyEvent.objects.filter(item_code=item.code, action=step).count() == 0
    assert Signature.objects.count() == 0


@pytest.mark.parametrize(("kind", "step", "after"), LIFTS)
def test_qa_lifts_a_quarantine_with_a_reason_and_a_signature(
    roles: dict[str, Any], kind: str, step: str, after: str
) -> None:
    qa = roles[QA]
    item, path = _quarantined(kind, roles[LAB])
    response = api_as(qa).post(path, {"password": PASSWORD, "reason": REASON})
    assert response.status_code == 200, response.content
    item.refresh_from_db()
    assert (item.status, item.status_reason) == (after, REASON)
    signature = Signature.objects.get()
    assert (signature.signer, signature.meaning, signature.record) == (
        qa,
        "quarantine_lift",
        item.code,
    )
    event = CustodyEvent.objects.get(item_code=item.code, action=step)
    assert (event.actor, event.reason, event.from_status, event.to_status) == (
        qa,
        REASON,
        "quarantined",
        after,
    )
    assert event.data["signature_id"] == signature.pk
    assert event.data["signature"] == str(signature)
    assert "Approval: quarantine lifted" in event.data["signature"]


@pytest.mark.parametrize(("kind", "step", "_"), LIFTS)
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"password": "not-my-password", "reason": REASON}, 400, "bad_signature_password"),
        ({"password": PASSWORD, "reason": "ok"}, 400, "reason_required"),
    ],
)
def test_a_lift_without_a_valid_signature_and_reason_changes_nothing(
    roles: dict[str, Any], kind: str, step: str, _: str, body: dict, status: int, code: str
) -> None:
    item, path = _quarantined(kind, roles[LAB])
    response = api_as(roles[QA]).post(path, body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    item.refresh_from_db()
    assert item.status == "quarantined"
    assert CustodyEvent.objects.filter(item_code=item.code, action=step).count() == 0
    assert Signature.objects.count() == 0


def test_the_lift_asks_for_the_password_wherever_it_is_offered(roles: dict[str, Any]) -> None:
    unit, path = _quarantined("unit", roles[LAB])
    response = api_as(roles[QA]).post(path, {"reason": REASON})
    assert response.status_code == 400
    assert "password" in response.json()["fields"]
    assert ProductUnit.objects.get(pk=unit.pk).status == "quarantined"


def test_no_unsigned_way_round_the_lift(tech: Any, trial: Any) -> None:
    unit = _quarantined_unit(tech, "stored")
    with pytest.raises(ServiceError) as refused:
        unit_transition(unit=unit, action="lift_quarantine", actor=tech, reason=REASON)
    assert refused.value.code == "use_signed_service"
    assert ProductUnit.objects.get(pk=unit.pk).status == "quarantined"


def test_the_unit_page_shows_the_lift_with_its_signature(
    roles: dict[str, Any], client: Any
) -> None:
    unit = _quarantined_unit(roles[LAB], "stored")
    _lift(roles[QA], unit)
    client.force_login(roles[QA])
    page = client.get(reverse("admin:biobank_productunit_change", args=[unit.pk]))
    assert page.status_code == 200
    signature = str(Signature.objects.get())
    assert f"{REASON} ({signature})" in page.content.decode()


def test_a_blinded_role_sees_who_signed_an_aspirate_out_of_quarantine(
    roles: dict[str, Any],
) -> None:
    aspirate, path = _quarantined("aspirate", roles[LAB])
    assert api_as(roles[QA]).post(path, {"password": PASSWORD, "reason": REASON}).status_code == 200
    events = api_as(roles[CLINICIAN]).get(f"/api/events/?item={aspirate.code}").json()["results"]
    lifted = [e for e in events if e["action"] == "lift_quarantine"]
    assert [e["data"] for e in lifted] == [{"signature": str(Signature.objects.get())}]


def test_the_admin_lift_asks_for_the_password(roles: dict[str, Any], client: Any) -> None:
    unit = _quarantined_unit(roles[LAB], "stored")
    client.force_login(roles[QA])
    url = reverse("admin:biobank_productunit_changelist")
    step = {"action": "step_lift_quarantine", ACTION_CHECKBOX_NAME: [unit.pk], "apply_step": "1"}
    wrong = client.post(url, {**step, "password": "not-my-password", "reason": REASON}, follow=True)
    assert "The password is not correct" in wrong.content.decode()
    assert ProductUnit.objects.get(pk=unit.pk).status == "quarantined"
    assert Signature.objects.count() == 0
    done = client.post(url, {**step, "password": PASSWORD, "reason": REASON}, follow=True)
    assert "done for" in done.content.decode()
    assert ProductUnit.objects.get(pk=unit.pk).status == "stored"
    assert Signature.objects.get().signer == roles[QA]


def _report_lifts(user: Any, participant: Any) -> list[tuple[str, str]]:
    response = api_as(user).get(f"/api/reports/participants/{participant.code}.json")
    assert response.status_code == 200, response.content
    return [
        (s["record"], s["signer"])
        for s in response.json()["content"]["signatures"]
        if s["meaning"] == "Approval: quarantine lifted"
    ]


def test_the_chain_report_lists_the_lift_signatures_as_the_viewer_may_see_them(
    roles: dict[str, Any],
) -> None:
    unit = _quarantined_unit(roles[LAB], "stored")
    _lift(roles[QA], unit)
    aspirate, path = _quarantined("aspirate", roles[LAB])
    assert api_as(roles[QA]).post(path, {"password": PASSWORD, "reason": REASON}).status_code == 200
    assert _report_lifts(roles[QA], unit.participant) == [(unit.code, "qa_user")]
    assert _report_lifts(roles[CLINICIAN], unit.participant) == []  # a unit is the lab's
    assert _report_lifts(roles[CLINICIAN], aspirate.participant) == [(aspirate.code, "qa_user")]


# --- where a lifted unit goes (``tech`` holds every permission, QA's too) -------------------


@pytest.mark.parametrize(
    ("before", "after", "placed"),
    [("stored", "stored", True), ("frozen", "frozen", False), ("released", "released", False)],
)
def test_a_lifted_unit_returns_to_where_it_was(
    trial: Any, tech: Any, before: str, after: str, placed: bool
) -> None:
    unit = _quarantined_unit(tech, before)
    reserved = DoseUnit.objects.filter(unit=unit, active=True).exists()
    _lift(tech, unit)
    unit.refresh_from_db()
    assert unit.status == after
    assert Placement.objects.open().filter(unit=unit).exists() is placed
    assert DoseUnit.objects.filter(unit=unit, active=True).exists() is reserved
    assert reserved is (before == "released")


@pytest.mark.parametrize(("stored", "after"), [(True, "stored"), (False, "frozen")])
def test_without_its_quarantine_event_a_lifted_unit_goes_where_its_place_says(
    trial: Any, tech: Any, stored: bool, after: str
) -> None:
    unit = make_units(actor=tech, count=1, stored=stored)[0]
    ProductUnit.objects.filter(pk=unit.pk).update(status="quarantined")  # e.g. imported
    _lift(tech, unit)
    assert ProductUnit.objects.get(pk=unit.pk).status == after


# --- receipt within the study's transport limits ---------------------------------------------

COLLECTED_DAYS_AGO = 3


def _receive_by_condition(actor: Any, temperature: str, hours: float) -> Aspirate:
    collected = past(days=COLLECTED_DAYS_AGO)
    aspirate = make_aspirate(actor=actor, collected_at=collected)
    response = api_as(actor).post(
        f"/api/aspirates/{aspirate.code}/receive-by-condition/",
        {
            "condition": "intact",
            "temperature_c": temperature,
            "received_at": (collected + dt.timedelta(hours=hours)).isoformat(),
        },
    )
    assert response.status_code == 200, response.content
    aspirate.refresh_from_db()
    return aspirate


@pytest.mark.parametrize(
    ("temperature", "hours", "status", "reason"),
    [
        ("20.0", 4, "accepted", ""),
        ("2.0", 4, "accepted", ""),
        ("25.0", 24, "accepted", ""),
        (
            "45.0",
            1,
            "quarantined",
            "Transport temperature 45.0 °C is outside the allowed 2.0–25.0 °C",
        ),
        (
            "1.5",
            1,
            "quarantined",
            "Transport temperature 1.5 °C is outside the allowed 2.0–25.0 °C",
        ),
        ("20.0", 30, "quarantined", "Received 30.0 h after collection, more than the 24 h allowed"),
        (
            "45.0",
            30,
            "quarantined",
            "Transport temperature 45.0 °C is outside the allowed 2.0–25.0 °C; "
            "Received 30.0 h after collection, more than the 24 h allowed",
        ),
    ],
)
def test_the_receipt_scan_quarantines_a_hot_cold_or_late_aspirate(
    trial: Any, tech: Any, temperature: str, hours: float, status: str, reason: str
) -> None:
    aspirate = _receive_by_condition(tech, temperature, hours)
    assert (aspirate.status, aspirate.status_reason) == (status, reason)
    event = CustodyEvent.objects.get(aspirate=aspirate, action__in=["accept", "quarantine"])
    assert (event.action, event.reason) == (
        "accept" if status == "accepted" else "quarantine",
        reason,
    )


def test_a_damaged_and_hot_aspirate_names_both(trial: Any, tech: Any) -> None:
    collected = past(days=COLLECTED_DAYS_AGO)
    aspirate = make_aspirate(actor=tech, collected_at=collected)
    aspirate_receive_by_condition(
        aspirate=aspirate,
        actor=tech,
        condition="leaking",
        temperature_c=Decimal("30"),
        received_at=collected + dt.timedelta(hours=2),
    )
    aspirate.refresh_from_db()
    assert (aspirate.status, aspirate.status_reason) == (
        "quarantined",
        "Condition at receipt: Leaking; "
        "Transport temperature 30 °C is outside the allowed 2.0–25.0 °C",
    )


def test_an_intact_aspirate_without_a_transport_temperature_is_quarantined(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    aspirate = make_aspirate(actor=tech, collected_at=past(hours=3))
    response = api_as(tech).post(
        f"/api/aspirates/{aspirate.code}/receive-by-condition/", {"condition": "intact"}
    )
    assert response.status_code == 200, response.content
    aspirate.refresh_from_db()
    assert (aspirate.status, aspirate.status_reason) == (
        "quarantined",
        "No transport temperature was recorded (allowed 2.0–25.0 °C)",
    )
    other = make_aspirate(actor=tech, collected_at=past(hours=3))
    body = {"decision": "accept", "condition": "intact"}
    refused = api_as(tech).post(f"/api/aspirates/{other.code}/receive/", body)
    assert (refused.status_code, refused.json()["code"]) == (400, "receipt_out_of_limits")
    other.refresh_from_db()
    assert other.status == "collected"


def test_the_limits_are_the_studys_settings(trial: Any, tech: Any) -> None:
    Study.objects.update(
        aspirate_transport_min_c=Decimal("15"),
        aspirate_transport_max_c=Decimal("30"),
        aspirate_transport_max_hours=48,
    )
    assert _receive_by_condition(tech, "28.0", 40).status == "accepted"
    assert _receive_by_condition(tech, "10.0", 2).status_reason == (
        "Transport temperature 10.0 °C is outside the allowed 15.0–30.0 °C"
    )


@pytest.mark.parametrize(
    ("temperature", "hours", "message"),
    [
        ("45.0", 1, "transport temperature 45.0 °C is outside the allowed 2.0–25.0 °C"),
        ("20.0", 30, "received 30.0 h after collection, more than the 24 h allowed"),
    ],
)
def test_an_explicit_receipt_may_not_accept_outside_the_limits(
    trial: Any, tech: Any, temperature: str, hours: float, message: str
) -> None:
    collected = past(days=COLLECTED_DAYS_AGO)
    aspirate = make_aspirate(actor=tech, collected_at=collected)
    body = {
        "decision": "accept",
        "condition": "intact",
        "temperature_c": temperature,
        "received_at": (collected + dt.timedelta(hours=hours)).isoformat(),
        "reason": "looks fine",
    }
    path = f"/api/aspirates/{aspirate.code}/receive/"
    refused = api_as(tech).post(path, body)
    assert (refused.status_code, refused.json()["code"]) == (400, "receipt_out_of_limits")
    assert message in refused.json()["message"]
    aspirate.refresh_from_db()
    assert (aspirate.status, aspirate.received_at) == ("collected", None)
    assert list(
        CustodyEvent.objects.filter(aspirate=aspirate).values_list("action", flat=True)
    ) == ["collect"]
    quarantined = api_as(tech).post(path, {**body, "decision": "quarantine"})
    assert quarantined.status_code == 200, quarantined.content
    assert Aspirate.objects.get(pk=aspirate.pk).status == "quarantined"


def test_a_receipt_before_the_collection_is_refused_with_both_times(trial: Any, tech: Any) -> None:
    collected = past(hours=3)
    aspirate = make_aspirate(actor=tech, collected_at=collected)
    early = collected - dt.timedelta(minutes=30)
    body = {"decision": "accept", "condition": "intact", "received_at": early.isoformat()}
    refused = api_as(tech).post(f"/api/aspirates/{aspirate.code}/receive/", body)
    assert (refused.status_code, refused.json()["code"]) == (400, "time_order")
    assert list(refused.json()["fields"]) == ["received_at"]
    local = timezone.localtime
    assert refused.json()["message"] == (
        f"received_at {local(early):%Y-%m-%d %H:%M:%S} is before the collection of "
        f"{aspirate.code} ({local(collected):%Y-%m-%d %H:%M:%S})."
    )
    aspirate.refresh_from_db()
    assert (aspirate.status, aspirate.received_at) == ("collected", None)


def test_a_lifted_unit_whose_dose_was_cancelled_meanwhile_goes_back_to_stock(
    trial: Any, tech: Any
) -> None:
    from biobank.services.doses import dose_cancel

    unit, dose = make_unit_for_trondheim(tech)
    unit_transition(unit=unit, action="quarantine", actor=tech, reason="dropped on the floor")
    dose_cancel(dose=dose, actor=tech, reason="participant withdrew consent")
    unit.refresh_from_db()
    assert unit.status == "quarantined"  # a cancelled dose does not settle a held unit
    _lift(tech, unit)
    unit.refresh_from_db()
    # Released no more: nothing reserves it, and a released unit belongs to a dose.
    assert unit.status == "frozen"
    assert not DoseUnit.objects.filter(unit=unit, active=True).exists()
