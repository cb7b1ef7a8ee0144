"""Signed approvals outside the dose itself: QC release of a product, emergency unblinding.

Doses (plan, preparation, release, identity checks, administration) are in ``doses.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.models import (
    ArmSchedule,
    Participant,
    Processing,
    ProcessingStatus,
    QcRelease,
    QcTest,
    SignatureMeaning,
    Treatment,
    Unblinding,
)

from .errors import ConflictError, ServiceError
from .lifecycle import event_record
from .signatures import require_perm, signature_sign

REQUIRED_QC = [
    QcTest.STERILITY,
    QcTest.MYCOPLASMA,
    QcTest.ENDOTOXIN,
    QcTest.IMMUNOPHENOTYPE,
    QcTest.VIABILITY,
]
MIN_VIABILITY_PCT = Decimal("70")


# --- QC release ------------------------------------------------------------------------------


def qc_release_problems(processing: Processing) -> list[str]:
    """What stands between a product and its QC release (empty when it may be signed)."""
    problems = []
    if processing.status not in (ProcessingStatus.HARVESTED, ProcessingStatus.CRYOPRESERVED):
        problems.append(f"the product is {processing.get_status_display().lower()}")
    latest = {}
    for qc in processing.qc_results.order_by("tested_at", "id"):
        latest[qc.test] = qc
    for test in REQUIRED_QC:
        result = latest.get(test)
        if result is None:
            problems.append(f"no {QcTest(test).label} result")
        elif not result.passed:
            problems.append(f"{QcTest(test).label} failed ({result.result})")
    viability = latest.get(QcTest.VIABILITY)
    if (
        viability is not None
        and viability.value is not None
        and viability.value < MIN_VIABILITY_PCT
    ):
        problems.append(f"viability {viability.value} % is below {MIN_VIABILITY_PCT} %")
    return problems


@transaction.atomic
def processing_qc_release(
    *, processing: Processing, actor: AbstractBaseUser, password: str, comment: str = ""
) -> QcRelease:
    """Sign the product's QC results as meeting the release specification."""
    require_perm(actor, "biobank.approve_qc_release", "sign a QC release")
    processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    if QcRelease.objects.filter(processing=processing).exists():
        raise ConflictError(f"{processing.code} is already QC-released.", code="already_released")
    problems = qc_release_problems(processing)
    if problems:
        raise ServiceError(
            f"{processing.code} cannot be QC-released: {'; '.join(problems)}.",
            code="qc_not_met",
            field="qc_results",
        )
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.QC_RELEASE, record=processing.code
    )
    release = QcRelease.objects.create(processing=processing, signature=signature, comment=comment)
    event_record(
        item=processing,
        participant_id=processing.participant_id,
        item_code=processing.code,
        item_kind="processing",
        action="qc_release",
        from_status=processing.status,
        to_status=processing.status,
        actor=actor,
        at=signature.signed_at,
        reason=str(signature),
    )
    return release


# --- emergency unblinding --------------------------------------------------------------------


@dataclass(frozen=True)
class UnblindingResult:
    record: Unblinding
    arm: str
    schedule: list[tuple[str, str]]


@transaction.atomic
def participant_unblind(
    *, participant: Participant, actor: AbstractBaseUser, password: str, reason: str
) -> UnblindingResult:
    """Reveal one participant's allocation in an emergency: authorised, reasoned, signed."""
    require_perm(actor, "biobank.emergency_unblind", "unblind participants")
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise ServiceError(
            "Give the medical reason for unblinding (at least 10 characters).", field="reason"
        )
    if participant.arm_id is None:
        raise ServiceError(f"{participant.pseudonym} has no allocation yet.", field="participant")
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.UNBLINDING, record=participant.code
    )
    record = Unblinding.objects.create(participant=participant, reason=reason, signature=signature)
    event_record(
        item=None,
        participant_id=participant.pk,
        item_code=participant.code,
        item_kind="participant",
        action="emergency_unblinding",
        from_status="",
        to_status="unblinded",
        actor=actor,
        at=signature.signed_at,
        reason=reason,
    )
    arm = participant.arm
    schedule = [
        (s.visit_type.name, Treatment(s.treatment).label)
        for s in ArmSchedule.objects.filter(arm=arm).select_related("visit_type")
    ]
    return UnblindingResult(record, f"{arm} – {arm.name}", schedule)
