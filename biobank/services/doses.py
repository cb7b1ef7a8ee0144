"""Doses: preparation from stored units or a fresh product, release, the deviation signature,
making ready, identity checks, dispatch, administration, cancelling. (The plan, the choice of
units and the due list: ``dose_plan``.)

Blinding: nothing here puts the arm, MSC/saline, unit codes or cell figures into an event, a
history row or a message that a blinded user can receive. Doses for MSC and saline walk the
same steps, get the same plan, the same volume and an expiry computed the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ConflictError, ServiceError, TransitionError
from biobank.identifiers import Kind
from biobank.models import (
    DEFAULT_ROUTE,
    Dose,
    DoseStatus,
    DoseUnit,
    IdentityCheck,
    IdentityStage,
    Processing,
    ProductUnit,
    SignatureMeaning,
    Treatment,
    UnitStatus,
    Visit,
    millions,
)
from biobank.terms import local_minute

from .audit import event_record, history_save
from .dose_plan import (
    dose_fresh_check,
    dose_propose,
    dose_unit_check,
    fresh_expired_refusal,
    treatment_visit_lock,
    unit_expired_refusal,
    visit_plan,
    visit_treatment,
)
from .identifiers import identifier_allocate
from .identity import identity_confirm
from .lifecycle import transition_apply, transition_check
from .qc_release import MIN_VIABILITY_PCT
from .signatures import require_perm, signature_sign, signed_reason
from .time_order import check_time, time_order_check
from .units import unit_transition

# --- preparation and release -----------------------------------------------------------------


@transaction.atomic
def dose_prepare(
    *,
    visit: Visit,
    actor: AbstractBaseUser,
    units: Sequence[ProductUnit] | None = None,
    processing: Processing | None = None,
) -> Dose:
    """Plan the dose of a treatment visit from its recorded weight; for MSC, reserve the
    participant's own units (or fresh product). Without a choice, the suggestion is used."""
    require_perm(actor, "biobank.prepare_dose", "prepare doses")
    visit = treatment_visit_lock(visit, "there is no dose to prepare")
    if Dose.objects.active().filter(visit=visit).exists():
        raise ConflictError(f"{visit} already has a dose.", code="duplicate", field="visit")
    plan = visit_plan(visit)
    treatment = visit_treatment(visit)
    now = timezone.now()
    chosen: list[ProductUnit] = []
    if treatment == Treatment.PLACEBO:
        if units or processing is not None:
            raise ServiceError(
                "This visit's dose is not made from a product.", code="placebo_visit", field="units"
            )
    else:
        if units and processing is not None:
            raise ServiceError(
                "Choose stored units or a fresh product, not both.", field="processing"
            )
        if not units and processing is None:
            proposal = dose_propose(visit=visit, at=now)
            units, processing = proposal.units, proposal.processing
        if processing is not None:
            processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
            dose_fresh_check(processing=processing, visit=visit, at=now)
        else:
            codes = [u.code for u in units or []]
            duplicates = sorted({c for c in codes if codes.count(c) > 1})
            if duplicates:
                raise ServiceError(
                    f"{', '.join(duplicates)} is listed twice.", code="duplicate", field="units"
                )
            chosen = list(
                ProductUnit.objects.select_for_update(of=("self",))
                .select_related("participant__study")
                .filter(pk__in=[u.pk for u in units or []])
                .order_by("created_at", "code")
            )
            for unit in chosen:
                dose_unit_check(unit=unit, visit=visit, at=now)
    dose = Dose.objects.create(
        code=identifier_allocate(kind=Kind.DOSE),
        participant=visit.participant,
        visit=visit,
        treatment=treatment,
        processing=processing,
        volume_ml=visit.participant.study.dose_volume_ml,
        weight_kg=plan.weight_kg,
        target_cells=plan.target_cells,
        window_min_cells=plan.min_cells,
        window_max_cells=plan.max_window_cells,
        prepared_at=now,
        prepared_by=actor,
    )
    DoseUnit.objects.bulk_create([DoseUnit(dose=dose, unit=unit) for unit in chosen])
    # Same shape for MSC and saline: no unit code, no treatment, no figures.
    event_record(item=dose, action="prepare", actor=actor, at=now)
    return dose


