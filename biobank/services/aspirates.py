from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ConflictError, ServiceError
from biobank.identifiers import Kind
from biobank.models import Anticoagulant, Aspirate, AspirateStatus, Condition, Site, Visit

from .audit import event_record, history_save
from .identifiers import identifier_allocate
from .lifecycle import allowed_actions, transition_apply
from .time_order import check_time, enrolment_check, not_before
from .units import quarantine_lift_apply

RECEIPT_DECISIONS = ("accept", "quarantine", "reject")


@transaction.atomic
def aspirate_collect(
    *,
    visit: Visit,
    volume_ml: Decimal,
    anticoagulant: str,
    collected_at: datetime,
    collected_by: str,
    actor: AbstractBaseUser,
    site: Site | None = None,
) -> Aspirate:
    """Record a bone-marrow aspirate taken at a visit; its label gets a new AS… ID."""
    visit = (
        Visit.objects.select_for_update(of=("self",))
        .select_related("participant", "visit_type")
        .get(pk=visit.pk)
    )
    if Aspirate.objects.filter(visit=visit).exists():
        raise ConflictError(
            f"Visit {visit} already has an aspirate.", code="duplicate", field="visit"
        )
    if not visit.visit_type.has_aspiration:
        raise ServiceError(
            f"{visit.visit_type} has no bone-marrow aspiration.",
            code="no_aspiration",
            field="visit",
        )
    volume = Decimal(str(volume_ml))
    if not (Decimal(0) < volume <= Decimal(500)):
        raise ServiceError(
            f"Volume must be above 0 and at most 500 mL, not {volume} mL.", field="volume_ml"
        )
    if anticoagulant not in Anticoagulant.values:
        raise ServiceError(
            f"Unknown anticoagulant '{anticoagulant}'; one of {', '.join(Anticoagulant.values)}.",
            field="anticoagulant",
        )
    if not collected_by.strip():
        raise ServiceError("Who collected the aspirate is required.", field="collected_by")
    collected_at = check_time(collected_at, field="collected_at")
    enrolment_check(collected_at, visit.participant, field="collected_at")
    aspirate = Aspirate(
        code=identifier_allocate(kind=Kind.ASPIRATE),
        participant=visit.participant,
        visit=visit,
        site=site or visit.participant.site,
        volume_ml=volume,
        anticoagulant=anticoagulant,
        collected_at=collected_at,
        collected_by=collected_by.strip(),
        recorded_by=actor,
    )
    history_save(aspirate, actor=actor, reason="collected")
    if visit.done_on is None:
        visit.done_on = timezone.localdate(collected_at)  # the lab's day, not UTC's
        history_save(visit, actor=actor, reason="aspiration done", update_fields=["done_on"])
    event_record(
        item=aspirate,
        action="collect",
        actor=actor,
        at=collected_at,
        site=aspirate.site,
        data={"volume_ml": str(volume), "anticoagulant": anticoagulant},
    )
    return aspirate


def aspirate_receipt_problems(
    *, aspirate: Aspirate, temperature_c: Decimal | None, received_at: datetime
) -> list[str]:
    """What puts an aspirate's receipt outside the study's transport limits, with the numbers
    (empty: within). The one judgment of a receipt's temperature and delay: the receipt scan
    quarantines on it, an explicit receipt may not accept against it."""
    study = aspirate.participant.study
    low, high = study.aspirate_transport_min_c, study.aspirate_transport_max_c
    problems = []
    if temperature_c is None:
        # Unknown is not within: the receipt records it (DOMAIN.md, receipt), QA decides.
        problems.append(f"no transport temperature was recorded (allowed {low}–{high} °C)")
    elif not (low <= temperature_c <= high):
        problems.append(
            f"transport temperature {temperature_c} °C is outside the allowed {low}–{high} °C"
        )
    hours = (received_at - aspirate.collected_at).total_seconds() / 3600
    if hours > study.aspirate_transport_max_hours:
        problems.append(
            f"received {hours:.1f} h after collection, more than the "
            f"{study.aspirate_transport_max_hours} h allowed"
        )
    return problems


def _receipt_read(
    *,
    aspirate: Aspirate,
    condition: str,
    temperature_c: Decimal | None,
    received_at: datetime | None,
) -> tuple[Decimal | None, datetime]:
    """A receipt's condition, temperature and time checked as values: (temperature, time)."""
    if condition not in Condition.values:
        raise ServiceError(
            f"Unknown condition '{condition}'; one of {', '.join(Condition.values)}.",
            field="condition",
        )
    temperature = None if temperature_c is None else Decimal(str(temperature_c))
    # NaN compares as an error, not as out of range: refused first, as a value.
    if temperature is not None and (
        not temperature.is_finite() or not (Decimal(-200) <= temperature <= Decimal(60))
    ):
        raise ServiceError(
            f"Temperature must be between -200 and 60 °C, not {temperature} °C.",
            field="temperature_c",
        )
    received_at = check_time(received_at, field="received_at")
    not_before(
        received_at,
        aspirate.collected_at,
        field="received_at",
        what=f"the collection of {aspirate.code}",
    )
    return temperature, received_at


