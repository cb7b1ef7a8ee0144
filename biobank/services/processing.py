from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from biobank.errors import ConflictError, ServiceError
from biobank.identifiers import Kind
from biobank.models import Aspirate, Dose, Passage, Processing, QcRelease, QcResult, QcTest

from .audit import event_record, history_save
from .doses import dose_cancel_apply
from .identifiers import identifier_allocate
from .lifecycle import HOLD_STEPS, TRANSITIONS, transition_apply
from .qc_release import MIN_VIABILITY_PCT, qc_failures
from .time_order import check_time, not_after, not_before
from .units import unit_transition


def _check_viability(value: Decimal | float | str, field: str) -> Decimal:
    pct = Decimal(str(value))
    if not (Decimal(0) <= pct <= Decimal(100)):
        raise ServiceError(f"Viability must be between 0 and 100 %, not {pct} %.", field=field)
    return pct


def _check_count(value: int, field: str) -> int:
    if int(value) <= 0:
        raise ServiceError("A cell count must be above zero.", field=field)
    return int(value)


@transaction.atomic
def processing_start(
    *, aspirate: Aspirate, actor: AbstractBaseUser, started_at: datetime | None = None
) -> Processing:
    """Start MSC isolation and culture of an accepted aspirate."""
    started_at = check_time(started_at, field="started_at")
    transition_apply(item=aspirate, action="start_processing", actor=actor, at=started_at)
    processing = Processing(
        code=identifier_allocate(kind=Kind.PROCESSING),
        aspirate=aspirate,
        participant_id=aspirate.participant_id,
        started_at=started_at,
        started_by=actor,
    )
    history_save(processing, actor=actor, reason="processing started")
    event_record(
        item=processing,
        action="start",
        actor=actor,
        at=started_at,
        data={"aspirate": aspirate.code},
    )
    return processing


def _passages_around(processing: Processing, number: int) -> tuple[Passage | None, Passage | None]:
    """The recorded passages just before and just after ``number`` (None where there is none)."""
    passages = processing.passages.order_by("number")
    return (
        passages.filter(number__lt=number).last(),
        passages.filter(number__gt=number).first(),
    )


@transaction.atomic
def passage_record(
    *,
    processing: Processing,
    number: int,
    cell_count: int,
    viability_pct: Decimal,
    actor: AbstractBaseUser,
    passaged_at: datetime | None = None,
) -> Passage:
    processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    if processing.status != "in_culture":
        raise ServiceError(
            f"{processing.code} is {processing.status}; passages are recorded while in culture.",
            code="invalid_transition",
            field="processing",
        )
    if number < 0 or number > 30:
        raise ServiceError("Passage number must be 0–30.", field="number")
    when = check_time(passaged_at, field="passaged_at")
    # A culture runs forwards: after its start, after the passage before, before the one after.
    not_before(
        when, processing.started_at, field="passaged_at", what=f"the start of {processing.code}"
    )
    earlier, later = _passages_around(processing, number)
    if earlier is not None:
        not_before(
            when,
            earlier.passaged_at,
            field="passaged_at",
            what=f"passage P{earlier.number} of {processing.code}",
        )
    if later is not None:
        not_after(
            when,
            later.passaged_at,
            field="passaged_at",
            what=f"passage P{later.number} of {processing.code}",
        )
    passage = Passage(
        processing=processing,
        number=number,
        passaged_at=when,
        cell_count=_check_count(cell_count, "cell_count"),
        viability_pct=_check_viability(viability_pct, "viability_pct"),
        recorded_by=actor,
    )
    history_save(
        passage,
        actor=actor,
        reason=f"passage P{number}",
        conflict=ConflictError(
            f"Passage P{number} of {processing.code} is already recorded.",
            code="duplicate",
            field="number",
        ),
    )
    return passage


