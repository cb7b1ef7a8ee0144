"""Rack-scanner import: preview against the system, then apply in one transaction or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from biobank.errors import ServiceError
from biobank.models import CustodyEvent, Placement
from biobank.rack_csv import parse_rack_csv
from biobank.services.racks import rack_scan_apply, rack_scan_compare, rack_scan_plan
from biobank.services.storage import unit_store

from .factories import make_box, make_storage_unit, make_units

ROWS = "ABCDEFGH"


def _pos(index: int) -> str:
    return f"{ROWS[index // 12]}{index % 12 + 1:02d}"


@pytest.fixture
def rack(trial: Any, tech: Any) -> dict[str, Any]:
    """A 96-position box where the system has 90 units; the rack file differs in places."""
    box = make_box(actor=tech, rows=8, columns=12, name="Rack box")
    units = make_units(actor=tech, count=96)
    for i in range(90):
        unit_store(unit=units[i], container=box, position=_pos(i), actor=tech)
    lines = ["Rack,Position,Tube"]
    for i in range(96):
        if i == 4:
            tube = units[95].code  # mismatch: the system has units[4] at A05
        elif i in (10, 11):
            tube = "NO READ"
        elif i in (20, 95):
            tube = ""  # units[20] missing from the rack; H12 empty anyway
        else:
            tube = units[i].code
        lines.append(f"{box.code},{_pos(i)},{tube}")
    data = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")
    return {"box": box, "units": units, "csv": data}


def test_preview_shows_every_difference(rack: dict[str, Any]) -> None:
    box, units = rack["box"], rack["units"]
    read = parse_rack_csv(rack["csv"], rows=8, cols=12)
    assert not read.errors and read.rack == box.code
    diffs = {d.position: d for d in rack_scan_compare(box=box, read=read)}
    states: dict[str, int] = {}
    for d in diffs.values():
        states[d.state] = states.get(d.state, 0) + 1
    assert states == {"match": 86, "mismatch": 1, "no_read": 2, "missing": 1, "new": 5, "empty": 1}
    assert diffs["A5"].system_unit == units[4].code and diffs["A5"].file_tube == units[95].code
    assert diffs["B9"].state == "missing" and diffs["B9"].system_unit == units[20].code


def test_preview_plan_counts_what_apply_does(rack: dict[str, Any], tech: Any) -> None:
    # The mismatch row's system unit (units[4]) leaves storage too: 2 removed, not 1.
    box, units = rack["box"], rack["units"]
    read = parse_rack_csv(rack["csv"], rows=8, cols=12)
    plan = rack_scan_plan(diffs=rack_scan_compare(box=box, read=read))
    expected = {"stored": 6, "moved": 0, "removed": 2, "unchanged": 86}
    assert plan.counts == expected
    assert rack_scan_apply(box=box, read=read, actor=tech, remove_missing=True) == expected
    assert sorted(d.system_unit for d in plan.displaced) == sorted([units[4].code, units[20].code])


def test_mismatch_says_where_the_system_has_the_tube(trial: Any, tech: Any) -> None:
    box, other = make_box(actor=tech), make_box(actor=tech)
    here, there = make_units(actor=tech, count=2)
    unit_store(unit=here, container=box, position="A1", actor=tech)
    unit_store(unit=there, container=other, position="B2", actor=tech)
    read = parse_rack_csv(f"A1,{there.code}\n".encode(), rows=9, cols=9)
    row = rack_scan_compare(box=box, read=read)[0]
    assert row.state == "mismatch"
    where = f"the system has {there.code} in {other.code} B2"
    assert row.note == f"the system has {here.code} here; {where}"


def test_apply_refuses_when_units_would_vanish(rack: dict[str, Any], tech: Any) -> None:
    events = CustodyEvent.objects.count()
    with pytest.raises(ServiceError) as info:
        rack_scan_apply(box=rack["box"], read=parse_rack_csv(rack["csv"]), actor=tech)
    assert info.value.code == "units_missing"
    assert rack["units"][4].code in info.value.message
    assert CustodyEvent.objects.count() == events


def test_apply_all_in_one_go(rack: dict[str, Any], tech: Any) -> None:
    box, units = rack["box"], rack["units"]
    counts = rack_scan_apply(
        box=box, read=parse_rack_csv(rack["csv"]), actor=tech, remove_missing=True
    )
    assert counts == {"stored": 6, "moved": 0, "removed": 2, "unchanged": 86}
    here = dict(
        Placement.objects.filter(container=box, ended_at=None).values_list("position", "unit__code")
    )
    assert here["A5"] == units[95].code
    assert here["A11"] == units[10].code  # NO READ: left as the system had it
    assert "B9" not in here
    for unit in (units[4], units[20]):
        unit.refresh_from_db()
        assert unit.status == "frozen"


def test_swaps_inside_the_box(trial: Any, tech: Any) -> None:
    box = make_box(actor=tech, rows=8, columns=12)
    a, b = make_units(actor=tech, count=2)
    unit_store(unit=a, container=box, position="A1", actor=tech)
    unit_store(unit=b, container=box, position="A2", actor=tech)
    csv = f"A1,{b.code}\nA2,{a.code}\n".encode()
    counts = rack_scan_apply(box=box, read=parse_rack_csv(csv), actor=tech)
    assert counts["moved"] == 2
    here = dict(Placement.objects.filter(ended_at=None).values_list("position", "unit__code"))
    assert here == {"A1": b.code, "A2": a.code}


def test_unknown_tube_blocks_apply(trial: Any, tech: Any) -> None:
    box = make_box(actor=tech, rows=8, columns=12)
    with pytest.raises(ServiceError) as info:
        rack_scan_apply(box=box, read=parse_rack_csv(b"A1,UN9999999Z\n"), actor=tech)
    assert info.value.code == "bad_tubes" and "UN9999999Z" in info.value.message
    assert not Placement.objects.filter(container=box).exists()


def test_rack_import_into_a_warm_box_is_refused_and_writes_nothing(trial: Any, tech: Any) -> None:
    fridge = make_storage_unit(actor=tech, name="Fridge", kind="fridge", range_c=("2", "8"))
    fridge_box = make_box(actor=tech, storage_unit=fridge, rows=8, columns=12)
    box = make_box(actor=tech, rows=8, columns=12)
    stored, frozen = make_units(actor=tech, count=2)
    unit_store(unit=stored, container=box, position="A1", actor=tech)
    csv = f"A1,{frozen.code}\nA2,{stored.code}\n".encode()
    events = CustodyEvent.objects.count()
    with pytest.raises(ServiceError) as info:
        rack_scan_apply(box=fridge_box, read=parse_rack_csv(csv), actor=tech)
    assert (info.value.code, info.value.field) == ("too_warm", "container")
    assert info.value.message == (
        f"{fridge_box.code} is in Fridge ({fridge.code}), kept at 2.0 … 8.0 °C; a cryopreserved "
        "unit must be stored at ≤ -150 °C (vapour-phase LN2)."
    )
    assert not Placement.objects.filter(container=fridge_box).exists()
    assert Placement.objects.open().get(unit=stored).container == box
    frozen.refresh_from_db()
    assert frozen.status == "frozen"
    assert CustodyEvent.objects.count() == events


def test_rack_import_page_preview_and_apply(rack: dict[str, Any], admin_client_tech: Any) -> None:
    url = reverse("admin:scan_rack-import")
    admin_client_tech.post(url, {"code": rack["box"].code})
    upload = SimpleUploadedFile("rack.csv", rack["csv"], content_type="text/csv")
    admin_client_tech.post(url, {"file": upload})
    html = admin_client_tech.get(url).content.decode()
    # States in words; the mismatch row's displaced unit is counted, so preview == apply.
    assert "1 different tube" in html and "2 tube not readable" in html
    assert "1 missing from the rack" in html and ">no_read<" not in html
    assert "store 6, move 0, remove 2 from storage, leave 86 unchanged" in html
    assert 'id="remove-missing" required' in html
    admin_client_tech.post(url, {"do": "apply"})
    html = admin_client_tech.get(url).content.decode()
    assert "Nothing was changed" in html
    assert Placement.objects.open().get(unit=rack["units"][4]).position == "A5"
    admin_client_tech.post(url, {"do": "apply", "remove_missing": "1"})
    html = admin_client_tech.get(url).content.decode()
    assert "6 stored, 0 moved, 2 removed, 86 unchanged" in html


def test_rack_import_page_shows_file_errors(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    box = make_box(actor=tech, rows=8, columns=12)
    url = reverse("admin:scan_rack-import")
    admin_client_tech.post(url, {"code": box.code})
    upload = SimpleUploadedFile("bad.csv", b"A1,UN1\nA1,UN2\nZ99,UN3\n", content_type="text/csv")
    admin_client_tech.post(url, {"file": upload})
    html = admin_client_tech.get(url).content.decode()
    assert 'id="rack-errors"' in html
    assert 'id="apply"' not in html  # apply is not offered when it can only fail