@transaction.atomic
def aspirate_receive(
    *,
    aspirate: Aspirate,
    decision: str,
    actor: AbstractBaseUser,
    temperature_c: Decimal | None,
    condition: str,
    received_at: datetime | None = None,
    reason: str = "",
    site: Site | None = None,
) -> Aspirate:
    """Receive an aspirate in the lab and accept, quarantine or reject it in one step."""
    if decision not in RECEIPT_DECISIONS:
        raise ServiceError(
            f"Decision must be one of {', '.join(RECEIPT_DECISIONS)}.", field="decision"
        )
    temperature, received_at = _receipt_read(
        aspirate=aspirate, condition=condition, temperature_c=temperature_c, received_at=received_at
    )
    if decision == "accept" and condition != Condition.INTACT and not (reason or "").strip():
        raise ServiceError("Accepting a sample that is not intact needs a reason.", field="reason")
    problems = aspirate_receipt_problems(
        aspirate=aspirate, temperature_c=temperature, received_at=received_at
    )
    if decision == "accept" and problems:
        raise ServiceError(
            f"{aspirate.code} cannot be accepted: {'; '.join(problems)}. "
            "Quarantine it (QA decides) or reject it.",
            code="receipt_out_of_limits",
            field="decision",
        )
    transition_apply(
        item=aspirate,
        action=decision,
        actor=actor,
        at=received_at,
        reason=reason,
        site=site,
        changes={
            "received_at": received_at,
            "received_by": actor,
            "transport_temperature_c": temperature,
            "condition": condition,
        },
        data={
            "temperature_c": None if temperature is None else str(temperature),
            "condition": condition,
        },
    )
    return aspirate


@transaction.atomic
def aspirate_receive_by_condition(
    *,
    aspirate: Aspirate,
    actor: AbstractBaseUser,
    condition: str,
    temperature_c: Decimal | None = None,
    received_at: datetime | None = None,
    site: Site | None = None,
) -> Aspirate:
    """Receive an arriving aspirate on what is seen: intact and within the study's transport
    limits (``aspirate_receipt_problems``) is accepted; any other condition, a temperature
    outside the range or a late arrival quarantines it, with what was wrong (and its numbers)
    as the reason (QA decides later). One already received is refused (``already_received``):
    a second scan never decides it again."""
    locked = Aspirate.objects.select_for_update(of=("self",)).get(pk=aspirate.pk)
    if "accept" not in allowed_actions(locked):
        raise ConflictError(
            f"{locked.code} was already received: {locked.get_status_display()}.",
            code="already_received",
            field="aspirate",
        )
    temperature, received_at = _receipt_read(
        aspirate=locked, condition=condition, temperature_c=temperature_c, received_at=received_at
    )
    problems = []
    if condition != Condition.INTACT:
        problems.append(f"condition at receipt: {Condition(condition).label}")
    problems += aspirate_receipt_problems(
        aspirate=locked, temperature_c=temperature, received_at=received_at
    )
    return aspirate_receive(
        aspirate=aspirate,
        decision="quarantine" if problems else "accept",
        actor=actor,
        temperature_c=temperature_c,
        condition=condition,
        received_at=received_at,
        reason="; ".join(problem[0].upper() + problem[1:] for problem in problems),
        site=site,
    )


def aspirate_quarantine_lift(
    *, aspirate: Aspirate, actor: AbstractBaseUser, password: str, reason: str
) -> Aspirate:
    """QA lifts an aspirate's quarantine (it is accepted after all): authorised, reasoned and
    e-signed."""
    quarantine_lift_apply(
        item=aspirate, action="lift_quarantine", actor=actor, password=password, reason=reason
    )
    return aspirate


def aspirate_reject(*, aspirate: Aspirate, actor: AbstractBaseUser, reason: str) -> Aspirate:
    """Reject a quarantined aspirate. At arrival, rejection is a receipt decision instead."""
    if aspirate.status == AspirateStatus.COLLECTED:
        raise ServiceError(
            f"{aspirate.code} has not been received: record its receipt with decision "
            "'reject' (transport temperature and condition are required).",
            code="use_receive",
            field="status",
        )
    transition_apply(item=aspirate, action="reject", actor=actor, reason=reason)
    return aspirate


def aspirate_discard(*, aspirate: Aspirate, actor: AbstractBaseUser, reason: str) -> Aspirate:
    transition_apply(item=aspirate, action="discard", actor=actor, reason=reason)
    return aspirate


__all__ = [
    "AspirateStatus",
    "aspirate_collect",
    "aspirate_discard",
    "aspirate_quarantine_lift",
    "aspirate_receipt_problems",
    "aspirate_receive",
    "aspirate_receive_by_condition",
    "aspirate_reject",
]
