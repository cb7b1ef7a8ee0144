"""Freezer locations: placement, moves, check-out/in, constraints, races, suggestions, map."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from biobank.errors import ConflictError, ServiceError, TransitionError
from biobank.models import Container, Placement, ProductUnit
from biobank.services.containers import (
    container_create,
    container_move,
    free_position_suggest,
    position_parse,
    temperature_record,
)
from biobank.services.qc_release import processing_qc_release
from biobank.services.storage import (
    unit_check_in,
    unit_check_out,
    unit_move,
    unit_put,
    unit_put_undo,
    unit_remove,
    unit_store,
)
from biobank.services.units import unit_transition

from .factories import (
    PASSWORD,
    api_as,
    make_box,
    make_box_type,
    make_storage_unit,
    make_units,
    qc_pass,
    run_at_once,
)


def test_place_into_given_position(box: Container, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    placement = unit_store(unit=unit, container=box, position="c5", actor=tech)
    unit.refresh_from_db()
    assert unit.status == "stored"
    assert (placement.row, placement.column, placement.position) == (3, 5, "C5")
    event = unit.events.latest("id")
    assert event.action == "store" and event.data == {"container": box.code, "position": "C5"}
    assert box.code in event.data.values() and "Box A" in event.location


def test_place_next_free_fills_holes_in_row_order(box: Container, tech: Any) -> None:
    units = make_units(actor=tech, count=4)
    unit_store(unit=units[0], container=box, position="A1", actor=tech)
    unit_store(unit=units[1], container=box, position="A3", actor=tech)
    assert unit_store(unit=units[2], container=box, actor=tech).position == "A2"
    assert unit_store(unit=units[3], container=box, actor=tech).position == "A4"


@pytest.mark.parametrize(
    ("label", "expected"),
    [("A1", (1, 1)), ("a01", (1, 1)), ("I9", (9, 9)), ("10", (2, 1)), ("81", (9, 9))],
)
def test_position_labels(trial: Any, label: str, expected: tuple[int, int]) -> None:
    assert position_parse(box_type=make_box_type(), label=label) == expected


# "²" and "٣" are digits to str.isdigit() and \d, not what a technician types: refused, not a 500.
@pytest.mark.parametrize("label", ["J1", "A10", "0", "82", "ZZ", "", "A-1-1", "²", "٣", "A٣"])
def test_bad_positions_name_the_box_range(trial: Any, label: str) -> None:
    with pytest.raises(ServiceError) as info:
        position_parse(box_type=make_box_type(), label=label)
    assert (info.value.code, info.value.field) == ("bad_position", "position")
    assert "A1" in info.value.message and "I9" in info.value.message


def test_numeric_labelling(trial: Any) -> None:
    box_type = make_box_type(rows=10, columns=10, row_labelling="numbers")
    assert box_type.position_label(3, 7) == "3-7"
    assert position_parse(box_type=box_type, label="3-7") == (3, 7)


def test_position_taken_is_a_conflict(box: Container, tech: Any) -> None:
    first, second = make_units(actor=tech, count=2)
    unit_store(unit=first, container=box, position="B2", actor=tech)
    with pytest.raises(ConflictError) as info:
        unit_store(unit=second, container=box, position="B2", actor=tech)
    assert (info.value.code, info.value.field) == ("position_taken", "position")
    assert first.code in info.value.message
    second.refresh_from_db()
    assert second.status == "frozen"  # nothing written: the store step rolled back too
    assert not second.events.filter(action="store").exists()


def test_wrong_kind_of_unit_for_box(trial: Any, tech: Any) -> None:
    vial_box = make_box(actor=tech, accepts="cryovial")
    bag = make_units(actor=tech, count=1)[0]
    with pytest.raises(ServiceError) as info:
        unit_store(unit=bag, container=vial_box, actor=tech)
    assert info.value.code == "wrong_container_type"


def test_box_full(trial: Any, tech: Any) -> None:
    tiny = make_box(actor=tech, rows=1, columns=2)
    units = make_units(actor=tech, count=3)
    unit_store(unit=units[0], container=tiny, actor=tech)
    unit_store(unit=units[1], container=tiny, actor=tech)
    with pytest.raises(ServiceError) as info:
        unit_store(unit=units[2], container=tiny, actor=tech)
    assert info.value.code == "box_full"


def test_container_without_positions_holds_many(trial: Any, tech: Any) -> None:
    su = make_storage_unit(actor=tech)
    canister = container_create(name="Canister 1", kind="canister", storage_unit=su, actor=tech)
    units = make_units(actor=tech, count=3)
    for unit in units:
        assert unit_store(unit=unit, container=canister, actor=tech).position == ""
    extra = make_units(actor=tech, count=1)[0]
    with pytest.raises(ServiceError) as info:
        unit_store(unit=extra, container=canister, position="A1", actor=tech)
    assert (info.value.code, info.value.field) == ("no_positions", "position")
    extra.refresh_from_db()
    assert extra.status == "frozen"
    assert Placement.objects.open().filter(container=canister).count() == 3
    # The API's position grid of a canister: refused with the same code, naming the container.
    response = api_as(tech).get(f"/api/containers/{canister.code}/positions/")
    assert (response.status_code, response.json()["code"]) == (400, "no_positions")
    assert response.json()["fields"] == {
        "code": [f"{canister.code} is a canister without positions."]
    }


def test_move_records_from_and_to(box: Container, tech: Any) -> None:
    other = make_box(actor=tech, name="Box B")
    unit = make_units(actor=tech, count=1)[0]
    first = unit_store(unit=unit, container=box, position="A1", actor=tech)
    second = unit_move(unit=unit, container=other, position="D4", actor=tech, reason="reorganise")
    first.refresh_from_db()
    assert first.ended_at is not None and first.end_reason == "moved"
    assert second.position == "D4" and second.ended_at is None
    event = unit.events.latest("id")
    assert event.action == "move" and event.reason == "reorganise"
    assert event.data["from_container"] == box.code and event.data["container"] == other.code
    unit.refresh_from_db()
    assert unit.status == "stored"
    # The old slot is free again.
    assert (
        unit_store(unit=make_units(actor=tech, count=1)[0], container=box, actor=tech).position
        == "A1"
    )


def test_move_to_same_place_is_refused(box: Container, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    placement = unit_store(unit=unit, container=box, position="A1", actor=tech)
    with pytest.raises(ConflictError) as info:
        unit_move(unit=unit, container=box, position="A1", actor=tech)
    assert (info.value.code, info.value.field) == ("already_there", "position")
    assert list(Placement.objects.filter(unit=unit)) == [placement]
    placement.refresh_from_db()
    assert placement.ended_at is None
    assert not unit.events.filter(action="move").exists()


def test_put_stores_a_frozen_unit_and_moves_a_stored_one(box: Container, tech: Any) -> None:
    other = make_box(actor=tech, name="Box B")
    unit = make_units(actor=tech, count=1)[0]
    put = unit_put(unit=unit, container=box, position="B2", actor=tech, reason="scanned")
    assert (put.action, put.before, put.placement.position) == ("store", None, "B2")
    moved = unit_put(unit=unit, container=other, actor=tech, reason="scanned into box")
    assert moved.action == "move" and moved.placement.container == other
    assert (moved.before.container, moved.before.position) == (box, "B2")
    unit.refresh_from_db()
    assert unit.status == "stored"
    assert list(unit.events.values_list("action", "reason"))[-2:] == [
        ("store", ""),
        ("move", "scanned into box"),
    ]


def test_put_refuses_a_unit_that_cannot_be_stored(box: Container, tech: Any) -> None:
    unfrozen = make_units(actor=tech, count=1, frozen=False)[0]
    with pytest.raises(TransitionError) as info:
        unit_put(unit=unfrozen, container=box, actor=tech)
    assert (info.value.code, info.value.field) == ("not_storable", "unit")
    assert "filled, not yet frozen: it cannot be stored" in info.value.message
    checked_out = make_units(actor=tech, count=1)[0]
    unit_store(unit=checked_out, container=box, position="A1", actor=tech)
    unit_check_out(unit=checked_out, actor=tech)
    with pytest.raises(TransitionError) as info:
        unit_put(unit=checked_out, container=box, actor=tech)
    assert info.value.code == "not_storable"
    assert not Placement.objects.open().filter(unit=unfrozen).exists()
    assert Placement.objects.open().get(unit=checked_out).position == "A1"


def test_put_undo_takes_a_store_back_out_and_a_move_back(box: Container, tech: Any) -> None:
    other = make_box(actor=tech, name="Box B")
    stored, moved = make_units(actor=tech, count=2)
    unit_put(unit=stored, container=box, position="C3", actor=tech)
    unit_store(unit=moved, container=box, position="E5", actor=tech)
    unit_put(unit=moved, container=other, actor=tech, reason="scanned into box")
    assert unit_put_undo(unit=stored, actor=tech) is None
    stored.refresh_from_db()
    assert stored.status == "frozen"
    assert not Placement.objects.open().filter(unit=stored).exists()
    last = stored.events.latest("id")
    assert (last.action, last.reason) == ("remove", "Undo: stored at C3 by mistake")
    back = unit_put_undo(unit=moved, actor=tech)
    assert back is not None and (back.container, back.position) == (box, "E5")
    last = moved.events.latest("id")
    assert (last.action, last.reason) == ("move", "Undo: moved by mistake")
    assert last.data["from_container"] == other.code


def test_put_undo_refuses_after_a_later_step(box: Container, tech: Any) -> None:
    unit, never_stored = make_units(actor=tech, count=2)
    unit_put(unit=unit, container=box, position="A1", actor=tech)
    unit_check_out(unit=unit, actor=tech)
    with pytest.raises(TransitionError) as info:
        unit_put_undo(unit=unit, actor=tech)
    assert (info.value.code, info.value.field) == ("nothing_to_undo", "unit")
    assert "its last step is check out" in info.value.message
    with pytest.raises(TransitionError) as info:
        unit_put_undo(unit=never_stored, actor=tech)
    assert info.value.code == "nothing_to_undo"
    unit.refresh_from_db()
    assert unit.status == "checked_out"
    assert Placement.objects.open().get(unit=unit).position == "A1"


def test_check_out_keeps_the_slot_reserved(box: Container, tech: Any) -> None:
    unit, intruder = make_units(actor=tech, count=2)
    unit_store(unit=unit, container=box, position="E5", actor=tech)
    out = unit_check_out(unit=unit, actor=tech, reason="QC sampling")
    assert out.checked_out_at is not None and out.ended_at is None
    with pytest.raises(ConflictError) as info:
        unit_store(unit=intruder, container=box, position="E5", actor=tech)
    assert info.value.code == "position_taken" and unit.code in info.value.message
    intruder.refresh_from_db()
    assert intruder.status == "frozen"
    # And the suggestion skips it.
    assert free_position_suggest(box=box).position == "A1"
    back = unit_check_in(unit=unit, actor=tech)
    assert back.pk == out.pk and back.checked_out_at is None
    unit.refresh_from_db()
    assert unit.status == "stored"
    assert list(unit.events.values_list("action", flat=True))[-2:] == ["check_out", "check_in"]


def test_check_in_without_check_out_is_refused(box: Container, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    placement = unit_store(unit=unit, container=box, actor=tech)
    with pytest.raises(ServiceError) as info:
        unit_check_in(unit=unit, actor=tech)
    assert (info.value.code, info.value.field) == ("invalid_transition", "status")
    unit.refresh_from_db()
    placement.refresh_from_db()
    assert unit.status == "stored" and placement.ended_at is None
    assert not unit.events.filter(action="check_in").exists()


def test_release_and_discard_free_the_slot(box: Container, tech: Any) -> None:
    released, discarded = make_units(actor=tech, count=2)
    qc_pass(processing=released.processing, actor=tech)
    processing_qc_release(processing=released.processing, actor=tech, password=PASSWORD)
    unit_store(unit=released, container=box, position="A1", actor=tech)
    unit_store(unit=discarded, container=box, position="A2", actor=tech)
    unit_check_out(unit=released, actor=tech)
    unit_transition(unit=released, action="release", actor=tech)
    unit_transition(unit=discarded, action="discard", actor=tech, reason="bag cracked")
    assert not Placement.objects.open().filter(container=box).exists()
    assert Placement.objects.get(unit=discarded).end_reason == "discard"


def test_remove_needs_reason_and_frees_slot(box: Container, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    unit_store(unit=unit, container=box, actor=tech)
    with pytest.raises(ServiceError) as info:
        unit_remove(unit=unit, actor=tech, reason="")
    assert (info.value.code, info.value.field) == ("reason_required", "reason")
    unit.refresh_from_db()
    assert unit.status == "stored"
    assert Placement.objects.open().filter(unit=unit).exists()
    unit_remove(unit=unit, actor=tech, reason="shipped to Ulm in dry shipper")
    unit.refresh_from_db()
    assert unit.status == "frozen"
    assert not Placement.objects.open().filter(unit=unit).exists()


def test_placement_steps_are_refused_outside_storage_services(box: Container, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises(ServiceError) as info:
        unit_transition(unit=unit, action="store", actor=tech)
    assert info.value.code == "use_storage_service"


def test_database_refuses_double_booking(box: Container, tech: Any) -> None:
    first, second = make_units(actor=tech, count=2)
    placement = unit_store(unit=first, container=box, position="A1", actor=tech)
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Placement.objects.create(
            unit=second,
            container=box,
            row=1,
            column=1,
            position="A1",
            placed_at=now,
            placed_by=tech,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Placement.objects.create(
            unit=first, container=box, row=2, column=2, position="B2", placed_at=now, placed_by=tech
        )
    # An ended placement does not block the slot.
    Placement.objects.filter(pk=placement.pk).update(ended_at=now)
    Placement.objects.create(
        unit=second, container=box, row=1, column=1, position="A1", placed_at=now, placed_by=tech
    )


@pytest.mark.django_db(transaction=True)
def test_two_technicians_race_for_one_slot(postgres_only: None) -> None:
    from .factories import load_trial, make_user

    load_trial()
    tech = make_user("racer")
    box = make_box(actor=tech)
    units = make_units(actor=tech, count=2)
    outcomes = run_at_once(
        *(partial(unit_store, unit=u, container=box, position="A1", actor=tech) for u in units)
    )
    assert outcomes == ["409 position_taken", "ok"]
    assert Placement.objects.open().filter(container=box).count() == 1
    statuses = sorted(
        ProductUnit.objects.filter(pk__in=[u.pk for u in units]).values_list("status", flat=True)
    )
    assert statuses == ["frozen", "stored"]


def test_suggestion_prefers_fullest_box_that_accepts(trial: Any, tech: Any) -> None:
    su = make_storage_unit(actor=tech)
    rack = container_create(name="Rack", kind="rack", storage_unit=su, actor=tech)
    emptyish = make_box(actor=tech, parent=rack, name="Box 1")
    fuller = make_box(actor=tech, parent=rack, name="Box 2")
    vials_only = make_box(actor=tech, parent=rack, name="Box 3", accepts="cryovial")
    units = make_units(actor=tech, count=4)
    unit_store(unit=units[0], container=emptyish, actor=tech)
    unit_store(unit=units[1], container=fuller, position="A1", actor=tech)
    unit_store(unit=units[2], container=fuller, position="A3", actor=tech)
    suggestion = free_position_suggest(storage_unit=su, container_type="cryobag")
    assert (suggestion.box, suggestion.position) == (fuller, "A2")
    assert "Box 2" in suggestion.reason and "2/81" in suggestion.reason
    assert vials_only != suggestion.box


def test_suggestion_when_everything_is_full(trial: Any, tech: Any) -> None:
    su = make_storage_unit(actor=tech)
    tiny = make_box(actor=tech, storage_unit=su, rows=1, columns=1)
    unit_store(unit=make_units(actor=tech, count=1)[0], container=tiny, actor=tech)
    with pytest.raises(ServiceError) as info:
        free_position_suggest(storage_unit=su, container_type="cryobag")
    assert info.value.code == "storage_full"


def test_no_place_is_suggested_where_a_unit_may_not_go(trial: Any, tech: Any) -> None:
    freezer = make_storage_unit(
        actor=tech, name="Minus 80", kind="freezer_80", range_c=("-90", "-70")
    )
    box = make_box(actor=tech, storage_unit=freezer)
    kept = "kept at -90.0 … -70.0 °C; a cryopreserved unit must be stored at ≤ -150 °C"
    with pytest.raises(ServiceError) as info:
        free_position_suggest(storage_unit=freezer, container_type="cryobag")
    assert (info.value.code, info.value.field) == ("too_warm", "storage_unit")
    assert info.value.message.startswith(f"Minus 80 ({freezer.code}) is {kept}")
    with pytest.raises(ServiceError) as info:
        free_position_suggest(box=box)
    assert (info.value.code, info.value.field) == ("too_warm", "box")
    assert info.value.message.startswith(f"{box.code} is in Minus 80 ({freezer.code}), {kept}")


def test_suggestion_query_count_does_not_grow(
    trial: Any, tech: Any, django_assert_max_num_queries: Any
) -> None:
    su = make_storage_unit(actor=tech)
    rack = container_create(name="Rack", kind="rack", storage_unit=su, actor=tech)
    for i in range(30):
        make_box(actor=tech, parent=rack, name=f"Box {i}")
    with django_assert_max_num_queries(4):
        free_position_suggest(storage_unit=su, container_type="cryobag")


def test_container_paths_and_moves(trial: Any, tech: Any) -> None:
    su = make_storage_unit(actor=tech, name="Tank X")
    rack_a = container_create(name="Rack A", kind="rack", storage_unit=su, actor=tech)
    rack_b = container_create(name="Rack B", kind="rack", storage_unit=su, actor=tech)
    box = make_box(actor=tech, parent=rack_a, name="Box 7")
    assert box.path == "HUS › Tank X › Rack A › Box 7" and box.depth == 1
    container_move(container=rack_a, parent=rack_b, actor=tech)
    box.refresh_from_db()
    assert box.path == "HUS › Tank X › Rack B › Rack A › Box 7" and box.depth == 2
    # Into its own child: a loop.
    with pytest.raises(ServiceError) as info:
        container_move(container=rack_b, parent=Container.objects.get(name="Rack A"), actor=tech)
    assert (info.value.code, info.value.field) == ("container_cycle", "parent")
    rack_b.refresh_from_db()
    assert rack_b.parent is None and rack_b.path == "HUS › Tank X › Rack B"
    with pytest.raises(ServiceError) as info:
        container_create(name="Inner", kind="rack", parent=box, actor=tech)
    assert (info.value.code, info.value.field) == ("invalid", "parent")
    assert not Container.objects.filter(name="Inner").exists()


def test_temperature_log_flags_out_of_range(trial: Any, tech: Any) -> None:
    su = make_storage_unit(actor=tech)
    ok = temperature_record(storage_unit=su, temperature_c="-190.5", actor=tech)
    warm = temperature_record(
        storage_unit=su,
        temperature_c=Decimal("-140"),
        actor=tech,
        at=timezone.now() - timezone.timedelta(hours=1),
    )
    assert (ok.out_of_range, warm.out_of_range) == (False, True)
    with pytest.raises(ServiceError) as info:
        temperature_record(storage_unit=su, temperature_c="cold", actor=tech)
    assert (info.value.code, info.value.field) == ("invalid", "temperature_c")
    assert su.temperature_readings.count() == 2


# --- the cold chain: a cryopreserved unit stays at ≤ −150 °C ------------------------------------

WARM = [
    ("fridge", ("2", "8"), "2.0 … 8.0"),
    ("freezer_80", ("-90", "-70"), "-90.0 … -70.0"),
    ("ln2_tank", ("-196", "-149.9"), "-196.0 … -149.9"),
]


@pytest.mark.parametrize(("kind", "range_c", "shown"), WARM)
def test_a_unit_is_never_stored_warmer_than_minus_150(
    trial: Any, tech: Any, kind: str, range_c: tuple[str, str], shown: str
) -> None:
    warm = make_storage_unit(actor=tech, name="Too warm", kind=kind, range_c=range_c)
    warm_box = make_box(actor=tech, storage_unit=warm)
    unit = make_units(actor=tech, count=1)[0]
    expected = (
        f"{warm_box.code} is in Too warm ({warm.code}), kept at {shown} °C; "
        "a cryopreserved unit must be stored at ≤ -150 °C (vapour-phase LN2)."
    )
    for service in (unit_store, unit_put):
        with pytest.raises(ServiceError) as info:
            service(unit=unit, container=warm_box, actor=tech)
        assert (info.value.code, info.value.field) == ("too_warm", "container")
        assert info.value.message == expected
    unit.refresh_from_db()
    assert unit.status == "frozen"
    assert not Placement.objects.filter(unit=unit).exists()
    assert not unit.events.filter(action="store").exists()


def test_a_stored_unit_is_never_moved_somewhere_warmer(box: Container, tech: Any) -> None:
    fridge = make_storage_unit(actor=tech, name="Fridge", kind="fridge", range_c=("2", "8"))
    fridge_box = make_box(actor=tech, storage_unit=fridge)
    unit = make_units(actor=tech, count=1)[0]
    placement = unit_store(unit=unit, container=box, position="A1", actor=tech)
    for service in (unit_move, unit_put):
        with pytest.raises(ServiceError) as info:
            service(unit=unit, container=fridge_box, actor=tech, reason="reorganise")
        assert (info.value.code, info.value.field) == ("too_warm", "container")
        assert "kept at 2.0 … 8.0 °C" in info.value.message
    placement.refresh_from_db()
    assert placement.ended_at is None
    assert list(Placement.objects.filter(unit=unit)) == [placement]
    assert not unit.events.filter(action="move").exists()


def test_a_tank_at_minus_150_keeps_frozen_units(trial: Any, tech: Any) -> None:
    tank = make_storage_unit(actor=tech, kind="ln2_tank", range_c=("-196", "-150"))
    unit = make_units(actor=tech, count=1)[0]
    placement = unit_store(unit=unit, container=make_box(actor=tech, storage_unit=tank), actor=tech)
    assert placement.position == "A1"


def test_the_api_refuses_to_store_a_unit_in_a_fridge(trial: Any, tech: Any) -> None:
    fridge = make_storage_unit(actor=tech, name="Fridge", kind="fridge", range_c=("2", "8"))
    fridge_box = make_box(actor=tech, storage_unit=fridge)
    unit = make_units(actor=tech, count=1)[0]
    response = api_as(tech).post(
        f"/api/units/{unit.code}/store/", {"container": fridge_box.code}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "too_warm"
    assert response.json()["fields"] == {
        "container": [
            f"{fridge_box.code} is in Fridge ({fridge.code}), kept at 2.0 … 8.0 °C; a "
            "cryopreserved unit must be stored at ≤ -150 °C (vapour-phase LN2)."
        ]
    }
    unit.refresh_from_db()
    assert unit.status == "frozen"
