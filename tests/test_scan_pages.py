"""The scan-first admin pages, driven the way a keyboard-wedge scanner drives them."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from biobank.models import CustodyEvent, Placement, ProductUnit
from biobank.services.storage import unit_store

from .factories import make_aspirate, make_box, make_units, make_user, past


def scan(client: Any, page: str, code: str, **extra: Any) -> str:
    url = reverse(f"admin:scan_{page}")
    response = client.post(url, {"code": code, **extra})
    assert response.status_code == 302
    return client.get(url).content.decode()


def feedback(html: str) -> str:
    start = html.index('id="scan-feedback"')
    return html[start : html.index("</div>", start)]


def test_index_lists_scan_pages(trial: Any, admin_client_tech: Any) -> None:
    html = admin_client_tech.get(reverse("admin:index")).content.decode()
    for page in ("find", "receive", "store", "checkout", "verify", "rack-import"):
        assert reverse(f"admin:scan_{page}") in html


def test_pages_autofocus_the_scan_field(trial: Any, admin_client_tech: Any) -> None:
    html = admin_client_tech.get(reverse("admin:scan_store")).content.decode()
    assert 'id="scan-input" name="code" autofocus' in html


def test_find_answers_in_place_with_a_link(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    response = admin_client_tech.post(reverse("admin:scan_find"), {"code": f"]C0{unit.code}\r\n"})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:scan_find")  # stays in scan mode
    html = admin_client_tech.get(reverse("admin:scan_find")).content.decode()
    link = reverse("admin:biobank_productunit_change", args=[unit.pk])
    assert f'href="{link}" id="scan-open"' in html


def test_find_explains_a_bad_scan(trial: Any, admin_client_tech: Any) -> None:
    html = scan(admin_client_tech, "find", "ZZ0000001A")
    assert "unknown prefix" in feedback(html) and "error" in feedback(html)


def test_receive_one_after_another(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    # Collected this morning: received now, within the study's transport time.
    first, second = (make_aspirate(actor=tech, collected_at=past(hours=3)) for _ in range(2))
    html = scan(admin_client_tech, "receive", first.code, temperature_c="19.5", condition="intact")
    assert "received and accepted" in feedback(html)
    html = scan(admin_client_tech, "receive", second.code.lower())  # settings are sticky
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("accepted", "accepted")
    assert str(second.transport_temperature_c) == "19.5"
    html = scan(admin_client_tech, "receive", first.code)
    assert "already received" in feedback(html)


def test_receive_damaged_quarantines(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    aspirate = make_aspirate(actor=tech)
    html = scan(admin_client_tech, "receive", aspirate.code, temperature_c="", condition="leaking")
    aspirate.refresh_from_db()
    assert aspirate.status == "quarantined" and "QUARANTINED" in feedback(html)


def test_receive_says_why_it_quarantined(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    aspirate = make_aspirate(actor=tech, collected_at=past(hours=3))
    html = scan(
        admin_client_tech, "receive", aspirate.code, temperature_c="31.5", condition="leaking"
    )
    aspirate.refresh_from_db()
    assert aspirate.status == "quarantined"
    assert (
        f"{aspirate.code} received and QUARANTINED ({aspirate.participant.pseudonym}): "
        "Condition at receipt: Leaking; Transport temperature 31.5 °C is outside the allowed "
        "2.0–25.0 °C\n"
    ) in feedback(html)


@pytest.mark.parametrize("temperature", ["NaN", "Infinity", "61"])
def test_receive_explains_a_temperature_that_is_not_one(
    trial: Any, tech: Any, admin_client_tech: Any, temperature: str
) -> None:
    aspirate = make_aspirate(actor=tech, collected_at=past(hours=3))
    html = scan(
        admin_client_tech, "receive", aspirate.code, temperature_c=temperature, condition="intact"
    )
    assert "Temperature must be between -200 and 60 °C" in feedback(html)
    aspirate.refresh_from_db()
    assert (aspirate.status, aspirate.received_at) == ("collected", None)


def test_receive_refuses_other_kinds(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    html = scan(admin_client_tech, "receive", unit.code)
    assert f"{unit.code} is a unit; this screen expects an aspirate." in feedback(html)
    unit.refresh_from_db()
    assert unit.status == "frozen" and unit.events.count() == 2  # create, freeze


def test_store_box_then_units_then_undo(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    box = make_box(actor=tech)
    units = make_units(actor=tech, count=3)
    html = scan(admin_client_tech, "store", units[0].code)
    assert "Scan the box first" in feedback(html)
    scan(admin_client_tech, "store", box.code)
    scan(admin_client_tech, "store", units[0].code)
    scan(admin_client_tech, "store", "c3")
    html = scan(admin_client_tech, "store", units[1].code)
    assert f"{units[1].code} → {box.code} C3" in feedback(html)
    html = scan(admin_client_tech, "store", units[2].code)
    assert f"({units[2].code} A2)</button>" in html  # the undo button names the last one
    positions = dict(Placement.objects.filter(ended_at=None).values_list("unit__code", "position"))
    assert positions == {units[0].code: "A1", units[1].code: "C3", units[2].code: "A2"}
    response = admin_client_tech.post(reverse("admin:scan_store"), {"do": "undo"})
    assert response.status_code == 302
    units[2].refresh_from_db()
    assert units[2].status == "frozen"
    assert not Placement.objects.filter(unit=units[2], ended_at=None).exists()
    assert "Undo" in units[2].events.latest("id").reason


def test_store_moves_a_stored_unit_and_undo_moves_it_back(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    old, new = make_box(actor=tech), make_box(actor=tech)
    unit = make_units(actor=tech, count=1)[0]
    unit_store(unit=unit, container=old, position="E5", actor=tech)
    scan(admin_client_tech, "store", new.code)
    html = scan(admin_client_tech, "store", unit.code)
    assert "moved from" in feedback(html)
    admin_client_tech.post(reverse("admin:scan_store"), {"do": "undo"})
    placement = Placement.objects.get(unit=unit, ended_at=None)
    assert (placement.container, placement.position) == (old, "E5")


def test_check_out_then_in(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    box = make_box(actor=tech)
    unit = make_units(actor=tech, count=1)[0]
    unit_store(unit=unit, container=box, position="A7", actor=tech)
    html = scan(admin_client_tech, "checkout", unit.code)
    assert "CHECKED OUT" in feedback(html)
    unit.refresh_from_db()
    assert unit.status == "checked_out"
    html = scan(admin_client_tech, "checkout", unit.code)
    assert f"{unit.code} CHECKED IN: put it back at {box.code} A7" in feedback(html)
    unit.refresh_from_db()
    assert unit.status == "stored"
    # Checking in a unit that is not checked out is refused and changes nothing.
    events = unit.events.count()
    html = scan(admin_client_tech, "checkout", unit.code, mode="in")
    assert "error" in feedback(html)
    unit.refresh_from_db()
    assert unit.status == "stored" and unit.events.count() == events
    assert Placement.objects.open().get(unit=unit).position == "A7"


def test_verify_shows_missing_extra_and_misplaced(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    box, other = make_box(actor=tech), make_box(actor=tech)
    units = make_units(actor=tech, count=4)
    for unit, pos in zip(units[:3], ["A1", "A2", "A3"], strict=True):
        unit_store(unit=unit, container=box, position=pos, actor=tech)
    unit_store(unit=units[3], container=other, actor=tech)
    scan(admin_client_tech, "verify", box.code)
    scan(admin_client_tech, "verify", units[0].code)
    scan(admin_client_tech, "verify", "A3")
    scan(admin_client_tech, "verify", units[1].code)  # really at A2
    html = scan(admin_client_tech, "verify", units[3].code)
    assert "1 ok, 1 to scan, 0 missing, 1 extra, 1 in the wrong place" in html
    assert "not expected here" in feedback(html)
    admin_client_tech.post(reverse("admin:scan_verify"), {"do": "done"})
    html = admin_client_tech.get(reverse("admin:scan_verify")).content.decode()
    assert "1 ok, 0 to scan, 1 missing, 1 extra, 1 in the wrong place" in html


@pytest.fixture
def read_only_monitor(trial: Any, client: Any) -> Any:
    """A client logged in as a blinded user who may change nothing."""
    monitor = make_user("monitor", unblinded=False)
    monitor.user_permissions.remove(
        *monitor.user_permissions.filter(codename__startswith="change_")
    )
    client.force_login(monitor)
    return client


def test_blinded_read_only_user_cannot_store(read_only_monitor: Any, tech: Any) -> None:
    client = read_only_monitor
    box = make_box(actor=tech)
    unit = make_units(actor=tech, count=1)[0]
    assert client.get(reverse("admin:scan_store")).status_code == 403
    for code in (box.code, unit.code):
        assert client.post(reverse("admin:scan_store"), {"code": code}).status_code == 403
    unit.refresh_from_db()
    assert unit.status == "frozen" and not Placement.objects.exists()
    assert client.get(reverse("admin:scan_find")).status_code == 200


@pytest.mark.parametrize("page", ["find", "receive", "store", "checkout", "verify", "rack-import"])
def test_hostile_scan_never_500(trial: Any, tech: Any, admin_client_tech: Any, page: str) -> None:
    unit = make_units(actor=tech, count=1)[0]  # UN0000001Q below is a real, frozen unit
    assert unit.code == "UN0000001Q"
    events = CustodyEvent.objects.count()
    for raw in ["", "\x00", "]C0", "A" * 5000, "<b>x</b>", "UN0000001Q", "%s%s%s"]:
        html = scan(admin_client_tech, page, raw)
        assert "<b>x</b>" not in html
    # No page takes a step from a scan alone: nothing was written.
    assert CustodyEvent.objects.count() == events
    assert list(ProductUnit.objects.values_list("code", "status")) == [(unit.code, "frozen")]


# --- the bench day (the browser tests cover the same in Chromium) -------------------------


def test_home_groups_by_workflow_per_role(trial: Any, admin_client_tech: Any, client: Any) -> None:
    from django.contrib.auth.models import Group

    from biobank.services.roles import CLINICIAN, roles_sync

    html = admin_client_tech.get(reverse("admin:index")).content.decode()
    order = ["wf-scan", "wf-samples", "wf-storage", "wf-doses", "wf-trial", "wf-settings"]
    positions = [html.index(f'id="{g}"') for g in order]
    assert positions == sorted(positions)
    roles_sync()
    nurse = make_user("nurse")
    nurse.user_permissions.clear()
    nurse.groups.add(Group.objects.get(name=CLINICIAN))
    client.force_login(nurse)
    html = client.get(reverse("admin:index")).content.decode()
    assert 'id="wf-scan"' in html and 'id="wf-doses"' in html
    assert 'id="wf-storage"' not in html
    # Of audit and settings a clinician has the custody log only (blinded-safe rows).
    assert reverse("admin:biobank_custodyevent_changelist") in html
    assert reverse("admin:biobank_printer_changelist") not in html
    assert reverse("admin:scan_dose") in html and reverse("admin:scan_store") not in html


def test_scanned_commands(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    box = make_box(actor=tech)
    unit = make_units(actor=tech, count=1)[0]
    scan(admin_client_tech, "store", box.code)
    scan(admin_client_tech, "store", unit.code)
    assert "Undone" in feedback(scan(admin_client_tech, "store", " cmd-undo "))
    assert not Placement.objects.filter(ended_at=None).exists()
    html = scan(admin_client_tech, "find", "CMD-FINISH")
    assert "does nothing on this page" in feedback(html) and 'data-level="warn"' in html


def test_command_sheet_pdf_and_zpl(trial: Any, admin_client_tech: Any) -> None:
    pdf = admin_client_tech.get(reverse("admin:command_sheet", args=["pdf"]))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    zpl = admin_client_tech.get(reverse("admin:command_sheet", args=["zpl"])).content.decode()
    assert zpl.count("^XA") == 5 and "^FDCMD-CHECKOUT^FS" in zpl
    assert admin_client_tech.get(reverse("admin:command_sheet", args=["png"])).status_code == 404


def test_position_outside_the_box(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    box = make_box(actor=tech, rows=2, columns=5)
    scan(admin_client_tech, "store", box.code)
    text = feedback(scan(admin_client_tech, "store", "C5"))
    assert "Position C5 is outside this 2×5 box (A1…B5)." in text and "error" in text


def test_forbidden_page_is_styled(read_only_monitor: Any) -> None:
    response = read_only_monitor.get(reverse("admin:scan_store"))
    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="site-name"' in html and 'id="way-back"' in html


def test_due_list_marks_overdue(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    from .factories import make_participant

    make_participant(actor=tech, arm="A")  # visits in 2025
    html = admin_client_tech.get(reverse("admin:due"), {"days": "30"}).content.decode()
    assert 'class="overdue"' in html and "OVERDUE by" in html
