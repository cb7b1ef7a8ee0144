"""The lifecycle rules: one transition table and the one function that applies it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models, transaction
from django.db.models import OuterRef, Subquery

from biobank.errors import ConflictError, ServiceError, TransitionError
from biobank.identifiers import with_article
from biobank.models import (
    AspirateStatus,
    CustodyEvent,
    DoseStatus,
    DoseUnit,
    ProcessingStatus,
    Shipment,
    ShipmentItem,
    ShipmentStatus,
    Signature,
    SignatureMeaning,
    Site,
    UnitStatus,
)
from biobank.visibility import kind_of_model

from .audit import CUSTODY_KINDS, Item, event_new, event_record, event_record_bulk, history_save
from .time_order import (
    DECISION_STEPS,
    check_time,
    qc_signed_at,
    step_words,
    time_order_check,
    time_order_refusal,
)

A, P, U, D = AspirateStatus, ProcessingStatus, UnitStatus, DoseStatus


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str | None  # None: the step is recorded but the status stays (e.g. a move)
    needs_reason: bool = False
    # A step that undoes another (lifting a quarantine) returns the item to one of these,
    # the status it had before; the step's service names which (``transition_apply(target=)``).
    back_to: frozenset[str] = frozenset()
    # The meaning of the e-signature the step needs (``transition_apply(signature=)``); "": none.
    signed: str = ""


def _t(
    sources: list[str],
    target: str | None,
    needs_reason: bool = False,
    *,
    back_to: tuple[str, ...] = (),
    signed: str = "",
) -> Transition:
    return Transition(frozenset(sources), target, needs_reason, frozenset(back_to), signed)


# Lifting a quarantine is QA's signed decision (services: aspirate_quarantine_lift,
# unit_quarantine_lift).
LIFT = SignatureMeaning.QUARANTINE_LIFT


# kind -> action -> allowed sources, target and whether a reason is required.
TRANSITIONS: dict[str, dict[str, Transition]] = {
    "aspirate": {
        "accept": _t([A.COLLECTED], A.ACCEPTED),
        "quarantine": _t([A.COLLECTED, A.ACCEPTED], A.QUARANTINED, needs_reason=True),
        "reject": _t([A.COLLECTED, A.QUARANTINED], A.REJECTED, needs_reason=True),
        "lift_quarantine": _t([A.QUARANTINED], A.ACCEPTED, needs_reason=True, signed=LIFT),
        "ship": _t([A.COLLECTED], None),
        "receive": _t([A.COLLECTED], None),
        "start_processing": _t([A.ACCEPTED], A.IN_PROCESSING),
        "complete_processing": _t([A.IN_PROCESSING], A.PROCESSED),
        "discard": _t(
            [A.COLLECTED, A.ACCEPTED, A.QUARANTINED, A.REJECTED, A.IN_PROCESSING],
            A.DISCARDED,
            needs_reason=True,
        ),
    },
    "processing": {
        "harvest": _t([P.IN_CULTURE], P.HARVESTED),
        "cryopreserve": _t([P.HARVESTED], P.CRYOPRESERVED),
        "fail": _t([P.IN_CULTURE, P.HARVESTED], P.FAILED, needs_reason=True),
    },
    "unit": {
        "freeze": _t([U.CREATED], U.FROZEN),
        "store": _t([U.FROZEN], U.STORED),
        "move": _t([U.STORED, U.QUARANTINED], None),
        "check_out": _t([U.STORED], U.CHECKED_OUT),
        "check_in": _t([U.CHECKED_OUT], U.STORED),
        "remove": _t([U.STORED, U.CHECKED_OUT], U.FROZEN, needs_reason=True),
        # FROZEN / RELEASED: a unit out of storage (in or after a shipment) can be quarantined.
        "quarantine": _t([U.STORED, U.FROZEN, U.RELEASED], U.QUARANTINED, needs_reason=True),
        # Back to where it was before the quarantine: stored (in its place), frozen (out of
        # storage) or released (still reserved by its dose).
        "lift_quarantine": _t(
            [U.QUARANTINED],
            None,
            needs_reason=True,
            back_to=(U.STORED, U.FROZEN, U.RELEASED),
            signed=LIFT,
        ),
        "release": _t([U.STORED, U.CHECKED_OUT], U.RELEASED),
        "return_to_stock": _t([U.RELEASED], U.FROZEN, needs_reason=True),
        "ship": _t([U.FROZEN, U.RELEASED], None),
        "receive": _t([U.FROZEN, U.RELEASED], None),
        "thaw": _t([U.RELEASED], U.THAWED),
        "administer": _t([U.THAWED], U.ADMINISTERED),
        "discard": _t(
            [U.CREATED, U.FROZEN, U.STORED, U.CHECKED_OUT, U.QUARANTINED, U.RELEASED, U.THAWED],
            U.DISCARDED,
            needs_reason=True,
        ),
    },
}

TRANSITIONS["dose"] = {
    "release": _t([D.PREPARED], D.RELEASED),
    "make_ready": _t([D.RELEASED], D.READY),
    "dispatch": _t([D.READY], D.DISPATCHED),
    "ship": _t([D.RELEASED, D.READY], None),
    "receive": _t([D.RELEASED, D.READY], None),
    "administer": _t([D.DISPATCHED], D.ADMINISTERED),
    "cancel": _t([D.PREPARED, D.RELEASED, D.READY, D.DISPATCHED], D.CANCELLED, needs_reason=True),
}

S = ShipmentStatus
# Shipment steps (services/shipments.py and shipment_receipt.py apply or check them; the items
# get their own ship/receive). The rows without a target are steps on the manifest or the
# receipt that leave the shipment's status as it is (the services check them with
# ``status_require``); the admin's buttons and the API's ``actions`` read them all from here.
TRANSITIONS["shipment"] = {
    "pack": _t([S.PLANNED, S.PACKING], S.PACKING),
    "unpack": _t([S.PACKING], None),
    "seal": _t([S.PACKING], S.SEALED),
    "ship": _t([S.SEALED], S.IN_TRANSIT),
    "receive_scan": _t([S.IN_TRANSIT], None),
    # Closing the receipt: every item scanned (received) or some missing (partially received).
    "receive": _t([S.IN_TRANSIT], S.RECEIVED),
    "receive_partially": _t([S.IN_TRANSIT], S.PARTIALLY_RECEIVED),
    # A missing item found later or written off; the last one completes the receipt.
    "find": _t([S.PARTIALLY_RECEIVED], None),
    "write_off": _t([S.PARTIALLY_RECEIVED], None, needs_reason=True),
    "complete_receipt": _t([S.PARTIALLY_RECEIVED], S.RECEIVED),
    "logger": _t([S.IN_TRANSIT, S.PARTIALLY_RECEIVED, S.RECEIVED], None),
    "cancel": _t([S.PLANNED, S.PACKING, S.SEALED], S.CANCELLED, needs_reason=True),
}

# Every step a custody event is written under: the custody kinds' steps in the table and the
# steps that create an item or sign outside it (the admin's step filter, the audit export's
# check of ``action``). A shipment's own steps write no custody event (custody is per item).
EVENT_STEPS: frozenset[str] = frozenset(
    {action for kind in CUSTODY_KINDS for action in TRANSITIONS[kind]}
    | {"collect", "start", "create", "prepare", "qc_release", "emergency_unblinding"}
)

# While an item is bound to an open shipment only these steps may touch it: it cannot be
# stored, moved, thawed, dosed or discarded until it is received, unpacked or written off.
IN_SHIPMENT_STEPS = frozenset({"ship", "receive"})

# How an item is held when its product is in doubt (a transport excursion, a QC failure after
# the release): a dose has no quarantine, so it is cancelled (a new one can be prepared);
# anything else is quarantined until QA decides.
HOLD_STEPS: dict[str, str] = {"aspirate": "quarantine", "unit": "quarantine", "dose": "cancel"}


def allowed_actions(item: Item | Shipment) -> list[str]:
    """Actions the table allows from the item's current status (for buttons and the API)."""
    table = TRANSITIONS[kind_of_model(item)]
    return [action for action, t in table.items() if item.status in t.sources]


