from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.errors import ConflictError, Forbidden, ServiceError
from biobank.identifiers import Kind
from biobank.models import Arm, Participant, Site, Study, Visit
from biobank.visibility import can_see_allocation

from .audit import history_save
from .identifiers import identifier_allocate
from .randomisation import (
    randomisation_entry_next,
    randomisation_entry_use,
    randomisation_in_use,
)
from .time_order import check_date


def weight_check(*, study: Study, weight_kg: object, field: str = "weight_kg") -> Decimal:
    """A body weight in kg to one decimal, within the trial's plausible range (the same rule
    at enrolment and at a treatment visit, where the dose is computed from it)."""
    try:
        weight = Decimal(str(weight_kg)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    except ArithmeticError as exc:
        raise ServiceError("The weight must be a number of kg.", field=field) from exc
    if not (study.weight_min_kg <= weight <= study.weight_max_kg):
        raise ServiceError(
            f"A body weight of {weight} kg is not plausible: the trial accepts "
            f"{study.weight_min_kg}–{study.weight_max_kg} kg.",
            code="weight_out_of_range",
            field=field,
        )
    return weight


@transaction.atomic
def participant_enroll(
    *,
    study: Study,
    site: Site,
    pseudonym: str,
    enrolled_on: date,
    actor: AbstractBaseUser,
    arm: Arm | None = None,
    weight_kg: Decimal | float | None = None,
) -> Participant:
    """Enrol a participant and schedule one visit per visit type of the study.

    Where the study has a randomisation list, the arm is the list's next entry for the
    participant's stratum and may not be given by hand; ``arm`` is for studies without one.
    """
    pseudonym = pseudonym.strip().upper()
    if not pseudonym:
        raise ServiceError("A pseudonym is required.", code="required", field="pseudonym")
    if site.study_id != study.pk:
        raise ServiceError(f"Site {site.code} is not a site of {study.code}.", field="site")
    check_date(enrolled_on, field="enrolled_on")
    if weight_kg is not None:
        weight_kg = weight_check(study=study, weight_kg=weight_kg)
    if arm is not None and not can_see_allocation(actor):
        raise Forbidden(
            "Only unblinded roles may record an allocation.", code="permission_denied", field="arm"
        )
    if arm is not None and arm.study_id != study.pk:
        raise ServiceError("The arm belongs to another study.", field="arm")
    if Participant.objects.filter(pseudonym=pseudonym).exists():
        raise ConflictError(
            f"Participant {pseudonym} already exists.", code="duplicate", field="pseudonym"
        )
    entry = None
    if randomisation_in_use(study=study):
        if arm is not None:
            raise ServiceError(
                f"{study.code} allocates from its randomisation list: the arm cannot be chosen "
                "by hand.",
                code="arm_from_list",
                field="arm",
            )
        entry = randomisation_entry_next(study=study, site=site)
        arm = entry.arm
    participant = Participant(
        code=identifier_allocate(kind=Kind.PARTICIPANT),
        pseudonym=pseudonym,
        study=study,
        site=site,
        arm=arm,
        enrolled_on=enrolled_on,
        weight_kg=weight_kg,
    )
    history_save(
        participant,
        actor=actor,
        reason="enrolled",
        conflict=ConflictError(
            f"Participant {pseudonym} already exists.", code="duplicate", field="pseudonym"
        ),
    )
    if entry is not None:
        randomisation_entry_use(entry=entry, participant=participant)
    for visit_type in study.visit_types.all():
        visit = Visit(
            participant=participant,
            visit_type=visit_type,
            scheduled_on=enrolled_on + relativedelta(months=visit_type.month),
        )
        history_save(visit, actor=actor, reason="scheduled at enrolment")
    return participant