def _dose_units(dose: Dose) -> list[DoseUnit]:
    return list(
        DoseUnit.objects.filter(dose=dose, active=True)
        .select_related("unit__participant__study")
        .order_by("unit__created_at", "unit__code")
    )


def _locked(dose: Dose) -> Dose:
    locked = (
        Dose.objects.select_for_update(of=("self",))
        .select_related("participant__study", "processing__participant__study", "visit")
        .get(pk=dose.pk)
    )
    _units_lock(locked)
    return locked


def _units_lock(dose: Dose) -> None:
    """Lock the dose's units at once, in pk order, before any custody event: an event takes
    the audit chain's head until commit, so a unit locked after it would deadlock with a
    step (a move) that holds the unit and waits for the head."""
    units = ProductUnit.objects.select_for_update(of=("self",))
    units = units.filter(dose_links__dose=dose, dose_links__active=True).order_by("pk")
    list(units.values_list("pk", flat=True))


def _product_expiry_check(dose: Dose, links: list[DoseUnit], at: dt.datetime, verb: str) -> None:
    """Refuse a step on a dose whose product (its units, or its fresh product) has expired."""
    for link in links:
        if link.unit.is_expired(at):
            raise unit_expired_refusal(link.unit, "dose", f": the dose cannot be {verb}")
    if dose.processing is not None and dose.processing.fresh_is_expired(at):
        raise fresh_expired_refusal(dose.processing, "dose", f": the dose cannot be {verb}")


@transaction.atomic
def dose_release(*, dose: Dose, actor: AbstractBaseUser, password: str) -> Dose:
    """QA signs the dose's release; an MSC dose releases its units from the biobank."""
    require_perm(actor, "biobank.release_dose", "release doses")
    # Checked before the units are released and the signature is asked for.
    locked = _locked(dose)
    transition_check(kind="dose", action="release", item=locked)
    links = _dose_units(locked)
    _product_expiry_check(locked, links, timezone.now(), "released")
    for link in links:
        unit_transition(unit=link.unit, action="release", actor=actor, reason=f"for {dose.code}")
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.DOSE_RELEASE, record=dose.code
    )
    transition_apply(
        item=dose,
        action="release",
        actor=actor,
        at=signature.signed_at,
        changes={"release_signature": signature},
    )
    return dose


@transaction.atomic
def dose_deviation_sign(*, dose: Dose, actor: AbstractBaseUser, password: str, reason: str) -> Dose:
    """QA documents a deviation: the dose may be made ready outside the acceptance window."""
    require_perm(actor, "biobank.release_dose", "sign dose deviations")
    locked = _locked(dose)
    reason = signed_reason(reason, ask="the reason for the deviation")
    if locked.treatment != Treatment.MSC:
        raise ServiceError(
            f"{locked.code} has no cell count: there is no window to deviate from.",
            code="no_window",
            field="dose",
        )
    if locked.status not in (DoseStatus.PREPARED, DoseStatus.RELEASED):
        raise TransitionError(
            f"{locked.code} is {locked.get_status_display().lower()}: a deviation is signed "
            "before the dose is made ready.",
            code="invalid_transition",
            field="status",
        )
    if locked.deviation_signature_id is not None:
        raise ConflictError(
            f"{locked.code} already has a signed deviation.", code="already_signed", field="dose"
        )
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.DOSE_DEVIATION, record=dose.code
    )
    # No history row: a "deviation" entry in the dose's history would tell a blinded reader
    # that the dose holds cells. The signature (signer, time, meaning, dose ID) is the record.
    Dose.objects.filter(pk=locked.pk).update(deviation_signature=signature, deviation_reason=reason)
    dose.deviation_signature, dose.deviation_reason = signature, reason
    return dose


@dataclass(frozen=True)
class UnitCount:
    """The post-thaw count and viability of one unit drawn into a dose."""

    unit: str
    post_thaw_cell_count: int | None
    post_thaw_viability_pct: Decimal | None


