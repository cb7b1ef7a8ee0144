"""Emergency unblinding: one participant's allocation revealed, authorised, reasoned and signed."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.errors import ServiceError
from biobank.models import ArmSchedule, Participant, SignatureMeaning, Treatment, Unblinding

from .audit import event_record
from .signatures import require_perm, signature_sign, signed_reason


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
    reason = signed_reason(reason, ask="the medical reason for unblinding")
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
