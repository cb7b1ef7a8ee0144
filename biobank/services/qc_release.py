"""QC release: a product's QC results signed as meeting the release specification.

Not to be confused with the other three acts called "release": a dose's signed release
(``doses.py``, ``dose_release``), a unit leaving the biobank (``units.py``, which needs this
QC release first) and an aspirate's release from quarantine (the transition table).
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.errors import ConflictError, ServiceError
from biobank.models import (
    Processing,
    ProcessingStatus,
    QcRelease,
    QcTest,
    SignatureMeaning,
)

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
        action="qc_release",
        from_status=processing.status,
        actor=actor,
        at=signature.signed_at,
        reason=str(signature),
    )
    return release
