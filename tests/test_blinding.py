"""Blinding by construction: the visibility policy answers for every surface, and the sweep
walks every route of the URL conf as each blinded role to prove that nothing leaks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from biobank.models import CustodyEvent, ProductUnit, Signature
from biobank.services.roles import CLINICIAN, LAB, MONITOR, roles_sync

from .factories import (
    PASSWORD,
    api_as,
    make_accepted_aspirate,
    make_dose,
    make_participant,
    make_units,
)
from .sweep import leaks_in, sweep


def role_user(username: str, role: str) -> Any:
    roles_sync()
    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return get_user_model().objects.get(pk=user.pk)


# --- the sweep -------------------------------------------------------------------------------


def views_only(settings: Any) -> None:
    """The sweep judges the views themselves: the redaction middleware (the last line) off."""
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if m != "biobank.middleware.BlindedRedactionMiddleware"
    ]


@pytest.mark.django_db
def test_sweep_finds_no_leak_for_any_blinded_role(capsys: Any, settings: Any) -> None:
    views_only(settings)
    call_command("seed", "--demo", "--demo-user", stdout=None)
    assert ProductUnit.objects.count() > 50  # the demo has lab records to leak
    for username in ("clinician", "monitor"):
        user = get_user_model().objects.get(username=username)
        client = Client()
        client.force_login(user)
        report = sweep(client, user)
        with capsys.disabled():
            print(f"\nblinding sweep as {username}: {report.requests} requests")
        assert report.uncovered == []
        assert report.errors == [], "\n".join(report.errors)
        assert report.leaks == [], "\n".join(report.leaks)
        assert report.requests > 3000


@pytest.mark.django_db
def test_sweep_catches_an_unguarded_view_and_an_unfilled_route(
    trial: Any, tech: Any, settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.leaky_urls"
    views_only(settings)
    make_units(actor=tech, count=2, stored=True)
    clinician = role_user("clin", CLINICIAN)
    client = Client()
    client.force_login(clinician)
    report = sweep(client, clinician)
    assert report.uncovered == ["/api/mystery/{widget}/ ('widget',)"]
    leaky = [leak for leak in report.leaks if leak.startswith("GET /api/leaky/")]
    assert leaky and "lab code UN" in leaky[0]
    # Everything else is clean: the only leaks are the planted view's.
    others = [leak for leak in report.leaks if not leak.startswith("GET /api/leaky/")]
    assert others == [], "\n".join(others)


def test_leak_detector_recognises_each_kind_of_leak() -> None:
    arm_texts = ["MSC at baseline, placebo at month 6"]
    assert leaks_in('{"code": "UN0000001Q"}', "/api/x/", []) == ["lab code UN0000001Q"]
    assert leaks_in('{"arm": "A"}', "/api/x/", []) == ["arm or treatment field '\"arm\":'"]
    assert leaks_in("MSC at baseline, placebo at month 6", "/x", arm_texts)[0].startswith(
        "arm text"
    )
    assert leaks_in("Saline dose", "/x", []) == ["treatment word 'Saline'"]
    assert leaks_in("Post-thaw viability 91 %", "/x", []) == ["cell count or viability 'Post-thaw'"]
    assert leaks_in("Product: MSC or 0.9 % NaCl", "/x", []) == []
    assert leaks_in('{"status": "processed"}', "/x", []) == ["aspirate lab status '\"processed\"'"]
    assert leaks_in("<td>In processing</td>", "/x", []) == ["aspirate lab status 'In processing'"]
    # Documentation names fields but holds no data: only codes and arms count there.
    assert leaks_in("post_thaw_cell_count", "/api/schema/", []) == []


# --- MSC and saline look the same --------------------------------------------------------------

_VOLATILE = [
    (re.compile(r"(?:DS|PT|AS)[0-9]{7,}[0-9A-Z*]"), "<code>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"),
        "<t>",
    ),
    (re.compile(r"(?:SMART|TEST)-[A-Z]+-\d+"), "<pseudonym>"),
    # Centred text moves with the width of the code's characters.
    (re.compile(r"\^FT\d+,"), "^FT<x>,"),
    (re.compile(r"/\d+/"), "/<pk>/"),
    (re.compile(r'"id": \d+'), '"id": <pk>'),
]


def _normalised(text: str) -> str:
    for pattern, token in _VOLATILE:
        text = pattern.sub(token, text)
    return text


@pytest.mark.django_db
def test_msc_and_saline_doses_look_identical_to_a_blinded_user(trial: Any, tech: Any) -> None:
    msc = make_dose(actor=tech, arm="B", visit="M6")
    saline = make_dose(actor=tech, arm="A", visit="M6")
    assert (msc.treatment, saline.treatment) == ("MSC", "PLACEBO")
    clinician = role_user("clin", CLINICIAN)
    api = api_as(clinician)
    views = []
    for dose in (msc, saline):
        detail = api.get(f"/api/doses/{dose.code}/")
        scan = api.post("/api/scan/", {"code": dose.code}, format="json")
        label = api.get(f"/api/labels/{dose.code}.zpl")
        events = api.get(f"/api/events/?item={dose.code}")
        assert [r.status_code for r in (detail, scan, label, events)] == [200] * 4
        views.append(
            {
                "detail": _normalised(json.dumps(detail.json(), sort_keys=True)),
                "scan": _normalised(json.dumps(scan.json(), sort_keys=True)),
                "label": _normalised(label.content.decode()),
                "events": _normalised(json.dumps(events.json(), sort_keys=True)),
            }
        )
    for surface in views[0]:
        a, b = views[0][surface].splitlines(), views[1][surface].splitlines()
        assert a == b, [(x, y) for x, y in zip(a, b, strict=False) if x != y]
    assert "treatment" not in views[0]["detail"] and "unit" not in json.loads(
        api.get(f"/api/doses/{msc.code}/").content
    )


# --- the policy at each surface ----------------------------------------------------------------


@pytest.mark.django_db
def test_hidden_kinds_answer_the_same_whether_they_exist_or_not(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1, stored=True)[0]
    clinician = role_user("clin", CLINICIAN)
    api = api_as(clinician)
    unknown = "UN9999999" + _check("UN9999999")
    answers = []
    for code in (unit.code, unknown):
        scan = api.post("/api/scan/", {"code": code}, format="json")
        label = api.get(f"/api/labels/{code}.zpl")
        detail = api.get(f"/api/units/{code}/")
        answers.append([(r.status_code, r.json()) for r in (scan, label, detail)])
    assert answers[0] == answers[1]
    scan_status, scan_body = answers[0][0]
    assert scan_status == 403
    assert scan_body["code"] == "not_visible"
    assert "Blinded clinician" in scan_body["message"]
    assert "UN" not in json.dumps(answers[0])


def _check(data: str) -> str:
    from biobank.identifiers import check_character

    return check_character(data)


@pytest.mark.django_db
def test_blinded_roles_get_participant_and_dose_labels_only(trial: Any, tech: Any) -> None:
    dose = make_dose(actor=tech, arm="A", visit="M6")
    aspirate = (
        dose.participant.aspirates.first() if hasattr(dose.participant, "aspirates") else None
    )
    api = api_as(role_user("clin", CLINICIAN))
    assert api.get(f"/api/labels/{dose.code}.zpl").status_code == 200
    assert api.get(f"/api/labels/{dose.participant.code}.zpl").status_code == 200
    if aspirate is not None:
        refused = api.get(f"/api/labels/{aspirate.code}.zpl")
        assert refused.status_code == 403 and refused.json()["code"] == "not_visible"
    batch = api.post(
        "/api/labels/batch/", {"codes": [dose.code, "UN0000001Q"], "format": "zpl"}, format="json"
    )
    assert batch.status_code == 403 and batch.json()["code"] == "not_visible"
    assert batch.json()["fields"] == {"codes.1": [batch.json()["message"]]}


@pytest.mark.django_db
def test_blinded_event_log_shows_only_blinded_safe_steps_and_data(trial: Any, tech: Any) -> None:
    dose = make_dose(actor=tech, arm="B", visit="M6")  # MSC: units, thaw, processing events
    monitor = api_as(role_user("mon", MONITOR))
    rows = monitor.get(f"/api/events/?participant={dose.participant.code}&limit=500").json()
    kinds = {(r["item_kind"], r["action"]) for r in rows["results"]}
    assert kinds and {k for k, _ in kinds} <= {"aspirate", "dose"}
    assert ("aspirate", "start_processing") not in kinds
    assert all(
        set(r["data"])
        <= {"volume_ml", "anticoagulant", "temperature_c", "condition", "route", "administered_by"}
        for r in rows["results"]
    )
    lab = api_as(role_user("lab", LAB))
    lab_rows = lab.get(f"/api/events/?participant={dose.participant.code}&limit=500").json()
    assert lab_rows["count"] > rows["count"]
    assert CustodyEvent.objects.filter(item_kind="unit", participant=dose.participant).exists()


@pytest.mark.django_db
def test_blinded_aspirate_status_hides_lab_steps_everywhere(trial: Any, tech: Any) -> None:
    dose = make_dose(actor=tech, arm="B", visit="M6")
    processed = dose.participant.visits.get(visit_type__code="BASELINE").aspirate
    assert processed.status == "processed"
    api = api_as(role_user("clin", CLINICIAN))
    assert api.get(f"/api/aspirates/{processed.code}/").json()["status"] == "accepted"
    refused = api.get("/api/aspirates/?status=processed")
    assert refused.status_code == 400 and refused.json()["code"] == "not_visible"
    scan = api.post("/api/scan/", {"code": processed.code}, format="json").json()
    assert (scan["status"], scan["label_url"]) == ("accepted", None)
    where = api.get(f"/api/inventory/participants/{dose.participant.code}/")
    assert where.status_code == 200
    assert [a["status"] for a in where.json()["aspirates"]] == ["accepted"]


@pytest.mark.django_db
def test_a_masked_aspirate_status_takes_its_reason_with_it(trial: Any, tech: Any) -> None:
    participant = make_participant(actor=tech)
    aspirate = make_accepted_aspirate(actor=tech, participant=participant)
    reason = "Not needed for treatment of this participant"
    lab = api_as(tech)
    assert (
        lab.post(f"/api/aspirates/{aspirate.code}/discard/", {"reason": reason}).status_code == 200
    )
    assert lab.get(f"/api/aspirates/{aspirate.code}/").json()["status_reason"] == reason
    clinician = role_user("clin", CLINICIAN)
    api = api_as(clinician)
    shown = api.get(f"/api/aspirates/{aspirate.code}/").json()
    assert (shown["status"], shown["status_reason"]) == ("accepted", "")
    report = api.get(f"/api/reports/participants/{participant.code}.json")
    assert report.status_code == 200 and reason not in report.content.decode()
    client = Client()
    client.force_login(clinician)
    for url in (
        f"/admin/biobank/aspirate/{aspirate.pk}/change/",
        f"/admin/biobank/participant/{participant.pk}/change/",
    ):
        page = client.get(url)
        assert page.status_code == 200 and reason not in page.content.decode(), url


@pytest.mark.django_db
def test_aspirate_page_custody_log_shows_a_blinded_role_no_lab_step(trial: Any, tech: Any) -> None:
    dose = make_dose(actor=tech, arm="B", visit="M6")
    processed = dose.participant.visits.get(visit_type__code="BASELINE").aspirate
    url = f"/admin/biobank/aspirate/{processed.pk}/change/"
    pages = {}
    for name, role in (("clin", CLINICIAN), ("lab", LAB)):
        client = Client()
        client.force_login(role_user(name, role))
        response = client.get(url)
        assert response.status_code == 200
        pages[name] = response.content.decode()
    assert "collected → accepted" in pages["clin"]
    assert "processing" not in pages["clin"].split("Chain of custody")[1]
    assert "accepted → in_processing" in pages["lab"]
    assert "in_processing → processed" in pages["lab"]


@pytest.mark.django_db
def test_monitor_sees_dose_release_signatures_but_no_qc_release(
    trial: Any, tech: Any, client: Client
) -> None:
    make_dose(actor=tech, arm="B", visit="M6")
    assert set(Signature.objects.values_list("meaning", flat=True)) == {
        "qc_release",
        "dose_release",
    }
    monitor = role_user("mon", MONITOR)
    client.force_login(monitor)
    page = client.get("/admin/biobank/signature/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "dose released for administration" in text
    assert "PR0" not in text
    qc = Signature.objects.get(meaning="qc_release")
    # The QC release signature answers as one that does not exist, or a visible one: 403 alike
    # (signatures are never opened by number by a blinded role).
    dose_release = Signature.objects.get(meaning="dose_release")
    for pk in (qc.pk, 999999, dose_release.pk):
        assert client.get(f"/admin/biobank/signature/{pk}/change/").status_code == 403, pk


@pytest.mark.django_db
def test_admin_pages_of_lab_models_refuse_blinded_roles(
    trial: Any, tech: Any, client: Client
) -> None:
    unit = make_units(actor=tech, count=1, stored=True)[0]
    client.force_login(role_user("clin", CLINICIAN))
    assert client.get("/admin/biobank/productunit/").status_code == 403
    assert client.get(f"/admin/biobank/productunit/{unit.pk}/change/").status_code == 403
    assert client.get("/admin/biobank/randomisationentry/").status_code == 403
    # A crafted filter on a hidden field is refused, not silently applied.
    crafted = client.get("/admin/biobank/participant/?arm__code=A")
    assert crafted.status_code == 400
    assert "Arm" not in client.get("/admin/biobank/participant/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "ordering",
    ["treatment", "-treatment", " treatment", " -treatment", "code, saline_lot", " viable_cells"],
)
def test_a_blinded_role_cannot_sort_doses_by_what_is_hidden(
    trial: Any, tech: Any, ordering: str
) -> None:
    make_dose(actor=tech, arm="B")
    api = api_as(role_user("clin", CLINICIAN))
    response = api.get("/api/doses/", {"ordering": ordering})
    assert response.status_code == 400
    assert response.json()["code"] == "not_visible"
    assert api.get("/api/doses/", {"ordering": " -code"}).status_code == 200


@pytest.mark.django_db
def test_a_blinded_role_cannot_search_or_sort_events_by_their_hidden_reason(
    trial: Any, tech: Any
) -> None:
    # The dose's lab reason is shown masked; searching or sorting by its real text would be an
    # oracle (one dose found by "thaw", the other not).
    from biobank.services.doses import dose_cancel

    dose = make_dose(actor=tech, arm="B", visit="M6")
    dose_cancel(dose=dose, actor=tech, reason="Bag cracked at thaw")
    api = api_as(role_user("clin", CLINICIAN))
    for ordering in ("reason", "-reason", "location", "data"):
        response = api.get("/api/events/", {"item_kind": "dose", "ordering": ordering})
        assert response.status_code == 400, ordering
        message = f"ordering by {ordering} is not available to your role: the trial is blinded."
        assert response.json() == {
            "code": "not_visible",
            "message": message,
            "fields": {"ordering": [message]},
        }
    client = Client()
    client.force_login(role_user("mon", MONITOR))
    found = client.get("/admin/biobank/custodyevent/", {"q": "cracked"})
    assert found.status_code == 200
    assert dose.code not in found.content.decode()
    shown = client.get("/admin/biobank/custodyevent/", {"q": dose.code})
    assert dose.code in shown.content.decode()  # the code itself is still searchable
    assert 'class="sortable column-reason' not in shown.content.decode()


@pytest.mark.django_db
def test_a_role_without_a_models_permission_gets_one_answer_for_any_id(
    trial: Any, tech: Any
) -> None:
    # A clinician may not view signatures: a dose release (visible kind), a QC release (hidden)
    # and an id that does not exist must answer alike, or ids tell which exist and are hidden.
    make_dose(actor=tech, arm="B", visit="M6")
    client = Client()
    client.force_login(role_user("clin", CLINICIAN))
    ids = [
        Signature.objects.get(meaning="dose_release").pk,
        Signature.objects.get(meaning="qc_release").pk,
        999999,
    ]
    for page in ("change", "history"):
        answers = {client.get(f"/admin/biobank/signature/{pk}/{page}/").status_code for pk in ids}
        assert answers == {403}, page


@pytest.mark.django_db
def test_a_blinded_role_never_addresses_events_or_signatures_by_number(
    trial: Any, tech: Any
) -> None:
    # Numbers run through hidden rows: the gap before an MSC dose's release would show its units.
    dose = make_dose(actor=tech, arm="B", visit="M6")
    monitor = role_user("mon", MONITOR)
    api = api_as(monitor)
    rows = api.get(f"/api/events/?participant={dose.participant.code}&limit=500").json()
    assert "count" in rows, rows
    assert rows["count"] > 0 and all("id" not in r for r in rows["results"])
    visible = CustodyEvent.objects.filter(item_kind="dose").first()
    hidden = CustodyEvent.objects.filter(item_kind="unit").first()
    for event in (visible, hidden):
        answer = api.get(f"/api/events/{event.pk}/")
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    client = Client()
    client.force_login(monitor)
    page = client.get("/admin/biobank/custodyevent/").content.decode()
    assert "/admin/biobank/custodyevent/" + f"{visible.pk}/change/" not in page
    assert f'value="{visible.pk}"' not in page
    signature = Signature.objects.get(meaning="dose_release")
    for url in (
        f"/admin/biobank/custodyevent/{visible.pk}/change/",
        f"/admin/biobank/custodyevent/{hidden.pk}/change/",
        f"/admin/biobank/signature/{signature.pk}/change/",
    ):
        assert client.get(url).status_code == 403, url
    lab = api_as(tech)
    assert lab.get(f"/api/events/{visible.pk}/").json()["id"] == visible.pk
