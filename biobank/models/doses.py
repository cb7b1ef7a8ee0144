"""Doses for delayed injection, with what they rest on: signatures, QC release, identity
checks, unblinding."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from biobank.terms import local_minute

from .checks import choice_check, positive_check, range_check
from .processing import Processing
from .trial import DosePlan, Participant, Treatment, Visit, millions
from .unit import ProductUnit


class SignatureMeaning(models.TextChoices):
    QC_RELEASE = "qc_release", "Approval: product QC results meet the release specification"
    DOSE_RELEASE = "dose_release", "Approval: dose released for administration"
    DOSE_DEVIATION = "dose_deviation", "Approval: documented deviation from the dose window"
    UNBLINDING = "unblinding", "Emergency unblinding of one participant"
    SHIPMENT_SEAL = "shipment_seal", "Approval: shipment manifest checked and sealed"
    QUARANTINE_LIFT = "quarantine_lift", "Approval: quarantine lifted"


class Signature(models.Model):
    """An electronic signature (21 CFR 11.50): who, when, and what the signature means.

    Made only after the signer re-entered their password (11.200). Never changed.
    """

    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_name = models.CharField(max_length=200, help_text="Printed name at signing time")
    signed_at = models.DateTimeField()
    meaning = models.CharField(max_length=20, choices=SignatureMeaning.choices)
    record = models.CharField(max_length=32, help_text="ID of the signed record")

    class Meta:
        ordering = ["-signed_at"]
        constraints = [choice_check("meaning", SignatureMeaning, name="signature_meaning_valid")]

    def __str__(self) -> str:
        return (
            f"Signed by {self.signer_name} on {local_minute(self.signed_at)} "
            f"— {self.get_meaning_display()}"
        )


class QcRelease(models.Model):
    """The signed approval of one product's QC results; units can be released only after it."""

    processing = models.OneToOneField(
        Processing, on_delete=models.PROTECT, related_name="qc_release"
    )
    signature = models.OneToOneField(Signature, on_delete=models.PROTECT, related_name="+")
    comment = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"QC release of {self.processing.code}"


class DoseStatus(models.TextChoices):
    PREPARED = "prepared", "Planned"
    RELEASED = "released", "Released"
    READY = "ready", "Thawed/prepared, in syringe"
    DISPATCHED = "dispatched", "Dispatched to clinic"
    ADMINISTERED = "administered", "Administered"
    CANCELLED = "cancelled", "Cancelled"


# How a dose is given unless the administration records otherwise (the trial's route).
DEFAULT_ROUTE = "intrathecal"


def dose_active_q() -> models.Q:
    """The one meaning of an active dose: any dose not cancelled. A cancelled dose stays on
    record; its visit (and product) can get a new one. Used by the constraints below and by
    ``Dose.objects.active()``."""
    return ~models.Q(status=DoseStatus.CANCELLED)


class DoseQuerySet(models.QuerySet["Dose"]):
    def active(self) -> DoseQuerySet:
        """Doses that are not cancelled (see ``dose_active_q``)."""
        return self.filter(dose_active_q())


class DoseExpiry(models.TextChoices):
    """What the expiry rule says of a dose at a given time (``Dose.expiry_state``)."""

    NONE = "", "No expiry applies"
    VALID = "valid", "Valid"
    EXPIRED = "expired", "Expired"


# The fields of a dose that tell MSC from saline: kept out of its history, hidden from blinded
# roles by the visibility policy. ``status_reason`` too: the lab's reason for cancelling a dose
# may say what was in the syringe (the custody event keeps it for the unblinded).
PRODUCT_FIELDS = (
    "status_reason",
    "treatment",
    "processing",
    "post_thaw_cell_count",
    "post_thaw_viability_pct",
    "viable_cells",
    "saline_lot",
    "deviation_signature",
    "deviation_reason",
)


