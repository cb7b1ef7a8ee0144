"""Receiving shipments: the receipt by scan and its reconciliation (missing, extra, damaged,
found later, written off), and the temperature logger file and the excursions that quarantine
what arrived."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.logger_csv import (
    LoggerCsvError,
    excursion_summary,
    excursions_find,
    parse_logger_csv,
)
from biobank.models import CustodyEvent, DoseUnit, LoggerFile, Shipment, ShipmentItem
from biobank.services.doses import UnitCount, dose_administer, dose_dispatch, dose_make_ready
from biobank.services.shipment_receipt import (
    shipment_item_find,
    shipment_item_write_off,
    shipment_logger_upload,
    shipment_receive,
    shipment_receive_scan,
)

from .factories import (
    accept_intact,
    api_as,
    custody_steps,
    logger_clean,
    logger_csv,
    make_aspirate,
    make_participant,
    make_ready_in_window,
    make_shipment,
    make_unit_for_trondheim,
    past,
    ship_items,
)

# --- the temperature logger quarantines what arrived -----------------------------------------


def test_frozen_unit_bergen_to_trondheim_with_an_excursion_ends_quarantined(
    trial: Any, tech: Any
) -> None:
    unit, dose = make_unit_for_trondheim(tech)
    shipment = make_shipment(
        tech, "HUS", "STO", "dry_shipper", shipper_id="CX-100", logger_serial="L-9"
    )
    ship_items(shipment, [unit.code], tech)
    counts = [UnitCount(u.code, 23_000_000, Decimal("95")) for u in dose.units.order_by("code")]

    # In transit: it cannot be thawed for its dose.
    with pytest.raises(ServiceError) as refused:
        dose_make_ready(dose=dose, actor=tech, unit_counts=counts)
    assert refused.value.code == "in_shipment"
    assert shipment.code in refused.value.message

    shipment_receive_scan(shipment=shipment, scan=unit.code, actor=tech)
    logger_clean(shipment, tech)  # the receipt waits for a logger file: a first, clean one
    shipment_receive(shipment=shipment, actor=tech)
    start = past(hours=6)
    temps = ["−185,5"] * 6 + ["−140,2", "−120,0", "−138,4"] + ["−180,1"] * 3
    upload = shipment_logger_upload(
        shipment=shipment, data=logger_csv(start, temps), filename="L-9.csv", actor=tech
    )
    assert upload.quarantined == [unit.code]
    logger = LoggerFile.objects.get(shipment=shipment, filename="L-9.csv")
    assert logger.readings == 12
    assert logger.excursion["count"] == 1
    assert logger.excursion["total_minutes"] == 30.0  # 3 readings out, recovered 10 min later
    assert logger.excursion["worst"]["peak_c"] == "-120.0"
    assert logger.excursion["worst"]["beyond_c"] == "30.0"

    unit.refresh_from_db()
    assert unit.status == "quarantined"
    assert "Temperature excursion" in unit.status_reason and "30 min" in unit.status_reason
    quarantine = CustodyEvent.objects.get(item_code=unit.code, action="quarantine")
    assert quarantine.data["logger_sha256"] == logger.sha256
    assert quarantine.data["excursion"]["worst"]["side"] == "above"
    assert [a for a, _, _ in custody_steps(unit.code)][-3:] == ["ship", "receive", "quarantine"]
    assert custody_steps(unit.code)[-3][1:] == ("HUS", shipment.code)
    assert custody_steps(unit.code)[-2][1:] == ("STO", shipment.code)

    with pytest.raises(ServiceError) as refused:
        dose_make_ready(dose=dose, actor=tech, unit_counts=counts)
    assert refused.value.code == "invalid_transition"
    unit.refresh_from_db()
    assert unit.status == "quarantined"


def test_logger_upload_before_receipt_quarantines_items_as_they_are_received(
    trial: Any, tech: Any
) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    temps = ["-180"] * 3 + ["-149,5"] + ["-181"]
    upload = shipment_logger_upload(
        shipment=shipment, data=logger_csv(past(hours=3), temps), filename="l.csv", actor=tech
    )
    assert upload.quarantined == []  # nothing has arrived yet
    shipment_receive_scan(shipment=shipment, scan=unit.code, actor=tech)
    receipt = shipment_receive(shipment=shipment, actor=tech)
    assert receipt.quarantined == [unit.code]
    unit.refresh_from_db()
    assert unit.status == "quarantined"


def test_a_logger_file_from_a_wrong_clock_is_refused(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    late = past(hours=-2)  # two hours ahead: a logger left on summer time, say
    with pytest.raises(ServiceError) as info:
        shipment_logger_upload(
            shipment=shipment, data=logger_csv(late, ["-185", "-186"]), filename="l.csv",
            actor=tech,
        )  # fmt: skip
    assert (info.value.code, info.value.field) == ("logger_clock", "file")
    last = timezone.localtime(late + dt.timedelta(minutes=10))
    assert f"has readings until {last:%Y-%m-%d %H:%M}, after now" in info.value.message
    assert not LoggerFile.objects.filter(shipment=shipment).exists()


def test_a_clean_trace_quarantines_nothing(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    shipment_receive_scan(shipment=shipment, scan=unit.code, actor=tech)
    upload = shipment_logger_upload(
        shipment=shipment,
        data=logger_csv(past(hours=3), ["-185", "-150,0", "-190"]),
        filename="ok.csv",
        actor=tech,
    )
    assert (upload.quarantined, upload.logger_file.excursion) == ([], {})
    assert shipment_receive(shipment=shipment, actor=tech).quarantined == []
    unit.refresh_from_db()
    assert unit.status == "released"


# --- a shipment with a logger is received only with its file ---------------------------------


def test_a_shipment_with_a_logger_is_not_received_before_its_file(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper", logger_serial="L-9")
    ship_items(shipment, [unit.code], tech)
    shipment_receive_scan(shipment=shipment, scan=unit.code, actor=tech)
    events = CustodyEvent.objects.count()
    with pytest.raises(ServiceError) as refused:
        shipment_receive(shipment=shipment, actor=tech)
    assert (refused.value.code, refused.value.field) == ("logger_required", "file")
    assert refused.value.message == (
        f"{shipment.code} (LN2 dry shipper (≤ −150 °C), range -196 … -150 °C) carries logger "
        "L-9: upload its logger file before closing the receipt (0 files uploaded)."
    )
    shipment.refresh_from_db()
    assert (shipment.status, shipment.received_at) == ("in_transit", None)
    line = ShipmentItem.objects.get(shipment=shipment, item_code=unit.code)
    assert (line.state, line.active) == ("arrived", True)
    assert CustodyEvent.objects.count() == events
    # Through the API: the same refusal, nothing written.
    response = api_as(tech).post(f"/api/shipments/{shipment.code}/receive/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "logger_required")
    assert response.json()["fields"] == {"file": [refused.value.message]}
    assert Shipment.objects.get(pk=shipment.pk).status == "in_transit"
    # With its file (clean): received.
    shipment_logger_upload(
        shipment=shipment,
        data=logger_csv(past(hours=3), ["-185", "-190"]),
        filename="L-9.csv",
        actor=tech,
    )
    assert shipment_receive(shipment=shipment, actor=tech).received == [unit.code]
    shipment.refresh_from_db()
    assert shipment.status == "received"


@pytest.mark.parametrize(
    ("kind", "serial", "needs_file"),
    [
        ("cool", "", True),  # temperature-controlled: a logger travels with it
        ("ambient", "L-3", True),  # it names a logger
        ("ambient", "", False),  # no logger
    ],
)
def test_which_shipments_wait_for_their_logger_file(
    trial: Any, tech: Any, kind: str, serial: str, needs_file: bool
) -> None:
    aspirate = make_aspirate(actor=tech, participant=make_participant(actor=tech, site_code="UNN"))
    shipment = make_shipment(tech, "UNN", "HUS", kind, logger_serial=serial)
    ship_items(shipment, [aspirate.code], tech)
    shipment_receive_scan(shipment=shipment, scan=aspirate.code, actor=tech)
    if not needs_file:
        assert shipment_receive(shipment=shipment, actor=tech).received == [aspirate.code]
        return
    with pytest.raises(ServiceError) as refused:
        shipment_receive(shipment=shipment, actor=tech)
    assert refused.value.code == "logger_required"
    assert (f"logger {serial}:" if serial else "a data logger:") in refused.value.message
    assert Shipment.objects.get(pk=shipment.pk).status == "in_transit"


# --- an excursion found after use is never silent --------------------------------------------


def test_a_late_excursion_lists_the_units_it_could_not_quarantine(trial: Any, tech: Any) -> None:
    _unit, dose = make_unit_for_trondheim(tech)
    codes = sorted(u.code for u in dose.units.all())
    shipment = make_shipment(tech, "HUS", "STO", "dry_shipper", logger_serial="L-9")
    ship_items(shipment, codes, tech)
    for code in codes:
        shipment_receive_scan(shipment=shipment, scan=code, actor=tech)
    clean = logger_csv(past(hours=3), ["-185", "-190"])
    shipment_logger_upload(shipment=shipment, data=clean, filename="first.csv", actor=tech)
    shipment_receive(shipment=shipment, actor=tech)
    make_ready_in_window(dose=dose, actor=tech)  # both units thawed
    # The logger's full download, read later, shows the excursion.
    late = logger_csv(past(hours=3), ["-185", "-120", "-110", "-185"])
    upload = shipment_logger_upload(shipment=shipment, data=late, filename="full.csv", actor=tech)
    assert upload.logger_file.excursion["count"] == 1
    assert upload.quarantined == []
    assert [(n.code, n.kind, n.status) for n in upload.not_quarantined] == [
        (codes[0], "unit", "thawed"),
        (codes[1], "unit", "thawed"),
    ]
    assert str(upload.not_quarantined[0]) == f"unit {codes[0]} (thawed)"
    assert sorted(dose.units.values_list("status", flat=True)) == ["thawed", "thawed"]


def test_a_late_excursion_names_an_administered_dose_blinded(
    roles: dict[str, Any], admin_client: Any
) -> None:
    from biobank.services.roles import CLINICIAN, LAB

    lab = roles[LAB]
    _unit, dose = make_unit_for_trondheim(lab)
    make_ready_in_window(dose=dose, actor=lab)
    shipment = make_shipment(lab, "HUS", "STO", "cool", logger_serial="T-1")
    ship_items(shipment, [dose.code], lab)
    shipment_receive_scan(shipment=shipment, scan=dose.code, actor=lab)
    clean = logger_csv(past(hours=3), ["5", "6"])
    shipment_logger_upload(shipment=shipment, data=clean, filename="first.csv", actor=lab)
    shipment_receive(shipment=shipment, actor=lab)
    participant, clinician = dose.participant.code, roles[CLINICIAN]
    dose_dispatch(dose_scan=dose.code, participant_scan=participant, actor=clinician)
    dose_administer(dose_scan=dose.code, participant_scan=participant, actor=clinician)

    late = logger_csv(past(hours=3), ["5", "14", "15", "6"])
    response = api_as(lab).post(
        f"/api/shipments/{shipment.code}/logger/",
        {"file": SimpleUploadedFile("full.csv", late, content_type="text/csv")},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    logger = response.json()["logger"]
    assert logger["quarantined"] == []
    assert logger["not_quarantined"] == [
        {"code": dose.code, "kind": "dose", "status": "administered"}
    ]
    for word in ("MSC", "NaCl", "saline", "Placebo", "Autologous"):  # the lab sees the rest
        assert word not in str(logger)
    # The admin says so too, in words, after the readings and the excursion.
    base = f"/admin/biobank/shipment/{shipment.pk}/"
    page = admin_client.post(
        base + "step/logger/", {"file": SimpleUploadedFile("again.csv", late)}, follow=True
    )
    text = page.content.decode()
    assert (
        f"0 item(s) quarantined. NOT QUARANTINED, 1 item(s) already past quarantine (QA to "
        f"decide): dose {dose.code} (administered)."
    ) in text
    dose.refresh_from_db()
    assert dose.status == "administered"


# --- receiving reconciles -----------------------------------------------------------------


def test_receiving_reconciles_missing_extra_and_damaged(trial: Any, tech: Any) -> None:
    unn = [make_participant(actor=tech, site_code="UNN") for _ in range(4)]
    a1, a2, a3, extra = (make_aspirate(actor=tech, participant=p) for p in unn)
    shipment = ship_items(
        make_shipment(tech, "UNN", "HUS", "ambient"), [a1.code, a2.code, a3.code], tech
    )

    assert shipment_receive_scan(shipment=shipment, scan=a1.code, actor=tech).extra is False
    outcome = shipment_receive_scan(
        shipment=shipment, scan=a3.code, actor=tech, damaged=True, note="tube cracked"
    )
    assert outcome.extra is False
    assert shipment_receive_scan(shipment=shipment, scan=extra.code, actor=tech).extra is True
    with pytest.raises(ServiceError) as refused:
        shipment_receive_scan(shipment=shipment, scan=a1.code, actor=tech)
    assert refused.value.code == "already_received"

    receipt = shipment_receive(shipment=shipment, actor=tech)
    assert receipt.received == [a1.code]
    assert receipt.damaged == [a3.code]
    assert receipt.missing == [a2.code]
    assert receipt.extra == [extra.code]
    shipment.refresh_from_db()
    assert shipment.status == "partially_received"
    a3.refresh_from_db()
    assert (a3.status, a3.condition) == ("quarantined", "damaged")
    assert "tube cracked" in a3.status_reason

    # The missing one stays in transit: nothing else may happen to it.
    with pytest.raises(ServiceError) as refused:
        accept_intact(aspirate=a2, actor=tech, received_at=past())
    assert refused.value.code == "in_shipment"
    a2.refresh_from_db()
    assert a2.status == "collected"
    assert ShipmentItem.objects.get(shipment=shipment, item_code=a2.code).active is True
    # The extra one was not received into custody: no receive event.
    assert [a for a, _, _ in custody_steps(extra.code)] == ["collect"]

    # Found later: received once, and the shipment is complete.
    shipment_item_find(shipment=shipment, scan=a2.code, actor=tech)
    with pytest.raises(ServiceError) as refused:
        shipment_item_find(shipment=shipment, scan=a2.code, actor=tech)
    assert refused.value.code == "already_received"
    shipment.refresh_from_db()
    assert shipment.status == "received"
    assert [a for a, _, _ in custody_steps(a2.code)] == ["collect", "ship", "receive"]


def test_a_missing_item_is_written_off_with_a_reason(trial: Any, tech: Any) -> None:
    unit, dose = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    logger_clean(shipment, tech)
    receipt = shipment_receive(shipment=shipment, actor=tech)
    assert receipt.missing == [unit.code]
    with pytest.raises(ServiceError) as refused:
        shipment_item_write_off(shipment=shipment, scan=unit.code, actor=tech, reason=" ")
    assert refused.value.code == "reason_required"
    unit.refresh_from_db()
    assert unit.status == "released"
    assert ShipmentItem.objects.get(shipment=shipment, item_code=unit.code).active is True
    shipment_item_write_off(
        shipment=shipment, scan=unit.code, actor=tech, reason="not in the shipper"
    )
    # The dose it was reserved for cannot be made without it: cancelled with it.
    dose.refresh_from_db()
    assert dose.status == "cancelled" and unit.code in dose.status_reason
    assert not dose.dose_units.filter(active=True).exists()
    unit.refresh_from_db()
    assert unit.status == "discarded" and "not in the shipper" in unit.status_reason
    shipment.refresh_from_db()
    assert shipment.status == "received"
    line = ShipmentItem.objects.get(shipment=shipment, item_code=unit.code)
    assert (line.state, line.active) == ("written_off", False)


def test_a_partially_received_receipt_is_not_closed_again(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    logger_clean(shipment, tech)
    assert shipment_receive(shipment=shipment, actor=tech).missing == [unit.code]
    # Closing it again would call it received with the unit still missing: the table allows
    # "receive" only from in transit; the last missing item completes the receipt.
    with pytest.raises(ServiceError) as refused:
        shipment_receive(shipment=shipment, actor=tech)
    assert (refused.value.code, refused.value.status_code) == ("invalid_transition", 409)
    assert refused.value.message == (
        f"Cannot receive {shipment.code}: it is partially_received; "
        "this step is allowed only from: in_transit."
    )
    shipment.refresh_from_db()
    assert shipment.status == "partially_received"
    line = ShipmentItem.objects.get(shipment=shipment, item_code=unit.code)
    assert (line.state, line.active) == ("missing", True)
    shipment_item_find(shipment=shipment, scan=unit.code, actor=tech)
    shipment.refresh_from_db()
    assert shipment.status == "received"


def test_find_and_write_off_check_the_table(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    logger_clean(shipment, tech)
    shipment_receive(shipment=shipment, actor=tech)
    # A shipment called received while an item is still missing (as closing the receipt twice
    # used to leave it): finding or writing off is a step of a partially received one only.
    Shipment.objects.filter(pk=shipment.pk).update(status="received")
    for step, words in (
        (lambda: shipment_item_find(shipment=shipment, scan=unit.code, actor=tech), "find"),
        (
            lambda: shipment_item_write_off(
                shipment=shipment, scan=unit.code, actor=tech, reason="gone"
            ),
            "write off",
        ),
    ):
        with pytest.raises(ServiceError) as refused:
            step()
        assert (refused.value.code, refused.value.field) == ("not_missing", "status")
        assert refused.value.message == (
            f"{shipment.code} is received; only a partially received shipment has missing "
            f"items to {words}."
        )
    unit.refresh_from_db()
    assert unit.status == "released"
    line = ShipmentItem.objects.get(shipment=shipment, item_code=unit.code)
    assert (line.state, line.active) == ("missing", True)


def test_a_dose_lost_in_transit_is_cancelled_and_its_thawed_units_discarded(
    trial: Any, tech: Any
) -> None:
    _unit, dose = make_unit_for_trondheim(tech)
    make_ready_in_window(dose=dose, actor=tech)
    dose.refresh_from_db()
    assert [u.status for u in dose.units.all()] == ["thawed", "thawed"]
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "cool"), [dose.code], tech)
    logger_clean(shipment, tech)
    assert shipment_receive(shipment=shipment, actor=tech).missing == [dose.code]

    shipment_item_write_off(shipment=shipment, scan=dose.code, actor=tech, reason="not in box")

    dose.refresh_from_db()
    assert dose.status == "cancelled"
    units = list(dose.units.order_by("code"))
    assert [u.status for u in units] == ["discarded", "discarded"]
    assert all(f"thawed for {dose.code}, which was cancelled" in u.status_reason for u in units)
    assert not DoseUnit.objects.filter(dose=dose, active=True).exists()
    assert custody_steps(dose.code)[-1] == ("cancel", "STO", shipment.code)


# --- the logger file ------------------------------------------------------------------------


def test_logger_csv_formats() -> None:
    oslo = "Europe/Oslo"
    comma = 'Time,Temperature (°C)\n2026-11-20T08:00:00+01:00,5.2\n2026-11-20T08:10:00Z,"6,1"\n'
    readings = parse_logger_csv(comma.encode(), default_tz=oslo)
    assert [str(r.temperature_c) for r in readings] == ["5.2", "6.1"]
    assert readings[1].at == dt.datetime(2026, 11, 20, 8, 10, tzinfo=dt.UTC)

    semicolon = "\ufeffDate;Time;Temp\n20.11.2026;08:00;−151,5 °C\n20.11.2026;08:05;-152,0\n"
    readings = parse_logger_csv(semicolon.encode("utf-8"), default_tz=oslo)
    assert [str(r.temperature_c) for r in readings] == ["-151.5", "-152.0"]
    assert readings[0].at.utcoffset() == dt.timedelta(hours=1)  # Oslo in November

    utf16 = "Timestamp\tTemperature\n2026-11-20 08:00\t4,0\n".encode("utf-16")
    assert parse_logger_csv(utf16, default_tz=oslo)[0].temperature_c == Decimal("4.0")

    with pytest.raises(LoggerCsvError) as bad:
        parse_logger_csv(b"Time;Temp\n2026-11-20 08:00;warm\n")
    assert (bad.value.code, bad.value.line) == ("bad_temperature", 2)
    with pytest.raises(LoggerCsvError) as bad:
        parse_logger_csv(b"just;some;numbers\n1;2;3\n")
    assert bad.value.code == "no_header"
    with pytest.raises(LoggerCsvError) as bad:
        parse_logger_csv(b"Time;Temp\n\x00\x01\x02")
    assert bad.value.code == "not_text"


def test_excursions_how_long_and_how_far() -> None:
    start = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    temps = ["5", "9", "10.5", "7", "1.5", "1", "3"]
    text = "time;temp\n" + "".join(
        f"{(start + dt.timedelta(minutes=15 * i)).isoformat()};{t}\n" for i, t in enumerate(temps)
    )
    found = excursions_find(parse_logger_csv(text), Decimal(2), Decimal(8))
    assert [(e.side, e.minutes, str(e.peak_c), str(e.beyond_c)) for e in found] == [
        ("above", 30.0, "10.5", "2.5"),
        ("below", 30.0, "1", "1"),
    ]
    summary = excursion_summary(found, Decimal(2), Decimal(8))
    assert (summary["count"], summary["total_minutes"]) == (2, 60.0)
    assert summary["worst"]["side"] == "above"


def test_a_bad_logger_file_is_refused_with_the_line(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    with pytest.raises(ServiceError) as refused:
        shipment_logger_upload(
            shipment=shipment, data=b"Tid;Temp\n2026-11-20 08:00;x\n", filename="b.csv", actor=tech
        )
    assert (refused.value.code, refused.value.field) == ("bad_temperature", "file")
    assert "Line 2" in refused.value.message
    assert not LoggerFile.objects.exists()


@pytest.mark.parametrize(
    ("stamp", "message"),
    [
        ("0001-01-01T00:00:00", "The time '0001-01-01T00:00:00' must be between the years"),
        ("9999-12-31T23:59:59", "The time '9999-12-31T23:59:59' must be between the years"),
        ("31.12.9999 23:59", "The time '31.12.9999 23:59' must be between the years"),
        ("2026-11-20T08:10:00+99:00", "has an impossible time zone offset"),
        ("2026-11-20 08:10 +99:00", "has an impossible time zone offset"),
    ],
)
def test_a_logger_reading_at_an_impossible_time_is_refused_with_its_line(
    stamp: str, message: str
) -> None:
    text = f"Time;Temp\n2026-11-20T08:00:00+01:00;-150\n{stamp};-151\n"
    with pytest.raises(LoggerCsvError) as bad:
        parse_logger_csv(text.encode(), default_tz="Europe/Oslo")
    assert (bad.value.code, bad.value.line) == ("bad_time", 3)
    assert bad.value.message.startswith("Line 3: ") and message in bad.value.message


def test_a_logger_file_with_a_year_9999_reading_is_not_stored(trial: Any, tech: Any) -> None:
    unit, _ = make_unit_for_trondheim(tech)
    shipment = ship_items(make_shipment(tech, "HUS", "STO", "dry_shipper"), [unit.code], tech)
    data = b"Tid;Temp\n2026-11-20 08:00;-150\n9999-12-31 23:59;-151\n"
    with pytest.raises(ServiceError) as refused:
        shipment_logger_upload(shipment=shipment, data=data, filename="b.csv", actor=tech)
    assert (refused.value.code, refused.value.field) == ("bad_time", "file")
    assert refused.value.message.startswith("Line 3: ")
    assert not LoggerFile.objects.exists()