def status_before(*, item: Item, action: str) -> str:
    """The status ``item`` had before its latest ``action`` step ("": it never took one)."""
    kind = kind_of_model(item)
    before = (
        CustodyEvent.objects.filter(**{kind: item}, action=action)
        .order_by("-at", "-id")
        .values_list("from_status", flat=True)
        .first()
    )
    return before or ""


# Steps a unit reserved by a live dose does not take on its own (the dose settles its units
# when it is cancelled): discarded or returned alone, it would leave the dose without its cells.
SETTLED_BY_DOSE = frozenset({"discard", "return_to_stock"})


def _reserved_by(kind: str, actions: set[str], pks: list[int]) -> dict[int, str]:
    """The doses (unit pk -> dose code) reserving the units a step of ``SETTLED_BY_DOSE`` would
    settle on its own: one query, none when no such step is asked."""
    if kind != "unit" or not actions & SETTLED_BY_DOSE:
        return {}
    links = DoseUnit.objects.filter(unit_id__in=pks, active=True)
    return dict(links.values_list("unit_id", "dose__code"))


def _reserved_refusal(item: Item, action: str, dose_code: str | None) -> ServiceError | None:
    if action not in SETTLED_BY_DOSE or dose_code is None:
        return None
    return ConflictError(
        f"{item.code} is reserved for dose {dose_code}: cancel the dose instead (its units are "
        "returned or discarded with it).",
        code="reserved_for_dose",
        field="unit",
    )


