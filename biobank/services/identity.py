"""The chain of identity at the bedside: a dose scan compared with the participant's own
scan, every comparison on record (``IdentityCheck``), a mismatch refused."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.models import Dose, IdentityCheck, IdentityStage


class IdentityMismatch(ServiceError):
    status_code = 409


class WrongDose(ServiceError):
    """The scanned dose label is not the dose the step was asked for."""


def identity_check(
    *,
    dose_scan: str,
    participant_scan: str,
    stage: str,
    actor: AbstractBaseUser,
    expected: Dose | None = None,
) -> tuple[IdentityCheck, Dose | None]:
    """Compare a dose scan with a participant scan; the check comes back unsaved. A step
    taken on one dose (``expected``: the dose of the page or the API path) also needs the
    scanned label to be that dose: a step must never act on a dose other than its own.

    ``identity_confirm`` saves a mismatch at once, in its own transaction (the step is refused, the
    near miss stays on record); a match is saved with the step it allows, in the step's
    transaction, so a step refused for another reason (route, expiry, time order) leaves no
    matched check behind to read as if the dose went ahead.
    """
    from biobank.selectors.scan import scan_resolve

    if stage not in IdentityStage.values:
        raise ServiceError("Unknown identity-check stage.", field="stage")
    dose: Dose | None = None
    field = "participant_scan"
    expected_participant = ""
    matched = False
    try:
        dose = scan_resolve(raw=dose_scan, viewer=actor, kinds={Kind.DOSE}).item
        if expected is not None and dose.pk != expected.pk:
            raise WrongDose(
                f"IDENTITY MISMATCH: the scanned label is {dose.code}, but this step is for "
                f"{expected.code}. Do not give this dose."
            )
        expected_participant = dose.participant.code
        participant = scan_resolve(
            raw=participant_scan, viewer=actor, kinds={Kind.PARTICIPANT}
        ).item
        matched = participant.pk == dose.participant_id
        if matched:
            message = f"{dose.code} matches {participant.pseudonym} ({participant.code})."
        else:
            message = (
                f"IDENTITY MISMATCH: {dose.code} is for {dose.participant.pseudonym} "
                f"({expected_participant}), but the scanned participant is {participant.pseudonym} "
                f"({participant.code}). Do not give this dose."
            )
    except WrongDose as exc:
        message, field = exc.message, "dose_scan"
        dose = expected  # the check is on record against the dose the step was for
    except ServiceError as exc:
        message = f"IDENTITY NOT CONFIRMED: {exc.message}"
    check = IdentityCheck(
        dose=dose,
        stage=stage,
        dose_scan=(dose_scan or "")[:80],
        participant_scan=(participant_scan or "")[:80],
        expected_participant=expected_participant,
        matched=matched,
        message=message[:300],
        checked_by=actor,
        checked_at=timezone.now(),
    )
    check.refused_field = field  # which scan to correct, for the refusal
    return check, dose


def identity_confirm(
    *,
    dose_scan: str,
    participant_scan: str,
    stage: str,
    actor: AbstractBaseUser,
    expected: Dose | None = None,
) -> tuple[IdentityCheck, Dose]:
    """The matched check (unsaved: the step saves it) and its dose; a mismatch is saved and
    refused."""
    check, dose = identity_check(
        dose_scan=dose_scan,
        participant_scan=participant_scan,
        stage=stage,
        actor=actor,
        expected=expected,
    )
    if not check.matched or dose is None:
        with transaction.atomic():
            check.save()
        raise IdentityMismatch(check.message, code="identity_mismatch", field=check.refused_field)
    return check, dose
