"""Doses given: both arms through the crossover by the REST API, the identity checks at
dispatch and administration, and what a blinded clinician sees."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from biobank.models import CustodyEvent, IdentityCheck, ProductUnit
from biobank.services.roles import CLINICIAN, LAB, MONITOR, QA

from .factories import (
    PASSWORD,
    api_as,
    make_dose,
    make_fresh_product,
    make_participant,
    make_released_product_units,
    record_weight,
)

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
        # The baseline product is dosed fresh, never frozen.
        fresh = make_fresh_product(actor=lab, participant=participant)
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


@pytest.mark.parametrize("belt", [True, False], ids=["with-redaction-middleware", "views-only"])
def test_a_unit_scanned_at_the_bedside_reaches_a_blinded_role_redacted(
    roles: dict[str, Any], settings: Any, belt: bool
) -> None:
    if not belt:  # the views redact on their own; the middleware is a second line
        settings.MIDDLEWARE = [
            m for m in settings.MIDDLEWARE if m != "biobank.middleware.BlindedRedactionMiddleware"
        ]
    dose = make_dose(actor=roles[LAB], arm="B")
    unit_code = dose.units.order_by("code").first().code
    # A clinician at the bedside scans a unit's barcode instead of the wristband.
    lab = api_as(roles[LAB])
    wrong = api_as(roles[CLINICIAN]).post(
        f"/api/doses/{dose.code}/dispatch/", {"participant_scan": unit_code}, format="json"
    )
    assert (wrong.status_code, wrong.json()["code"]) == (409, "identity_mismatch")
    assert IdentityCheck.objects.get().participant_scan == unit_code

    body = api_as(roles[MONITOR]).get("/api/identity-checks/", {"dose": dose.code}).json()
    assert body["count"] == 1
    check = body["results"][0]
    assert (check["matched"], check["participant_scan"]) == (False, "[lab record]")
    assert unit_code not in str(body)
    assert unit_code in str(lab.get("/api/identity-checks/", {"dose": dose.code}).json())


def test_the_admin_shows_a_blinded_role_no_lab_code_from_an_identity_check(
    roles: dict[str, Any], client: Any
) -> None:
    dose = make_dose(actor=roles[LAB], arm="B")
    unit_code = dose.units.order_by("code").first().code
    api_as(roles[CLINICIAN]).post(
        f"/api/doses/{dose.code}/dispatch/", {"participant_scan": unit_code}, format="json"
    )
    for name, seen in ((CLINICIAN, False), (MONITOR, False), (LAB, True)):
        client.force_login(roles[name])
        for url in (
            "/admin/biobank/identitycheck/",
            f"/admin/biobank/dose/{dose.pk}/change/",
        ):
            response = client.get(url)
            assert response.status_code == 200, url
            assert (unit_code in response.content.decode()) is seen, (name, url)


def test_dose_walk_via_api_with_identity_checks(trial: Any, roles: dict[str, Any]) -> None:
    lab, qa, clinician = roles[LAB], roles[QA], roles[CLINICIAN]
    participant = make_participant(actor=lab, arm="B")
    units = make_released_product_units(actor=lab, participant=participant)
    record_weight(visit=participant.visits.get(visit_type__code="M6"), actor=clinician)
    dose = (
        api_as(lab)
        .post("/api/doses/", {"participant": participant.code, "visit": "M6"}, format="json")
        .json()
    )
    assert dose["treatment"] == "MSC" and [u["unit"] for u in dose["units"]] == [
        u.code for u in units
    ]
    assert dose["plan"]["target"] == "45.0×10⁶"
    code = dose["code"]
    bad_sig = api_as(qa).post(f"/api/doses/{code}/release/", {"password": "nope"}, format="json")
    assert bad_sig.status_code == 400 and "password" in bad_sig.json()["fields"]
    assert bad_sig.json()["code"] == "bad_signature_password"
    assert (
        api_as(qa)
        .post(f"/api/doses/{code}/release/", {"password": PASSWORD}, format="json")
        .status_code
        == 200
    )
    ready = {
        "units": [
            {"unit": u.code, "post_thaw_cell_count": 24_000_000, "post_thaw_viability_pct": "87.5"}
            for u in units
        ]
    }
    assert (
        api_as(lab).post(f"/api/doses/{code}/make-ready/", ready, format="json").status_code == 200
    )
    stranger = make_participant(actor=lab)
    wrong = api_as(clinician).post(
        f"/api/doses/{code}/dispatch/", {"participant_scan": stranger.code}, format="json"
    )
    assert wrong.status_code == 409 and "IDENTITY MISMATCH" in wrong.json()["message"]
    assert wrong.json()["code"] == "identity_mismatch"
    ok = api_as(clinician).post(
        f"/api/doses/{code}/dispatch/",
        {"participant_scan": f"]C0{participant.code}"},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["status"] == "dispatched"
    assert "treatment" not in ok.json() and "units" not in ok.json()  # clinician is blinded
    done = api_as(clinician).post(
        f"/api/doses/{code}/administer/",
        {"participant_scan": participant.code, "administered_by": "Dr. N"},
        format="json",
    )
    assert done.status_code == 200 and done.json()["status"] == "administered"


def test_a_refused_step_leaves_no_matched_identity_check(roles: dict[str, Any]) -> None:
    # A matched check is the record that the dose went ahead: a step refused for another reason
    # (route, expiry) leaves none. A mismatch is kept, refused or not (a near miss).
    dose = make_dose(actor=roles[LAB], arm="A")
    clinician = api_as(roles[CLINICIAN])
    code, who = dose.code, dose.participant.code
    ok = clinician.post(f"/api/doses/{code}/dispatch/", {"participant_scan": who})
    assert ok.status_code == 200
    wrong_route = clinician.post(
        f"/api/doses/{code}/administer/", {"participant_scan": who, "route": "intravenous"}
    )
    assert (wrong_route.status_code, wrong_route.json()["code"]) == (400, "invalid")
    assert wrong_route.json()["fields"] == {"route": ["This dose is for intrathecal use only."]}
    checks = IdentityCheck.objects.filter(dose=dose).order_by("id")
    assert [(c.stage, c.matched) for c in checks] == [("dispatch", True)]
    stranger = make_participant(actor=roles[LAB])
    mismatch = clinician.post(f"/api/doses/{code}/administer/", {"participant_scan": stranger.code})
    assert (mismatch.status_code, mismatch.json()["code"]) == (409, "identity_mismatch")
    assert [(c.stage, c.matched) for c in checks.all()] == [
        ("dispatch", True),
        ("administration", False),
    ]
    dose.refresh_from_db()
    assert dose.status == "dispatched"


def test_an_expired_dose_leaves_no_matched_identity_check(roles: dict[str, Any]) -> None:
    import time_machine

    dose = make_dose(actor=roles[LAB], arm="A")
    assert dose.expires_at is not None
    later = dose.expires_at + dt.timedelta(minutes=1)
    with time_machine.travel(later):
        response = api_as(roles[CLINICIAN]).post(
            f"/api/doses/{dose.code}/dispatch/", {"participant_scan": dose.participant.code}
        )
    assert (response.status_code, response.json()["code"]) == (400, "expired")
    assert not IdentityCheck.objects.filter(dose=dose).exists()
    dose.refresh_from_db()
    assert dose.status == "ready"


@pytest.mark.parametrize("step", ["dispatch", "administer"])
def test_a_step_on_one_dose_refuses_the_label_of_another(roles: dict[str, Any], step: str) -> None:
    msc = make_dose(actor=roles[LAB], arm="B")
    saline = make_dose(actor=roles[LAB], arm="A")
    clinician = api_as(roles[CLINICIAN])
    if step == "administer":
        for dose in (msc, saline):
            body = {"participant_scan": dose.participant.code}
            assert clinician.post(f"/api/doses/{dose.code}/dispatch/", body).status_code == 200
    # Asked on the saline dose, with the MSC dose's label and its own participant scanned.
    body = {"participant_scan": msc.participant.code, "dose_scan": msc.code}
    refused = clinician.post(f"/api/doses/{saline.code}/{step}/", body, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "identity_mismatch")
    assert list(refused.json()["fields"]) == ["dose_scan"]
    assert refused.json()["message"] == (
        f"IDENTITY MISMATCH: the scanned label is {msc.code}, but this step is for "
        f"{saline.code}. Do not give this dose."
    )
    before = "ready" if step == "dispatch" else "dispatched"
    for dose in (msc, saline):
        dose.refresh_from_db()
        assert dose.status == before
    check = IdentityCheck.objects.filter(matched=False).get()
    stage = {"dispatch": "dispatch", "administer": "administration"}[step]
    assert (check.dose, check.dose_scan, check.stage) == (saline, msc.code, stage)


def test_the_lab_checks_and_dispatches_its_own_doses(roles: dict[str, Any], client: Any) -> None:
    dose = make_dose(actor=roles[LAB], arm="B")
    body = {"participant_scan": dose.participant.code}
    for role in (QA, MONITOR):
        refused = api_as(roles[role]).post(f"/api/doses/{dose.code}/dispatch/", body)
        assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied"), role
    client.force_login(roles[LAB])
    assert client.get("/admin/scan/dose/").status_code == 200
    done = api_as(roles[LAB]).post(f"/api/doses/{dose.code}/dispatch/", body)
    assert (done.status_code, done.json()["status"]) == (200, "dispatched")
    # Administration stays with the clinic.
    refused = api_as(roles[LAB]).post(f"/api/doses/{dose.code}/administer/", body)
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    dose.refresh_from_db()
    assert dose.status == "dispatched"
    assert IdentityCheck.objects.filter(dose=dose, matched=True).count() == 1
