from __future__ import annotations

from datetime import date

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


@transaction.atomic
def participant_enroll(
    *,
    study: Study,
    site: Site,
    pseudonym: str,
    enrolled_on: date,
    actor: AbstractBaseUser,
    arm: Arm | None = None,
    weight_kg: float | None = None,
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
