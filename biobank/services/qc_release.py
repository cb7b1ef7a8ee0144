"""QC release: a product's QC results signed as meeting the release specification.

Not to be confused with the other two acts called "release": a dose's signed release
(``doses.py``, ``dose_release``) and a unit leaving the biobank (``units.py``, which needs
this QC release first). Ending a quarantine is a "lift", for aspirates and units alike.
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
    QcResult,
    QcTest,
    SignatureMeaning,
)

from .audit import event_record
from .signatures import require_perm, signature_sign

REQUIRED_QC = [
    QcTest.STERILITY,
    QcTest.MYCOPLASMA,
    QcTest.ENDOTOXIN,
    QcTest.IMMUNOPHENOTYPE,
    QcTest.VIABILITY,
]
MIN_VIABILITY_PCT = Decimal("70")


def _latest(processing: Processing) -> dict[str, QcResult]:
    """The result that stands for each test. Taken in the order they were recorded: a failure
    stands once recorded, whatever date it carries (a late-entered positive culture is not
    hidden behind an earlier pass); a pass clears a failure only as a retest, dated at or after
    the result that stood."""
    latest: dict[str, QcResult] = {}
    for qc in processing.qc_results.order_by("id"):
        standing = latest.get(qc.test)
        if standing is None or not qc.passed or qc.tested_at >= standing.tested_at:
            latest[qc.test] = qc
    return latest


def _spec_problems(processing: Processing, *, missing: bool) -> list[str]:
    problems = []
    latest = _latest(processing)
    for test in REQUIRED_QC:
        result = latest.get(test)
        if result is None:
            if missing:
                problems.append(f"no {QcTest(test).label} result")
        elif not result.passed:
            problems.append(f"{QcTest(test).label} failed ({result.result})")
    viability = latest.get(QcTest.VIABILITY)
    if viability is not None and viability.passed:
        if viability.value is None:
            problems.append("viability has no value in %")
        elif viability.value < MIN_VIABILITY_PCT:
            shown = f"{viability.value.normalize():f}"  # 61.000 -> 61, 92.500 -> 92.5
            problems.append(f"viability {shown} % is below {MIN_VIABILITY_PCT} %")
    return problems


def qc_failures(processing: Processing) -> list[str]:
    """The required tests whose latest result fails the release specification: before the QC
    release they stop the signature, after it they stop every use of the product."""
    return _spec_problems(processing, missing=False)


def qc_release_problems(processing: Processing) -> list[str]:
    """What stands between a product and its QC release (empty when it may be signed)."""
    problems = []
    if processing.status not in (ProcessingStatus.HARVESTED, ProcessingStatus.CRYOPRESERVED):
        problems.append(f"the product is {processing.get_status_display().lower()}")
    return problems + _spec_problems(processing, missing=True)


def qc_standing_check(processing: Processing, *, what: str, field: str) -> None:
    """Refuse to use ``what`` unless its product's QC release is signed and no result recorded
    since fails the specification."""
    if not QcRelease.objects.filter(processing=processing).exists():
        raise ServiceError(
            f"{what} cannot be used: the QC results of {processing.code} are not signed off.",
            code="qc_not_released",
            field=field,
        )
    failures = qc_failures(processing)
    if failures:
        raise ServiceError(
            f"{what} cannot be used: {processing.code} was QC-released, but "
            f"{'; '.join(failures)}. QA must decide on the product.",
            code="qc_failed",
            field=field,
        )


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
