"""Release for delayed injection: both arms through the crossover, identity, expiry, signatures,
emergency unblinding, the due list, and every blinded surface."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse

from biobank.errors import ServiceError
from biobank.models import Dose, IdentityCheck, QcRelease, Signature
from biobank.services.dose_plan import dose_propose, doses_due
from biobank.services.doses import (
    UnitCount,
    dose_administer,
    dose_cancel,
    dose_dispatch,
    dose_make_ready,
    dose_prepare,
    dose_release,
)
from biobank.services.qc_release import processing_qc_release
from biobank.services.roles import ADMINISTRATOR, CLINICIAN, LAB, MONITOR, QA, roles_sync
from biobank.services.storage import unit_check_out
from biobank.services.units import unit_transition

from .factories import (
    PASSWORD,
    api_as,
    make_dose,
    make_fresh_product,
    make_participant,
    make_ready_in_window,
    make_released_product_units,
    make_units,
    qc_pass,
    record_weight,
)

CONCEALED = ["MSC", "Placebo", "PLACEBO", "placebo", "Arm A", "Arm B", "arm A", "arm B", "NaCl"]


def _ready(dose: Dose, actor: Any, qa: Any) -> Dose:
    dose_release(dose=dose, actor=qa, password=PASSWORD)
    make_ready_in_window(dose=dose, actor=actor)
    return dose


def _treat(dose: Dose, roles: dict[str, Any]) -> Dose:
    _ready(dose, roles[LAB], roles[QA])
    code, participant = dose.code, dose.participant.code
    dose_dispatch(dose_scan=f"]C0{code}", participant_scan=participant, actor=roles[CLINICIAN])
    dose_administer(
        dose_scan=code.lower(),
        participant_scan=participant,
        actor=roles[CLINICIAN],
        administered_by="Dr. Neuro",
    )
    dose.refresh_from_db()
    return dose


@pytest.mark.parametrize("arm", ["A", "B"])
def test_whole_crossover_for_each_arm(roles: dict[str, Any], arm: str) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm=arm)
    # Both aspirates are taken, processed and stored, whatever the arm.
    units = {
        visit: make_released_product_units(actor=lab, participant=participant, visit=visit)
        for visit in ("BASELINE", "M6")
    }
    # Arm A gets MSC from its baseline product at baseline; arm B gets it at month 6.
    msc_visit = "BASELINE" if arm == "A" else "M6"
    for visit_code in ("BASELINE", "M6"):
        visit = participant.visits.get(visit_type__code=visit_code)
        record_weight(visit=visit, actor=lab)
        proposal = dose_propose(visit=visit)
        dose = _treat(dose_prepare(visit=visit, actor=lab), roles)
        assert dose.status == "administered" and dose.administered_by == "Dr. Neuro"
        if visit_code == msc_visit:
            assert proposal.treatment == "MSC"
            assert list(dose.units.all()) == units["BASELINE"] == proposal.units
            for unit in dose.units.all():
                assert unit.status == "administered"
                assert unit.participant == participant  # chain of identity
        else:
            assert proposal.treatment == "PLACEBO" and not dose.units.exists()
        visit.refresh_from_db()
        assert visit.done_on is not None
    assert IdentityCheck.objects.filter(matched=True).count() == 4


def test_msc_proposal_is_never_another_persons_unit(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    mine = make_participant(actor=lab, arm="B")
    other = make_participant(actor=lab, arm="B")
    make_released_product_units(actor=lab, participant=other)
    visit = mine.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=lab)
    with pytest.raises(ServiceError) as info:
        dose_propose(visit=visit)
    assert info.value.code == "no_unit"
    foreign = other.units.first()
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=visit, actor=lab, units=[foreign])
    assert info.value.code == "identity_mismatch"
    assert not Dose.objects.exists()


def test_wrong_participant_scan_is_refused_and_recorded(roles: dict[str, Any]) -> None:
    dose = _ready(make_dose(actor=roles[LAB], arm="B", ready=False), roles[LAB], roles[QA])
    stranger = make_participant(actor=roles[LAB])
    for call in (dose_dispatch, dose_administer):
        with pytest.raises(ServiceError) as info:
            call(dose_scan=dose.code, participant_scan=stranger.code, actor=roles[CLINICIAN])
        assert info.value.status_code == 409 and info.value.code == "identity_mismatch"
        assert "IDENTITY MISMATCH" in info.value.message
        assert not any(word in info.value.message for word in CONCEALED)
    dose.refresh_from_db()
    assert dose.status == "ready"
    checks = IdentityCheck.objects.filter(dose=dose, matched=False)
    assert checks.count() == 2
    assert checks.first().participant_scan == stranger.code


def test_garbage_participant_scan_is_not_a_match(roles: dict[str, Any]) -> None:
    dose = _ready(make_dose(actor=roles[LAB], ready=False), roles[LAB], roles[QA])
    with pytest.raises(ServiceError) as info:
        dose_dispatch(dose_scan=dose.code, participant_scan="PT0000001Q", actor=roles[CLINICIAN])
    assert (info.value.code, info.value.field) == ("identity_mismatch", "participant_scan")
    check = IdentityCheck.objects.get()
    assert check.message.startswith("IDENTITY NOT CONFIRMED") and not check.matched
    dose.refresh_from_db()
    assert dose.status == "ready"


def test_expired_dose_cannot_be_dispatched_or_administered(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="B")
    # The syringe keeps 6 h (trial setting): from exactly that moment it is expired.
    assert dose.expires_at == dose.ready_at + dt.timedelta(hours=6)
    assert not dose.is_expired(dose.expires_at - dt.timedelta(microseconds=1))
    assert dose.is_expired(dose.expires_at)
    with time_machine.travel(dose.expires_at, tick=False):
        with pytest.raises(ServiceError) as info:
            dose_dispatch(
                dose_scan=dose.code, participant_scan=dose.participant.code, actor=roles[CLINICIAN]
            )
        assert info.value.code == "expired" and "EXPIRED" in info.value.message
        Dose.objects.filter(pk=dose.pk).update(status="dispatched")
        with pytest.raises(ServiceError) as info:
            dose_administer(
                dose_scan=dose.code, participant_scan=dose.participant.code, actor=roles[CLINICIAN]
            )
        assert info.value.code == "expired"
    dose.refresh_from_db()
    assert dose.administered_at is None and dose.status == "dispatched"


def test_unsigned_qc_release_blocks_unit_release(roles: dict[str, Any]) -> None:
    lab, qa = roles[LAB], roles[QA]
    unit = make_units(actor=lab, count=1, stored=True)[0]
    with pytest.raises(ServiceError) as info:
        unit_transition(unit=unit, action="release", actor=qa)
    assert info.value.code == "qc_not_released"
    # QC incomplete: refused with what is missing.
    with pytest.raises(ServiceError) as info:
        processing_qc_release(processing=unit.processing, actor=qa, password=PASSWORD)
    assert info.value.code == "qc_not_met" and "Sterility" in info.value.message
    qc_pass(processing=unit.processing, actor=lab)
    # Wrong password: no signature, no release.
    with pytest.raises(ServiceError) as info:
        processing_qc_release(processing=unit.processing, actor=qa, password="guess")
    assert (info.value.code, info.value.field) == ("bad_signature_password", "password")
    # A technician may not sign.
    with pytest.raises(ServiceError) as info:
        processing_qc_release(processing=unit.processing, actor=lab, password=PASSWORD)
    assert (info.value.status_code, info.value.code) == (403, "permission_denied")
    assert not Signature.objects.exists() and not QcRelease.objects.exists()
    release = processing_qc_release(processing=unit.processing, actor=qa, password=PASSWORD)
    assert release.signature.signer == qa and release.signature.meaning == "qc_release"
    assert release.signature.meaning == "qc_release"
    unit_transition(unit=unit, action="release", actor=qa)


def _qc(
    processing: Any, actor: Any, test: str, result: str, passed: bool, value: Any = None, **at: Any
) -> Any:
    from biobank.services.processing import qc_result_record

    return qc_result_record(
        processing=processing,
        test=test,
        result=result,
        passed=passed,
        value=value,
        actor=actor,
        **at,
    )


# A failure recorded after the release stops the product whatever date it carries: dated an
# hour before the passing result it was still the last word (a pass clears a failure only as
# a later retest).
@pytest.mark.parametrize("backdated", [False, True])
def test_a_failed_qc_result_after_the_release_stops_the_product(
    roles: dict[str, Any], backdated: bool
) -> None:
    lab = roles[LAB]
    dose = make_dose(actor=lab, arm="B", units=4)  # ready: two units thawed, two spares stored
    product = dose.units.first().processing
    spares = list(product.units.filter(status="stored").order_by("code"))
    assert len(spares) == 2
    passed_at = product.qc_results.get(test="sterility").tested_at
    at = {"tested_at": passed_at - dt.timedelta(hours=1)} if backdated else {}
    _qc(product, lab, "sterility", "POSITIVE (day 14 culture)", passed=False, **at)
    dose.refresh_from_db()
    # The dose is withdrawn, its thawed units discarded; the lab reads why.
    why = "QC after release: Sterility failed (POSITIVE (day 14 culture))"
    assert (dose.status, dose.status_reason) == ("cancelled", f"withdrawn, {why}")
    assert set(dose.units.values_list("status", flat=True)) == {"discarded"}
    held = dict(product.units.filter(status="quarantined").values_list("code", "status_reason"))
    assert held == {spares[0].code: why, spares[1].code: why}
    # No new dose can draw on the product.
    visit = dose.visit
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=visit, actor=lab)
    assert info.value.code == "no_unit"
    assert Dose.objects.filter(visit=visit).count() == 1


def test_a_withdrawn_msc_dose_reads_like_a_cancelled_saline_dose_to_a_clinician(
    roles: dict[str, Any],
) -> None:
    lab = roles[LAB]
    msc, saline = make_dose(actor=lab, arm="B"), make_dose(actor=lab, arm="A")
    _qc(msc.units.first().processing, lab, "mycoplasma", "PCR positive", passed=False)
    dose_cancel(dose=saline, actor=lab, reason="saline syringe dropped, new one tomorrow")
    clinician, lab_api = api_as(roles[CLINICIAN]), api_as(lab)

    def seen(client: Any, dose: Dose) -> tuple[Any, list[tuple[str, str]]]:
        body = client.get(f"/api/doses/{dose.code}/").json()
        events = client.get("/api/events/", {"item": dose.code}).json()["results"]
        return body.get("status_reason"), [(e["action"], e["reason"]) for e in events]

    shown = "Recorded by the cell lab (not shown: the trial is blinded)"
    for dose in (msc, saline):
        reason, events = seen(clinician, dose)
        assert reason is None and events[-1] == ("cancel", shown)
        history = Dose.history.filter(id=dose.pk).values_list("history_change_reason", flat=True)
        assert history.first() == "cancel"
    assert "PCR positive" in seen(lab_api, msc)[0]
    assert seen(lab_api, saline)[1][-1] == ("cancel", "saline syringe dropped, new one tomorrow")


def test_a_failed_qc_result_after_the_dose_was_given_is_still_recorded(
    roles: dict[str, Any],
) -> None:
    lab = roles[LAB]
    dose = make_dose(actor=lab, arm="B", units=3)
    participant = dose.participant.code
    dose_dispatch(dose_scan=dose.code, participant_scan=participant, actor=roles[CLINICIAN])
    dose_administer(dose_scan=dose.code, participant_scan=participant, actor=roles[CLINICIAN])
    product = dose.units.first().processing
    result = _qc(product, lab, "sterility", "POSITIVE (day 14 culture)", passed=False)
    assert product.qc_results.filter(pk=result.pk, passed=False).exists()
    dose.refresh_from_db()
    assert dose.status == "administered"
    spare = product.units.exclude(pk__in=dose.units.values("pk")).get()
    assert spare.status == "quarantined"


def test_a_unit_out_of_storage_is_not_released_after_a_failed_qc_result(
    roles: dict[str, Any],
) -> None:
    lab, qa = roles[LAB], roles[QA]
    participant = make_participant(actor=lab, arm="B")
    unit = make_released_product_units(actor=lab, participant=participant, count=1)[0]
    unit_check_out(unit=unit, actor=lab)
    _qc(unit.processing, lab, "endotoxin", "2.5 EU/mL", passed=False, value=Decimal("2.5"))
    unit.refresh_from_db()
    assert unit.status == "checked_out"  # a checked-out unit has no quarantine step
    with pytest.raises(ServiceError) as info:
        unit_transition(unit=unit, action="release", actor=qa)
    assert (info.value.code, info.value.field) == ("qc_failed", "unit")
    assert "Endotoxin failed (2.5 EU/mL)" in info.value.message
    unit.refresh_from_db()
    assert unit.status == "checked_out"


def test_a_fresh_product_failing_qc_after_the_release_is_not_dosed(roles: dict[str, Any]) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="A")
    product = make_fresh_product(actor=lab, participant=participant)
    _qc(product, lab, "viability", "61 %", passed=False, value=Decimal("61"))
    visit = participant.visits.get(visit_type__code="BASELINE")
    record_weight(visit=visit, actor=lab)
    with pytest.raises(ServiceError) as info:
        dose_prepare(visit=visit, actor=lab, processing=product)
    assert (info.value.code, info.value.field) == ("qc_failed", "processing")
    assert "Viability failed (61 %)" in info.value.message
    assert not Dose.objects.filter(visit=visit).exists()


def test_a_viability_below_the_limit_cannot_be_ticked_as_passed(roles: dict[str, Any]) -> None:
    processing = make_units(actor=roles[LAB], count=1)[0].processing
    with pytest.raises(ServiceError) as info:
        _qc(processing, roles[LAB], "viability", "65 %", passed=True, value=Decimal("65.0"))
    assert (info.value.code, info.value.field) == ("qc_spec", "passed")
    assert info.value.message == (
        "Viability 65.0 % is below the release limit of 70 %: record it as failed."
    )
    assert not processing.qc_results.exists()
    _qc(processing, roles[LAB], "viability", "65 %", passed=False, value=Decimal("65.0"))
    assert list(processing.qc_results.values_list("passed", flat=True)) == [False]


@pytest.mark.parametrize(
    "value,message",
    [(None, "needs its value in %"), (Decimal("250"), "between 0 and 100 %, not 250 %")],
)
def test_a_viability_result_needs_a_percentage(
    roles: dict[str, Any], value: Any, message: str
) -> None:
    processing = make_units(actor=roles[LAB], count=1)[0].processing
    with pytest.raises(ServiceError) as info:
        _qc(processing, roles[LAB], "viability", "55 %", passed=True, value=value)
    assert info.value.field == "value" and message in info.value.message
    assert not processing.qc_results.exists()


@pytest.mark.parametrize(
    ("viability", "code", "message"),
    [
        ("69.9", "viability_too_low", "The viability of {unit}, 69.9 %, is below 70 %: it cannot"),
        ("NaN", "invalid", "Viability must be between 0 and 100 %, not NaN."),
        ("sNaN", "invalid", "Viability must be between 0 and 100 %, not sNaN."),
        ("Infinity", "invalid", "Viability must be between 0 and 100 %, not Infinity."),
        ("100.1", "invalid", "Viability must be between 0 and 100 %, not 100.1."),
    ],
)
def test_a_post_thaw_viability_too_low_or_not_a_percentage_is_refused(
    roles: dict[str, Any], viability: str, code: str, message: str
) -> None:
    dose = make_dose(actor=roles[LAB], arm="B", ready=False)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    first, second = (u.code for u in dose.units.all())
    with pytest.raises(ServiceError) as info:
        dose_make_ready(
            dose=dose,
            actor=roles[LAB],
            unit_counts=[
                UnitCount(first, 24_000_000, Decimal("95")),
                UnitCount(second, 24_000_000, Decimal(viability)),
            ],
        )
    assert (info.value.code, info.value.field) == (code, "units")
    assert info.value.message.startswith(message.format(unit=second))
    dose.refresh_from_db()
    assert dose.status == "released" and dose.viable_cells is None


def test_cancelled_msc_dose_returns_its_unit(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="B", ready=False)
    dose_release(dose=dose, actor=roles[QA], password=PASSWORD)
    dose_cancel(dose=dose, actor=roles[LAB], reason="visit postponed")
    assert [u.status for u in dose.units.all()] == ["frozen", "frozen"]
    assert not dose.dose_units.filter(active=True).exists()
    # The visit is free for a new dose.
    assert not Dose.objects.filter(visit=dose.visit).exclude(status="cancelled").exists()


def test_cancelled_ready_dose_discards_its_thawed_units(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], arm="B")
    assert [u.status for u in dose.units.all()] == ["thawed", "thawed"]
    dose_cancel(dose=dose, actor=roles[LAB], reason="participant unwell")
    units = list(dose.units.all())
    assert [u.status for u in units] == ["discarded", "discarded"]
    last = units[0].events.order_by("-at", "-id").first()
    assert (last.action, last.reason) == (
        "discard",
        f"thawed for {dose.code}, which was cancelled: participant unwell",
    )


def test_dose_release_needs_qa_and_password(roles: dict[str, Any]) -> None:
    dose = make_dose(actor=roles[LAB], ready=False)
    with pytest.raises(ServiceError) as info:
        dose_release(dose=dose, actor=roles[LAB], password=PASSWORD)
    assert (info.value.status_code, info.value.code) == (403, "permission_denied")
    with pytest.raises(ServiceError) as info:
        dose_release(dose=dose, actor=roles[QA], password="wrong")
    assert (info.value.code, info.value.field) == ("bad_signature_password", "password")
    dose.refresh_from_db()
    assert dose.status == "prepared" and dose.release_signature is None


def test_due_list(roles: dict[str, Any], client: Any) -> None:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="B")
    units = make_released_product_units(actor=lab, participant=participant)
    record_weight(visit=participant.visits.get(visit_type__code="M6"), actor=lab)
    rows = doses_due(within_days=9999, today=dt.date(2025, 9, 1))
    mine = [r for r in rows if r.visit.participant == participant]
    assert [(r.visit.visit_type.code, r.treatment) for r in mine] == [
        ("BASELINE", "PLACEBO"),
        ("M6", "MSC"),
    ]
    assert mine[0].todo == "record body weight"
    assert mine[1].units == units and units[0].code in mine[1].todo
    client.force_login(lab)
    html = client.get(reverse("admin:due"), {"days": "365"}).content.decode()
    assert units[0].code in html and "MSC" in html
    # A look-ahead out of range is said, on the page and in the API alike.
    html = client.get(reverse("admin:due"), {"days": "9999"}).content.decode()
    assert (
        "Days must be a whole number from 1 to 365, not &#x27;9999&#x27;. Showing 30 days." in html
    )
    refused = api_as(lab).get("/api/doses/due/", {"days": "9999"})
    assert (refused.status_code, refused.json()["fields"]) == (
        400,
        {"days": ["days must be a whole number from 1 to 365, not '9999'."]},
    )
    client.force_login(roles[CLINICIAN])
    html = client.get(reverse("admin:due"), {"days": "365"}).content.decode()
    assert participant.pseudonym in html
    assert units[0].code not in html and "MSC" not in html and "PLACEBO" not in html


# --- blinded surfaces --------------------------------------------------------------------


@pytest.fixture
def two_doses(roles: dict[str, Any]) -> tuple[Dose, Dose]:
    msc = make_dose(actor=roles[LAB], arm="B", ready=False)
    saline = make_dose(actor=roles[LAB], arm="A", ready=False)
    for dose in (msc, saline):
        _ready(dose, roles[LAB], roles[QA])
        dose.refresh_from_db()
    assert msc.treatment == "MSC" and saline.treatment == "PLACEBO"
    return msc, saline


def _assert_blind(html: str, *extra: str) -> None:
    for word in [*CONCEALED, *extra]:
        assert word not in html, word


@pytest.mark.parametrize("role", [CLINICIAN, MONITOR])
def test_blinded_admin_pages(
    roles: dict[str, Any], two_doses: tuple[Dose, Dose], client: Any, role: str
) -> None:
    msc, saline = two_doses
    client.force_login(roles[role])
    unit_code = msc.units.first().code
    pages = [
        reverse("admin:biobank_dose_changelist"),
        reverse("admin:biobank_dose_change", args=[msc.pk]),
        reverse("admin:biobank_dose_change", args=[saline.pk]),
        reverse("admin:biobank_dose_history", args=[msc.pk]),
        reverse("admin:biobank_participant_changelist"),
        reverse("admin:biobank_participant_change", args=[msc.participant_id]),
        reverse("admin:biobank_participant_history", args=[msc.participant_id]),
        reverse("admin:index"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_blind(response.content.decode(), unit_code, "post_thaw", "Post-thaw")
    # Searching by the unit's code must not find the MSC dose.
    found = client.get(reverse("admin:biobank_dose_changelist"), {"q": unit_code}).content.decode()
    assert msc.code not in found
    # Concealed filters through crafted URLs are refused.
    for params in (
        "treatment=MSC",
        "treatment__exact=PLACEBO",
        "units__isnull=True",
        "processing__isnull=True",
        "saline_lot=NACL-24-117",
    ):
        response = client.get(reverse("admin:biobank_dose_changelist") + "?" + params)
        assert response.status_code == 400, params
    # Product records are out of reach altogether.
    for name in ("productunit", "processing", "placement", "arm", "armschedule"):
        assert client.get(reverse(f"admin:biobank_{name}_changelist")).status_code == 403, name
    # The custody log shows the blinded-safe steps only (the visibility policy's rows).
    log = client.get(reverse("admin:biobank_custodyevent_changelist"))
    assert log.status_code == 200
    _assert_blind(log.content.decode(), unit_code, "post_thaw", "Post-thaw")


def test_dose_pages_look_the_same_for_msc_and_saline(
    roles: dict[str, Any], two_doses: tuple[Dose, Dose], client: Any
) -> None:
    msc, saline = two_doses
    client.force_login(roles[CLINICIAN])

    def shape(dose: Dose) -> str:
        html = client.get(reverse("admin:biobank_dose_change", args=[dose.pk])).content.decode()
        for value in (dose.code, dose.participant.pseudonym, dose.participant.code):
            html = html.replace(value, "X")
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
        return "".join(c for c in html if not c.isdigit())

    assert shape(msc) == shape(saline)


def test_unblinded_roles_see_identity(
    roles: dict[str, Any], two_doses: tuple[Dose, Dose], client: Any
) -> None:
    msc, _ = two_doses
    client.force_login(roles[LAB])
    html = client.get(reverse("admin:biobank_dose_change", args=[msc.pk])).content.decode()
    assert msc.units.first().code in html and "Autologous BM-MSC" in html


def test_scan_api_for_a_dose_is_blind(roles: dict[str, Any], two_doses: tuple[Dose, Dose]) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(roles[CLINICIAN])
    for dose in two_doses:
        body = client.post("/api/scan/", {"code": dose.code}, format="json").json()
        _assert_blind(str(body), two_doses[0].units.first().code)


def test_dose_history_has_no_concealed_fields(two_doses: tuple[Dose, Dose]) -> None:
    # The history keeps exactly the fields that are the same in shape for MSC and saline: a new
    # product field forgotten from the concealed list would show here.
    names = {f.name for f in Dose.history.model._meta.fields}
    assert names == {
        "id", "code", "participant", "visit", "status", "route", "volume_ml",
        "weight_kg", "target_cells", "window_min_cells", "window_max_cells", "expires_at",
        "prepared_at", "prepared_by", "ready_at", "release_signature", "dispatched_at",
        "administered_at", "administered_by",
        "history_id", "history_date", "history_type", "history_user", "history_change_reason",
    }  # fmt: skip
    assert "treatment" not in names and "status_reason" not in names


def test_dose_events_are_identical_in_shape(two_doses: tuple[Dose, Dose]) -> None:
    msc, saline = two_doses

    def steps(dose: Dose) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [(e.action, e.from_status, e.to_status, e.data) for e in dose.events.order_by("id")]

    assert steps(msc) == steps(saline)


def test_roles_are_groups_with_permissions(roles: dict[str, Any]) -> None:
    assert roles[LAB].has_perm("biobank.view_allocation")
    assert roles[QA].has_perm("biobank.approve_qc_release")
    assert not roles[CLINICIAN].has_perm("biobank.view_allocation")
    assert not roles[MONITOR].has_perm("biobank.change_dose")
    assert not roles[MONITOR].has_perm("biobank.view_productunit")
    assert roles[ADMINISTRATOR].has_perm("biobank.view_unblinding")
    before = {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()}
    roles_sync()
    after = {g.name: set(g.permissions.values_list("pk", flat=True)) for g in Group.objects.all()}
    assert before == after


def test_dose_labels_are_identical_for_msc_and_saline(
    roles: dict[str, Any], two_doses: tuple[Dose, Dose]
) -> None:
    from rest_framework.test import APIClient

    msc, saline = two_doses
    # Same visit, expiry and study values: only the code and pseudonym may differ.
    saline_visit = saline.visit
    Dose.objects.filter(pk=saline.pk).update(expires_at=msc.expires_at)
    client = APIClient()
    client.force_authenticate(roles[CLINICIAN])
    bodies = {}
    for dose in (msc, saline):
        response = client.get(f"/api/labels/{dose.code}.zpl")
        assert response.status_code == 200, response.content
        text = response.content.decode("ascii")
        text = text.replace(dose.code, "ID").replace(dose.participant.pseudonym, "P")
        text = text.replace(dose.visit.visit_type.name, "V")
        # Coordinates shift with the width of the pseudonym; the content must not differ.
        bodies[dose.treatment] = re.sub(r"\d+", "#", text)
    assert bodies["MSC"] == bodies["PLACEBO"]
    assert "MSC or 0.9" in bodies["MSC"] or "_" in bodies["MSC"]
    assert saline_visit is not None


def test_dose_label_before_preparation_is_a_clear_error(roles: dict[str, Any]) -> None:
    from rest_framework.test import APIClient

    dose = make_dose(actor=roles[LAB], ready=False)
    client = APIClient()
    client.force_authenticate(roles[LAB])
    response = client.get(f"/api/labels/{dose.code}.png")
    assert response.status_code == 422 and response.json()["code"] == "dose_not_ready"
