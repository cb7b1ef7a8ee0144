"""Every allowed and every forbidden step of the transition table, for every kind and status."""

from __future__ import annotations

from typing import Any

import pytest

from biobank.models import (
    AspirateStatus,
    CustodyEvent,
    DoseStatus,
    ProcessingStatus,
    ShipmentStatus,
    UnitStatus,
)
from biobank.services.errors import ServiceError, TransitionError
from biobank.services.lifecycle import TRANSITIONS, allowed_actions, transition_apply

from .factories import make_accepted_aspirate, make_dose, make_processing, make_units

STATUSES = {
    "aspirate": AspirateStatus,
    "processing": ProcessingStatus,
    "unit": UnitStatus,
    "dose": DoseStatus,
    "shipment": ShipmentStatus,
}
CASES = [
    (kind, action, status)
    for kind, table in TRANSITIONS.items()
    if kind != "shipment"  # shipment steps go through services.shipments (test_shipments)
    for action in table
    for status in STATUSES[kind].values
]


def _item_in(kind: str, status: str, actor: Any) -> Any:
    """An item reached through the services, then put into ``status`` for the case."""
    item: Any
    if kind == "aspirate":
        item = make_accepted_aspirate(actor=actor)
    elif kind == "processing":
        item = make_processing(actor=actor, harvested=True)
    elif kind == "dose":
        item = make_dose(actor=actor)
    else:
        item = make_units(actor=actor, count=1)[0]
    type(item).objects.filter(pk=item.pk).update(status=status, status_reason="set up for test")
    item.refresh_from_db()
    return item


@pytest.mark.parametrize(("kind", "action", "status"), CASES)
def test_transition_table(trial: Any, tech: Any, kind: str, action: str, status: str) -> None:
    transition = TRANSITIONS[kind][action]
    item = _item_in(kind, status, tech)
    events_before = CustodyEvent.objects.count()
    history_before = item.history.count()
    reason = "checked by test" if transition.needs_reason else ""

    if status in transition.sources:
        event = transition_apply(item=item, action=action, actor=tech, reason=reason)
        item.refresh_from_db()
        target = transition.target or status
        assert item.status == target
        assert (event.from_status, event.to_status, event.action) == (status, target, action)
        assert event.actor == tech and event.item_code == item.code
        assert event.participant_id == item.participant_id
        assert CustodyEvent.objects.count() == events_before + 1
        latest = item.history.first()
        assert item.history.count() == history_before + 1
        assert latest.history_user == tech
        assert latest.history_change_reason == (reason or action.replace("_", " "))
    else:
        with pytest.raises(TransitionError) as info:
            transition_apply(item=item, action=action, actor=tech, reason=reason)
        assert info.value.code == "invalid_transition"
        assert status in info.value.message and item.code in info.value.message
        item.refresh_from_db()
        assert item.status == status
        assert CustodyEvent.objects.count() == events_before
        assert item.history.count() == history_before


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (k, a)
        for k, table in TRANSITIONS.items()
        if k != "shipment"
        for a, t in table.items()
        if t.needs_reason
    ],
)
def test_steps_that_need_a_reason_refuse_a_blank_one(
    trial: Any, tech: Any, kind: str, action: str
) -> None:
    source = sorted(TRANSITIONS[kind][action].sources)[0]
    item = _item_in(kind, source, tech)
    with pytest.raises(ServiceError) as info:
        transition_apply(item=item, action=action, actor=tech, reason="   ")
    assert info.value.field == "reason"
    item.refresh_from_db()
    assert item.status == source


def test_unknown_action_is_refused(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises(TransitionError) as info:
        transition_apply(item=unit, action="teleport", actor=tech)
    assert info.value.code == "unknown_action"
    assert "store" in info.value.message


def test_allowed_actions_follow_the_table(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1, stored=True)[0]
    assert set(allowed_actions(unit)) == {
        "move",
        "check_out",
        "unstore",
        "quarantine",
        "release",
        "discard",
    }


def test_models_cover_every_status() -> None:
    # A status no transition reaches would be dead; a target not in the choices would be a bug.
    for kind, table in TRANSITIONS.items():
        values = set(STATUSES[kind].values)
        for transition in table.values():
            assert transition.target is None or transition.target in values
            assert transition.sources <= values