def _figures(
    count: int | None, viability: Decimal | None, what: str, field: str
) -> tuple[int, Decimal]:
    if count is None or int(count) <= 0:
        raise ServiceError(
            f"The cell count of {what} is required.", code="count_required", field=field
        )
    if viability is None:
        raise ServiceError(
            f"The viability of {what} is required.", code="viability_required", field=field
        )
    pct = Decimal(str(viability))
    # NaN is not below or above anything (and sNaN cannot even be compared): not a percentage.
    if not pct.is_finite() or not (Decimal(0) <= pct <= Decimal(100)):
        raise ServiceError(f"Viability must be between 0 and 100 %, not {pct}.", field=field)
    if pct < MIN_VIABILITY_PCT:
        raise ServiceError(
            f"The viability of {what}, {pct} %, is below {MIN_VIABILITY_PCT} %: it cannot be used.",
            code="viability_too_low",
            field=field,
        )
    return int(count), pct


def _viable(count: int, pct: Decimal) -> int:
    return int(count * pct / 100)


def outlive_check(
    source: str,
    keeps: dt.datetime | None,
    ready_at: dt.datetime,
    expires_at: dt.datetime,
    *,
    code: str,
) -> None:
    """A syringe may not outlive what it is made from (a fresh product, or each unit); a
    product not yet harvested keeps for no time at all."""
    if keeps is None or expires_at > keeps:
        raise ServiceError(
            f"{source} keeps until {local_minute(keeps) if keeps else '–'}; a dose made ready "
            f"at {local_minute(ready_at)} would expire after it ({local_minute(expires_at)}).",
            code=code,
            field="ready_at",
        )


