"""The REST API: every endpoint for success, bad input, no authentication and the wrong role."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from biobank.models import Aspirate, CustodyEvent, Participant
from biobank.services.actions import ACTIONS
from biobank.services.doses import dose_release
from biobank.services.roles import ADMINISTRATOR, CLINICIAN, LAB, MONITOR, QA

from .factories import (
    API_COLLECTION,
    PASSWORD,
    make_aspirate,
    make_box,
    make_dose,
    make_participant,
    make_processing,
    make_released_product_units,
    make_shipment,
    make_units,
    make_user,
    past,
    qa_signer,
    qc_pass,
    record_weight,
)


def client_for(user: Any | None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def world(roles: dict[str, Any]) -> dict[str, Any]:
    lab = roles[LAB]
    participant = make_participant(actor=lab, arm="B")
    units = make_released_product_units(actor=lab, participant=participant)
    frozen = make_units(actor=lab, count=2)
    return {
        "participant": participant,
        # Collected this morning: received now, within the study's transport time.
        "aspirate": make_aspirate(actor=lab, collected_at=past(hours=5)),
        "quarantined": _quarantined(lab),
        "processing": make_processing(actor=lab),
        "harvested": make_processing(actor=lab, harvested=True),
        "stored": units[0],
        "frozen": frozen[0],
        "box": make_box(actor=lab),
        "dose": make_dose(actor=lab, arm="A"),
        "weighed": record_weight(visit=participant.visits.get(visit_type__code="M6"), actor=lab),
    }


def _quarantined(actor: Any) -> Any:
    from biobank.services.aspirates import aspirate_receive

    aspirate = make_aspirate(actor=actor)
    aspirate_receive(
        aspirate=aspirate,
        decision="quarantine",
        actor=actor,
        temperature_c=None,
        condition="late",
        reason="arrived after 30 h",
    )
    return aspirate


# (method, url, body, role that may, role that may not)
def endpoints(w: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str, str]]:
    p, a, u, f, b, d = (
        w["participant"],
        w["aspirate"],
        w["stored"],
        w["frozen"],
        w["box"],
        w["dose"],
    )
    pr, hv = w["processing"], w["harvested"]
    future = (timezone.now() + dt.timedelta(hours=3)).isoformat()
    return [
        ("get", "/api/participants/", {}, MONITOR, ""),
        ("get", f"/api/participants/{p.code}/", {}, CLINICIAN, ""),
        (
            "post",
            "/api/participants/",
            {"pseudonym": "API-1", "site": "UNN", "enrolled_on": "2025-05-05"},
            LAB,
            MONITOR,
        ),
        (
            "post",
            f"/api/participants/{p.code}/unblind/",
            {"password": PASSWORD, "reason": "Serious adverse event, needs to know"},
            ADMINISTRATOR,
            LAB,
        ),
        ("get", "/api/visits/", {}, MONITOR, ""),
        ("get", "/api/aspirates/", {}, MONITOR, ""),
        ("get", f"/api/aspirates/{a.code}/", {}, CLINICIAN, ""),
        (
            "post",
            "/api/aspirates/",
            {
                "participant": p.code,
                "visit": "M6",
                "volume_ml": "50.0",
                "anticoagulant": "heparin",
                "collected_at": past(days=1).isoformat(),
                "collected_by": "Dr. A",
            },
            CLINICIAN,
            MONITOR,
        ),
        (
            "post",
            f"/api/aspirates/{a.code}/receive/",
            {"decision": "accept", "condition": "intact", "temperature_c": "20.0"},
            LAB,
            CLINICIAN,
        ),
        (
            "post",
            f"/api/aspirates/{w['quarantined'].code}/lift-quarantine/",
            {"password": PASSWORD, "reason": "checked, cells within specification"},
            QA,
            LAB,
        ),
        ("post", f"/api/aspirates/{a.code}/discard/", {"reason": "clotted"}, LAB, MONITOR),
        ("get", "/api/processings/", {}, LAB, CLINICIAN),
        ("get", f"/api/processings/{pr.code}/", {}, QA, MONITOR),
        (
            "post",
            f"/api/processings/{pr.code}/passage/",
            {"number": 0, "cell_count": 1000000, "viability_pct": "95.0"},
            LAB,
            QA,
        ),
        (
            "post",
            f"/api/processings/{pr.code}/harvest/",
            {"cell_count": 100000000, "viability_pct": "91.0", "passage": 2},
            LAB,
            QA,
        ),
        ("post", f"/api/processings/{pr.code}/fail/", {"reason": "contaminated"}, LAB, CLINICIAN),
        (
            "post",
            f"/api/processings/{hv.code}/qc-result/",
            {"test": "sterility", "result": "negative", "passed": True},
            LAB,
            CLINICIAN,
        ),
        (
            "post",
            f"/api/processings/{hv.code}/fill-units/",
            {
                "units": [
                    {"container_type": "cryovial", "cell_number": 1000000, "volume_ml": "1.0"}
                ]
                * 3
            },
            LAB,
            QA,
        ),
        ("get", "/api/units/", {}, LAB, CLINICIAN),
        ("get", f"/api/units/{u.code}/", {}, QA, MONITOR),
        ("post", f"/api/units/{f.code}/store/", {"container": b.code, "position": "C3"}, LAB, QA),
        ("post", f"/api/units/{u.code}/move/", {"container": b.code}, LAB, CLINICIAN),
        ("post", f"/api/units/{u.code}/check-out/", {}, LAB, MONITOR),
        (
            "post",
            f"/api/units/{u.code}/quarantine/",
            {"reason": "temperature excursion"},
            LAB,
            CLINICIAN,
        ),
        ("post", f"/api/units/{u.code}/remove/", {"reason": "shipped"}, LAB, QA),
        ("post", f"/api/units/{u.code}/release/", {}, LAB, CLINICIAN),
        ("post", f"/api/units/{f.code}/discard/", {"reason": "bag cracked"}, LAB, MONITOR),
        ("get", "/api/storage-units/", {}, LAB, CLINICIAN),
        (
            "get",
            f"/api/storage-units/{b.storage_unit.code}/suggest/?container_type=cryobag",
            {},
            LAB,
            MONITOR,
        ),
        ("get", "/api/containers/", {}, LAB, CLINICIAN),
        ("get", f"/api/containers/{b.code}/positions/", {}, LAB, MONITOR),
        (
            "post",
            f"/api/containers/{b.code}/store/",
            {"placements": [{"unit": f.code, "position": "A9"}]},
            LAB,
            QA,
        ),
        ("get", "/api/events/", {}, CLINICIAN, ""),  # rows as the visibility policy says
        ("get", f"/api/identity-checks/?participant={p.code}", {}, CLINICIAN, ""),
        (
            "post",
            "/api/visits/record-weight/",
            {"participant": p.code, "visit": "BASELINE", "weight_kg": "71.5"},
            CLINICIAN,
            QA,
        ),
        ("get", "/api/doses/", {}, CLINICIAN, ""),
        ("get", f"/api/doses/{d.code}/", {}, MONITOR, ""),
        ("get", "/api/doses/due/", {}, CLINICIAN, ""),
        ("post", "/api/doses/", {"participant": p.code, "visit": "M6"}, LAB, CLINICIAN),
        (
            "post",
            f"/api/doses/{d.code}/dispatch/",
            {"participant_scan": d.participant.code},
            CLINICIAN,
            MONITOR,
        ),
        ("post", f"/api/doses/{d.code}/cancel/", {"reason": "postponed"}, LAB, CLINICIAN),
        (
            "post",
            f"/api/doses/{d.code}/make-ready/",
            {"expires_at": future, "saline_lot": "NACL-24-117"},
            LAB,
            MONITOR,
        ),
    ]


def _call(client: APIClient, method: str, url: str, body: dict[str, Any]) -> Any:
    if method == "get":
        return client.get(url)
    return client.post(url, body, format="json")


def test_every_endpoint_success_unauthenticated_and_wrong_role(
    world: dict[str, Any], roles: dict[str, Any]
) -> None:
    for method, url, body, _allowed, refused in endpoints(world):
        anonymous = _call(client_for(None), method, url, body)
        assert anonymous.status_code == 401, url
        assert anonymous.json()["code"] == "not_authenticated", url
        if refused:
            wrong = _call(client_for(roles[refused]), method, url, body)
            assert wrong.status_code == 403, (url, refused, wrong.content)
            assert set(wrong.json()) == {"code", "message", "fields"}
            # A blinded role is refused the product itself; others the step.
            assert wrong.json()["code"] in ("permission_denied", "not_visible"), url
    # Success runs last and in order, since some steps change what later ones see.
    results = {}
    for method, url, body, allowed, _ in endpoints(world):
        if method == "get":
            response = _call(client_for(roles[allowed]), method, url, body)
            assert response.status_code == 200, (url, response.content)
            results[url] = response.json()
    assert results[f"/api/units/{world['stored'].code}/"]["location"]["container"]


# The custody steps (action, new status) each POST row of endpoints() writes, in order.
WRITE_EVENTS: list[list[tuple[str, str]]] = [
    [],  # enrol: a participant and its visits (checked below)
    [("emergency_unblinding", "unblinded")],
    [("collect", "collected")],
    [("accept", "accepted")],
    [("lift_quarantine", "accepted")],
    [("discard", "discarded")],
    [],  # passage: a row on the processing (checked below)
    [("harvest", "harvested")],
    [("fail", "failed")],
    [],  # QC result: a row on the processing (checked below)
    [("create", "created")] * 3,
    [("store", "stored")],
    [("move", "stored")],
    [("check_out", "checked_out")],
    [("quarantine", "quarantined")],
    [("remove", "frozen")],
    [("release", "released")],
    [("discard", "discarded")],
    [("store", "stored")],
    [],  # body weight: on the visit (checked below)
    [("prepare", "prepared")],
    [("dispatch", "dispatched")],
    [("cancel", "cancelled")],
    [("make_ready", "ready")],
]
WRITE_ENDPOINTS = len(WRITE_EVENTS)


@pytest.mark.parametrize("step", range(WRITE_ENDPOINTS))
def test_each_write_endpoint_succeeds(
    world: dict[str, Any], roles: dict[str, Any], step: int
) -> None:
    writes = [e for e in endpoints(world) if e[0] == "post"]
    assert len(writes) == WRITE_ENDPOINTS
    method, url, body, allowed, _ = writes[step]
    if url.endswith("/make-ready/"):
        # The world's dose is already ready: a released placebo dose takes the step here.
        fresh = make_dose(actor=roles[LAB], arm="A", ready=False)
        dose_release(dose=fresh, actor=qa_signer(), password=PASSWORD)
        url = f"/api/doses/{fresh.code}/make-ready/"
    if url.endswith("/release/") and "/units/" in url:
        qc_pass(processing=world["stored"].processing, actor=roles[LAB])
    last_event = CustodyEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = _call(client_for(roles[allowed]), method, url, body)
    assert response.status_code in (200, 201), (url, response.content)
    assert response.headers["Content-Type"].startswith("application/json")
    written = CustodyEvent.objects.filter(id__gt=last_event).order_by("id")
    assert [(e.action, e.to_status) for e in written] == WRITE_EVENTS[step], url
    if url == "/api/participants/":
        assert Participant.objects.get(code=response.json()["code"]).pseudonym == "API-1"
    elif url.endswith("/passage/"):
        passages = world["processing"].passages.values_list("number", "cell_count")
        assert list(passages) == [(0, 1_000_000)]
    elif url.endswith("/qc-result/"):
        results = world["harvested"].qc_results.values_list("test", "result", "passed")
        assert list(results) == [("sterility", "negative", True)]
    elif url.endswith("/record-weight/"):
        visit = world["participant"].visits.get(visit_type__code="BASELINE")
        assert str(visit.weight_kg) == "71.5"


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/participants/", {"pseudonym": "", "site": "HUS", "enrolled_on": "x"}, "enrolled_on"),
        (
            "/api/participants/",
            {"pseudonym": "A", "site": "NOPE", "enrolled_on": "2025-01-01"},
            "site",
        ),
        (
            "/api/aspirates/",
            {"participant": "PT0000001Q", "visit": "M6", "volume_ml": "-1"},
            "volume_ml",
        ),
        (
            "/api/aspirates/",
            {
                "participant": "ZZ99",
                "visit": "M6",
                "volume_ml": "5",
                "anticoagulant": "heparin",
                "collected_at": "2025-01-01T10:00Z",
                "collected_by": "x",
            },
            "participant",
        ),
        ("/api/doses/", {"participant": "", "visit": "M6"}, "participant"),
        ("/api/scan/", {"code": 12}, "code"),
    ],
)
def test_bad_input_names_the_field(
    roles: dict[str, Any], url: str, body: dict[str, Any], field: str
) -> None:
    response = client_for(roles[LAB]).post(url, body, format="json")
    assert 400 <= response.status_code < 500, response.content
    data = response.json()
    assert set(data) == {"code", "message", "fields"}
    assert field in data["fields"] or field in data["message"], data


def test_unit_actions_refuse_invalid_steps(world: dict[str, Any], roles: dict[str, Any]) -> None:
    client = client_for(roles[LAB])
    frozen = world["frozen"]
    response = client.post(f"/api/units/{frozen.code}/check-in/", {}, format="json")
    # No slot was reserved for it.
    assert (response.status_code, response.json()["code"]) == (400, "slot_not_reserved")
    assert response.json()["fields"] == {"unit": [f"{frozen.code} has no reserved slot."]}
    # Nor can it be checked out: it is in no slot.
    response = client.post(f"/api/units/{frozen.code}/check-out/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "not_stored")
    assert response.json()["fields"] == {"unit": [f"{frozen.code} is not in storage."]}
    response = client.post(
        f"/api/units/{frozen.code}/store/",
        {"container": world["box"].code, "position": "Z99"},
        format="json",
    )
    assert response.status_code == 400 and "position" in response.json()["fields"]
    assert response.json()["code"] == "bad_position"
    response = client.post(f"/api/units/{frozen.code}/discard/", {}, format="json")
    assert response.status_code == 400 and response.json() == {
        "code": "invalid",
        "message": "reason: This field is required.",
        "fields": {"reason": ["This field is required."]},
    }
    response = client.post("/api/units/UN0000001X/discard/", {"reason": "x"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    frozen.refresh_from_db()
    assert frozen.status == "frozen"


def test_blinded_api_fields(world: dict[str, Any], roles: dict[str, Any]) -> None:
    for role in (CLINICIAN, MONITOR):
        client = client_for(roles[role])
        participant = client.get(f"/api/participants/{world['participant'].code}/").json()
        assert "arm" not in participant
        for dose in client.get("/api/doses/").json()["results"]:
            assert not {
                "treatment",
                "units",
                "processing",
                "post_thaw_cell_count",
                "post_thaw_viability_pct",
                "viable_cells",
                "saline_lot",
                "deviation",
            } & set(dose)
            assert dose["plan"]["target"] == "45.0×10⁶"
        for row in client.get("/api/doses/due/?days=365").json():
            assert not {"treatment", "units", "todo"} & set(row)
        # The custody log answers with the blinded-safe steps only (the visibility policy).
        events = client.get("/api/events/?limit=500")
        assert events.status_code == 200
        assert {e["item_kind"] for e in events.json()["results"]} <= {"aspirate", "dose"}
        assert (
            client.get("/api/participants/?arm=1").json()["count"]
            == client.get("/api/participants/").json()["count"]
        )
    unblinded = client_for(roles[LAB]).get(f"/api/participants/{world['participant'].code}/").json()
    assert unblinded["arm"] == "B"


def test_list_endpoints_have_bounded_queries(
    world: dict[str, Any], roles: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    client = client_for(roles[ADMINISTRATOR])
    for url in [
        "/api/participants/",
        "/api/visits/",
        "/api/aspirates/",
        "/api/processings/",
        "/api/units/",
        "/api/containers/",
        "/api/events/",
        "/api/doses/",
        "/api/storage-units/",
    ]:
        with django_assert_max_num_queries(10):
            response = client.get(url + "?limit=100")
        assert response.status_code == 200, url


def test_filters_and_ordering(world: dict[str, Any], roles: dict[str, Any]) -> None:
    client = client_for(roles[LAB])
    code = world["participant"].code
    units = client.get(f"/api/units/?participant={code}&status=stored").json()
    assert units["count"] == 2 and all(u["participant"] == code for u in units["results"])
    ordered = client.get("/api/units/?ordering=-code").json()["results"]
    assert [u["code"] for u in ordered] == sorted((u["code"] for u in ordered), reverse=True)
    box = world["stored"].placements.get().container.code
    in_box = client.get(f"/api/units/?container={box}").json()
    assert in_box["count"] == 2
    # Each row of a page carries its place (read for the page, not joined into the count).
    assert [u["location"]["container"] for u in in_box["results"]] == [box, box]


def _collect(client: APIClient, participant: Participant, visit: str, at: str) -> Any:
    body = {"participant": participant.code, "visit": visit, "collected_at": at}
    body |= {"volume_ml": "50.0", "anticoagulant": "heparin", "collected_by": "Dr. A"}
    return client.post("/api/aspirates/", body, format="json")


def test_an_aspirate_at_a_visit_without_aspiration_is_refused(
    tech: Any, roles: dict[str, Any]
) -> None:
    participant = make_participant(actor=tech)
    response = _collect(client_for(roles[LAB]), participant, "M12", past(days=1).isoformat())
    assert response.status_code == 400
    assert response.json()["code"] == "no_aspiration"
    assert response.json()["fields"] == {
        "visit": ["Month 12 follow-up has no bone-marrow aspiration."]
    }
    assert not Aspirate.objects.filter(participant=participant).exists()


def test_the_visit_is_done_on_the_labs_day_of_the_aspiration(
    tech: Any, roles: dict[str, Any]
) -> None:
    participant = make_participant(actor=tech)
    # 23:30 UTC on 1 September is 01:30 on 2 September in Oslo.
    response = _collect(client_for(roles[LAB]), participant, "BASELINE", "2025-09-01T23:30:00Z")
    assert response.status_code == 201
    visit = participant.visits.get(visit_type__code="BASELINE")
    assert visit.done_on == dt.date(2025, 9, 2)


# --- implausible date-times ------------------------------------------------------------------

# Every catalogued date-time input, as (kind, step, input): each is built into the API once.
TIME_INPUTS = [
    (a.kind, a.name, spec.name) for a in ACTIONS for spec in a.inputs if spec.type == "datetime"
]


def test_every_catalogued_time_input_is_counted() -> None:
    # The adversarial test's 28 and three more, less the quarantine lift (dated by its signature).
    assert len(TIME_INPUTS) == 30
    assert ("unit", "discard", "at") in TIME_INPUTS


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00", "9999-12-31T23:59:59-12:00"])
def test_every_time_input_refuses_an_implausible_year_naming_the_field(
    world: dict[str, Any], value: str
) -> None:
    admin = make_user("root", is_superuser=True)
    client = client_for(admin)
    items = {
        "aspirate": world["aspirate"],
        "processing": world["processing"],
        "unit": world["stored"],
        "container": world["box"],
        "dose": world["dose"],
        "shipment": make_shipment(admin, "HUS", "STO", "dry_shipper"),
    }
    events = CustodyEvent.objects.count()
    for kind, name, field in TIME_INPUTS:
        path = name.replace("_", "-")
        if kind == "visit":
            url = f"/api/visits/{path}/"
        elif (kind, name) == ("aspirate", "collect"):
            url = "/api/aspirates/"
        else:
            url = f"/api/{API_COLLECTION[kind]}/{items[kind].code}/{path}/"
        response = client.post(url, {field: value}, format="json")
        assert response.status_code == 400, (url, response.content)
        body = response.json()
        assert body["code"] == "invalid", (url, body)
        assert body["fields"][field] == [f"{field} must be between the years 1900 and 2200."]
    assert CustodyEvent.objects.count() == events


def test_discard_at_year_one_is_a_400_and_changes_nothing(
    world: dict[str, Any], roles: dict[str, Any]
) -> None:
    unit = world["stored"]
    response = client_for(roles[LAB]).post(
        f"/api/units/{unit.code}/discard/",
        {"at": "0001-01-01T00:00:00", "reason": "x"},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        400,
        {
            "code": "invalid",
            "message": "at: at must be between the years 1900 and 2200.",
            "fields": {"at": ["at must be between the years 1900 and 2200."]},
        },
    )
    unit.refresh_from_db()
    assert unit.status == "stored"


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/events/?after=0001-01-01T00:00:00", "after"),
        ("/api/events/?after=9999-12-31T23:59:59-12:00", "after"),
        ("/api/events/?after=1899-12-31", "after"),
        ("/api/aspirates/?collected_after=0001-01-01T00:00", "collected_after"),
        ("/api/aspirates/?collected_after=2201-01-01T00:00%2B14:00", "collected_after"),
        ("/api/visits/?scheduled_after=0001-01-01", "scheduled_after"),
        ("/api/visits/?scheduled_before=9999-12-31", "scheduled_before"),
    ],
)
def test_a_date_filter_out_of_the_plausible_years_is_a_400_naming_it(
    roles: dict[str, Any], url: str, parameter: str
) -> None:
    response = client_for(roles[LAB]).get(url)
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["code"], body["fields"]) == (
        "invalid",
        {parameter: ["Enter a date between the years 1900 and 2200."]},
    )


def test_date_filters_inside_the_years_still_filter(
    world: dict[str, Any], roles: dict[str, Any]
) -> None:
    client = client_for(roles[LAB])
    assert client.get("/api/events/?after=1900-01-01T00:00:00%2B14:00").json()["count"] > 0
    assert client.get("/api/events/?after=2200-12-31T23:59:59-12:00").json()["count"] == 0
    assert client.get("/api/aspirates/?collected_after=2200-01-01T00:00").json()["count"] == 0
