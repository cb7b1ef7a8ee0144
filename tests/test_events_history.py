"""Chain of custody (who, when, where, from, to, reason) and field-level history of each step."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import DatabaseError, IntegrityError, connection, transaction

from biobank.errors import ConflictError, ServiceError
from biobank.models import CustodyEvent, Site
from biobank.services.aspirates import aspirate_receive, aspirate_receive_by_condition
from biobank.services.qc_release import processing_qc_release
from biobank.services.units import unit_transition

from .factories import PASSWORD, make_aspirate, make_units, past, qc_pass


def test_receipt_writes_event_and_history(trial: Any, tech: Any) -> None:
    aspirate = make_aspirate(actor=tech)
    lab = Site.objects.get(code="HUS")
    when = past(hours=2)
    aspirate_receive(
        aspirate=aspirate,
        decision="quarantine",
        actor=tech,
        temperature_c=Decimal("31.0"),
        condition="temperature",
        received_at=when,
        reason="Box too warm",
        site=lab,
    )
    event = CustodyEvent.objects.filter(aspirate=aspirate).latest("id")
    assert (event.action, event.from_status, event.to_status) == (
        "quarantine",
        "collected",
        "quarantined",
    )
    assert (event.actor, event.at, event.site, event.reason) == (tech, when, lab, "Box too warm")
    assert event.data == {"temperature_c": "31.0", "condition": "temperature"}
    record = aspirate.history.first()
    delta = record.diff_against(record.prev_record)
    changed = {c.field: (c.old, c.new) for c in delta.changes}
    assert changed["status"] == ("collected", "quarantined")
    assert changed["condition"] == ("", "temperature")
    assert record.history_change_reason == "Box too warm"
    assert record.history_user == tech


def test_the_history_page_shows_an_empty_link_and_local_times(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    when = dt.datetime(2025, 6, 1, 22, 30, tzinfo=dt.UTC)  # 00:30 next day in Oslo (CEST)
    with time_machine.travel(when + dt.timedelta(hours=1)):
        aspirate = make_aspirate(actor=tech, collected_at=when - dt.timedelta(hours=1))
        aspirate_receive(
            aspirate=aspirate, decision="accept", actor=tech, temperature_c=Decimal("20"),
            condition="intact", received_at=when,
        )  # fmt: skip
    page = admin_client_tech.get(f"/admin/biobank/aspirate/{aspirate.pk}/history/")
    html = page.content.decode()
    assert page.status_code == 200 and "pk=None" not in html
    assert "2025-06-02 00:30:00" in html and "2025-06-01 22:30" not in html


def test_receipt_by_condition_accepts_intact_and_quarantines_the_rest(
    trial: Any, tech: Any
) -> None:
    # Collected this morning: received now, within the study's transport time.
    intact, leaking = (make_aspirate(actor=tech, collected_at=past(hours=3)) for _ in range(2))
    aspirate_receive_by_condition(
        aspirate=intact, actor=tech, condition="intact", temperature_c=Decimal("19.5")
    )
    aspirate_receive_by_condition(aspirate=leaking, actor=tech, condition="leaking")
    assert (intact.status, leaking.status) == ("accepted", "quarantined")
    assert str(intact.transport_temperature_c) == "19.5" and intact.received_by == tech
    events = {
        e.aspirate_id: (e.action, e.reason)
        for e in CustodyEvent.objects.filter(action__in=["accept", "quarantine"])
    }
    assert events == {
        intact.pk: ("accept", ""),
        leaking.pk: (
            "quarantine",
            "Condition at receipt: Leaking; "
            "No transport temperature was recorded (allowed 2.0–25.0 °C)",
        ),
    }


def test_receipt_by_condition_never_decides_twice(trial: Any, tech: Any) -> None:
    aspirate = make_aspirate(actor=tech, collected_at=past(hours=3))
    aspirate_receive_by_condition(
        aspirate=aspirate, actor=tech, condition="intact", temperature_c=Decimal("19.5")
    )
    with pytest.raises(ConflictError) as info:
        aspirate_receive_by_condition(aspirate=aspirate, actor=tech, condition="leaking")
    assert (info.value.code, info.value.field) == ("already_received", "aspirate")
    aspirate.refresh_from_db()
    assert aspirate.status == "accepted"
    assert CustodyEvent.objects.filter(aspirate=aspirate, action="quarantine").count() == 0
    other = make_aspirate(actor=tech)
    with pytest.raises(ServiceError) as info:
        aspirate_receive_by_condition(aspirate=other, actor=tech, condition="frozen solid")
    assert (info.value.code, info.value.field) == ("invalid", "condition")
    other.refresh_from_db()
    assert other.status == "collected" and other.received_by is None


def test_whole_chain_is_logged_in_order(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1, stored=True)[0]
    qc_pass(processing=unit.processing, actor=tech)
    processing_qc_release(processing=unit.processing, actor=tech, password=PASSWORD)
    for action in ("release", "thaw", "administer"):
        unit_transition(unit=unit, action=action, actor=tech)
    actions = list(
        CustodyEvent.objects.filter(participant=unit.participant).values_list("item_kind", "action")
    )
    assert actions == [
        ("aspirate", "collect"),
        ("aspirate", "accept"),
        ("aspirate", "start_processing"),
        ("processing", "start"),
        ("processing", "harvest"),
        ("unit", "create"),
        ("unit", "freeze"),
        ("processing", "cryopreserve"),
        ("aspirate", "complete_processing"),
        ("unit", "store"),
        ("processing", "qc_release"),
        ("unit", "release"),
        ("unit", "thaw"),
        ("unit", "administer"),
    ]
    # Chain of identity: the unit still names its aspirate and participant.
    assert unit.aspirate.participant_id == unit.participant_id


def test_discard_needs_reason_and_keeps_it(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises(ServiceError) as info:
        unit_transition(unit=unit, action="discard", actor=tech, reason="")
    assert (info.value.code, info.value.field) == ("reason_required", "reason")
    unit.refresh_from_db()
    assert unit.status == "frozen" and not unit.events.filter(action="discard").exists()
    unit_transition(unit=unit, action="discard", actor=tech, reason="Bag cracked in LN2")
    unit.refresh_from_db()
    assert unit.status_reason == "Bag cracked in LN2"
    assert unit.events.latest("id").reason == "Bag cracked in LN2"


def test_future_time_is_refused(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises(ServiceError) as info:
        unit_transition(unit=unit, action="discard", actor=tech, reason="x", at=past(days=-1))
    assert (info.value.code, info.value.field) == ("future_time", "at")
    unit.refresh_from_db()
    assert unit.status == "frozen" and not unit.events.filter(action="discard").exists()


def test_events_cannot_be_updated(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        CustodyEvent.objects.filter(unit=unit).update(reason="rewritten")
    assert not CustodyEvent.objects.filter(reason="rewritten").exists()


def test_events_cannot_be_deleted_on_postgres(trial: Any, tech: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the DELETE trigger is PostgreSQL-only (SQLite's would block test flushes)")
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        CustodyEvent.objects.filter(unit=unit).delete()
    assert CustodyEvent.objects.filter(unit=unit).exists()


def test_items_cannot_be_deleted_while_referenced(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        unit.participant.delete()


def test_events_written_under_a_steps_old_name_count_as_that_step(trial: Any, tech: Any) -> None:
    # The log is append-only: events from before a step was renamed keep the old name, and
    # whatever selects by step finds them under the new one.
    from django.utils import timezone

    from biobank.services.audit import event_record

    from .factories import api_as, make_user

    unit = make_units(actor=tech, count=1, stored=True)[0]
    aspirate = make_aspirate(actor=tech)
    event_record(item=unit, action="unstore", actor=tech, at=timezone.now(), reason="old name")
    event_record(item=aspirate, action="release_quarantine", actor=tech, at=timezone.now())
    lab = api_as(tech)
    found = lab.get("/api/events/", {"item": unit.code, "action": "remove"}).json()["results"]
    assert [(e["action"], e["reason"]) for e in found] == [("unstore", "old name")]
    body = b"".join(
        lab.get("/api/exports/audit-trail.csv", {"source": "events", "action": "remove"})
    ).decode()
    assert f",{unit.code},unstore," in body
    monitor = api_as(make_user("monitor-old-names", unblinded=False))
    seen = monitor.get("/api/events/", {"item": aspirate.code}).json()["results"]
    assert [e["action"] for e in seen] == ["collect", "release_quarantine"]
