"""The action catalogue: one list of steps, read by the API, the admin and the services."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from biobank.errors import Forbidden
from biobank.identifiers import Kind, format_id
from biobank.models import CustodyEvent, ProductUnit
from biobank.services.actions import ACTIONS, action_get, action_run
from biobank.services.roles import CLINICIAN, LAB, MONITOR, QA, roles_sync

from .factories import API_COLLECTION, make_aspirate, make_box, make_units, make_user, past

pytestmark = pytest.mark.django_db

# Literal: a step added, renamed or re-permissioned must show up here on purpose.
EXPECTED = [
    ("participant", "enrol", "biobank.add_participant", False),
    ("participant", "unblind", "biobank.emergency_unblind", True),
    ("visit", "record_weight", "biobank.record_weight", True),
    ("aspirate", "collect", "biobank.add_aspirate", False),
    ("aspirate", "receive", "biobank.change_aspirate", True),
    ("aspirate", "receive_by_condition", "biobank.change_aspirate", True),
    ("aspirate", "lift_quarantine", "biobank.lift_quarantine", True),
    ("aspirate", "reject", "biobank.change_aspirate", True),
    ("aspirate", "start_processing", "biobank.add_processing", True),
    ("aspirate", "discard", "biobank.change_aspirate", True),
    ("processing", "passage", "biobank.add_passage", True),
    ("processing", "qc_result", "biobank.add_qcresult", True),
    ("processing", "harvest", "biobank.change_processing", True),
    ("processing", "fail", "biobank.change_processing", True),
    ("processing", "qc_release", "biobank.approve_qc_release", True),
    ("processing", "fill_units", "biobank.add_productunit", True),
    ("processing", "freezing_run", "biobank.add_freezingrun", True),
    ("unit", "store", "biobank.change_productunit", True),
    ("unit", "move", "biobank.change_productunit", True),
    ("unit", "put", "biobank.change_productunit", True),
    ("unit", "put_undo", "biobank.change_productunit", True),
    ("unit", "check_out", "biobank.change_productunit", True),
    ("unit", "check_in", "biobank.change_productunit", True),
    ("unit", "check_out_or_in", "biobank.change_productunit", True),
    ("unit", "remove", "biobank.change_productunit", True),
    ("unit", "quarantine", "biobank.change_productunit", True),
    ("unit", "lift_quarantine", "biobank.lift_quarantine", True),
    ("unit", "release", "biobank.change_productunit", True),
    ("unit", "return_to_stock", "biobank.change_productunit", True),
    ("unit", "discard", "biobank.change_productunit", True),
    ("container", "store", "biobank.change_productunit", True),
    ("dose", "prepare", "biobank.prepare_dose", False),
    ("dose", "release", "biobank.release_dose", True),
    ("dose", "deviation", "biobank.release_dose", True),
    ("dose", "make_ready", "biobank.prepare_dose", True),
    ("dose", "cancel", "biobank.prepare_dose", True),
    ("dose", "dispatch", "biobank.dispatch_dose", True),
    ("dose", "administer", "biobank.administer_dose", True),
    ("shipment", "create", "biobank.pack_shipment", False),
    ("shipment", "pack", "biobank.pack_shipment", True),
    ("shipment", "unpack", "biobank.pack_shipment", True),
    ("shipment", "seal", "biobank.pack_shipment", True),
    ("shipment", "ship", "biobank.pack_shipment", True),
    ("shipment", "cancel", "biobank.pack_shipment", True),
    ("shipment", "receive_scan", "biobank.receive_shipment", True),
    ("shipment", "receive", "biobank.receive_shipment", True),
    ("shipment", "find", "biobank.receive_shipment", True),
    ("shipment", "write_off", "biobank.receive_shipment", True),
    ("shipment", "logger", "biobank.receive_shipment", True),
]


def test_the_catalogue_lists_every_step_with_its_permission() -> None:
    assert [(a.kind, a.name, a.permission, a.on_item) for a in ACTIONS] == EXPECTED
    signed = sorted((a.kind, a.name) for a in ACTIONS if a.needs_signature)
    assert signed == [
        ("aspirate", "lift_quarantine"),
        ("dose", "deviation"),
        ("dose", "release"),
        ("participant", "unblind"),
        ("processing", "qc_release"),
        ("shipment", "seal"),
        ("unit", "lift_quarantine"),
    ]
    # A unit is thawed and administered only through its dose (identity and expiry checks).
    assert {"thaw", "administer"}.isdisjoint(a.name for a in ACTIONS if a.kind == "unit")


def test_every_step_on_an_item_is_an_api_path_named_like_the_step() -> None:
    schema = APIClient()
    schema.force_authenticate(make_user("schema-reader"))
    paths = schema.get("/api/schema/", {"format": "json"}).json()["paths"]
    for kind, name, _, on_item in EXPECTED:
        if not on_item or kind not in API_COLLECTION:
            continue
        path = f"/api/{API_COLLECTION[kind]}/{{code}}/{name.replace('_', '-')}/"
        assert "post" in paths.get(path, {}), path
    assert "post" in paths["/api/visits/record-weight/"]
    for collection in ("participants", "aspirates", "doses", "shipments"):
        assert "post" in paths[f"/api/{collection}/"]


def test_a_role_without_the_step_is_refused_before_anything_changes(trial: Any) -> None:
    roles_sync()
    lab = make_user("lab-cat")
    monitor = get_user_model().objects.create_user("monitor-cat", password="x", is_staff=True)
    monitor.groups.add(Group.objects.get(name=MONITOR))
    unit = make_units(actor=lab, count=1)[0]
    box = make_box(actor=lab)
    events = CustodyEvent.objects.count()
    with pytest.raises(Forbidden) as refused:
        action_run(
            action=action_get("unit", "store"),
            item=unit,
            actor=monitor,
            data={"container": box.code},
        )
    assert (refused.value.code, refused.value.status_code) == ("permission_denied", 403)
    assert refused.value.message == "Your role may not store."
    unit.refresh_from_db()
    assert unit.status == "frozen" and CustodyEvent.objects.count() == events
    api = APIClient()
    api.force_authenticate(monitor)
    response = api.post(f"/api/units/{unit.code}/store/", {"container": box.code}, format="json")
    # Through the API the monitor is stopped earlier: a blinded role may not see the unit.
    assert response.status_code == 403 and response.json()["code"] == "not_visible"
    assert ProductUnit.objects.get(pk=unit.pk).status == "frozen"


def test_scanned_ids_in_a_step_are_named_by_field(trial: Any) -> None:
    lab = make_user("lab-ids")
    unit = make_units(actor=lab, count=1)[0]
    api = APIClient()
    api.force_authenticate(lab)
    good = format_id(Kind.BOX, 1)
    wrong = good[:-1] + ("A" if good[-1] != "A" else "B")  # a misread check character
    response = api.post(f"/api/units/{unit.code}/store/", {"container": wrong}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "bad_check_character" and list(body["fields"]) == ["container"]
    response = api.post(f"/api/units/{unit.code}/store/", {"container": unit.code}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "wrong_kind"
    assert ProductUnit.objects.get(pk=unit.pk).status == "frozen"


def test_the_admin_offers_the_catalogue_steps_a_role_may_take(client: Any, trial: Any) -> None:
    roles_sync()
    users = {}
    for role in (LAB, QA, CLINICIAN):
        user = get_user_model().objects.create_user(f"u-{role}", password="x", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    make_aspirate(actor=make_user("lab-admin"))
    offered = {}
    for role, user in users.items():
        client.force_login(user)
        page = client.get(reverse("admin:biobank_aspirate_changelist"))
        form = page.context["action_form"] if page.status_code == 200 else None
        actions = form.fields["action"].choices if form is not None else []
        offered[role] = sorted(name for name, _ in actions if name.startswith("step_"))
    assert offered[LAB] == [
        "step_discard",
        "step_receive",
        "step_receive_by_condition",
        "step_reject",
        "step_start_processing",
    ]
    assert offered[QA] == ["step_lift_quarantine"]  # QA's signed decision
    assert offered[CLINICIAN] == []


def test_the_scan_pages_automatic_check_and_receipt_are_steps_of_their_own(trial: Any) -> None:
    lab = make_user("lab-auto")
    unit = make_units(actor=lab, count=1, stored=True)[0]
    api = APIClient()
    api.force_authenticate(lab)
    statuses = []
    for _ in range(2):
        response = api.post(f"/api/units/{unit.code}/check-out-or-in/", {}, format="json")
        assert response.status_code == 200, response.content
        statuses.append(ProductUnit.objects.get(pk=unit.pk).status)
    assert statuses == ["checked_out", "stored"]
    actions = list(CustodyEvent.objects.filter(unit=unit).order_by("id").values_list("action"))
    assert actions[-2:] == [("check_out",), ("check_in",)]
    # Collected three hours ago: within the study's transport time.
    intact, late = (make_aspirate(actor=lab, collected_at=past(hours=3)) for _ in range(2))
    for aspirate, condition in ((intact, "intact"), (late, "late")):
        response = api.post(
            f"/api/aspirates/{aspirate.code}/receive-by-condition/",
            {"condition": condition, "temperature_c": "21.5"},
            format="json",
        )
        assert response.status_code == 200, response.content
    intact.refresh_from_db()
    late.refresh_from_db()
    assert (intact.status, late.status) == ("accepted", "quarantined")
    again = api.post(
        f"/api/aspirates/{late.code}/receive-by-condition/", {"condition": "intact"}, format="json"
    )
    assert (again.status_code, again.json()["code"]) == (409, "already_received")