@dataclass
class Step:
    """One item's step in a set-based transition (``transitions_apply_bulk``)."""

    item: Item
    action: str
    reason: str = ""
    site: Site | None = None
    location: str = ""
    changes: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    target: str | None = None  # for a step that returns to an earlier status (back_to)
    signature: Signature | None = None  # for a signed step


def _transition_of(kind: str, action: str, code: str, reason: str) -> Transition:
    transition = TRANSITIONS[kind].get(action)
    if transition is None:
        raise TransitionError(
            f"'{action}' is not a step for {with_article(kind)}. "
            f"Steps: {', '.join(TRANSITIONS[kind])}.",
            code="unknown_action",
            field="action",
        )
    if transition.needs_reason and not reason:
        raise ServiceError(
            f"A reason is required to {step_words(action)} {code}.",
            code="reason_required",
            field="reason",
        )
    return transition


def _target_of(transition: Transition, action: str, code: str, target: str | None) -> str | None:
    """The status the step leaves the item in: the table's, or for a step that returns the item
    to an earlier status, the one its service named (one of the table's ``back_to``)."""
    if not transition.back_to:
        return transition.target
    if target not in transition.back_to:
        raise TransitionError(
            f"Cannot {step_words(action)} {code}: it returns to one of "
            f"{', '.join(sorted(transition.back_to))}, not {target or 'no status'}.",
            code="invalid_target",
            field="status",
        )
    return target


def _signed_data(
    transition: Transition, action: str, code: str, signature: Signature | None
) -> dict[str, Any]:
    """A signed step's reference to its signature, for the event's data; refused without the
    signature of the table's meaning for this item."""
    if not transition.signed:
        return {}
    if signature is None or (signature.meaning, signature.record) != (transition.signed, code):
        raise ServiceError(
            f"Cannot {step_words(action)} {code} without an e-signature "
            f"({SignatureMeaning(transition.signed).label}).",
            code="signature_required",
            field="password",
        )
    return {"signature": str(signature), "signature_id": signature.pk}


def _lock(model: type[models.Model], kind: str, pks: list[int]) -> Any:
    """Lock the rows for a step (one query, in pk order), then read them with each one's last
    custody step and the open shipment holding it, in a statement of its own: a read inside
    the locking statement sees the data as it was when that statement began, so a step that
    waited for the lock would judge by a state the step it waited for has just changed (e.g. a
    discard let through after a packer put the unit in a shipment)."""
    locking = model.objects.select_for_update(of=("self",)).filter(pk__in=pks).order_by("pk")
    list(locking.values_list("pk", flat=True))
    rows = model.objects.filter(pk__in=pks)
    if kind in CUSTODY_KINDS:  # the previous step, for the time-order check, in one query
        latest = (
            CustodyEvent.objects.filter(**{kind: OuterRef("pk")})
            .exclude(action__in=DECISION_STEPS)
            .order_by("-at", "-id")
        )
        rows = rows.annotate(
            last_step=Subquery(latest.values("action")[:1]),
            last_step_at=Subquery(latest.values("at")[:1]),
        )
    if kind in ("aspirate", "unit", "dose"):
        held = ShipmentItem.objects.filter(active=True, **{kind: OuterRef("pk")})
        rows = rows.annotate(held_by_shipment=Subquery(held.values("shipment__code")[:1]))
    return rows


