"""Every allowed and every forbidden step of the transition table, for every kind and status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from biobank.errors import ServiceError, TransitionError
from biobank.models import (
    AspirateStatus,
    CustodyEvent,
    DoseStatus,
    ProcessingStatus,
    ShipmentStatus,
    UnitStatus,
)
from biobank.services.lifecycle import TRANSITIONS, allowed_actions, transition_apply
from biobank.services.signatures import signature_sign

from .factories import (
    PASSWORD,
    make_accepted_aspirate,
    make_aspirate,
    make_dose,
    make_participant,
    make_processing,
    make_units,
)

STATUSES = {
    "aspirate": AspirateStatus,
    "processing": ProcessingStatus,
    "unit": UnitStatus,
    "dose": DoseStatus,
    "shipment": ShipmentStatus,
}
# The transition table as the protocol states it, written out so that a change to
# services.lifecycle.TRANSITIONS fails here until this copy is changed on purpose:
# kind -> action -> (sorted allowed sources, target or None for "status stays", needs a reason).
EXPECTED: dict[str, dict[str, tuple[list[str], str | None, bool]]] = {
    "aspirate": {
        "accept": (["collected"], "accepted", False),
        "quarantine": (["accepted", "collected"], "quarantined", True),
        "reject": (["collected", "quarantined"], "rejected", True),
        "lift_quarantine": (["quarantined"], "accepted", True),
        "ship": (["collected"], None, False),
        "receive": (["collected"], None, False),
        "start_processing": (["accepted"], "in_processing", False),
        "complete_processing": (["in_processing"], "processed", False),
        "discard": (
            ["accepted", "collected", "in_processing", "quarantined", "rejected"],
            "discarded",
            True,
        ),
    },
    "processing": {
        "harvest": (["in_culture"], "harvested", False),
        "cryopreserve": (["harvested"], "cryopreserved", False),
        "fail": (["harvested", "in_culture"], "failed", True),
    },
    "unit": {
        "freeze": (["created"], "frozen", False),
        "store": (["frozen"], "stored", False),
        "move": (["quarantined", "stored"], None, False),
        "check_out": (["stored"], "checked_out", False),
        "check_in": (["checked_out"], "stored", False),
        "remove": (["checked_out", "stored"], "frozen", True),
        "quarantine": (["frozen", "released", "stored"], "quarantined", True),
        "lift_quarantine": (["quarantined"], None, True),  # back to a status before (BACK_TO)
        "release": (["checked_out", "stored"], "released", False),
        "return_to_stock": (["released"], "frozen", True),
        "ship": (["frozen", "released"], None, False),
        "receive": (["frozen", "released"], None, False),
        "thaw": (["released"], "thawed", False),
        "administer": (["thawed"], "administered", False),
        "discard": (
            [
                "checked_out",
                "created",
                "frozen",
                "quarantined",
                "released",
                "stored",
                "thawed",
            ],
            "discarded",
            True,
        ),
    },
    "dose": {
        "release": (["prepared"], "released", False),
        "make_ready": (["released"], "ready", False),
        "dispatch": (["ready"], "dispatched", False),
        "ship": (["ready", "released"], None, False),
        "receive": (["ready", "released"], None, False),
        "administer": (["dispatched"], "administered", False),
        "cancel": (["dispatched", "prepared", "ready", "released"], "cancelled", True),
    },
    "shipment": {
        "pack": (["packing", "planned"], "packing", False),
        "unpack": (["packing"], None, False),
        "seal": (["packing"], "sealed", False),
        "ship": (["sealed"], "in_transit", False),
        "receive_scan": (["in_transit"], None, False),
        "receive": (["in_transit"], "received", False),
        "receive_partially": (["in_transit"], "partially_received", False),
        "find": (["partially_received"], None, False),
        "write_off": (["partially_received"], None, True),
        "complete_receipt": (["partially_received"], "received", False),
        "logger": (["in_transit", "partially_received", "received"], None, False),
        "cancel": (["packing", "planned", "sealed"], "cancelled", True),
    },
}
# Steps that undo another return the item to one of these (the service names which), and the
# signed steps with their signature's meaning.
BACK_TO = {("unit", "lift_quarantine"): ["frozen", "released", "stored"]}
SIGNED = {
    ("aspirate", "lift_quarantine"): "quarantine_lift",
    ("unit", "lift_quarantine"): "quarantine_lift",
}
CASES = [
    (kind, action, status)
    for kind, table in EXPECTED.items()
    if kind != "shipment"  # shipment steps go through services.shipments (test_shipments)
    for action in table
    for status in STATUSES[kind].values
]


def test_the_table_is_the_expected_one() -> None:
    actual = {
        kind: {
            action: (sorted(step.sources), step.target, step.needs_reason)
            for action, step in table.items()
        }
        for kind, table in TRANSITIONS.items()
    }
    assert actual == EXPECTED
    back_to = {
        (kind, action): sorted(step.back_to)
        for kind, table in TRANSITIONS.items()
        for action, step in table.items()
        if step.back_to
    }
    signed = {
        (kind, action): step.signed
        for kind, table in TRANSITIONS.items()
        for action, step in table.items()
        if step.signed
    }
    assert (back_to, signed) == (BACK_TO, SIGNED)


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
    sources, target, needs_reason = EXPECTED[kind][action]
    item = _item_in(kind, status, tech)
    events_before = CustodyEvent.objects.count()
    history_before = item.history.count()
    reason = "checked by test" if needs_reason else ""

    extra: dict[str, Any] = {}
    if (kind, action) in BACK_TO:
        extra["target"] = BACK_TO[kind, action][-1]
    if (kind, action) in SIGNED and status in sources:
        extra["signature"] = signature_sign(
            user=tech, password=PASSWORD, meaning=SIGNED[kind, action], record=item.code
        )

    if status in sources:
        event = transition_apply(item=item, action=action, actor=tech, reason=reason, **extra)
        item.refresh_from_db()
        target = target or extra.get("target") or status
        assert item.status == target
        assert (event.from_status, event.to_status, event.action) == (status, target, action)
        assert event.actor == tech and event.item_code == item.code
        assert event.participant_id == item.participant_id
        assert CustodyEvent.objects.count() == events_before + 1
        latest = item.history.first()
        assert item.history.count() == history_before + 1
        assert latest.history_user == tech
        # A dose's history names the step only: its reason may say what was in the syringe.
        step = action.replace("_", " ")
        assert latest.history_change_reason == (step if kind == "dose" else reason or step)
    else:
        with pytest.raises(TransitionError) as info:
            transition_apply(item=item, action=action, actor=tech, reason=reason, **extra)
        assert info.value.code == "invalid_transition"
        assert status in info.value.message and item.code in info.value.message
        item.refresh_from_db()
        assert item.status == status
        assert CustodyEvent.objects.count() == events_before
        assert item.history.count() == history_before


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (kind, action)
        for kind, table in EXPECTED.items()
        if kind != "shipment"
        for action, (_, _, needs_reason) in table.items()
        if needs_reason
    ],
)
def test_steps_that_need_a_reason_refuse_a_blank_one(
    trial: Any, tech: Any, kind: str, action: str
) -> None:
    source = EXPECTED[kind][action][0][0]
    item = _item_in(kind, source, tech)
    events_before = CustodyEvent.objects.count()
    with pytest.raises(ServiceError) as info:
        transition_apply(item=item, action=action, actor=tech, reason="   ")
    assert (info.value.code, info.value.field) == ("reason_required", "reason")
    item.refresh_from_db()
    assert item.status == source
    assert CustodyEvent.objects.count() == events_before


@pytest.mark.parametrize(("kind", "action"), sorted(SIGNED))
def test_a_signed_step_is_refused_without_its_signature(
    trial: Any, tech: Any, kind: str, action: str
) -> None:
    item = _item_in(kind, "quarantined", tech)
    other = _item_in(kind, "quarantined", tech)
    target = {"target": BACK_TO[kind, action][-1]} if (kind, action) in BACK_TO else {}
    signatures = [
        None,  # none at all
        signature_sign(user=tech, password=PASSWORD, meaning="qc_release", record=item.code),
        signature_sign(
            user=tech, password=PASSWORD, meaning=SIGNED[kind, action], record=other.code
        ),
    ]
    events_before = CustodyEvent.objects.count()
    for signature in signatures:
        with pytest.raises(ServiceError) as info:
            transition_apply(
                item=item, action=action, actor=tech, reason="r", signature=signature, **target
            )
        assert (info.value.code, info.value.field) == ("signature_required", "password")
    item.refresh_from_db()
    assert item.status == "quarantined"
    assert CustodyEvent.objects.count() == events_before


def test_a_step_back_goes_only_to_a_status_the_table_names(trial: Any, tech: Any) -> None:
    unit = _item_in("unit", "quarantined", tech)
    signature = signature_sign(
        user=tech, password=PASSWORD, meaning="quarantine_lift", record=unit.code
    )
    for target in (None, "thawed"):
        with pytest.raises(TransitionError) as info:
            transition_apply(
                item=unit,
                action="lift_quarantine",
                actor=tech,
                reason="r",
                signature=signature,
                target=target,
            )
        assert info.value.code == "invalid_target"
    unit.refresh_from_db()
    assert unit.status == "quarantined"


def test_unknown_action_is_refused(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    with pytest.raises(TransitionError) as info:
        transition_apply(item=unit, action="teleport", actor=tech)
    assert info.value.code == "unknown_action"
    assert info.value.message.startswith("'teleport' is not a step for a unit. Steps: ")
    assert "store" in info.value.message


def test_allowed_actions_follow_the_table(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1, stored=True)[0]
    assert set(allowed_actions(unit)) == {
        "move",
        "check_out",
        "remove",
        "quarantine",
        "release",
        "discard",
    }


def test_models_cover_every_status() -> None:
    # A status no step leaves or reaches would be dead; one outside the choices would be a bug.
    for kind, table in EXPECTED.items():
        used = {status for sources, _, _ in table.values() for status in sources}
        used |= {target for _, target, _ in table.values() if target is not None}
        assert used == set(STATUSES[kind].values), kind


@pytest.mark.parametrize(
    "when", [dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(1899, 12, 31, 23, tzinfo=dt.UTC)]
)
def test_services_refuse_a_time_before_the_plausible_years(
    trial: Any, tech: Any, when: dt.datetime
) -> None:
    participant = make_participant(actor=tech)
    events_before = CustodyEvent.objects.count()
    with pytest.raises(ServiceError) as info:
        make_aspirate(actor=tech, participant=participant, collected_at=when)
    assert (info.value.code, info.value.field) == ("date_out_of_range", "collected_at")
    assert info.value.message == "collected_at must be between the years 1900 and 2200."
    assert CustodyEvent.objects.count() == events_before
    assert not participant.aspirates.exists()
