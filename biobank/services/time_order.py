"""When a step may be dated: never in the future (beyond a small clock tolerance), never
before the item's previous step, and never before the signature that allowed it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import CustodyEvent, Dose, ProductUnit, QcRelease
from biobank.moments import moment_check
from biobank.terms import local_second

from .audit import Item

# Allow for clocks that differ a little between a scanner PC and the server.
FUTURE_TOLERANCE = timedelta(minutes=5)


def check_time(at: datetime | None, *, field: str = "at") -> datetime:
    now = timezone.now()
    if at is None:
        return now
    if timezone.is_naive(at):
        raise ServiceError(f"{field} must include a time zone.", code="naive_datetime", field=field)
    moment_check(at, field=field)
    if at > now + FUTURE_TOLERANCE:
        raise ServiceError(
            f"{field} {local_second(at)} is in the future (now {local_second(now)}).",
            code="future_time",
            field=field,
        )
    return at


def check_date(on: date, *, field: str) -> date:
    """The same rule for a calendar date (e.g. an enrolment): plausible, and not after today in
    the lab's time zone."""
    moment_check(on, field=field)
    today = timezone.localdate()
    if on > today:
        raise ServiceError(
            f"{field} {on} is in the future (today {today}).", code="future_time", field=field
        )
    return on


def not_before(at: datetime, bound: datetime | None, *, field: str, what: str) -> None:
    """Refuse a time before the step it follows (``what``: "the harvest of PR…"), naming both."""
    if bound is not None and at < bound:
        raise ServiceError(
            f"{field} {local_second(at)} is before {what} ({local_second(bound)}).",
            code="time_order",
            field=field,
        )


def not_after(at: datetime, bound: datetime | None, *, field: str, what: str) -> None:
    """Refuse a time after the step it precedes (``what``: "passage P2 of PR…"), naming both."""
    if bound is not None and at > bound:
        raise ServiceError(
            f"{field} {local_second(at)} is after {what} ({local_second(bound)}).",
            code="time_order",
            field=field,
        )


def enrolment_check(at: datetime, participant: Any, *, field: str, then: str = "") -> None:
    """Refuse a time on a day before the participant was enrolled (the lab's day)."""
    enrolled = participant.enrolled_on
    if timezone.localdate(at) < enrolled:
        raise ServiceError(
            f"{field} {local_second(at)} is before {participant.pseudonym} was enrolled "
            f"({enrolled:%Y-%m-%d}){then}.",
            code="time_order",
            field=field,
        )


def step_words(action: str) -> str:
    return action.replace("_", " ")


# Decisions recorded on an item, not steps it physically took: a step entered afterwards (a
# freezing run typed in after QA signed) is not ordered against them. Steps that need the
# decision are ordered against its signature instead (AFTER_QC_RELEASE, a dose's release).
DECISION_STEPS = frozenset({"qc_release"})

# Steps a unit takes only after its processing's QC release was signed.
AFTER_QC_RELEASE = frozenset({"release", "thaw", "administer"})


def qc_signed_at(rows: list[Any], action: str) -> dict[int, datetime]:
    """processing id -> when its QC release was signed, for the units taking ``action``."""
    if action not in AFTER_QC_RELEASE:
        return {}
    ids = {row.processing_id for row in rows if isinstance(row, ProductUnit)}
    if not ids:
        return {}
    return dict(
        QcRelease.objects.filter(processing_id__in=ids).values_list(
            "processing_id", "signature__signed_at"
        )
    )


def _previous_step(item: Item, kind: str) -> tuple[str, datetime] | None:
    """The item's last custody step: from the lock query's annotation when it has one."""
    if hasattr(item, "last_step_at"):
        return (item.last_step, item.last_step_at) if item.last_step_at else None
    return (
        CustodyEvent.objects.filter(**{kind: item})
        .exclude(action__in=DECISION_STEPS)
        .order_by("-at", "-id")
        .values_list("action", "at")
        .first()
    )


def time_order_refusal(
    item: Item,
    kind: str,
    action: str,
    at: datetime,
    qc_signed: dict[int, datetime],
    field: str = "at",
) -> ServiceError | None:
    """What a step dated ``at`` would come before, if anything: the item's previous step, or
    the signature that allowed the step."""
    bounds: list[tuple[str, datetime]] = []
    previous = _previous_step(item, kind)
    if previous is not None:
        step, when = previous
        bounds.append((f"its previous step ({step_words(step)} at {local_second(when)})", when))
    if isinstance(item, Dose) and item.release_signature_id is not None:
        signed = item.release_signature.signed_at
        bounds.append((f"its release signature ({local_second(signed)})", signed))
    elif isinstance(item, ProductUnit) and item.processing_id in qc_signed:
        signed = qc_signed[item.processing_id]
        bounds.append((f"the QC release signature ({local_second(signed)})", signed))
    for what, when in bounds:
        if at < when:
            return ServiceError(
                f"{item.code}: {step_words(action)} at {local_second(at)} is before {what}.",
                code="time_order",
                field=field,
            )
    return None


def time_order_check(
    *, item: Item, kind: str, action: str, at: datetime, field: str = "at"
) -> None:
    """Refuse a step dated before the item's previous step or before the signature allowing it
    (the refusal names ``field``, the input the time came from)."""
    refusal = time_order_refusal(item, kind, action, at, qc_signed_at([item], action), field)
    if refusal is not None:
        raise refusal
