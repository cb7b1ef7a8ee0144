"""Release for delayed injection: signatures, QC release, doses, identity checks, unblinding."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from .processing import Processing
from .trial import Participant, Treatment, Visit
from .unit import ProductUnit


class SignatureMeaning(models.TextChoices):
    QC_RELEASE = "qc_release", "Approval: product QC results meet the release specification"
    DOSE_RELEASE = "dose_release", "Approval: dose released for administration"
    UNBLINDING = "unblinding", "Emergency unblinding of one participant"
    SHIPMENT_SEAL = "shipment_seal", "Approval: shipment manifest checked and sealed"


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
        constraints = [
            models.CheckConstraint(
                condition=models.Q(meaning__in=SignatureMeaning.values),
                name="signature_meaning_valid",
            )
        ]

    def __str__(self) -> str:
        return (
            f"Signed by {self.signer_name} on {self.signed_at:%Y-%m-%d %H:%M} "
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


class Dose(models.Model):
    """One blinded syringe for a treatment visit: MSC (the participant's own unit) or saline.

    ``treatment``, ``unit`` and the post-thaw figures reveal the arm: they are shown only to
    unblinded roles and kept out of the history table.
    """

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (DS…)")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="doses")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="doses")
    treatment = models.CharField(max_length=16, choices=Treatment.choices)
    unit = models.ForeignKey(
        ProductUnit, on_delete=models.PROTECT, related_name="doses", null=True, blank=True
    )
    status = models.CharField(
        max_length=20, choices=DoseStatus.choices, default=DoseStatus.PREPARED
    )
    status_reason = models.TextField(blank=True)
    route = models.CharField(max_length=30, default="intrathecal")
    volume_ml = models.DecimalField(max_digits=5, decimal_places=1, default=10)
    prepared_at = models.DateTimeField()
    prepared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    release_signature = models.OneToOneField(
        Signature, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    ready_at = models.DateTimeField(null=True, blank=True, help_text="Thawed / syringe filled")
    post_thaw_cell_count = models.BigIntegerField(null=True, blank=True)
    post_thaw_viability_pct = models.DecimalField(
        max_digits=4, decimal_places=1, null=True, blank=True
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    administered_at = models.DateTimeField(null=True, blank=True)
    administered_by = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords(
        excluded_fields=["treatment", "unit", "post_thaw_cell_count", "post_thaw_viability_pct"]
    )

    class Meta:
        ordering = ["visit__scheduled_on", "code"]
        permissions = [
            ("prepare_dose", "Can prepare and thaw doses (cell lab)"),
            ("release_dose", "Can sign the release of a dose (QA)"),
            ("administer_dose", "Can dispatch and record administration of a dose"),
        ]
        constraints = [
            # A cancelled dose stays on record; the visit (and unit) can get a new one.
            models.UniqueConstraint(
                fields=["visit"],
                condition=~models.Q(status="cancelled"),
                name="dose_one_active_per_visit",
            ),
            models.UniqueConstraint(
                fields=["unit"],
                condition=~models.Q(status="cancelled"),
                name="dose_one_active_per_unit",
            ),
            models.CheckConstraint(
                condition=models.Q(treatment=Treatment.MSC, unit__isnull=False)
                | models.Q(treatment=Treatment.PLACEBO, unit__isnull=True),
                name="dose_msc_has_unit_placebo_none",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DoseStatus.values), name="dose_status_valid"
            ),
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
            models.CheckConstraint(
                condition=models.Q(post_thaw_viability_pct__isnull=True)
                | models.Q(post_thaw_viability_pct__gte=0, post_thaw_viability_pct__lte=100),
                name="dose_viability_range",
            ),
        ]

    def __str__(self) -> str:
        return self.code


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
        return f"{self.checked_at:%Y-%m-%d %H:%M} {self.stage} {self.dose_scan}: {verdict}"


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
