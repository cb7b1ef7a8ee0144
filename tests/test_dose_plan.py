"""The dose plan: body weight at a treatment visit, the plan and window from the trial
definition, and which units a dose draws on."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Dose, ProductUnit, Study
from biobank.services.dose_plan import dose_propose, units_suggest, visit_weight_record
from biobank.services.doses import dose_prepare
from biobank.services.roles import CLINICIAN, LAB, QA

from .factories import (
    api_as,
    make_participant,
    make_released_product_units,
    past,
    record_weight,
)

# --- the plan --------------------------------------------------------------------------------


def test_plan_from_the_trial_definition(trial: Any) -> None:
    study = Study.objects.get(code="NCT04749667")
    plan = study.dose_plan(Decimal("72.5"))
    assert (plan.target_cells, plan.min_cells, plan.max_window_cells) == (
        72_500_000,
        65_250_000,
        79_750_000,
    )
    assert plan.summary() == (
        "72.5 kg × 1.0×10⁶/kg = target 72.5×10⁶ cells; accepted 65.25×10⁶–79.75×10⁶ (±10 %)"
    )
    # Exactly at the cap: the window stops at the maximum, it never goes above it.
    at_cap = study.dose_plan(Decimal("100.0"))
    assert (at_cap.target_cells, at_cap.min_cells, at_cap.max_window_cells) == (
        100_000_000,
        90_000_000,
        100_000_000,
    )
    assert not at_cap.capped
    heavy = study.dose_plan(Decimal("130.0"))
    assert (heavy.target_cells, heavy.max_window_cells, heavy.capped) == (
        100_000_000,
        100_000_000,
        True,
    )
    assert "capped at 100.0×10⁶" in heavy.summary()
    # The settings are data: a trial with ±5 % gets a narrower window.
    Study.objects.filter(pk=study.pk).update(dose_window_pct=Decimal("5"))
    study.refresh_from_db()
    assert study.dose_plan(Decimal("72.5")).min_cells == 68_875_000


@pytest.mark.parametrize("weight", ["0", "-70", "29.9", "250.1", "1000", "70000"])
def test_implausible_weight_is_refused_with_the_range(roles: dict[str, Any], weight: str) -> None:
    participant = make_participant(actor=roles[LAB], arm="B")
    response = api_as(roles[CLINICIAN]).post(
        "/api/visits/record-weight/",
        {"participant": participant.code, "visit": "M6", "weight_kg": weight},
        format="json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "weight_out_of_range" and "weight_kg" in body["fields"]
    assert "30.0–250.0 kg" in body["message"]
    assert participant.visits.get(visit_type__code="M6").weight_kg is None


@pytest.mark.parametrize("weight", ["30", "250"])
def test_weight_at_the_range_edges_is_recorded(roles: dict[str, Any], weight: str) -> None:
    participant = make_participant(actor=roles[LAB], arm="B")
    response = api_as(roles[CLINICIAN]).post(
        "/api/visits/record-weight/",
        {
            "participant": participant.code,
            "visit": "M6",
            "weight_kg": weight,
            "measured_at": past(hours=1).isoformat(),
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["weight_kg"] == f"{weight}.0" and body["weight_recorded_by"] == "blinded_user"
    # 250 kg: 1×10⁶/kg would be 250×10⁶, capped at the trial maximum.
    assert body["dose_plan"]["target"] == {"30": "30.0×10⁶", "250": "100.0×10⁶"}[weight]


def test_weight_is_who_when_and_not_in_the_future(roles: dict[str, Any]) -> None:
    visit = make_participant(actor=roles[LAB]).visits.get(visit_type__code="M6")
    with pytest.raises(ServiceError) as info:
        visit_weight_record(
            visit=visit, weight_kg=Decimal("70"), actor=roles[CLINICIAN], measured_at=past(hours=-1)
        )
    assert info.value.code == "future_time"
    # Nor before the participant was enrolled (a weight from another time, or a typo in the year).
    enrolled = visit.participant.enrolled_on
    before = timezone.make_aware(
        dt.datetime(enrolled.year, enrolled.month, enrolled.day) - dt.timedelta(minutes=1)
    )
    with pytest.raises(ServiceError) as info:
        visit_weight_record(
            visit=visit, weight_kg=Decimal("70"), actor=roles[CLINICIAN], measured_at=before
        )
    assert (info.value.code, info.value.field) == ("time_order", "measured_at")
    assert f"enrolled ({enrolled:%Y-%m-%d})" in info.value.message
    visit.refresh_from_db()
    assert visit.weight_kg is None
    visit_weight_record(visit=visit, weight_kg=Decimal("70.04"), actor=roles[CLINICIAN])
    visit.refresh_from_db()
    assert visit.weight_kg == Decimal("70.0") and visit.weight_recorded_by == roles[CLINICIAN]
    assert visit.history.first().history_user == roles[CLINICIAN]
    # A visit without treatment needs no weight; a monitor-like role may not record one.
    follow_up = visit.participant.visits.get(visit_type__code="M12")
    with pytest.raises(ServiceError) as info:
        visit_weight_record(visit=follow_up, weight_kg=Decimal("70"), actor=roles[CLINICIAN])
    assert (info.value.code, info.value.field) == ("no_treatment", "visit")
    response = api_as(roles[CLINICIAN]).post(
        "/api/visits/record-weight/",
        {"participant": visit.participant.code, "visit": "M12", "weight_kg": "70"},
        format="json",
    )
    assert (response.status_code, response.json()["code"]) == (400, "no_treatment")
    assert list(response.json()["fields"]) == ["visit"]
    follow_up.refresh_from_db()
    assert follow_up.weight_kg is None
    with pytest.raises(ServiceError) as info:
        visit_weight_record(visit=visit, weight_kg=Decimal("70"), actor=roles[QA])
    assert info.value.code == "permission_denied"


def test_no_dose_without_a_weight(roles: dict[str, Any]) -> None:
    participant = make_participant(actor=roles[LAB], arm="A")
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=participant.visits.get(visit_type__code="M6"), actor=roles[LAB])
    assert info.value.code == "weight_missing" and info.value.field == "weight_kg"
    assert not Dose.objects.exists()


def test_no_dose_at_a_visit_without_treatment(roles: dict[str, Any]) -> None:
    participant = make_participant(actor=roles[LAB], arm="B")
    follow_up = participant.visits.get(visit_type__code="M12")
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=follow_up, actor=roles[LAB])
    assert (info.value.code, info.value.field) == ("no_treatment", "visit")
    response = api_as(roles[LAB]).post(
        "/api/doses/", {"participant": participant.code, "visit": "M12"}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (400, "no_treatment")
    assert list(response.json()["fields"]) == ["visit"]
    assert not Dose.objects.exists()


# --- which units -----------------------------------------------------------------------------


def _unit(code: str, cells: int, processing_id: int) -> ProductUnit:
    return ProductUnit(code=code, cell_number=cells * 1_000_000, processing_id=processing_id)


def test_suggestion_fewest_units_oldest_first_same_processing(trial: Any) -> None:
    plan = Study.objects.get().dose_plan(Decimal("55.0"))  # target 55×10⁶, from 49.5×10⁶
    oldest_first = [_unit("U1", 30, 1), _unit("U2", 30, 2), _unit("U3", 30, 1), _unit("U4", 60, 2)]
    # One unit reaches the target: the fewest wins over the oldest.
    assert [u.code for u in units_suggest(units=oldest_first, plan=plan)] == ["U4"]
    # Two needed: both from processing 1 (oldest first), not the two oldest across products.
    assert [u.code for u in units_suggest(units=oldest_first[:3], plan=plan)] == ["U1", "U3"]
    # Nothing reaches the target, but the window's lower edge is reached.
    low = [_unit("U5", 25, 3), _unit("U6", 25, 3)]
    assert [u.code for u in units_suggest(units=low, plan=plan)] == ["U5", "U6"]
    assert units_suggest(units=[_unit("U7", 40, 4)], plan=plan) == []


def test_multi_unit_dose_is_suggested_and_reserved(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="B")
    units = make_released_product_units(actor=lab, participant=participant, count=3)
    visit = participant.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=lab, weight_kg=Decimal("60"))
    proposal = dose_propose(visit=visit)
    assert proposal.units == units and proposal.plan.target_cells == 60_000_000
    response = api_as(lab).post(
        "/api/doses/", {"participant": participant.code, "visit": "M6"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert [u["unit"] for u in body["units"]] == [u.code for u in units]
    assert body["plan"]["target"] == "60.0×10⁶" and body["plan"]["window"] == "54.0×10⁶–66.0×10⁶"
    assert body["volume_ml"] == "10.0"
    # Reserved: another dose cannot take the same unit.
    other_visit = participant.visits.get(visit_type__code="BASELINE")
    record_weight(visit=other_visit, actor=lab)
    Dose.objects.filter(code=body["code"]).update(visit=other_visit)  # free M6 for the test
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=visit, actor=lab, units=[units[0]])
    assert (info.value.code, info.value.field) == ("unit_reserved", "units")
    assert list(Dose.objects.values_list("code", flat=True)) == [body["code"]]


def test_expired_and_foreign_units_are_refused(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="B")
    mine = make_released_product_units(actor=lab, participant=participant)
    stranger = make_participant(actor=lab, arm="B")
    foreign = make_released_product_units(actor=lab, participant=stranger)
    visit = participant.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=lab)
    client = api_as(lab)
    response = client.post(
        "/api/doses/",
        {"participant": participant.code, "visit": "M6", "units": [mine[0].code, foreign[0].code]},
        format="json",
    )
    assert response.status_code == 400
    assert (
        response.json()["code"] == "identity_mismatch"
        and foreign[0].code in response.json()["message"]
    )
    # The units were filled 8 days ago; a trial that keeps frozen units 7 days says expired.
    Study.objects.update(stored_shelf_life_days=7)
    response = client.post(
        "/api/doses/",
        {"participant": participant.code, "visit": "M6", "units": [mine[0].code]},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "unit_expired"
    assert "EXPIRED" in response.json()["message"]
    with pytest.raises(ServiceError) as info:
        dose_propose(visit=visit)
    assert info.value.code == "no_unit"
    assert not Dose.objects.exists()


def test_due_list_offers_the_bedside_check_when_the_dose_may_be_administered(
    roles: dict[str, Any], client: Any
) -> None:
    from django.urls import reverse

    from biobank.services.doses import dose_dispatch

    from .factories import make_dose

    dose = make_dose(actor=roles[LAB], arm="A")
    client.force_login(roles[LAB])

    def bedside() -> list[str]:
        html = client.get(reverse("admin:due"), {"days": "9999"}).content.decode()
        row = next(r for r in html.split("<tr") if dose.code in r)
        return re.findall(r'href="([^"]+)" class="bedside-link"', row)

    assert dose.status == "ready" and bedside() == []
    dose_dispatch(
        dose_scan=dose.code, participant_scan=dose.participant.code, actor=roles[CLINICIAN]
    )
    dose.refresh_from_db()
    assert dose.status == "dispatched"
    assert bedside() == [reverse("admin:scan_dose") + "?stage=administration"]