def _shipment_guard(locked: Any, action: str) -> None:
    """An item in an open shipment takes only the shipment's own steps."""
    shipment = getattr(locked, "held_by_shipment", None)
    if shipment and action not in IN_SHIPMENT_STEPS:
        raise TransitionError(
            f"Cannot {step_words(action)} {locked.code}: it is in shipment {shipment}, "
            "which has not been received.",
            code="in_shipment",
            field="status",
        )


def _change_reason(reason: str, action: str, kind: str) -> str:
    # The history's change reason column holds 100 characters; status_reason keeps it all.
    # A dose's history names the step only: the reason may say what was in the syringe, and
    # blinded roles read the history (the custody event keeps the reason for the unblinded).
    if kind == "dose":
        return step_words(action)
    return (reason or step_words(action))[:100]


def _refuse(action: str, code: str, status: str, transition: Transition) -> TransitionError:
    allowed = ", ".join(sorted(transition.sources))
    return TransitionError(
        f"Cannot {step_words(action)} {code}: it is {status}; "
        f"this step is allowed only from: {allowed}.",
        code="invalid_transition",
        field="status",
    )


def transition_check(
    *, kind: str, action: str, item: Any, reason: str = "", status: str | None = None
) -> Transition:
    """The table's verdict on one step: its transition, or the refusal (an unknown step, a
    missing reason, an item held by an open shipment, a status the step does not start from).

    ``status`` judges another status than the item's own (a bulk step's in-memory one). Every
    state check asks this; ``transition_apply`` asks it on the locked row.
    """
    transition = _transition_of(kind, action, item.code, reason)
    _shipment_guard(item, action)
    status = item.status if status is None else status
    if status not in transition.sources:
        raise _refuse(action, item.code, status, transition)
    return transition


@transaction.atomic
def transitions_apply_bulk(
    *, steps: list[Step], actor: AbstractBaseUser, at: datetime | None = None, field: str = "at"
) -> list[CustodyEvent]:
    """``transition_apply`` for many items of one kind in a fixed number of statements.

    The same checks, refusals, saved states, history rows (with reasons) and events as
    applying the steps one by one in list order; all or nothing. A refusal carries the
    step's position in ``.index``. Rows are locked in one query, statuses written in one
    UPDATE, history rows and events inserted in bulk. ``field``: the input ``at`` came from,
    named by a time-order refusal.
    """
    if not steps:
        return []
    when = check_time(at)
    model = type(steps[0].item)
    kind = kind_of_model(model)
    locked = _lock(model, kind, sorted({step.item.pk for step in steps})).in_bulk()
    status = {pk: row.status for pk, row in locked.items()}
    qc_signed = {
        action: qc_signed_at(list(locked.values()), action) for action in {s.action for s in steps}
    }
    reserved = _reserved_by(kind, {s.action for s in steps}, list(locked))
    plans = []
    for index, step in enumerate(steps):
        row = locked[step.item.pk]
        reason = (step.reason or "").strip()
        try:
            transition = transition_check(
                kind=kind, action=step.action, item=row, reason=reason, status=status[row.pk]
            )
            refusal = _reserved_refusal(row, step.action, reserved.get(row.pk)) or (
                time_order_refusal(row, kind, step.action, when, qc_signed[step.action], field)
            )
            if refusal is not None:
                raise refusal
            target = _target_of(transition, step.action, row.code, step.target)
            signed = _signed_data(transition, step.action, row.code, step.signature)
        except ServiceError as exc:
            exc.index = index
            raise
        from_status = status[row.pk]
        if target is not None:
            status[row.pk] = target
        plans.append((step, row, target, transition, reason, from_status, signed))
    if len(locked) != len(steps):
        # An item twice: fall back to one by one (rare; keeps each history row exact).
        return [
            transition_apply(
                item=step.item,
                action=step.action,
                actor=actor,
                at=when,
                reason=step.reason,
                site=step.site,
                location=step.location,
                changes=step.changes,
                data=step.data,
                target=step.target,
                signature=step.signature,
            )
            for step in steps
        ]
    fields: set[str] = set()
    for step, row, target, transition, reason, *_ in plans:
        for name, value in (step.changes or {}).items():
            setattr(row, name, value)
            fields.add(model._meta.get_field(name).attname)
        if target is not None:
            row.status = target
            fields.add("status")
        if transition.needs_reason:
            row.status_reason = reason
            fields.add("status_reason")
        row._change_reason = _change_reason(reason, step.action, kind)
        row._history_user = actor
    rows_update(model, [row for _, row, *_ in plans], sorted(fields))
    model.history.bulk_history_create([row for _, row, *_ in plans], update=True)
    events = event_record_bulk(
        [
            event_new(
                item=row,
                action=step.action,
                from_status=from_status,
                actor=actor,
                at=when,
                site=step.site,
                location=step.location,
                reason=reason,
                data={**(step.data or {}), **signed} or None,
            )
            for step, row, _, _, reason, from_status, signed in plans
        ]
    )
    for step, row, *_ in plans:
        _copy_saved(step.item, row)
    return events