class Dose(models.Model):
    """One blinded syringe for a treatment visit: MSC or saline.

    MSC comes from the participant's own units (one or more, ``DoseUnit``) or fresh from a
    harvested product (``processing``). The plan (weight, target, window), the volume and the
    expiry are computed the same way for MSC and saline. ``treatment``, the product links,
    the counted figures, the saline lot and any deviation reveal the arm: they are shown only
    to unblinded roles and kept out of the history table.
    """

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (DS…)")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="doses")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="doses")
    treatment = models.CharField(max_length=16, choices=Treatment.choices)
    units = models.ManyToManyField(
        ProductUnit, through="DoseUnit", related_name="doses", blank=True
    )
    processing = models.ForeignKey(
        Processing,
        on_delete=models.PROTECT,
        related_name="fresh_doses",
        null=True,
        blank=True,
        help_text="Fresh product (never frozen) this dose is drawn from",
    )
    status = models.CharField(
        max_length=20, choices=DoseStatus.choices, default=DoseStatus.PREPARED
    )
    status_reason = models.TextField(blank=True)
    route = models.CharField(max_length=30, default=DEFAULT_ROUTE)
    volume_ml = models.DecimalField(max_digits=5, decimal_places=1, default=10)
    # The plan, fixed when the dose is prepared (from the visit's weight and trial settings).
    weight_kg = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    target_cells = models.BigIntegerField(null=True, blank=True)
    window_min_cells = models.BigIntegerField(null=True, blank=True)
    window_max_cells = models.BigIntegerField(null=True, blank=True)
    prepared_at = models.DateTimeField()
    prepared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    release_signature = models.OneToOneField(
        Signature, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    ready_at = models.DateTimeField(null=True, blank=True, help_text="Thawed / syringe filled")
    post_thaw_cell_count = models.BigIntegerField(
        null=True, blank=True, help_text="Cells in the syringe (thawed units or fresh product)"
    )
    post_thaw_viability_pct = models.DecimalField(
        max_digits=4, decimal_places=1, null=True, blank=True
    )
    viable_cells = models.BigIntegerField(
        null=True, blank=True, help_text="Viable cells given: count × viability"
    )
    saline_lot = models.CharField(max_length=40, blank=True, help_text="0.9 % NaCl lot (placebo)")
    deviation_signature = models.OneToOneField(
        Signature, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    deviation_reason = models.TextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    administered_at = models.DateTimeField(null=True, blank=True)
    administered_by = models.CharField(max_length=200, blank=True)
    # History rows are read by blinded roles: what tells the product is never in them.
    history = HistoricalRecords(excluded_fields=list(PRODUCT_FIELDS))

    objects = DoseQuerySet.as_manager()

    class Meta:
        ordering = ["visit__scheduled_on", "code"]
        permissions = [
            ("prepare_dose", "Can prepare and thaw doses (cell lab)"),
            ("release_dose", "Can sign the release of a dose (QA)"),
            ("dispatch_dose", "Can check a dose against its participant and dispatch it"),
            ("administer_dose", "Can record the administration of a dose"),
        ]
        constraints = [
            # A cancelled dose stays on record; the visit (and product) can get a new one.
            models.UniqueConstraint(
                fields=["visit"],
                condition=dose_active_q(),
                name="dose_one_active_per_visit",
            ),
            models.UniqueConstraint(
                fields=["processing"],
                condition=dose_active_q(),
                name="dose_one_active_per_fresh_product",
            ),
            models.CheckConstraint(
                condition=models.Q(treatment=Treatment.MSC)
                | models.Q(treatment=Treatment.PLACEBO, processing__isnull=True),
                name="dose_placebo_has_no_product",
            ),
            choice_check("status", DoseStatus, name="dose_status_valid"),
            models.CheckConstraint(
                condition=models.Q(status__in=["prepared", "cancelled"])
                | models.Q(release_signature__isnull=False),
                name="dose_released_is_signed",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["prepared", "released", "cancelled"])
                | models.Q(expires_at__isnull=False, ready_at__isnull=False),
                name="dose_ready_has_expiry",
            ),
            range_check(
                "post_thaw_viability_pct", 0, 100, name="dose_viability_range", optional=True
            ),
            models.CheckConstraint(
                condition=models.Q(deviation_signature__isnull=True)
                | ~models.Q(deviation_reason=""),
                name="dose_deviation_has_reason",
            ),
            models.CheckConstraint(
                condition=models.Q(target_cells__isnull=True)
                | models.Q(
                    target_cells__gt=0,
                    window_min_cells__lte=models.F("target_cells"),
                    window_max_cells__gte=models.F("target_cells"),
                ),
                name="dose_plan_window_around_target",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def expiry_state(self, at: dt.datetime) -> DoseExpiry:
        """The one expiry rule: unusable from ``expires_at`` on, until it is given or cancelled.

        No expiry applies before the dose is made ready (no ``expires_at``), nor once it is
        administered (it was given before it expired: dispatch and administration refuse an
        expired one) or cancelled (no longer a dose to use).
        """
        if self.expires_at is None or self.status in (
            DoseStatus.ADMINISTERED,
            DoseStatus.CANCELLED,
        ):
            return DoseExpiry.NONE
        return DoseExpiry.EXPIRED if at >= self.expires_at else DoseExpiry.VALID

    def is_expired(self, at: dt.datetime) -> bool:
        return self.expiry_state(at) == DoseExpiry.EXPIRED

    def plan(self) -> DosePlan | None:
        """The plan as fixed at preparation (the same figures for MSC and saline)."""
        if self.target_cells is None or self.weight_kg is None:
            return None
        return self.participant.study.dose_plan(self.weight_kg)

    def plan_display(self) -> str:
        if self.target_cells is None:
            return "no plan (prepared before dosing by weight)"
        return (
            f"{self.weight_kg} kg: target {millions(self.target_cells)} viable cells, accepted "
            f"{millions(self.window_min_cells or 0)}–{millions(self.window_max_cells or 0)}"
        )


class DoseUnit(models.Model):
    """One stored unit drawn into a dose, with its post-thaw count. Concealed (reveals MSC)."""

    dose = models.ForeignKey(Dose, on_delete=models.PROTECT, related_name="dose_units")
    unit = models.ForeignKey(ProductUnit, on_delete=models.PROTECT, related_name="dose_links")
    # The link's copy of ``dose_active_q`` (a constraint cannot read the dose's status): True
    # while the dose is active, set False only when the dose is cancelled.
    active = models.BooleanField(default=True, help_text="False once the dose is cancelled")
    post_thaw_cell_count = models.BigIntegerField(null=True, blank=True)
    post_thaw_viability_pct = models.DecimalField(
        max_digits=4, decimal_places=1, null=True, blank=True
    )

    class Meta:
        ordering = ["dose", "unit__created_at", "unit__code"]
        constraints = [
            models.UniqueConstraint(fields=["dose", "unit"], name="doseunit_unique"),
            # A unit belongs to at most one dose that is not cancelled.
            models.UniqueConstraint(
                fields=["unit"], condition=models.Q(active=True), name="doseunit_one_active_dose"
            ),
            range_check(
                "post_thaw_viability_pct", 0, 100, name="doseunit_viability_range", optional=True
            ),
            positive_check("post_thaw_cell_count", name="doseunit_count_positive", optional=True),
        ]

    def __str__(self) -> str:
        return f"{self.dose.code} ← {self.unit.code}"

    @property
    def viable_cells(self) -> int | None:
        if self.post_thaw_cell_count is None or self.post_thaw_viability_pct is None:
            return None
        return int(self.post_thaw_cell_count * self.post_thaw_viability_pct / 100)


class IdentityStage(models.TextChoices):
    DISPATCH = "dispatch", "Before dispatch (lab)"
    ADMINISTRATION = "administration", "At the bedside"


class IdentityCheck(models.Model):
    """Every chain-of-identity check, matched or not. Mismatches are kept and shown loudly."""

    dose = models.ForeignKey(
        Dose, on_delete=models.PROTECT, related_name="identity_checks", null=True
    )
    stage = models.CharField(max_length=20, choices=IdentityStage.choices)
    dose_scan = models.CharField(max_length=80)
    participant_scan = models.CharField(max_length=80)
    expected_participant = models.CharField(max_length=16, blank=True)
    matched = models.BooleanField()
    message = models.CharField(max_length=300)
    checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["-checked_at", "-id"]

    def __str__(self) -> str:
        verdict = "match" if self.matched else "MISMATCH"
        return f"{local_minute(self.checked_at)} {self.stage} {self.dose_scan}: {verdict}"


class Unblinding(models.Model):
    """An emergency unblinding of one participant (ICH GCP 5.13.4): reason, who, when, signed."""

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="unblindings"
    )
    reason = models.TextField()
    signature = models.OneToOneField(Signature, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-signature__signed_at"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(reason=""), name="unblinding_needs_reason")
        ]

    def __str__(self) -> str:
        return f"Unblinding of {self.participant.pseudonym}"
