"""Shipments in the admin: pack and receive pages, the add form through the catalogue."""

from __future__ import annotations

from typing import Any

import pytest

from biobank.models import Shipment
from biobank.services.actions import action_run

from .factories import PASSWORD, logger_csv, make_shipment, past, site, sto_units

# --- the admin pages ---------------------------------------------------------------------------


def test_admin_pack_and_receive_pages(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    unit = sto_units(tech)[0]
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper")
    base = f"/admin/biobank/shipment/{shipment.pk}/"
    assert admin_client_tech.get("/admin/biobank/shipment/").status_code == 200
    page = admin_client_tech.get(base + "pack/")
    assert page.status_code == 200 and b"Scan an item to pack" in page.content

    response = admin_client_tech.post(
        base + "step/pack/", {"scan": unit.code, "next": base + "pack/"}, follow=True
    )
    assert f"{unit.code} packed.".encode() in response.content
    response = admin_client_tech.post(base + "step/pack/", {"scan": unit.code}, follow=True)
    assert b"Refused" in response.content and b"already in this shipment" in response.content
    admin_client_tech.post(base + "step/seal/", {"password": PASSWORD})
    admin_client_tech.post(base + "step/ship/", {"courier": "", "tracking_ref": ""})
    shipment.refresh_from_db()
    assert shipment.status == "in_transit"

    page = admin_client_tech.get(base + "receive/")
    assert b"Scan an arriving item" in page.content
    admin_client_tech.post(base + "step/receive_scan/", {"scan": unit.code})
    # A dry shipper carries a logger: the receipt waits for its file.
    response = admin_client_tech.post(base + "step/receive/", {}, follow=True)
    assert b"Refused" in response.content
    assert b"upload its logger file before closing the receipt" in response.content
    upload = logger_csv(past(hours=2), ["-180", "-140", "-181"])
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = admin_client_tech.post(
        base + "step/logger/", {"file": SimpleUploadedFile("t.csv", upload)}, follow=True
    )
    assert b"EXCURSION" in response.content
    response = admin_client_tech.post(base + "step/receive/", {}, follow=True)
    assert f"quarantined: {unit.code}.".encode() in response.content
    page = admin_client_tech.get(base + "change/")
    assert page.status_code == 200
    assert b'alt="Temperature logger trace, 3 readings' in page.content
    assert admin_client_tech.get(base + "chart.svg").status_code == 200
    assert admin_client_tech.get(base + "manifest.pdf").content[:4] == b"%PDF"
    assert admin_client_tech.get(base + "label.zpl").status_code == 200
    unit.refresh_from_db()
    assert unit.status == "quarantined"


def test_admin_add_form_refuses_the_same_site(trial: Any, admin_client_tech: Any) -> None:
    hus = site("HUS").pk
    response = admin_client_tech.post(
        "/admin/biobank/shipment/add/",
        {"from_site": hus, "to_site": hus, "kind": "ambient", "label": ""},
    )
    assert response.status_code == 200
    assert b"from and to are the same site" in response.content
    assert response.context["adminform"].form.errors == {
        "to_site": ["A shipment goes from one site to another: from and to are the same site."]
    }
    assert not Shipment.objects.exists()


def test_admin_add_form_plans_the_shipment_through_the_catalogue(
    trial: Any, tech: Any, admin_client_tech: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import biobank.admin.shipments as shipment_admin

    steps: list[tuple[str, str]] = []

    def spy(*, action: Any, **kwargs: Any) -> Any:
        steps.append((action.kind, action.name))
        return action_run(action=action, **kwargs)

    monkeypatch.setattr(shipment_admin, "action_run", spy)
    response = admin_client_tech.post(
        "/admin/biobank/shipment/add/",
        {
            "from_site": site("HUS").pk,
            "to_site": site("STO").pk,
            "kind": "dry_shipper",
            "label": "",
            "shipper_id": " CX-100 ",
            "logger_serial": "L-9",
            "courier": "",
            "tracking_ref": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    shipment = Shipment.objects.get()
    assert set(steps) == {("shipment", "create")}
    assert (shipment.label, shipment.kind, shipment.status) == (
        "HUS → STO",
        "dry_shipper",
        "planned",
    )
    assert (shipment.shipper_id, shipment.logger_serial) == ("CX-100", "L-9")
    assert shipment.created_by == tech
    assert response.redirect_chain[-1][0] == "/admin/biobank/shipment/"
    assert [str(m) for m in response.context["messages"]] == [
        f"The shipment “{shipment.code} HUS → STO” was added successfully."
    ]


def test_admin_add_form_is_refused_to_a_role_without_the_step(
    roles: dict[str, Any], client: Any
) -> None:
    from biobank.services.roles import QA

    client.force_login(roles[QA])
    hus, sto = site("HUS").pk, site("STO").pk
    assert client.get("/admin/biobank/shipment/add/").status_code == 403
    response = client.post(
        "/admin/biobank/shipment/add/", {"from_site": hus, "to_site": sto, "kind": "ambient"}
    )
    assert response.status_code == 403
    assert client.get("/admin/biobank/shipment/").status_code == 200  # QA still sees the list
    assert not Shipment.objects.exists()
