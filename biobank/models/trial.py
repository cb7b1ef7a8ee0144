"""The trial's definition (study, arms, schedule, sites) and its participants and visits."""

from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords


class Treatment(models.TextChoices):
    MSC = "MSC", "Autologous BM-MSC"
    PLACEBO = "PLACEBO", "Placebo (0.9 % NaCl)"


class Study(models.Model):
    code = models.CharField(
        max_length=32, unique=True, help_text="Registry number, e.g. NCT04749667"
    )
    acronym = models.CharField(max_length=32)
    title = models.CharField(max_length=300)
    sponsor = models.CharField(max_length=200)
    emergency_contact = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return f"{self.code} ({self.acronym})"


class Site(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="sites")
    code = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    city = models.CharField(max_length=100)
    is_lab = models.BooleanField(default=False, help_text="The cell lab processes aspirates here")
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"


class Arm(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="arms")
    code = models.CharField(max_length=8)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["study", "code"]
        constraints = [models.UniqueConstraint(fields=["study", "code"], name="arm_unique_code")]

    def __str__(self) -> str:
        return f"Arm {self.code}"


class VisitType(models.Model):
    """A scheduled visit of the study (baseline, month 6...); every visit has an aspiration."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="visit_types")
    code = models.CharField(max_length=16)
    name = models.CharField(max_length=100)
    month = models.PositiveSmallIntegerField(help_text="Months after baseline")
    order = models.PositiveSmallIntegerField()
    has_aspiration = models.BooleanField(default=True)
    has_treatment = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["study", "order"]
        constraints = [
            models.UniqueConstraint(fields=["study", "code"], name="visittype_unique_code"),
            models.UniqueConstraint(fields=["study", "order"], name="visittype_unique_order"),
        ]

    def __str__(self) -> str:
        return self.name


class ArmSchedule(models.Model):
    """The crossover: what an arm receives at a visit. Concealed from blinded users."""

    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="schedule")
    visit_type = models.ForeignKey(VisitType, on_delete=models.PROTECT, related_name="+")
    treatment = models.CharField(max_length=16, choices=Treatment.choices)
    history = HistoricalRecords()

    class Meta:
        ordering = ["arm", "visit_type__order"]
        constraints = [
            models.UniqueConstraint(fields=["arm", "visit_type"], name="armschedule_unique_visit"),
            models.CheckConstraint(
                condition=models.Q(treatment__in=Treatment.values),
                name="armschedule_treatment_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.arm} @ {self.visit_type}: {self.treatment}"


class Participant(models.Model):
    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (PT…)")
    pseudonym = models.CharField(
        max_length=32, unique=True, help_text="Pseudonymous trial code, e.g. SMART-HUS-01"
    )
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="participants")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="participants")
    # Allocation is concealed: only unblinded roles may read it (see biobank.blinding).
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    enrolled_on = models.DateField()
    weight_kg = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(excluded_fields=["arm"])

    class Meta:
        ordering = ["pseudonym"]
        permissions = [
            ("view_allocation", "Can see arm allocation and product identity"),
            ("emergency_unblind", "Can unblind one participant in an emergency"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(weight_kg__isnull=True) | models.Q(weight_kg__gt=0),
                name="participant_weight_positive",
            )
        ]

    def __str__(self) -> str:
        return f"{self.pseudonym} ({self.code})"


class Visit(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="visits")
    visit_type = models.ForeignKey(VisitType, on_delete=models.PROTECT, related_name="visits")
    scheduled_on = models.DateField()
    done_on = models.DateField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["participant", "visit_type__order"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "visit_type"], name="visit_unique_per_participant"
            )
        ]

    def __str__(self) -> str:
        return f"{self.participant.pseudonym} {self.visit_type.code}"
