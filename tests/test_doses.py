"""The dose: the window at its edges when made ready, deviations, fresh product and saline,
and time order."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Dose, Study
from biobank.services.doses import (
    UnitCount,
    dose_cancel,
    dose_deviation_sign,
    dose_make_ready,
    dose_prepare,
    dose_release,
)
from biobank.services.roles import CLINICIAN, LAB, QA
from biobank.services.units import UnitSpec, unit_discard, units_create

from .factories import (
    PASSWORD,
    api_as,
    make_dose,
    make_fresh_product,
    make_participant,
    make_ready_in_window,
    make_released_product_units,
    past,
    record_weight,
)

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


def _fresh_dose_with_deviation(
    roles: dict[str, Any], product: Any, weight_kg: str = "45.0"
) -> Dose:
    """A released fresh dose of ``product`` with QA's signed deviation from its window."""
    visit = product.participant.visits.get(visit_type__code="BASELINE")
    record_weight(visit=visit, actor=roles[LAB], weight_kg=Decimal(weight_kg))
    dose = dose_prepare(visit=visit, actor=roles[LAB], processing=product)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    reason = "PI accepts this count, protocol 7.3"
    dose_deviation_sign(dose=dose, actor=roles[QA], password=PASSWORD, reason=reason)
    return dose


def _fresh_count(dose: Dose, actor: Any, cells: int) -> ServiceError | None:
    """Make the fresh dose ready with ``cells`` at 100 %: the refusal, or None."""
    try:
        dose_make_ready(
            dose=dose, actor=actor, post_thaw_cell_count=cells, post_thaw_viability_pct=Decimal(100)
        )
    except ServiceError as refused:
        dose.refresh_from_db()
        assert (dose.status, dose.viable_cells) == ("released", None)
        return refused
    return None


def test_a_signed_deviation_never_lifts_the_trial_maximum(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    product = make_fresh_product(actor=lab, participant=make_participant(actor=lab, arm="A"))
    dose = _fresh_dose_with_deviation(roles, product, "120")  # window 90–100×10⁶
    refused = _fresh_count(dose, lab, 100_000_001)
    assert refused is not None
    assert (refused.code, refused.field) == ("dose_above_maximum", "post_thaw_cell_count")
    assert "100,000,001" in refused.message and "100,000,000" in refused.message
    # Below the window is what a deviation is for.
    assert _fresh_count(dose, lab, 60_000_000) is None
    dose.refresh_from_db()
    assert (dose.status, dose.viable_cells) == ("ready", 60_000_000)


def test_cells_filled_into_units_are_not_dosed_fresh_as_well(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    product = make_fresh_product(actor=lab, participant=make_participant(actor=lab, arm="A"))

    def fill(cells: int) -> None:
        units_create(processing=product, specs=[UnitSpec("cryobag", cells, Decimal(20))], actor=lab)

    fill(80_000_000)  # of the 120×10⁶ harvested
    # A second fill may take only what is left: 40×10⁶.
    with pytest.raises(ServiceError) as info:
        fill(40_000_001)
    assert (info.value.code, info.value.field) == ("exceeds_harvest", "cell_number")
    assert "40.0×10⁶ (40,000,000) left of the 120.0×10⁶" in info.value.message
    assert product.units.count() == 1
    dose = _fresh_dose_with_deviation(roles, product)  # 45 kg: 40.5–49.5×10⁶
    refused = _fresh_count(dose, lab, 45_000_000)
    assert refused is not None
    assert (refused.code, refused.field) == ("count_exceeds_product", "post_thaw_cell_count")
    assert "45.0×10⁶ cells is more than the 40.0×10⁶ (40,000,000) left" in refused.message
    assert _fresh_count(dose, lab, 40_000_000) is None
    # Now every harvested cell is taken: no unit can be filled.
    with pytest.raises(ServiceError) as info:
        fill(1)
    assert info.value.code == "exceeds_harvest"


def test_a_unit_of_a_live_dose_is_settled_only_by_cancelling_the_dose(
    roles: dict[str, Any],
) -> None:
    lab = roles[LAB]
    dose = make_dose(actor=lab, arm="B")  # ready: its two units thawed
    thawed = dose.units.order_by("code").first()
    with pytest.raises(ServiceError) as info:
        unit_discard(unit=thawed, actor=lab, reason="bag dropped on the floor")
    assert (info.value.code, info.value.field) == ("reserved_for_dose", "unit")
    assert dose.code in info.value.message
    thawed.refresh_from_db()
    dose.refresh_from_db()
    assert (thawed.status, dose.status) == ("thawed", "ready")
    # Nor in a batch (the table's check, whatever the path): refused at its place in the list.
    from biobank.services.lifecycle import Step, transitions_apply_bulk

    other = dose.units.order_by("code").last()
    steps = [Step(item=u, action="discard", reason="clearing the bench") for u in (thawed, other)]
    with pytest.raises(ServiceError) as info:
        transitions_apply_bulk(steps=steps, actor=lab)
    assert (info.value.code, info.value.index) == ("reserved_for_dose", 0)
    assert set(dose.units.values_list("status", flat=True)) == {"thawed"}
    dose_cancel(dose=dose, actor=lab, reason="bag dropped on the floor")
    assert set(dose.units.values_list("status", flat=True)) == {"discarded"}
    assert not dose.dose_units.filter(active=True).exists()


# --- fresh product and saline ----------------------------------------------------------------


def test_fresh_product_is_dosed_without_freezing(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="A")
    product = make_fresh_product(actor=lab, participant=participant)
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
    # Harvested 49 hours ago; fresh product keeps 48 hours.
    product = make_fresh_product(actor=lab, participant=participant, harvested_hours_ago=49)
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
    assert (info.value.code, info.value.field) == ("time_order", "ready_at")
    assert "release" in info.value.message
    dose.refresh_from_db()
    assert dose.status == "released"
    ready = timezone.now()
    dose_make_ready(dose=dose, actor=roles[LAB], ready_at=ready, saline_lot="L1")
    participant = dose.participant.code
    clinician = api_as(roles[CLINICIAN])

    def dispatch(at: dt.datetime) -> Any:
        body = {"participant_scan": participant, "at": at.isoformat()}
        return clinician.post(f"/api/doses/{dose.code}/dispatch/", body, format="json")

    # Dispatch entered afterwards: before make-ready is refused, in the future too.
    for at, code in (
        (ready - dt.timedelta(minutes=1), "time_order"),
        (past(hours=-1), "future_time"),
    ):
        refused = dispatch(at)
        assert (refused.status_code, refused.json()["code"]) == (400, code)
        if code == "future_time":  # the time given and the time now
            assert "is in the future (now 20" in refused.json()["message"]
        dose.refresh_from_db()
        assert dose.status == "ready" and dose.dispatched_at is None
    response = dispatch(ready + dt.timedelta(seconds=1))
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
