"""The dose: body weight, the plan and its window at the edges, multi-unit and fresh doses,
deviations, saline, time order, and both arms through the crossover by the REST API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import CustodyEvent, Dose, IdentityCheck, ProductUnit, Study
from biobank.services.dose_plan import dose_propose, units_suggest, visit_weight_record
from biobank.services.doses import (
    UnitCount,
    dose_deviation_sign,
    dose_dispatch,
    dose_make_ready,
    dose_prepare,
    dose_release,
)
from biobank.services.qc_release import processing_qc_release
from biobank.services.roles import CLINICIAN, LAB, QA

from .factories import (
    PASSWORD,
    api_as,
    make_dose,
    make_participant,
    make_processing,
    make_ready_in_window,
    make_released_product_units,
    past,
    qa_signer,
    qc_pass,
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
    visit_weight_record(visit=visit, weight_kg=Decimal("70.04"), actor=roles[CLINICIAN])
    visit.refresh_from_db()
    assert visit.weight_kg == Decimal("70.0") and visit.weight_recorded_by == roles[CLINICIAN]
    assert visit.history.first().history_user == roles[CLINICIAN]
    # A visit without treatment needs no weight; a monitor-like role may not record one.
    follow_up = visit.participant.visits.get(visit_type__code="M12")
    with pytest.raises(ServiceError) as info:
        visit_weight_record(visit=follow_up, weight_kg=Decimal("70"), actor=roles[CLINICIAN])
    assert (info.value.code, info.value.field) == ("invalid", "visit")
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


# --- the window at its edges (two 25×10⁶ units, 45 kg: accepted 40.5–49.5×10⁶) ---------------


def _released_msc_dose(roles: dict[str, Any]) -> Dose:
    dose = make_dose(actor=roles[LAB], arm="B", ready=False)
    assert (dose.target_cells, dose.window_min_cells, dose.window_max_cells) == (
        45_000_000,
        40_500_000,
        49_500_000,
    )
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    return dose


def _counts(dose: Dose, first: int, second: int, viability: str = "100") -> list[UnitCount]:
    a, b = (u.code for u in dose.units.order_by("created_at", "code"))
    return [UnitCount(a, first, Decimal(viability)), UnitCount(b, second, Decimal(viability))]


def _make_ready_refused(dose: Dose, actor: Any, code: str, **inputs: Any) -> ServiceError:
    """Make-ready must be refused with ``code`` and leave the dose released, uncounted, its
    units unthawed."""
    with pytest.raises(ServiceError) as info:
        dose_make_ready(dose=dose, actor=actor, **inputs)
    assert info.value.code == code, info.value.message
    dose.refresh_from_db()
    assert (dose.status, dose.post_thaw_cell_count, dose.viable_cells) == ("released", None, None)
    assert set(dose.units.values_list("status", flat=True)) == {"released"}
    return info.value


@pytest.mark.parametrize(
    "first,second,viable",
    [(20_250_000, 20_250_000, 40_500_000), (24_750_000, 24_750_000, 49_500_000)],
    ids=["lower-edge", "upper-edge"],
)
def test_both_window_edges_are_accepted(
    roles: dict[str, Any], first: int, second: int, viable: int
) -> None:
    dose = _released_msc_dose(roles)
    dose_make_ready(dose=dose, actor=roles[LAB], unit_counts=_counts(dose, first, second))
    dose.refresh_from_db()
    assert dose.status == "ready" and dose.viable_cells == viable
    assert dose.post_thaw_cell_count == first + second
    assert sorted(dose.dose_units.values_list("post_thaw_cell_count", flat=True)) == sorted(
        [first, second]
    )
    assert set(dose.units.values_list("status", flat=True)) == {"thawed"}


@pytest.mark.parametrize(
    "first,second,shown",
    [(20_250_000, 20_249_999, "40,499,999"), (24_750_000, 24_750_001, "49,500,001")],
    ids=["just-below", "just-above"],
)
def test_just_outside_the_window_is_refused_with_the_numbers(
    roles: dict[str, Any], first: int, second: int, shown: str
) -> None:
    dose = _released_msc_dose(roles)
    counts = _counts(dose, first, second)
    refused = _make_ready_refused(dose, roles[LAB], "dose_out_of_window", unit_counts=counts)
    assert shown in refused.message and "40,500,000–49,500,000" in refused.message
    assert "45.0×10⁶ for 45.0 kg" in refused.message


def test_viability_counts_towards_the_viable_cells(roles: dict[str, Any]) -> None:
    dose = _released_msc_dose(roles)
    # 2 × 24×10⁶ at 80 % = 38.4×10⁶ viable: below 40.5×10⁶ although 48×10⁶ cells were counted.
    counts = _counts(dose, 24_000_000, 24_000_000, "80")
    refused = _make_ready_refused(dose, roles[LAB], "dose_out_of_window", unit_counts=counts)
    assert "38.4×10⁶" in refused.message


def test_more_cells_than_the_bag_held_is_refused(roles: dict[str, Any]) -> None:
    dose = _released_msc_dose(roles)
    counts = _counts(dose, 25_000_001, 20_000_000)
    refused = _make_ready_refused(dose, roles[LAB], "count_exceeds_unit", unit_counts=counts)
    assert "25.0×10⁶ frozen" in refused.message


def test_every_unit_needs_its_count(roles: dict[str, Any]) -> None:
    dose = _released_msc_dose(roles)
    refused = _make_ready_refused(
        dose,
        roles[LAB],
        "counts_required",
        post_thaw_cell_count=45_000_000,
        post_thaw_viability_pct=Decimal("90"),
    )
    assert refused.field == "units"


def test_documented_deviation_lets_an_out_of_window_dose_through(roles: dict[str, Any]) -> None:
    dose = _released_msc_dose(roles)
    with pytest.raises(ServiceError) as info:
        dose_deviation_sign(dose=dose, actor=roles[LAB], password=PASSWORD, reason="x" * 20)
    assert info.value.code == "permission_denied"
    with pytest.raises(ServiceError) as info:
        dose_deviation_sign(dose=dose, actor=roles[QA], password=PASSWORD, reason="low")
    assert (info.value.code, info.value.field) == ("reason_required", "reason")
    dose.refresh_from_db()
    assert dose.deviation_signature is None and dose.deviation_reason == ""
    response = api_as(roles[QA]).post(
        f"/api/doses/{dose.code}/deviation/",
        {"password": PASSWORD, "reason": "Only 2 bags left; PI accepts 36×10⁶ (protocol 7.3)"},
        format="json",
    )
    assert response.status_code == 200, response.content
    dose_make_ready(dose=dose, actor=roles[LAB], unit_counts=_counts(dose, 18_000_000, 18_000_000))
    dose.refresh_from_db()
    assert dose.status == "ready" and dose.viable_cells == 36_000_000
    assert dose.deviation_signature.meaning == "dose_deviation"
    unblinded = api_as(roles[LAB]).get(f"/api/doses/{dose.code}/").json()
    assert "PI accepts" in unblinded["deviation"] and "qa_user" in unblinded["deviation"]
    blinded = api_as(roles[CLINICIAN]).get(f"/api/doses/{dose.code}/").json()
    assert "deviation" not in blinded and "PI accepts" not in str(blinded)
    # Nothing in the dose's history says a deviation happened (only cell doses have one).
    reasons = list(Dose.history.filter(id=dose.pk).values_list("history_change_reason", flat=True))
    assert not any("deviation" in (r or "") for r in reasons)


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


# --- fresh product and saline ----------------------------------------------------------------


def _fresh_product(lab: Any, participant: Any, harvested_hours_ago: float = 3) -> Any:
    processing = make_processing(
        actor=lab,
        participant=participant,
        visit="BASELINE",
        harvested_at=past(hours=harvested_hours_ago),
    )
    qc_pass(processing=processing, actor=lab)
    processing_qc_release(processing=processing, actor=qa_signer(), password=PASSWORD)
    return processing


def test_fresh_product_is_dosed_without_freezing(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="A")
    product = _fresh_product(lab, participant)
    visit = participant.visits.get(visit_type__code="BASELINE")
    record_weight(visit=visit, actor=lab, weight_kg=Decimal("120"))  # capped at 100×10⁶
    dose = dose_prepare(visit=visit, actor=lab)
    assert dose.processing == product and not dose.units.exists()
    assert (dose.target_cells, dose.window_max_cells) == (100_000_000, 100_000_000)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    # Exactly at the cap is accepted; one cell more is not, though within +10 % of target.
    with pytest.raises(ServiceError) as info:
        dose_make_ready(
            dose=dose,
            actor=lab,
            post_thaw_cell_count=100_000_001,
            post_thaw_viability_pct=Decimal("100"),
        )
    assert info.value.code == "dose_out_of_window"
    dose_make_ready(
        dose=dose,
        actor=lab,
        post_thaw_cell_count=100_000_000,
        post_thaw_viability_pct=Decimal("100"),
    )
    dose.refresh_from_db()
    assert dose.viable_cells == 100_000_000 and dose.status == "ready"
    product.refresh_from_db()
    assert product.status == "harvested" and not product.units.exists()


def test_expired_fresh_product_is_refused(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="A")
    product = _fresh_product(lab, participant, harvested_hours_ago=49)  # keeps 48 h
    visit = participant.visits.get(visit_type__code="BASELINE")
    record_weight(visit=visit, actor=lab)
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=visit, actor=lab, processing=product)
    assert info.value.code == "fresh_expired" and product.code in info.value.message
    assert not Dose.objects.filter(visit=visit).exists()
    # A dose whose syringe would outlive the product is refused at make-ready too.
    Study.objects.update(fresh_shelf_life_hours=52)
    dose = dose_prepare(visit=visit, actor=lab, processing=product)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    with pytest.raises(ServiceError) as info:
        make_ready_in_window(dose=dose, actor=lab)
    assert (info.value.code, info.value.field) == ("fresh_expired", "ready_at")
    dose.refresh_from_db()
    assert dose.status == "released"


def test_saline_records_its_lot_and_the_same_volume(roles: dict[str, Any]) -> None:
    saline = make_dose(actor=roles[LAB], arm="A", visit="M6", ready=False)
    dose_release(dose=saline, actor=roles[QA], password=PASSWORD)
    with pytest.raises(ServiceError) as info:
        dose_make_ready(dose=saline, actor=roles[LAB])
    assert info.value.code == "saline_lot_required" and info.value.field == "saline_lot"
    dose_make_ready(dose=saline, actor=roles[LAB], saline_lot="NACL-24-117")
    saline.refresh_from_db()
    msc = make_dose(actor=roles[LAB], arm="B")
    assert saline.saline_lot == "NACL-24-117" and saline.volume_ml == msc.volume_ml == 10


# --- time order ------------------------------------------------------------------------------


def test_steps_are_never_dated_before_the_previous_step(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="A", visit="M6", ready=False)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    signed = dose.release_signature.signed_at
    # Made ready an hour before its release signature: refused, nothing changed.
    with pytest.raises(ServiceError) as info:
        dose_make_ready(
            dose=dose, actor=roles[LAB], ready_at=signed - dt.timedelta(hours=1), saline_lot="L1"
        )
    assert info.value.code == "time_order" and "release" in info.value.message
    dose.refresh_from_db()
    assert dose.status == "released"
    ready = timezone.now()
    dose_make_ready(dose=dose, actor=roles[LAB], ready_at=ready, saline_lot="L1")
    participant = dose.participant.code
    # Dispatch entered afterwards: before make-ready is refused, in the future too.
    for at, code in (
        (ready - dt.timedelta(minutes=1), "time_order"),
        (past(hours=-1), "future_time"),
    ):
        with pytest.raises(ServiceError) as info:
            dose_dispatch(
                dose_scan=dose.code, participant_scan=participant, actor=roles[CLINICIAN], at=at
            )
        assert info.value.code == code
        dose.refresh_from_db()
        assert dose.status == "ready" and dose.dispatched_at is None
    response = api_as(roles[CLINICIAN]).post(
        f"/api/doses/{dose.code}/dispatch/",
        {"participant_scan": participant, "at": (ready + dt.timedelta(seconds=1)).isoformat()},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (
        response.json()["dispatched_at"]
        == (ready + dt.timedelta(seconds=1)).astimezone(timezone.get_current_timezone()).isoformat()
    )


def test_unit_step_before_the_qc_signature_is_refused(roles: dict[str, Any]) -> None:
    from biobank.services.units import unit_transition

    lab = roles[LAB]
    unit = make_released_product_units(actor=lab, participant=make_participant(actor=lab))[0]
    with pytest.raises(ServiceError) as info:
        unit_transition(unit=unit, action="release", actor=roles[QA], at=past(hours=1))
    assert info.value.code == "time_order" and "QC release signature" in info.value.message
    unit.refresh_from_db()
    assert unit.status == "stored"


# --- both arms through the crossover, by the API ---------------------------------------------


def _walk_dose(
    roles: dict[str, Any], participant: Any, visit: str, weight: str, **prepare: Any
) -> dict[str, Any]:
    lab, qa, clinician = (api_as(roles[name]) for name in (LAB, QA, CLINICIAN))
    response = clinician.post(
        "/api/visits/record-weight/",
        {"participant": participant.code, "visit": visit, "weight_kg": weight},
        format="json",
    )
    assert response.status_code == 200, response.content
    response = lab.post(
        "/api/doses/", {"participant": participant.code, "visit": visit, **prepare}, format="json"
    )
    assert response.status_code == 201, response.content
    dose = response.json()
    code = dose["code"]
    assert qa.post(f"/api/doses/{code}/release/", {"password": PASSWORD}).status_code == 200
    if dose["treatment"] == "PLACEBO":
        ready = {"saline_lot": "NACL-24-117"}
    elif dose["processing"]:
        ready = {"post_thaw_cell_count": 80_000_000, "post_thaw_viability_pct": "95.0"}
    else:
        ready = {
            "units": [
                {
                    "unit": u["unit"],
                    "post_thaw_cell_count": 22_000_000,
                    "post_thaw_viability_pct": 90,
                }
                for u in dose["units"]
            ]
        }
    response = lab.post(f"/api/doses/{code}/make-ready/", ready, format="json")
    assert response.status_code == 200, response.content
    for step in ("dispatch", "administer"):
        response = clinician.post(
            f"/api/doses/{code}/{step}/", {"participant_scan": participant.code}, format="json"
        )
        assert response.status_code == 200, response.content
    return lab.get(f"/api/doses/{code}/").json()


@pytest.mark.parametrize("arm", ["A", "B"])
def test_both_arms_walk_the_crossover_through_the_api(roles: dict[str, Any], arm: str) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm=arm)
    if arm == "A":
        fresh = _fresh_product(lab, participant)  # baseline product, never frozen
        # The month-6 aspirate is processed, cryopreserved and stored (not dosed).
        make_released_product_units(actor=lab, participant=participant, visit="M6")
        baseline = _walk_dose(roles, participant, "BASELINE", "80", processing=fresh.code)
        month6 = _walk_dose(roles, participant, "M6", "80.5")
        assert baseline["treatment"] == "MSC" and baseline["processing"] == fresh.code
        assert baseline["units"] == [] and baseline["viable_cells"] == 76_000_000
        assert month6["treatment"] == "PLACEBO" and month6["saline_lot"] == "NACL-24-117"
    else:
        stored = make_released_product_units(
            actor=lab, participant=participant, visit="BASELINE", count=4
        )
        baseline = _walk_dose(roles, participant, "BASELINE", "80")
        month6 = _walk_dose(roles, participant, "M6", "80.5")
        assert baseline["treatment"] == "PLACEBO"
        assert month6["treatment"] == "MSC" and month6["processing"] is None
        assert [u["unit"] for u in month6["units"]] == [u.code for u in stored[:4]]
        assert month6["viable_cells"] == 79_200_000
        assert {
            u.status for u in ProductUnit.objects.filter(code__in=[s.code for s in stored])
        } == {"administered"}
    for dose in (baseline, month6):
        assert dose["status"] == "administered" and dose["expired"] is False
    assert baseline["plan"]["target"] == "80.0×10⁶" and month6["plan"]["target"] == "80.5×10⁶"
    # The clinician reads the log as the visibility policy shows it: aspirate and dose steps,
    # in time order, no unit or product step.
    clinician = api_as(roles[CLINICIAN])
    response = clinician.get("/api/events/", {"participant": participant.code, "item_kind": "dose"})
    assert response.status_code == 200
    events = response.json()["results"]
    assert {e["item_kind"] for e in events} == {"dose"}
    assert [e["action"] for e in events] == [
        *["prepare", "release", "make_ready", "dispatch", "administer"] * 2
    ]
    times = [e["at"] for e in events]
    assert times == sorted(times)
    assert "MSC" not in str(events) and "UN" not in "".join(str(e["data"]) for e in events)
    # The whole log (lab view) is in time order too, for every item.
    for code in {e.item_code for e in CustodyEvent.objects.filter(participant=participant)}:
        stamps = list(
            CustodyEvent.objects.filter(item_code=code).order_by("id").values_list("at", flat=True)
        )
        assert stamps == sorted(stamps), code
    # Identity checks are readable by participant and by dose: two per dose, all matched.
    checks = clinician.get("/api/identity-checks/", {"participant": participant.code}).json()
    assert [c["matched"] for c in checks["results"]] == [True] * 4
    by_dose = clinician.get("/api/identity-checks/", {"dose": month6["code"]}).json()
    assert [c["stage"] for c in by_dose["results"]] == ["dispatch", "administration"]


def test_identity_checks_include_mismatches(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="A")
    stranger = make_participant(actor=roles[LAB])
    client = api_as(roles[CLINICIAN])
    response = client.post(
        f"/api/doses/{dose.code}/dispatch/", {"participant_scan": stranger.code}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "identity_mismatch"
    for params in ({"participant": stranger.code}, {"dose": dose.code, "matched": "false"}):
        results = client.get("/api/identity-checks/", params).json()["results"]
        assert len(results) == 1 and results[0]["matched"] is False
        assert "IDENTITY MISMATCH" in results[0]["message"]
    # The identity checks are read-only: written by dispatch and administration only.
    refused = client.post("/api/identity-checks/", {})
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert IdentityCheck.objects.count() == 1
    assert api_as(roles[LAB]).get("/api/identity-checks/").status_code == 200


def test_blinded_view_of_plan_volume_and_expiry_is_the_same(roles: dict[str, Any]) -> None:
    msc = make_dose(actor=roles[LAB], arm="B")
    saline = make_dose(actor=roles[LAB], arm="A")
    client = api_as(roles[CLINICIAN])
    bodies = [client.get(f"/api/doses/{d.code}/").json() for d in (msc, saline)]
    assert bodies[0].keys() == bodies[1].keys()
    for key in ("plan", "volume_ml", "route", "status", "expired"):
        assert bodies[0][key] == bodies[1][key], key
    for dose in (msc, saline):
        assert dose.expires_at - dose.ready_at == dt.timedelta(hours=6)
    hidden = {"treatment", "units", "processing", "viable_cells", "saline_lot", "deviation"}
    assert not hidden & bodies[0].keys()
    assert "post_thaw_cell_count" not in bodies[0]
    # The dose log of the clinician does not reveal the product either.
    log = client.get("/api/events/", {"item": msc.code}).json()["results"]
    assert [e["action"] for e in log] == ["prepare", "release", "make_ready"]
    assert all(e["data"] == {} for e in log)
