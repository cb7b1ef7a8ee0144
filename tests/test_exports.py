"""Audit-trail export (CSV, JSON Lines; events and field history) and the inventory."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Q
from django.utils import timezone
from openpyxl import load_workbook

from biobank.models import CustodyEvent, ExportLog, Placement, ProductUnit, Study
from biobank.selectors.inventory import inventory_rows
from biobank.services.doses import dose_administer, dose_dispatch
from biobank.services.processing import passage_record
from biobank.services.storage import unit_store

from .factories import (
    make_box,
    make_dose,
    make_processing,
    make_storage_unit,
    make_units,
    make_user,
    past,
    qc_pass,
)

pytestmark = pytest.mark.django_db

# The export's columns: the event fields, then the hash-chain columns of the event table.
HEADER = (
    "source,id,at,recorded_at,participant,item_kind,item_code,action,from_status,to_status,"
    "user,site,location,reason,data,prev_hash,row_hash"
)


def _body(response: Any) -> str:
    assert response.streaming, "exports are streamed"
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def demo(db: None) -> Any:
    """The demo data set (about 20 s to load: used only where the issue asks for it)."""
    call_command("seed", "--demo", "--demo-user", stdout=StringIO())
    return make_user("auditor")


@pytest.fixture
def small(trial: Any) -> Any:
    """One arm-B participant with QC-released units, a ready MSC dose and one unit left stored."""
    user = make_user("auditor")
    make_dose(actor=user, arm="B", visit="M6", ready=True, units=3)
    return user


def test_csv_export_of_the_demo_data_round_trips(client: Any, demo: Any) -> None:
    client.force_login(demo)
    response = client.get("/api/exports/audit-trail.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    events = list(
        CustodyEvent.objects.select_related("participant", "actor", "site").order_by("at", "id")
    )
    assert len(events) > 100
    assert len(rows) == len(events) == CustodyEvent.objects.count()
    for row, event in zip(rows, events, strict=True):
        assert row["source"] == "event"
        assert int(row["id"]) == event.id
        assert dt.datetime.fromisoformat(row["at"]) == event.at
        assert dt.datetime.fromisoformat(row["recorded_at"]) == event.recorded_at
        assert row["participant"] == event.participant.code
        assert (row["item_kind"], row["item_code"], row["action"]) == (
            event.item_kind,
            event.item_code,
            event.action,
        )
        assert (row["from_status"], row["to_status"]) == (event.from_status, event.to_status)
        assert row["user"] == event.actor.username
        assert row["site"] == (event.site.code if event.site else "")
        assert (row["location"], row["reason"]) == (event.location, event.reason)
        assert json.loads(row["data"]) == event.data
    _jsonl_has_one_object_per_event(client)


def _jsonl_has_one_object_per_event(client: Any) -> None:
    response = client.get("/api/exports/audit-trail.jsonl")
    assert response["Content-Type"] == "application/x-ndjson"
    lines = _body(response).splitlines()
    assert len(lines) == CustodyEvent.objects.count()
    first = json.loads(lines[0])
    event = CustodyEvent.objects.order_by("at", "id").first()
    assert first["id"] == event.id and first["data"] == event.data
    assert ",".join(first) == HEADER


def test_columns_are_the_event_fields_plus_the_hash_chain(client: Any, small: Any) -> None:
    client.force_login(small)
    header, *rows = _body(client.get("/api/exports/audit-trail.csv")).splitlines()
    assert header == HEADER
    assert rows


def test_filters_narrow_the_export(client: Any, small: Any) -> None:
    client.force_login(small)
    event = CustodyEvent.objects.filter(item_kind="unit").order_by("id").first()
    participant = event.participant

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/exports/audit-trail.csv?{query}")
        assert response.status_code == 200, response.content
        return [int(r["id"]) for r in csv.DictReader(io.StringIO(_body(response)))]

    mine = CustodyEvent.objects.filter(participant=participant).order_by("at", "id")
    assert ids(f"participant={participant.pseudonym}") == list(mine.values_list("id", flat=True))
    item = CustodyEvent.objects.filter(item_code=event.item_code).order_by("at", "id")
    assert ids(f"item={event.item_code.lower()}") == list(item.values_list("id", flat=True))
    stored = CustodyEvent.objects.filter(action__in=["store", "move"]).order_by("at", "id")
    assert ids("action=store,move") == list(stored.values_list("id", flat=True))
    assert ids("user=nobody") == []
    day = timezone.localtime(event.at).date()  # a date means the lab's day, as in the filter
    window = CustodyEvent.objects.filter(at__date__gte=day, at__date__lte=day)
    got = ids(f"from={day}&to={day}")
    assert len(got) == window.count() and event.id in got
    assert ids(f"from={day + dt.timedelta(days=1)}&to={day + dt.timedelta(days=1)}") == list(
        CustodyEvent.objects.filter(at__date=day + dt.timedelta(days=1))
        .order_by("at", "id")
        .values_list("id", flat=True)
    )


def test_bad_filters_are_refused_naming_the_parameter(client: Any, small: Any) -> None:
    client.force_login(small)
    cases = [
        ("from=yesterday", 400, "from", "invalid_date"),
        ("from=2025-03-02&to=2025-03-01", 400, "from", "invalid_range"),
        ("to=2025-03-01T10:00", 400, "to", "naive_datetime"),
        ("source=everything", 400, "source", "invalid"),
        ("participant=PT0000000X", 404, "participant", "not_found"),
    ]
    for query, status, field, code in cases:
        response = client.get(f"/api/exports/audit-trail.csv?{query}")
        assert response.status_code == status, query
        body = response.json()
        assert body["code"] == code and field in body["fields"], (query, body)
    assert client.get("/api/exports/audit-trail.xml").json()["code"] == "invalid_format"
    assert not ExportLog.objects.exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("from=2024-13-45", "from", "invalid_date"),
        ("from=2024-02-30", "from", "invalid_date"),
        ("to=2024-01-01T25:00", "to", "invalid_date"),
        ("to=2024-01-01T10:00%2B99:00", "to", "invalid_date"),
        ("from=0001-01-01", "from", "date_out_of_range"),
        ("to=0001-01-01T00:00:00%2B00:00", "to", "date_out_of_range"),
        ("to=9999-12-31T23:59:59-12:00", "to", "date_out_of_range"),
        ("from=9999-12-31", "from", "date_out_of_range"),
    ],
)
def test_impossible_or_implausible_dates_are_refused_naming_the_parameter(
    client: Any, small: Any, fmt: str, query: str, field: str, code: str
) -> None:
    client.force_login(small)
    response = client.get(f"/api/exports/audit-trail.{fmt}?{query}")
    assert response.status_code == 400, query
    body = response.json()
    assert (body["code"], list(body["fields"])) == (code, [field]), body
    if code == "date_out_of_range":
        assert body["fields"][field] == [f"{field} must be between the years 1900 and 2200."]
    assert not ExportLog.objects.exists()


def test_every_export_is_recorded_with_its_filters(client: Any, small: Any) -> None:
    client.force_login(small)
    client.get("/api/exports/audit-trail.jsonl?action=store&from=2025-01-01")
    log = ExportLog.objects.get()
    assert (log.kind, log.format, log.requested_by, log.blinded) == (
        "audit_trail",
        "jsonl",
        small,
        False,
    )
    assert log.filters["action"] == "store" and log.filters["source"] == "events"
    assert log.filters["from"].startswith("2024-12-31T23:00")  # Oslo midnight in UTC


def test_field_history_export_shows_old_and_new_values(client: Any, small: Any) -> None:
    client.force_login(small)
    unit = ProductUnit.objects.filter(status="stored").first()
    response = client.get(f"/api/exports/audit-trail.jsonl?source=history&item={unit.code}")
    rows = [json.loads(line) for line in _body(response).splitlines()]
    assert rows and {r["source"] for r in rows} == {"history"}
    assert rows[0]["action"] == "created" and rows[0]["data"]["code"] == [None, unit.code]
    changes = [r for r in rows if r["action"] == "changed"]
    assert any(r["data"].get("status", [None, None])[1] == "stored" for r in changes)
    assert all("code" not in r["data"] for r in changes)  # only what changed
    # The unit's own rows, and those of its placements (where it was stored).
    assert {r["item_kind"] for r in rows} == {"unit", "placement"}
    assert {r["item_code"] for r in rows if r["item_kind"] == "unit"} == {unit.code}


def test_blinded_export_leaves_out_lab_items_and_their_history(client: Any, small: Any) -> None:
    monitor = make_user("monitor-export", unblinded=False)
    client.force_login(monitor)
    response = client.get("/api/exports/audit-trail.csv?source=all")
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    kinds = {r["item_kind"] for r in rows}
    # Only the kinds blinded roles may see (the policy fails closed on anything else).
    allowed = "study site visit_type participant visit aspirate dose shipment"
    assert kinds <= set(allowed.split())
    assert {"aspirate", "dose", "participant"} <= kinds
    # Custody steps a blinded role sees: an aspirate's collection and receipt, every dose step.
    events = CustodyEvent.objects.filter(
        Q(item_kind="aspirate", action__in=["collect", "accept", "quarantine", "reject"])
        | Q(item_kind="dose")
    )
    assert sum(r["source"] == "event" for r in rows) == events.count()
    text = "\n".join(",".join(r.values()) for r in rows)
    for code in ProductUnit.objects.values_list("code", flat=True):
        assert code not in text
    assert "PLACEBO" not in text and '"MSC"' not in text
    assert ExportLog.objects.get().blinded is True


def test_blinded_export_hides_the_labs_reason_for_a_dose_step(client: Any, small: Any) -> None:
    from biobank.models import Dose
    from biobank.services.doses import dose_cancel

    dose = Dose.objects.get()
    dose_cancel(dose=dose, actor=small, reason="Bag cracked at thaw, MSC lost")
    client.force_login(make_user("monitor-reasons", unblinded=False))
    body = _body(client.get("/api/exports/audit-trail.csv?source=events"))
    rows = [r for r in csv.DictReader(io.StringIO(body)) if r["item_kind"] == "dose"]
    cancel = next(r for r in rows if r["action"] == "cancel")
    assert (cancel["reason"], cancel["location"]) == (
        "Recorded by the cell lab (not shown: the trial is blinded)",
        "",
    )
    assert "cracked" not in body and "MSC lost" not in body


def test_audit_export_needs_its_permission(client: Any, trial: Any) -> None:
    from django.contrib.auth.models import Permission

    user = make_user("no-export")
    user.user_permissions.remove(Permission.objects.get(codename="export_audit_trail"))
    client.force_login(user)
    response = client.get("/api/exports/audit-trail.csv")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert not ExportLog.objects.exists()


def test_export_reads_in_chunks_with_few_queries(
    client: Any, small: Any, django_assert_max_num_queries: Any
) -> None:
    client.force_login(small)
    with django_assert_max_num_queries(12):
        response = client.get("/api/exports/audit-trail.csv")
        _body(response)


# --- inventory -------------------------------------------------------------------------------


def test_inventory_lists_every_stored_unit_with_its_location(client: Any, demo: Any) -> None:
    client.force_login(demo)
    response = client.get("/api/inventory.csv")
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    open_placements = Placement.objects.filter(ended_at__isnull=True).select_related(
        "unit__participant", "container__storage_unit"
    )
    assert len(rows) == open_placements.count() > 0
    by_unit = {r["unit"]: r for r in rows}
    for p in open_placements:
        row = by_unit[p.unit.code]
        assert row["participant"] == p.unit.participant.code
        assert row["storage_unit"] == p.container.storage_unit.code
        assert (row["box"], row["position"], row["location"]) == (
            p.container.code,
            p.position,
            p.container.path,
        )
        assert row["status"] == p.unit.status
    keys = [(r["site"], r["storage_unit_name"], r["location"]) for r in rows]
    assert keys == sorted(keys)
    _xlsx_has_units_and_per_participant_counts(client)


def _xlsx_has_units_and_per_participant_counts(client: Any) -> None:
    response = client.get("/api/inventory.xlsx")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content), read_only=True)
    units = list(book["Units by location"].values)
    assert units[0][:3] == ("site", "storage_unit", "storage_unit_name")
    assert len(units) - 1 == Placement.objects.filter(ended_at__isnull=True).count()
    counts = list(book["Per participant"].values)
    assert counts[0] == ("participant", "pseudonym", "stored", "total", "by_status")
    assert sum(r[3] for r in counts[1:]) == ProductUnit.objects.count()
    assert [x.format for x in ExportLog.objects.filter(kind="inventory")] == ["xlsx", "csv"]


def test_where_is_everything_of_one_participant(client: Any, trial: Any) -> None:
    lab = make_user("lab-where")
    units = make_units(actor=lab, count=3, stored=True)
    participant = units[0].participant
    client.force_login(lab)
    body = client.get(f"/api/inventory/participants/{participant.code}/").json()
    assert [u["code"] for u in body["units"]] == sorted(u.code for u in units)
    assert all(u["box"].startswith("BX") and u["position"] for u in body["units"])
    assert body["aspirates"][0]["status"] == "processed"
    counts = client.get("/api/inventory/participants/").json()
    assert counts == [
        {
            "participant": participant.code,
            "pseudonym": participant.pseudonym,
            "stored": 3,
            "total": 3,
            "by_status": {"stored": 3},
        }
    ]
    only = client.get(f"/api/inventory.csv?participant={participant.code}")
    assert len(list(csv.DictReader(io.StringIO(_body(only))))) == 3
    blinded = make_user("clin-where", unblinded=False)
    client.force_login(blinded)
    body = client.get(f"/api/inventory/participants/{participant.code}/").json()
    assert "units" not in body and body["aspirates"]


def test_inventory_shows_each_stored_units_expiry_by_the_units_rule(
    client: Any, trial: Any, django_assert_max_num_queries: Any
) -> None:
    Study.objects.update(stored_shelf_life_days=365)
    lab = make_user("lab-expiry")
    unit, other = make_units(actor=lab, count=2, stored=True)
    ProductUnit.objects.filter(pk=unit.pk).update(
        created_at=dt.datetime(2026, 1, 10, 9, 0, tzinfo=dt.UTC)
    )
    ProductUnit.objects.filter(pk=other.pk).update(
        created_at=dt.datetime(2025, 3, 1, 23, 30, tzinfo=dt.UTC)
    )
    client.force_login(lab)
    rows = list(csv.DictReader(io.StringIO(_body(client.get("/api/inventory.csv")))))
    assert {r["unit"]: r["expires_at"] for r in rows} == {
        unit.code: "2027-01-10T09:00:00+00:00",
        other.code: "2026-03-01T23:30:00+00:00",
    }
    # A bulk export: the same number of queries for 2 units as for 7.
    with django_assert_max_num_queries(1):
        assert len(list(inventory_rows())) == 2
    make_units(actor=lab, count=5, stored=True)
    with django_assert_max_num_queries(1):
        assert len(list(inventory_rows())) == 7


def test_admin_reports_page_exports_and_shows_errors(client: Any, small: Any) -> None:
    client.force_login(small)
    page = client.get("/admin/reports/")
    assert page.status_code == 200
    assert b"Audit trail export" in page.content and b"Units per participant" in page.content
    index = client.get("/admin/")
    assert b'href="/admin/reports/"' in index.content
    bad = client.get("/admin/reports/?audit=1&a-date_from=soon&a-source=events&a-format=csv")
    assert bad.status_code == 200
    assert b"from must be a date" in bad.content
    good = client.get("/admin/reports/?audit=1&a-source=events&a-format=csv&a-action=store")
    rows = list(csv.DictReader(io.StringIO(_body(good))))
    assert len(rows) == CustodyEvent.objects.filter(action="store").count()
    assert ExportLog.objects.count() == 1


def test_text_that_looks_like_a_formula_stays_text_in_csv_and_xlsx() -> None:
    from biobank.reports.exports import csv_stream, xlsx_bytes

    row = ['=HYPERLINK("http://x.example","open")', "@SUM(A1)", "-80.5", "+47 55", 12, None]
    text = "".join(csv_stream(["a", "b", "c", "d", "e", "f"], [row]))
    assert list(csv.reader(io.StringIO(text)))[1] == [
        '\'=HYPERLINK("http://x.example","open")',
        "'@SUM(A1)",
        "-80.5",
        "'+47 55",
        "12",
        "",
    ]
    sheet = load_workbook(io.BytesIO(xlsx_bytes([("s", ["a", "b", "c"], [row[:3]])])))["s"]
    cells = next(sheet.iter_rows(min_row=2))
    assert [(c.value, c.data_type) for c in cells] == [
        ('=HYPERLINK("http://x.example","open")', "s"),
        ("@SUM(A1)", "s"),
        ("-80.5", "s"),
    ]


def test_a_reason_typed_as_a_formula_is_exported_as_text(client: Any, small: Any) -> None:
    from biobank.services.units import unit_transition

    unit = ProductUnit.objects.get(status="stored")
    unit_transition(unit=unit, action="discard", actor=small, reason="=1+1 dropped on floor")
    client.force_login(small)
    rows = csv.DictReader(io.StringIO(_body(client.get("/api/exports/audit-trail.csv"))))
    discard = [r for r in rows if r["item_code"] == unit.code and r["action"] == "discard"]
    assert [r["reason"] for r in discard] == ["'=1+1 dropped on floor"]


# --- blinding: nothing a blinded role receives may differ between the arms --------------------

BLINDED_HEADER = (
    "source,n,at,recorded_at,participant,item_kind,item_code,action,from_status,to_status,"
    "user,site,location,reason,data"
)
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+\+00:00|\d{4}-\d\d-\d\d")


def _given_dose(lab: Any, arm: str) -> Any:
    """Arm A at month 6: saline; arm B: MSC, its units thawed (lab steps) just before."""
    dose = make_dose(actor=lab, arm=arm, visit="M6")
    code = dose.participant.code
    dose_dispatch(dose_scan=dose.code, participant_scan=code, actor=lab)
    dose_administer(dose_scan=dose.code, participant_scan=code, actor=lab, administered_by="Dr. N")
    return dose


def _as_read(rows: list[dict[str, str]], dose: Any) -> list[tuple[Any, ...]]:
    """A dose's rows with what differs from dose to dose anyway (codes, times, row keys) left
    out; with, as the review's repro read it, whether each row's id follows a row of the
    export and whether its prev_hash is the row_hash of one."""
    ids = {r.get("id") for r in rows}
    hashes = {r.get("row_hash") for r in rows}
    out = []
    for row in rows:
        if row["item_code"] != dose.code:
            continue
        rest = {k: v for k, v in row.items() if k not in ("n", "id", "prev_hash", "row_hash")}
        text = (
            json.dumps(rest, sort_keys=True)
            .replace(dose.code, "DS")
            .replace(dose.participant.code, "PT")
        )
        follows = str(int(row["id"]) - 1) in ids if "id" in row else None
        linked = row["prev_hash"] in hashes if "prev_hash" in row else None
        out.append((MOMENT.sub("T", text), follows, linked))
    return out


def test_a_monitor_reads_the_same_export_for_a_saline_and_an_msc_dose(
    client: Any, trial: Any
) -> None:
    lab = make_user("lab-arms")
    doses = {arm: _given_dose(lab, arm) for arm in "AB"}
    client.force_login(make_user("monitor-arms", unblinded=False))
    text = _body(client.get("/api/exports/audit-trail.csv?source=all"))
    rows = list(csv.DictReader(io.StringIO(text)))
    saline, msc = (_as_read(rows, doses[arm]) for arm in "AB")
    assert len(saline) == 10  # five custody steps, five versions of the dose
    assert saline == msc
    assert text.splitlines()[0] == BLINDED_HEADER
    assert [int(r["n"]) for r in rows] == list(range(1, len(rows) + 1))
    # History names no database id: no foreign key, items without a code numbered 1, 2...
    history = [json.loads(r["data"]) for r in rows if r["source"] == "history"]
    assert not [k for data in history for k in data if k.endswith("_id")]
    visits = [r["item_code"] for r in rows if r["item_kind"] == "visit"]
    assert sorted(set(visits)) == [f"visit#{n}" for n in range(1, 9)]
    lines = _body(client.get("/api/exports/audit-trail.jsonl?source=events")).splitlines()
    assert ",".join(json.loads(lines[0])) == BLINDED_HEADER
    # QA keep the ids and the hash chain.
    client.force_login(lab)
    qa = _body(client.get("/api/exports/audit-trail.csv?source=events"))
    assert qa.splitlines()[0] == HEADER
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(qa))] == list(
        CustodyEvent.objects.order_by("at", "id").values_list("id", flat=True)
    )


# --- the field history by participant or item ----------------------------------------------


def test_history_by_participant_or_processing_takes_its_qc_passages_and_freezing_runs(
    client: Any, trial: Any
) -> None:
    lab = make_user("lab-history")
    processing = make_processing(actor=lab)
    passage_record(
        processing=processing,
        number=1,
        cell_count=40_000_000,
        viability_pct=Decimal("95"),
        actor=lab,
        passaged_at=past(days=20),
    )
    units = make_units(actor=lab, count=2, participant=processing.participant, visit="M6")
    qc_pass(processing=units[0].processing, actor=lab)
    participant = processing.participant
    client.force_login(lab)

    def kinds(query: str) -> dict[str, int]:
        response = client.get(f"/api/exports/audit-trail.jsonl?source=history&{query}")
        assert response.status_code == 200, response.content
        found: dict[str, int] = {}
        for line in _body(response).splitlines():
            kind = json.loads(line)["item_kind"]
            found[kind] = found.get(kind, 0) + 1
        return found

    mine = kinds(f"participant={participant.code}")
    assert {k: mine.get(k) for k in ("passage", "qc_result", "freezing_run")} == {
        "passage": 1,
        "qc_result": 5,
        "freezing_run": 1,
    }
    assert kinds(f"item={processing.code}") == {"processing": 1, "passage": 1}
    released = units[0].processing.code
    assert kinds(f"item={released}") == {"processing": 3, "qc_result": 5, "freezing_run": 1}
    # A blinded role still gets none of the lab's records.
    client.force_login(make_user("monitor-history", unblinded=False))
    assert set(kinds(f"participant={participant.code}")) == {"participant", "visit", "aspirate"}
    assert kinds(f"item={released}") == {}


# --- the action filter -----------------------------------------------------------------------


def test_an_unknown_action_is_refused_naming_the_known_ones(client: Any, small: Any) -> None:
    client.force_login(small)
    response = client.get("/api/exports/audit-trail.csv?action=store,nonsense")
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], list(body["fields"])) == ("unknown_action", ["action"])
    message = body["fields"]["action"][0]
    assert message.startswith("Unknown action nonsense; action must be one or more of: ")
    for name in ("accept", "thaw", "freeze", "store", "qc_release", "created", "deleted"):
        assert name in message
    # A step's old name still finds its events; created/changed/deleted are history's.
    assert client.get("/api/exports/audit-trail.csv?action=unstore").status_code == 200
    assert client.get("/api/exports/audit-trail.csv?action=changed").status_code == 200
    assert ExportLog.objects.count() == 2
    # A blinded role's list names no lab step.
    client.force_login(make_user("monitor-actions", unblinded=False))
    refused = client.get("/api/exports/audit-trail.jsonl?action=thaw").json()
    assert refused["fields"]["action"] == [
        "Unknown action thaw; action must be one or more of: accept, administer, cancel, "
        "collect, dispatch, lift_quarantine, make_ready, prepare, quarantine, receive, reject, "
        "release, ship, created, changed, deleted."
    ]
    assert ExportLog.objects.count() == 2


# --- the workbook ----------------------------------------------------------------------------


def test_inventory_workbook_shows_characters_it_cannot_hold_as_a_replacement_mark(
    client: Any, trial: Any
) -> None:
    lab = make_user("lab-xlsx")
    tank = make_storage_unit(actor=lab, name="Tank\x0bA")
    units = make_units(actor=lab, count=1)
    unit_store(unit=units[0], container=make_box(actor=lab, storage_unit=tank), actor=lab)
    client.force_login(lab)
    response = client.get("/api/inventory.xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content), read_only=True)["Units by location"]
    header, row = list(sheet.values)
    assert dict(zip(header, row, strict=True))["storage_unit_name"] == "Tank\ufffdA"
    assert ExportLog.objects.get().format == "xlsx"


def test_a_workbook_that_fails_to_build_is_not_logged(
    client: Any, small: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(sheets: Any) -> bytes:
        raise RuntimeError("disk full")

    monkeypatch.setattr("biobank.api.reports.xlsx_bytes", broken)
    client.force_login(small)
    client.raise_request_exception = False
    assert client.get("/api/inventory.xlsx").status_code == 500
    assert not ExportLog.objects.exists()