@transaction.atomic
def processing_harvest(
    *,
    processing: Processing,
    cell_count: int,
    viability_pct: Decimal,
    passage: int,
    actor: AbstractBaseUser,
    harvested_at: datetime | None = None,
) -> Processing:
    harvested_at = check_time(harvested_at, field="harvested_at")
    # Locked (a passage recorded meanwhile would be missed); transition_apply then updates the
    # caller's object in place, as every step does.
    locked = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    last = locked.passages.order_by("number").last()
    if last is not None:
        not_before(
            harvested_at,
            last.passaged_at,
            field="harvested_at",
            what=f"passage P{last.number} of {processing.code}",
        )
        if passage < last.number:
            raise ServiceError(
                f"{processing.code} has passage P{last.number} on record; it cannot be "
                f"harvested at P{passage}.",
                code="passage_order",
                field="passage",
            )
    transition_apply(
        item=processing,
        action="harvest",
        actor=actor,
        at=harvested_at,
        changes={
            "harvested_at": harvested_at,
            "harvest_cell_count": _check_count(cell_count, "cell_count"),
            "harvest_viability_pct": _check_viability(viability_pct, "viability_pct"),
            "harvest_passage": passage,
        },
        data={"cell_count": int(cell_count), "viability_pct": str(viability_pct)},
        field="harvested_at",
    )
    return processing


@transaction.atomic
def processing_fail(*, processing: Processing, actor: AbstractBaseUser, reason: str) -> Processing:
    transition_apply(item=processing, action="fail", actor=actor, reason=reason)
    return processing


@transaction.atomic
def qc_result_record(
    *,
    processing: Processing,
    test: str,
    result: str,
    passed: bool,
    actor: AbstractBaseUser,
    value: Decimal | None = None,
    tested_at: datetime | None = None,
) -> QcResult:
    if test not in QcTest.values:
        raise ServiceError(
            f"Unknown QC test '{test}'; one of {', '.join(QcTest.values)}.", field="test"
        )
    if not result.strip():
        raise ServiceError("The result as reported is required.", field="result")
    if test == QcTest.VIABILITY:
        if value is None:
            raise ServiceError(
                "A viability result needs its value in % (the release limit is checked on it).",
                code="required",
                field="value",
            )
        value = _check_viability(value, "value")
        # The pass/fail a person ticks cannot contradict the release limit it is judged by.
        if passed and value < MIN_VIABILITY_PCT:
            raise ServiceError(
                f"Viability {value} % is below the release limit of {MIN_VIABILITY_PCT} %: "
                "record it as failed.",
                code="qc_spec",
                field="passed",
            )
    processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    if processing.status == "failed":
        raise ServiceError(
            f"{processing.code} has failed; no further QC is recorded.", field="processing"
        )
    qc = QcResult(
        processing=processing,
        test=test,
        result=result.strip(),
        value=value,
        passed=passed,
        tested_at=check_time(tested_at, field="tested_at"),
        recorded_by=actor,
    )
    not_before(
        qc.tested_at,
        processing.started_at,
        field="tested_at",
        what=f"the start of {processing.code}",
    )
    history_save(qc, actor=actor, reason=f"QC {test} recorded")
    failures = qc_failures(processing)
    if failures and QcRelease.objects.filter(processing=processing).exists():
        _product_hold(processing, failures=failures, actor=actor)
    return qc


def _product_hold(processing: Processing, *, failures: list[str], actor: AbstractBaseUser) -> None:
    """A result that fails the specification after the QC release stops the product until QA
    decides: its doses not yet given are withdrawn (a blinded role reads every dose's reason
    alike, ``visibility.BLINDED_DOSE_REASON``) and every unit that can be is quarantined. A
    dose already given stays as it is: the failed result, stored, is the record QA acts on."""
    why = f"QC after release: {'; '.join(failures)}"
    doses = (
        Dose.objects.filter(status__in=TRANSITIONS["dose"][HOLD_STEPS["dose"]].sources)
        .filter(Q(processing=processing) | Q(dose_units__unit__processing=processing))
        .distinct()
        .order_by("code")
    )
    for dose in doses:
        # The dose's hold step is its cancel (HOLD_STEPS), taken through the service that also
        # settles its units (returned to stock or discarded, before they are quarantined).
        dose_cancel_apply(dose=dose, actor=actor, reason=f"withdrawn, {why}")
    hold = HOLD_STEPS["unit"]
    held = processing.units.filter(status__in=TRANSITIONS["unit"][hold].sources)
    for unit in held.order_by("code"):
        unit_transition(unit=unit, action=hold, actor=actor, reason=why)