@transaction.atomic
def dose_make_ready(
    *,
    dose: Dose,
    actor: AbstractBaseUser,
    ready_at: dt.datetime | None = None,
    post_thaw_cell_count: int | None = None,
    post_thaw_viability_pct: Decimal | None = None,
    unit_counts: Sequence[UnitCount] | None = None,
    saline_lot: str = "",
) -> Dose:
    """Thaw the units (or take the fresh product) or fill saline into the syringe.

    The viable cells given (post-thaw count × viability, summed over the units) must fall in
    the plan's window unless QA signed a deviation. The expiry is the trial's syringe shelf
    life after ``ready_at``, computed the same way for MSC and saline.
    """
    require_perm(actor, "biobank.prepare_dose", "prepare doses")
    ready_at = check_time(ready_at, field="ready_at")
    locked = _locked(dose)
    # Refused before anything is thawed (transition_apply checks again at the end).
    transition_check(kind="dose", action="make_ready", item=locked)
    time_order_check(item=locked, kind="dose", action="make_ready", at=ready_at, field="ready_at")
    study = locked.participant.study
    expires_at = ready_at + study.dose_shelf_life
    changes: dict[str, object] = {"ready_at": ready_at, "expires_at": expires_at}
    links = _dose_units(locked)
    if locked.treatment == Treatment.PLACEBO:
        lot = (saline_lot or "").strip()
        if not lot:
            raise ServiceError(
                "Record the lot of the 0.9 % NaCl.", code="saline_lot_required", field="saline_lot"
            )
        if post_thaw_cell_count is not None or unit_counts:
            raise ServiceError("A saline dose has no cell count.", field="post_thaw_cell_count")
        changes["saline_lot"] = lot[:40]
        transition_apply(item=dose, action="make_ready", actor=actor, at=ready_at, changes=changes)
        return dose
    if saline_lot:
        raise ServiceError("A cell dose has no saline lot.", field="saline_lot")
    figures: list[tuple[DoseUnit | None, int, Decimal]] = []
    if locked.processing is not None:
        product = locked.processing
        outlive_check(
            f"Fresh product {product.code}", product.fresh_expires_at(), ready_at, expires_at,
            code="fresh_expired",
        )  # fmt: skip
        count, pct = _figures(
            post_thaw_cell_count, post_thaw_viability_pct, product.code, "post_thaw_cell_count"
        )
        harvested = product.harvest_cell_count or 0
        # Locked: two fresh doses, or a dose and a fill, must not take the same cells.
        Processing.objects.select_for_update(of=("self",)).filter(pk=product.pk).exists()
        left = product.cells_left()
        if count > left:
            raise ServiceError(
                f"{millions(count)} cells is more than the {millions(left)} ({left:,}) left of "
                f"the {millions(harvested)} harvested in {product.code}.",
                code="count_exceeds_product",
                field="post_thaw_cell_count",
            )
        figures.append((None, count, pct))
    else:
        given = {(c.unit or "").strip().upper(): c for c in unit_counts or []}
        if not given and len(links) == 1 and post_thaw_cell_count is not None:
            given = {
                links[0].unit.code: UnitCount(
                    links[0].unit.code, post_thaw_cell_count, post_thaw_viability_pct
                )
            }
        wanted = {link.unit.code for link in links}
        if set(given) != wanted:
            raise ServiceError(
                "Give the post-thaw count and viability of each unit of this dose: "
                f"{', '.join(sorted(wanted))}.",
                code="counts_required",
                field="units",
            )
        for link in links:
            entry = given[link.unit.code]
            count, pct = _figures(
                entry.post_thaw_cell_count, entry.post_thaw_viability_pct, link.unit.code, "units"
            )
            if count > link.unit.cell_number:
                raise ServiceError(
                    f"{millions(count)} post-thaw cells is more than the "
                    f"{millions(link.unit.cell_number)} frozen in {link.unit.code}.",
                    code="count_exceeds_unit",
                    field="units",
                )
            if link.unit.is_expired(ready_at):
                raise unit_expired_refusal(link.unit, "units")
            outlive_check(
                link.unit.code, link.unit.expires_at(), ready_at, expires_at, code="unit_expired"
            )
            figures.append((link, count, pct))
    total = sum(count for _, count, _ in figures)
    viable = sum(_viable(count, pct) for _, count, pct in figures)
    low, high = locked.window_min_cells, locked.window_max_cells
    if (
        low is not None
        and high is not None
        and not (low <= viable <= high)
        and locked.deviation_signature_id is None
    ):
        raise ServiceError(
            f"{locked.code}: {millions(viable)} viable cells ({viable:,}) are outside the accepted "
            f"{millions(low)}–{millions(high)} ({low:,}–{high:,}; target "
            f"{millions(locked.target_cells or 0)} for {locked.weight_kg} kg). Count again, "
            "change the units, or have QA sign a documented deviation.",
            code="dose_out_of_window",
            field="post_thaw_cell_count",
        )
    cap = study.dose_max_cells
    if viable > cap:
        # The trial's maximum holds even under a signed deviation: a deviation widens the
        # window, never the dose limit.
        raise ServiceError(
            f"{locked.code}: {millions(viable)} viable cells ({viable:,}) are above the trial's "
            f"maximum dose of {millions(cap)} ({cap:,}), with or without a deviation.",
            code="dose_above_maximum",
            field="post_thaw_cell_count",
        )
    changes.update(
        post_thaw_cell_count=total,
        post_thaw_viability_pct=(Decimal(viable) * 100 / Decimal(total)).quantize(
            Decimal("0.1"), rounding=ROUND_HALF_UP
        ),
        viable_cells=viable,
    )
    for link, count, pct in figures:
        if link is None:
            continue
        link.post_thaw_cell_count, link.post_thaw_viability_pct = count, pct
        link.save(update_fields=["post_thaw_cell_count", "post_thaw_viability_pct"])
        unit_transition(unit=link.unit, action="thaw", actor=actor, at=ready_at)
    transition_apply(item=dose, action="make_ready", actor=actor, at=ready_at, changes=changes)
    return dose


def _refuse_expired(dose: Dose, when: dt.datetime) -> None:
    if dose.is_expired(when):
        assert dose.expires_at is not None
        raise ServiceError(
            f"{dose.code} EXPIRED at {local_minute(dose.expires_at)}: "
            "it must not be dispatched or administered.",
            code="expired",
            field="dose",
        )


def _bedside(
    dose_scan: str,
    participant_scan: str,
    actor: AbstractBaseUser,
    at: dt.datetime | None,
    stage: str,
    expected: Dose | None,
) -> tuple[dt.datetime, IdentityCheck, Dose]:
    """What dispatch and administration begin with: the permission, the time, and the dose
    scan matched with the participant's (the match unsaved: the step saves it) and, for a
    step asked on one dose, with that dose."""
    if stage == IdentityStage.DISPATCH:
        require_perm(actor, "biobank.dispatch_dose", "dispatch doses")
    else:
        require_perm(actor, "biobank.administer_dose", "record administrations")
    when = check_time(at)
    check, dose = identity_confirm(
        dose_scan=dose_scan,
        participant_scan=participant_scan,
        stage=stage,
        actor=actor,
        expected=expected,
    )
    return when, check, dose


