from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.errors import ConflictError, ServiceError
from biobank.identifiers import Kind
from biobank.models import Aspirate, Passage, Processing, QcResult, QcTest

from .audit import history_save
from .identifiers import identifier_allocate
from .lifecycle import check_time, event_record, transition_apply


def _check_viability(value: Decimal | float | str, field: str) -> Decimal:
    pct = Decimal(str(value))
    if not (Decimal(0) <= pct <= Decimal(100)):
        raise ServiceError("Viability must be between 0 and 100 %.", field=field)
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
    passage = Passage(
        processing=processing,
        number=number,
        passaged_at=check_time(passaged_at, field="passaged_at"),
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
    )
    return processing


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
    history_save(qc, actor=actor, reason=f"QC {test} recorded")
    return qc
