"""POST /api/scan/ and the resolver behind it: good, hostile and malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from biobank.errors import NotFound, ServiceError
from biobank.identifiers import Kind, format_id
from biobank.selectors.scan import scan_resolve
from biobank.services.storage import unit_check_out, unit_store

from .factories import make_box, make_units, make_user


@pytest.fixture
def stored_unit(trial: Any, tech: Any) -> Any:
    box = make_box(actor=tech, name="Scan box")
    unit = make_units(actor=tech, count=1)[0]
    unit_store(unit=unit, container=box, position="B4", actor=tech)
    return unit


@pytest.mark.parametrize(
    "wrap",
    [
        "{}",
        "]C0{}",
        "]Q1{}",
        "]d1{}",
        "]d2{}",
        "  {}\r\n",
        "\t{}\n",
        "{lower}",
        "]c0{lower}",
    ],
)
def test_scan_tolerates_what_scanners_add(api: APIClient, stored_unit: Any, wrap: str) -> None:
    code = stored_unit.code
    response = api.post(
        "/api/scan/", {"code": wrap.format(code, lower=code.lower())}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["code"] == code and body["kind"] == "unit" and body["prefix"] == "UN"
    assert body["status"] == "stored"
    assert "Scan box" in body["location"] and "B4" in body["location"]
    assert body["admin_url"].endswith(f"/admin/biobank/productunit/{stored_unit.pk}/change/")


def test_scan_of_a_checked_out_unit_names_its_reserved_slot(
    api: APIClient, stored_unit: Any, tech: Any
) -> None:
    unit_check_out(unit=stored_unit, actor=tech, reason="thaw test")
    body = api.post("/api/scan/", {"code": stored_unit.code}, format="json").json()
    assert body["status"] == "checked_out"
    assert body["location"].endswith("B4 — checked out, slot reserved")
    # The resolver's unit carries when it left, as a time (the scan's compiled query).
    result = scan_resolve(raw=stored_unit.code, viewer=tech)
    assert result.item.location_checked_out.tzinfo is not None


def test_scan_reports_what_was_removed(api: APIClient, stored_unit: Any) -> None:
    body = api.post("/api/scan/", {"code": f"]C0{stored_unit.code}\r"}, format="json").json()
    assert any("]C0" in r for r in body["removed"])


def test_every_kind_resolves(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    box = make_box(actor=tech)
    for item in (
        unit,
        unit.aspirate,
        unit.participant,
        unit.processing,
        box,
        box.parent,
        box.storage_unit,
    ):
        result = scan_resolve(raw=item.code, viewer=tech)
        assert result.item == item


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        ("]C0", "empty"),
        ("ZZ0000001A", "unknown_prefix"),
        ("UN12", "bad_format"),
        ("'; DROP TABLE biobank_productunit; --", "bad_format"),
        ("<script>alert(1)</script>", "bad_format"),
        ("A" * 10_000, "too_long"),
        ("UN000\x0000001", "invalid"),  # the field check refuses NUL characters first
        ("ÜN0000001A", "bad_character"),
    ],
)
def test_malformed_scans_are_explained(api: APIClient, trial: Any, raw: str, code: str) -> None:
    response = api.post("/api/scan/", {"code": raw}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code, body
    assert list(body["fields"]) == ["code"] and body["message"]
    assert "<script>" not in body["message"]  # hostile input is not echoed as markup


def test_wrong_check_character_says_expected(api: APIClient, stored_unit: Any) -> None:
    good = stored_unit.code
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    body = api.post("/api/scan/", {"code": bad}, format="json").json()
    assert body["code"] == "bad_check_character"
    assert f"'{good[-1]}' was expected" in body["message"]
    assert body["fields"] == {"code": [body["message"]]}


def test_double_scan_is_refused(api: APIClient, stored_unit: Any) -> None:
    other = format_id(Kind.UNIT, 999)
    response = api.post("/api/scan/", {"code": stored_unit.code + other}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "double_scan")


def test_valid_but_unknown_is_404(api: APIClient, trial: Any) -> None:
    response = api.post("/api/scan/", {"code": format_id(Kind.UNIT, 424242)}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert "no such unit" in response.json()["message"]


def test_empty_scan_is_refused_by_the_scan_parser(api: APIClient, trial: Any) -> None:
    response = api.post("/api/scan/", {"code": ""}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "empty")
    message = "Nothing was scanned. Put the cursor in the field and scan the label."
    assert response.json() == {"code": "empty", "message": message, "fields": {"code": [message]}}


def test_missing_field_is_400(api: APIClient, trial: Any) -> None:
    response = api.post("/api/scan/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert response.json()["fields"] == {"code": ["This field is required."]}


def test_non_string_is_400(api: APIClient, trial: Any) -> None:
    response = api.post("/api/scan/", {"code": ["UN"]}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert list(response.json()["fields"]) == ["code"]


def test_scan_needs_authentication(trial: Any, stored_unit: Any) -> None:
    response = APIClient().post("/api/scan/", {"code": stored_unit.code}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_scan_never_reveals_allocation(trial: Any, stored_unit: Any) -> None:
    client = APIClient()
    client.force_authenticate(make_user("blinded", unblinded=False))
    body = client.post("/api/scan/", {"code": stored_unit.participant.code}, format="json").json()
    assert "arm" not in str(body).lower().replace("pharm", "")


def test_resolver_restricts_kinds(trial: Any, stored_unit: Any, tech: Any) -> None:
    with pytest.raises(ServiceError) as info:
        scan_resolve(raw=stored_unit.aspirate.code, viewer=tech, kinds={Kind.UNIT})
    assert info.value.code == "wrong_kind"
    aspirate = stored_unit.aspirate.code
    assert info.value.message == f"{aspirate} is an aspirate; this screen expects a unit."
    # Several kinds: each with its own article, in alphabetical order.
    with pytest.raises(ServiceError) as info:
        scan_resolve(raw=stored_unit.code, viewer=tech, kinds={Kind.BOX, Kind.ASPIRATE})
    assert (info.value.code, info.value.message) == (
        "wrong_kind",
        f"{stored_unit.code} is a unit; this screen expects an aspirate or a box.",
    )
    with pytest.raises(NotFound) as missing:
        scan_resolve(raw=format_id(Kind.BOX, 31337), viewer=tech)
    assert missing.value.code == "not_found"


def test_scan_places_a_shipped_aspirate_where_it_was_received(trial: Any, tech: Any) -> None:
    from biobank.services.shipment_receipt import shipment_receive, shipment_receive_scan

    from .factories import make_aspirate, make_participant, make_shipment, ship_items

    aspirate = make_aspirate(actor=tech, participant=make_participant(actor=tech, site_code="UNN"))
    assert scan_resolve(raw=aspirate.code, viewer=tech).location == aspirate.site.name
    shipment = ship_items(make_shipment(tech, "UNN", "HUS", "ambient"), [aspirate.code], tech)
    shipment_receive_scan(shipment=shipment, scan=aspirate.code, actor=tech)
    shipment_receive(shipment=shipment, actor=tech)
    assert scan_resolve(raw=aspirate.code, viewer=tech).location == "Haukeland University Hospital"