def dose_dispatch(
    *,
    dose_scan: str,
    participant_scan: str,
    actor: AbstractBaseUser,
    at: dt.datetime | None = None,
    dose: Dose | None = None,
) -> Dose:
    """Before the dose leaves the lab: identity check, expiry check, then dispatch.

    ``at`` is when it happened (entered afterwards): never in the future, never before the
    dose's previous step. ``dose``: the dose the step was asked on (a page or an API path),
    which the scanned label must be; scan-first pages pass none.
    """
    stage = IdentityStage.DISPATCH
    when, check, dose = _bedside(dose_scan, participant_scan, actor, at, stage, dose)
    with transaction.atomic():
        _refuse_expired(dose, when)
        transition_apply(
            item=dose, action="dispatch", actor=actor, at=when, changes={"dispatched_at": when}
        )
        check.save()
    return dose


def dose_administer(
    *,
    dose_scan: str,
    participant_scan: str,
    actor: AbstractBaseUser,
    administered_by: str = "",
    route: str = DEFAULT_ROUTE,
    at: dt.datetime | None = None,
    dose: Dose | None = None,
) -> Dose:
    """At the bedside: identity check again, expiry check, then record the administration
    (``dose``: as for ``dose_dispatch``)."""
    stage = IdentityStage.ADMINISTRATION
    when, check, dose = _bedside(dose_scan, participant_scan, actor, at, stage, dose)
    if route != dose.route:
        raise ServiceError(f"This dose is for {dose.route} use only.", field="route")
    with transaction.atomic():
        _units_lock(dose)
        _refuse_expired(dose, when)
        by = (administered_by or "").strip() or actor.get_username()
        transition_apply(
            item=dose,
            action="administer",
            actor=actor,
            at=when,
            changes={"administered_at": when, "administered_by": by[:200]},
            data={"route": route, "administered_by": by[:200]},
        )
        for link in _dose_units(dose):
            unit_transition(unit=link.unit, action="administer", actor=actor, at=when)
        visit = dose.visit
        if visit.done_on is None:
            visit.done_on = timezone.localdate(when)
            history_save(visit, actor=actor, reason="dose administered", update_fields=["done_on"])
        check.save()
    return dose


# What a cancelled dose does with each of its units: a released one goes back to stock, a
# thawed one is discarded (it cannot be frozen again); others are not the dose's to move.
_UNIT_ON_CANCEL = {
    UnitStatus.RELEASED: ("return_to_stock", "{dose} cancelled: {reason}"),
    UnitStatus.THAWED: ("discard", "thawed for {dose}, which was cancelled: {reason}"),
}


@transaction.atomic
def dose_cancel(*, dose: Dose, actor: AbstractBaseUser, reason: str) -> Dose:
    """Cancel a dose; released units go back to stock, thawed ones are discarded."""
    require_perm(actor, "biobank.prepare_dose", "cancel doses")
    return dose_cancel_apply(dose=dose, actor=actor, reason=reason)


@transaction.atomic
def dose_cancel_apply(
    *,
    dose: Dose,
    actor: AbstractBaseUser,
    reason: str,
    at: dt.datetime | None = None,
    settled: frozenset[int] = frozenset(),
    **event: Any,
) -> Dose:
    """Cancel a dose and settle its units, whoever cancels it: the lab (``dose_cancel``, which
    checks the permission) or a shipment that lost or quarantined it (``event``: where the
    custody event happened). The units are freed of the dose either way; those in ``settled``
    (pks) the caller settles itself (a unit lost in transit is written off)."""
    _units_lock(dose)
    transition_apply(item=dose, action="cancel", actor=actor, at=at, reason=reason, **event)
    links = _dose_units(dose)
    # Freed first: a unit reserved by a live dose takes no step of its own (the table's check).
    DoseUnit.objects.filter(dose=dose).update(active=False)
    for link in links:
        if link.unit_id in settled:
            continue
        step = _UNIT_ON_CANCEL.get(link.unit.status)
        if step is not None:
            action, why = step
            unit_transition(
                unit=link.unit,
                action=action,
                actor=actor,
                at=at,
                reason=why.format(dose=dose.code, reason=reason),
            )
    return dose
