"""Shipments between sites: plan, pack by scan, seal and ship, custody in transit, manifests
and labels, the API and the admin pages. Receipt and the logger: test_shipment_receipt.py."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import Aspirate, CustodyEvent, ProductUnit, Shipment, ShipmentItem, Signature
from biobank.services.aspirates import aspirate_receive_by_condition
from biobank.services.doses import dose_prepare, dose_release
from biobank.services.roles import CLINICIAN, MONITOR, roles_sync
from biobank.services.shipment_receipt import shipment_receive, shipment_receive_scan
from biobank.services.shipments import (
    shipment_cancel,
    shipment_create,
    shipment_pack,
    shipment_seal,
    shipment_ship,
    shipment_unpack,
)
from biobank.services.storage import unit_remove, unit_store
from biobank.services.units import unit_transition

from .factories import (
    PASSWORD,
    accept_intact,
    api_as,
    custody_steps,
    logger_clean,
    logger_csv,
    make_aspirate,
    make_box,
    make_dose,
    make_participant,
    make_released_product_units,
    make_shipment,
    make_unit_for_trondheim,
    make_user,
    past,
    qa_signer,
    record_weight,
    run_at_once,
    ship_items,
    site,
    sto_units,
)

# --- the walk from the issue ------------------------------------------------------------------


def test_aspirate_from_tromso_to_the_bergen_cell_lab(trial: Any, tech: Any) -> None:
    participant = make_participant(actor=tech, site_code="UNN")
    # Collected this morning; sealed (signed) now, so shipped, received and accepted from now on.
    aspirate = make_aspirate(actor=tech, participant=participant, collected_at=past(hours=5))
    shipment = make_shipment(tech, "UNN", "HUS", "cool", shipper_id="BOX-7", logger_serial="LOG-1")
    assert shipment.code.startswith("SH") and shipment.status == "planned"
    assert shipment.label == "UNN → HUS"

    shipment_pack(shipment=shipment, scan=f"]C0{aspirate.code.lower()}", actor=tech)
    shipment.refresh_from_db()
    assert shipment.status == "packing"
    shipment_seal(shipment=shipment, actor=tech, password=PASSWORD)
    assert shipment.status == "sealed"
    signature = Signature.objects.get(pk=shipment.seal_signature_id)
    assert (signature.meaning, signature.record) == ("shipment_seal", shipment.code)
    assert len(shipment.manifest_digest) == 64

    shipment_ship(shipment=shipment, actor=tech)
    assert shipment.status == "in_transit"
    shipment_receive_scan(shipment=shipment, scan=aspirate.code, actor=tech)
    logger_clean(shipment, tech)  # it carries logger LOG-1: its file before the receipt
    receipt = shipment_receive(shipment=shipment, actor=tech)
    assert (receipt.received, receipt.missing, receipt.extra) == ([aspirate.code], [], [])
    shipment.refresh_from_db()
    assert shipment.status == "received"

    # The lab's own receipt decision follows the custody hand-over.
    accept_intact(aspirate=aspirate, actor=tech, received_at=timezone.now())
    assert custody_steps(aspirate.code) == [
        ("collect", "UNN", ""),
        ("ship", "UNN", shipment.code),
        ("receive", "HUS", shipment.code),
        ("accept", None, ""),
    ]
    ship = CustodyEvent.objects.get(item_code=aspirate.code, action="ship")
    assert (ship.data["from_site"], ship.data["to_site"]) == ("UNN", "HUS")
    assert ship.location == shipment.code


def test_aspirate_status_stays_collected_in_transit(trial: Any, tech: Any) -> None:
    aspirate = make_aspirate(actor=tech, participant=make_participant(actor=tech, site_code="UNN"))
    ship_items(make_shipment(tech, "UNN", "HUS", "ambient"), [aspirate.code], tech)
    assert Aspirate.objects.get(pk=aspirate.pk).status == "collected"


# --- packing refuses each ineligible case ---------------------------------------------------


def _refusal(shipment: Shipment, code: str, tech: Any) -> str:
    before = ShipmentItem.objects.filter(shipment=shipment).count()
    with pytest.raises(ServiceError) as refused:
        shipment_pack(shipment=shipment, scan=code, actor=tech)
    assert ShipmentItem.objects.filter(shipment=shipment).count() == before
    return refused.value.code


def test_packing_refuses_each_ineligible_item(trial: Any, tech: Any) -> None:
    stored = sto_units(tech, stored=True)[0]
    frozen, quarantined = sto_units(tech, 2, stored=True)
    unit_remove(unit=frozen, actor=tech, reason="to ship")
    unit_transition(unit=quarantined, action="quarantine", actor=tech, reason="bag label torn")
    to_lab = make_shipment(tech, "STO", "HUS", "dry_shipper")
    dry = make_shipment(tech, "HUS", "STO", "dry_shipper")
    other = make_shipment(tech, "HUS", "STO", "dry_shipper")
    ambient = make_shipment(tech, "HUS", "STO", "ambient")
    to_ahus = make_shipment(tech, "HUS", "AHUS", "dry_shipper")

    assert _refusal(dry, stored.code, tech) == "wrong_status"
    assert _refusal(dry, quarantined.code, tech) == "quarantined"
    shipment_pack(shipment=other, scan=frozen.code, actor=tech)
    assert _refusal(dry, frozen.code, tech) == "already_in_shipment"
    assert _refusal(other, frozen.code, tech) == "already_in_shipment"
    shipment_unpack(shipment=other, scan=frozen.code, actor=tech)
    assert _refusal(ambient, frozen.code, tech) == "wrong_shipment_kind"
    # The unit's participant is at STO: it may go to the lab or home, not to Akershus.
    assert _refusal(to_ahus, frozen.code, tech) == "destination_not_allowed"
    assert _refusal(to_lab, frozen.code, tech) == "not_at_origin"

    unn = make_participant(actor=tech, site_code="UNN")
    aspirate = make_aspirate(actor=tech, participant=unn)
    assert _refusal(make_shipment(tech, "UNN", "STO", "ambient"), aspirate.code, tech) == (
        "destination_not_allowed"
    )
    dose = make_dose(actor=tech, arm="A")  # HUS participant, placebo at M6
    with pytest.raises(ServiceError) as refused:
        shipment_pack(
            shipment=make_shipment(tech, "HUS", "STO", "cool"), scan=dose.code, actor=tech
        )
    assert refused.value.code == "dose_for_other_site"
    assert "MSC" not in refused.value.message and "NaCl" not in refused.value.message
    prepared = make_dose(actor=tech, arm="A", ready=False)
    assert (
        _refusal(make_shipment(tech, "HUS", "STO", "cool"), prepared.code, tech) == "wrong_status"
    )
    assert _refusal(dry, "UN0000001X", tech) == "bad_check_character"
    assert _refusal(dry, unn.code, tech) == "wrong_kind"

    # A sealed manifest is locked.
    shipment_pack(shipment=dry, scan=frozen.code, actor=tech)
    shipment_seal(shipment=dry, actor=tech, password=PASSWORD)
    with pytest.raises(ServiceError) as refused:
        shipment_unpack(shipment=dry, scan=frozen.code, actor=tech)
    assert refused.value.code == "manifest_locked"


def test_a_unit_travels_only_in_an_ln2_dry_shipper(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)  # released, out of storage: packable
    for kind, shown in [
        ("dry_ice", "Dry ice (≤ −60 °C)"),
        ("cool", "Refrigerated (2–8 °C)"),
        ("ambient", "Ambient (15–25 °C)"),
    ]:
        shipment = make_shipment(tech, "HUS", "STO", kind)
        with pytest.raises(ServiceError) as refused:
            shipment_pack(shipment=shipment, scan=unit.code, actor=tech)
        assert (refused.value.code, refused.value.field) == ("wrong_shipment_kind", "scan")
        assert refused.value.message == (
            f"A unit cannot travel in {shown}; allowed: LN2 dry shipper (≤ −150 °C), because a "
            "cryopreserved unit must stay at ≤ -150 °C (vapour-phase LN2) all the way."
        )
        assert not ShipmentItem.objects.filter(shipment=shipment).exists()
        assert Shipment.objects.get(pk=shipment.pk).status == "planned"
    # Through the API: a conflict, with the same reason.
    dry_ice = make_shipment(tech, "HUS", "STO", "dry_ice")
    response = api_as(tech).post(
        f"/api/shipments/{dry_ice.code}/pack/", {"scan": unit.code}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (409, "wrong_shipment_kind")
    assert not ShipmentItem.objects.filter(unit=unit).exists()
    dry_shipper = make_shipment(tech, "HUS", "STO", "dry_shipper")
    assert shipment_pack(shipment=dry_shipper, scan=unit.code, actor=tech).unit == unit


def test_unpacking_an_item_not_on_the_manifest_is_not_found(trial: Any, tech: Any) -> None:
    packed, other = sto_units(tech, 2)
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper")
    shipment_pack(shipment=shipment, scan=packed.code, actor=tech)
    with pytest.raises(ServiceError) as refused:
        shipment_unpack(shipment=shipment, scan=other.code, actor=tech)
    assert (refused.value.status_code, refused.value.field) == (404, "scan")
    assert refused.value.code == "not_found"


def test_sealing_needs_the_password_and_an_item(trial: Any, tech: Any) -> None:
    frozen = sto_units(tech)[0]
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper")
    with pytest.raises(ServiceError) as refused:
        shipment_seal(shipment=shipment, actor=tech, password=PASSWORD)
    assert refused.value.code == "invalid_transition"
    shipment_pack(shipment=shipment, scan=frozen.code, actor=tech)
    with pytest.raises(ServiceError) as refused:
        shipment_seal(shipment=shipment, actor=tech, password="wrong")
    assert refused.value.code == "bad_signature_password"
    shipment.refresh_from_db()
    assert (shipment.status, shipment.seal_signature_id) == ("packing", None)
    with pytest.raises(ServiceError) as refused:
        shipment_cancel(shipment=shipment, actor=tech, reason="  ")
    assert (refused.value.code, refused.value.field) == ("reason_required", "reason")
    shipment.refresh_from_db()
    assert shipment.status == "packing"


def test_items_in_an_open_shipment_cannot_be_stored_moved_or_discarded(
    trial: Any, tech: Any
) -> None:
    unit = sto_units(tech)[0]
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper")
    shipment_pack(shipment=shipment, scan=unit.code, actor=tech)
    box = make_box(actor=tech)
    for step in (
        lambda: unit_store(unit=unit, container=box, actor=tech),
        lambda: unit_transition(unit=unit, action="discard", actor=tech, reason="x"),
    ):
        with pytest.raises(ServiceError) as refused:
            step()
        assert refused.value.code == "in_shipment"
    unit.refresh_from_db()
    assert unit.status == "frozen"
    # Cancelling the shipment frees it.
    shipment_cancel(shipment=shipment, actor=tech, reason="courier did not come")
    unit_store(unit=unit, container=box, actor=tech)
    unit.refresh_from_db()
    assert unit.status == "stored"
    with pytest.raises(ServiceError) as refused:
        shipment_cancel(shipment=shipment, actor=tech, reason="again")
    assert refused.value.code == "invalid_transition"


def _pack_message(shipment: Shipment, code: str, tech: Any) -> tuple[str, str]:
    with pytest.raises(ServiceError) as refused:
        shipment_pack(shipment=shipment, scan=code, actor=tech)
    return refused.value.code, refused.value.message


def test_packing_refusal_messages_name_the_table_statuses(trial: Any, tech: Any) -> None:
    stored, checked_out, quarantined = sto_units(tech, 3, stored=True)
    ProductUnit.objects.filter(pk=checked_out.pk).update(status="checked_out")
    ProductUnit.objects.filter(pk=quarantined.pk).update(status="quarantined")
    accepted, held = (
        make_aspirate(actor=tech, participant=make_participant(actor=tech, site_code="UNN"))
        for _ in range(2)
    )
    accept_intact(aspirate=accepted, actor=tech)
    aspirate_receive_by_condition(
        aspirate=held, actor=tech, condition="damaged", received_at=past()
    )
    prepared = make_dose(actor=tech, arm="A", ready=False)
    dry = make_shipment(tech, "HUS", "STO", "dry_shipper")
    to_lab = make_shipment(tech, "UNN", "HUS", "ambient")
    cool = make_shipment(tech, "HUS", "STO", "cool")

    stored_out = "; a unit can be packed only when: frozen, released. Take it out of storage first."
    held_back = ": it cannot be shipped until QA lifts the quarantine."
    can = "; {} can be packed only when: {}."
    # (shipment, item, refusal code, message after the item's code)
    expected = [
        (dry, stored, "wrong_status", " is stored" + stored_out),
        (dry, checked_out, "wrong_status", " is checked_out" + stored_out),
        (dry, quarantined, "quarantined", " is quarantined" + held_back),
        (to_lab, accepted, "wrong_status", " is accepted" + can.format("an aspirate", "collected")),
        (to_lab, held, "quarantined", " is quarantined" + held_back),
        (cool, prepared, "wrong_status", " is prepared" + can.format("a dose", "released, ready")),
    ]  # fmt: skip
    for shipment, item, code, message in expected:
        assert _pack_message(shipment, item.code, tech) == (code, item.code + message)
    assert not ShipmentItem.objects.exists()


# Per shipment status: the steps the admin's shipment page offers (its step forms, and its
# links to the pack and receive scan pages), those of the receive scan page, and the API's
# "actions" (the transition table's rows for the status, in the table's order).
SHIPMENT_STEPS: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "planned": (["cancel"], ["pack"], ["cancel"], ["pack", "cancel"]),
    "packing": (
        ["seal", "cancel"],
        ["pack"],
        ["seal", "cancel"],
        ["pack", "unpack", "seal", "cancel"],
    ),
    "sealed": (["ship", "cancel"], [], ["ship", "cancel"], ["ship", "cancel"]),
    "in_transit": (
        ["receive", "logger"],
        ["receive"],
        ["receive_scan", "receive", "logger"],
        ["receive_scan", "receive", "logger"],
    ),
    "partially_received": (
        ["write_off", "logger"],
        ["receive"],
        ["find", "write_off", "logger"],
        ["find", "write_off", "logger"],
    ),
    "received": (["logger"], [], ["logger"], ["logger"]),
    "cancelled": ([], [], [], []),
}


def _shipment_in(status: str, tech: Any) -> Shipment:
    """A shipment walked through the services to ``status``."""
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper")
    if status == "cancelled":
        return shipment_cancel(shipment=shipment, actor=tech, reason="not needed")
    walk = ["planned", "packing", "sealed", "in_transit", "partially_received"]
    unit = sto_units(tech)[0]
    steps = [
        lambda: shipment_pack(shipment=shipment, scan=unit.code, actor=tech),
        lambda: shipment_seal(shipment=shipment, actor=tech, password=PASSWORD),
        lambda: shipment_ship(shipment=shipment, actor=tech),
        lambda: (  # nothing scanned: missing
            logger_clean(shipment, tech),
            shipment_receive(shipment=shipment, actor=tech),
        ),
    ]
    if status == "received":
        steps[-1] = lambda: (
            shipment_receive_scan(shipment=shipment, scan=unit.code, actor=tech),
            logger_clean(shipment, tech),
            shipment_receive(shipment=shipment, actor=tech),
        )
        status = "partially_received"
    for step in steps[: walk.index(status)]:
        step()
    shipment.refresh_from_db()
    return shipment


@pytest.mark.parametrize("status", list(SHIPMENT_STEPS))
def test_admin_and_api_offer_the_steps_the_table_allows(
    trial: Any, tech: Any, admin_client_tech: Any, status: str
) -> None:
    shipment = _shipment_in(status, tech)
    base = f"/admin/biobank/shipment/{shipment.pk}/"
    page = admin_client_tech.get(base + "change/").content.decode()
    receiving = admin_client_tech.get(base + "receive/").content.decode()
    forms, links, receive_page, actions = SHIPMENT_STEPS[status]

    assert re.findall(rf'action="{base}step/(\w+)/"', page) == forms
    assert re.findall(rf'href="{base}(pack|receive)/"', page) == links
    assert re.findall(rf'action="{base}step/(\w+)/"', receiving) == receive_page
    assert api_as(tech).get(f"/api/shipments/{shipment.code}/").json()["actions"] == actions
    assert shipment.status == status
    assert set(forms + receive_page) <= set(actions)
    # A role offered a step can take it; others are offered none they would be refused.
    roles_sync()
    for role, offered in ((CLINICIAN, []), (MONITOR, [])):
        user = make_user(f"u-{role[:4]}-{status}", unblinded=False)
        user.user_permissions.clear()
        user.groups.add(Group.objects.get(name=role))
        user = type(user).objects.get(pk=user.pk)  # no stale permission cache
        body = api_as(user).get(f"/api/shipments/{shipment.code}/").json()
        assert body["actions"] == offered, role


# --- two packers, one item -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_packers_scan_the_same_item_into_two_shipments(postgres_only: None) -> None:
    from .factories import load_trial

    load_trial()
    packer = make_user("packer")
    unit = sto_units(packer)[0]
    shipments = [
        shipment_create(
            from_site=site("HUS"), to_site=site("STO"), kind="dry_shipper", actor=packer
        )
        for _ in range(2)
    ]
    outcomes = run_at_once(
        *(partial(shipment_pack, shipment=s, scan=unit.code, actor=packer) for s in shipments)
    )
    assert outcomes == ["409 already_in_shipment", "ok"]
    assert ShipmentItem.objects.filter(unit=unit, active=True).count() == 1


# --- the API -----------------------------------------------------------------------------------


def test_api_walks_a_dry_shipper_with_an_excursion(roles: dict[str, Any]) -> None:
    from biobank.services.roles import CLINICIAN, LAB

    lab = roles[LAB]
    api = api_as(lab)
    unit, _ = make_unit_for_trondheim(lab)
    response = api.post(
        "/api/shipments/",
        {"from_site": "HUS", "to_site": "STO", "kind": "dry_shipper", "logger_serial": "L-1"},
        format="json",
    )
    assert response.status_code == 201, response.content
    code = response.json()["code"]
    assert response.json()["temperature_range_c"] == ["-196", "-150"]
    url = f"/api/shipments/{code}/"

    bad = api.post(url + "pack/", {"scan": "AS0000001X"}, format="json")
    assert bad.status_code == 400 and bad.json()["fields"] == {"scan": [bad.json()["message"]]}
    assert bad.json()["code"] == "bad_check_character"
    assert api.post(url + "pack/", {"scan": unit.code}, format="json").status_code == 200
    again = api.post(url + "pack/", {"scan": unit.code}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "already_in_shipment")
    wrong = api.post(url + "seal/", {"password": "nope"}, format="json")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "bad_signature_password")
    sealed = api.post(url + "seal/", {"password": PASSWORD}, format="json")
    assert sealed.json()["status"] == "sealed" and sealed.json()["seal_signature"]
    assert sealed.json()["actions"] == ["ship", "cancel"]
    locked = api.post(url + "pack/", {"scan": unit.code}, format="json")
    assert (locked.status_code, locked.json()["code"]) == (409, "manifest_locked")
    shipped = api.post(url + "ship/", {"courier": "Bring", "tracking_ref": "370"}, format="json")
    assert (shipped.json()["status"], shipped.json()["courier"]) == ("in_transit", "Bring")

    scanned = api.post(url + "receive-scan/", {"scan": unit.code}, format="json")
    assert scanned.json()["scan"]["extra"] is False
    early = api.post(url + "receive/", {}, format="json")
    assert (early.status_code, early.json()["code"]) == (400, "logger_required")

    from django.core.files.uploadedfile import SimpleUploadedFile

    data = logger_csv(past(hours=2), ["-180", "-145,5", "-181"])
    uploaded = api.post(
        url + "logger/",
        {"file": SimpleUploadedFile("trace.csv", data, content_type="text/csv")},
        format="multipart",
    )
    assert uploaded.status_code == 200, uploaded.content
    assert uploaded.json()["logger"]["quarantined"] == []  # nothing received yet
    received = api.post(url + "receive/", {}, format="json")
    assert received.json()["receipt"]["received"] == [unit.code]
    assert received.json()["receipt"]["quarantined"] == [unit.code]
    assert received.json()["status"] == "received"
    assert ProductUnit.objects.get(pk=unit.pk).status == "quarantined"

    chart = api.get(url + "chart/")
    assert chart.status_code == 200 and b"<svg" in chart.content
    manifest = api.get(url + "manifest/")
    assert manifest["Content-Type"] == "application/pdf" and manifest.content[:4] == b"%PDF"
    zpl = api.get(url + "label.zpl/")
    assert zpl.status_code == 200 and b"^BQ" in zpl.content and code.encode() in zpl.content
    assert api.get(url + "label.pdf/").content[:4] == b"%PDF"

    # A blinded clinician sees the shipment but not the product unit inside it.
    clinician = api_as(roles[CLINICIAN])
    seen = clinician.get(url)
    assert seen.status_code == 200 and seen.json()["items"] == []
    assert unit.code.encode() not in seen.content
    refused = clinician.post(url + "receive/", {}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert Shipment.objects.get(code=code).status == "received"


def _released_dose(actor: Any, *, arm: str) -> Any:
    """A released month-6 dose of a St. Olav participant (arm A: saline, arm B: MSC)."""
    participant = make_participant(actor=actor, site_code="STO", arm=arm)
    if arm == "B":
        make_released_product_units(actor=actor, participant=participant, count=2)
    visit = participant.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=actor)
    dose = dose_prepare(visit=visit, actor=actor)
    dose_release(dose=dose, actor=qa_signer(), password=PASSWORD)
    return dose


def _pdf_text(data: bytes) -> str:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    return "\n".join(page.get_textpage().get_text_range() for page in document)


def test_blinded_manifest_names_doses_msc_or_saline(roles: dict[str, Any]) -> None:
    from biobank.services.roles import CLINICIAN, LAB

    lab = roles[LAB]
    msc, saline = _released_dose(lab, arm="B"), _released_dose(lab, arm="A")
    shipment = ship_items(make_shipment(lab, "HUS", "STO", "cool"), [msc.code, saline.code], lab)
    url = f"/api/shipments/{shipment.code}/"

    blinded = api_as(roles[CLINICIAN]).get(url)
    descriptions = {i["code"]: i["description"] for i in blinded.json()["items"]}
    assert descriptions == {
        msc.code: "Dose: MSC or 0.9 % NaCl",
        saline.code: "Dose: MSC or 0.9 % NaCl",
    }
    for word in (b"Autologous", b"Placebo", b"UN0"):
        assert word not in blinded.content
    text = _pdf_text(api_as(roles[CLINICIAN]).get(url + "manifest/").content)
    assert "(blinded)" in text and text.count("MSC or 0.9 % NaCl") == 2
    assert "Placebo" not in text and "Autologous" not in text

    unblinded = api_as(lab).get(url).json()["items"]
    assert {i["code"]: i["description"] for i in unblinded} == {
        msc.code: "Dose: Autologous BM-MSC",
        saline.code: "Dose: Placebo (0.9 % NaCl)",
    }


def test_shipment_list_has_bounded_queries(
    roles: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    from biobank.services.roles import LAB

    lab = roles[LAB]
    for _ in range(5):
        shipment = make_shipment(lab, "HUS", "STO", "dry_shipper")
        shipment_pack(shipment=shipment, scan=sto_units(lab, frozen=True)[0].code, actor=lab)
    api = api_as(lab)
    with django_assert_max_num_queries(6):
        response = api.get("/api/shipments/")
    assert response.status_code == 200 and response.json()["count"] == 5