_LOCK_ANNOTATIONS = frozenset({"last_step", "last_step_at", "held_by_shipment"})


def _copy_saved(item: Any, row: Any) -> None:
    """Give the caller's object the saved state (not the lock query's annotations: they age)."""
    item.__dict__.update(
        {
            k: v
            for k, v in row.__dict__.items()
            if (not k.startswith("_") or k == "_state") and k not in _LOCK_ANNOTATIONS
        }
    )


def rows_update(model: type[models.Model], rows: list[Any], fields: list[str]) -> None:
    """Write ``fields`` of ``rows``: one UPDATE when every row gets the same values."""
    if not fields:
        return
    values = {tuple(getattr(row, f) for f in fields) for row in rows}
    if len(values) == 1:
        model.objects.filter(pk__in=[row.pk for row in rows]).update(
            **dict(zip(fields, values.pop(), strict=True))
        )
    else:
        model.objects.bulk_update(rows, fields)


@transaction.atomic
def transition_apply(
    *,
    item: Item | Shipment,
    action: str,
    actor: AbstractBaseUser,
    at: datetime | None = None,
    reason: str = "",
    site: Site | None = None,
    location: str = "",
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    target: str | None = None,
    signature: Signature | None = None,
    field: str = "at",
) -> CustodyEvent | None:
    """Apply one lifecycle step: lock the row, check the table, save, write the event.

    ``item`` is updated in place to the saved state. Anything the table does not allow
    is refused with a ``TransitionError`` naming the current status and the allowed ones.
    Time order: a step dated before the item's previous step, or before the signature that
    allowed it, is refused (``time_order``); so is one in the future (``future_time``).
    A shipment's step is saved with its history but has no event (None): custody is per item.
    ``field`` names the input ``at`` came from in a time-order refusal (e.g. "harvested_at").
    A step that returns the item to an earlier status takes it as ``target`` (one of the
    table's ``back_to``); a signed step takes its ``signature`` (the table's meaning, for this
    item), referenced in the event's data.
    """
    model = type(item)
    kind = kind_of_model(model)
    reason = (reason or "").strip()
    _transition_of(kind, action, item.code, reason)  # a bad request is refused before locking
    when = check_time(at)
    locked = _lock(model, kind, [item.pk]).get()
    transition = transition_check(kind=kind, action=action, item=locked, reason=reason)
    refusal = _reserved_refusal(
        locked, action, _reserved_by(kind, {action}, [locked.pk]).get(locked.pk)
    )
    if refusal is not None:
        raise refusal
    new_status = _target_of(transition, action, locked.code, target)
    signed = _signed_data(transition, action, locked.code, signature)
    from_status = locked.status
    for name, value in (changes or {}).items():
        setattr(locked, name, value)
    custody = kind in CUSTODY_KINDS
    if custody:
        time_order_check(item=locked, kind=kind, action=action, at=when, field=field)
    if new_status is not None:
        locked.status = new_status
    if transition.needs_reason:
        locked.status_reason = reason
    history_save(locked, actor=actor, reason=_change_reason(reason, action, kind))
    _copy_saved(item, locked)
    if not custody:
        return None
    return event_record(
        item=locked,
        action=action,
        from_status=from_status,
        actor=actor,
        at=when,
        site=site,
        location=location,
        reason=reason,
        data={**(data or {}), **signed} or None,
    )
