"""The trial's definition (study, arms, schedule, sites) and its participants and visits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from biobank.terms import millions

from .checks import choice_check, positive_check


@dataclass(frozen=True)
class DosePlan:
    """The dose for one body weight under the trial's settings (all figures in cells)."""

    weight_kg: Decimal
    cells_per_kg: int
    max_cells: int
    window_pct: Decimal
    target_cells: int
    min_cells: int
    max_window_cells: int

    @property
    def capped(self) -> bool:
        return self.target_cells < Decimal(self.cells_per_kg) * self.weight_kg

    def accepts(self, viable_cells: int) -> bool:
        return self.min_cells <= viable_cells <= self.max_window_cells

    def summary(self) -> str:
        cap = f", capped at {millions(self.max_cells)}" if self.capped else ""
        return (
            f"{self.weight_kg} kg × {millions(self.cells_per_kg)}/kg = target "
            f"{millions(self.target_cells)} cells{cap}; accepted "
            f"{millions(self.min_cells)}–{millions(self.max_window_cells)} "
            f"(±{format(self.window_pct.normalize(), 'f')} %)"
        )


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
    # Trial settings for dosing (seeds/trial.json): the dose is a fact of the protocol.
    dose_cells_per_kg = models.PositiveBigIntegerField(
        default=1_000_000, help_text="Target viable cells per kg body weight"
    )
    dose_max_cells = models.PositiveBigIntegerField(
        default=100_000_000, help_text="At most this many viable cells per dose"
    )
    dose_window_pct = models.DecimalField(
        max_digits=4,
        decimal_places=1,
        default=Decimal("10"),
        help_text="Acceptance window: viable cells given within ± this % of the target "
        "(never above the maximum)",
    )
    dose_volume_ml = models.DecimalField(
        max_digits=5,
        decimal_places=1,
        default=Decimal("10"),
        help_text="Syringe volume, the same in every arm",
    )
    dose_shelf_life_hours = models.PositiveSmallIntegerField(
        default=6, help_text="A prepared syringe expires this long after it was made ready"
    )
    fresh_shelf_life_hours = models.PositiveSmallIntegerField(
        default=48, help_text="A fresh (never frozen) product may be dosed this long after harvest"
    )
    stored_shelf_life_days = models.PositiveSmallIntegerField(
        default=730, help_text="A cryopreserved unit may be used this long after it was filled"
    )
    weight_min_kg = models.DecimalField(max_digits=5, decimal_places=1, default=Decimal("30"))
    weight_max_kg = models.DecimalField(max_digits=5, decimal_places=1, default=Decimal("250"))
    # Trial settings for a fresh aspirate's transport (seeds/trial.json): it travels ambient or
    # at 2–8 °C, within hours; a receipt outside these limits is quarantined (QA decides).
    aspirate_transport_min_c = models.DecimalField(
        max_digits=4,
        decimal_places=1,
        default=Decimal("2"),
        help_text="Lowest transport temperature of a fresh aspirate (°C)",
    )
    aspirate_transport_max_c = models.DecimalField(
        max_digits=4,
        decimal_places=1,
        default=Decimal("25"),
        help_text="Highest transport temperature of a fresh aspirate (°C)",
    )
    aspirate_transport_max_hours = models.PositiveSmallIntegerField(
        default=24, help_text="A fresh aspirate is received at most this long after collection"
    )
    history = HistoricalRecords()

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(dose_window_pct__gte=0, dose_window_pct__lt=100),
                name="study_dose_window_range",
            ),
            models.CheckConstraint(
                condition=models.Q(dose_cells_per_kg__gt=0, dose_max_cells__gt=0),
                name="study_dose_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    weight_min_kg__gt=0, weight_max_kg__gt=models.F("weight_min_kg")
                ),
                name="study_weight_range",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    aspirate_transport_max_c__gt=models.F("aspirate_transport_min_c")
                )
                & models.Q(aspirate_transport_max_hours__gt=0),
                name="study_aspirate_transport_limits",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.acronym})"

    def definition_locked(self) -> bool:
        """Once a participant is enrolled, the trial's definition (dose limits, shelf lives,
        arms, schedule, visits) is what they are treated under: it no longer changes here."""
        return self.participants.exists()

    @classmethod
    def any_definition_locked(cls) -> bool:
        """Whether any study's definition is locked (one query)."""
        return cls.objects.filter(participants__isnull=False).exists()

    def dose_plan(self, weight_kg: Decimal) -> DosePlan:
        """Target = cells/kg × weight, capped; the window never widens past the cap."""
        weight = Decimal(weight_kg)
        target = min(Decimal(self.dose_cells_per_kg) * weight, Decimal(self.dose_max_cells))
        window = Decimal(self.dose_window_pct) / 100
        low = (target * (1 - window)).to_integral_value(rounding=ROUND_CEILING)
        high = min(target * (1 + window), Decimal(self.dose_max_cells))
        return DosePlan(
            weight_kg=weight,
            cells_per_kg=self.dose_cells_per_kg,
            max_cells=self.dose_max_cells,
            window_pct=Decimal(self.dose_window_pct),
            target_cells=int(target.to_integral_value(rounding=ROUND_FLOOR)),
            min_cells=int(low),
            max_window_cells=int(high.to_integral_value(rounding=ROUND_FLOOR)),
        )

    @property
    def dose_shelf_life(self) -> dt.timedelta:
        return dt.timedelta(hours=self.dose_shelf_life_hours)


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
            choice_check("treatment", Treatment, name="armschedule_treatment_valid"),
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
            positive_check("weight_kg", name="participant_weight_positive", optional=True)
        ]

    def __str__(self) -> str:
        return f"{self.pseudonym} ({self.code})"


class Visit(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="visits")
    visit_type = models.ForeignKey(VisitType, on_delete=models.PROTECT, related_name="visits")
    scheduled_on = models.DateField()
    done_on = models.DateField(null=True, blank=True)
    # Body weight measured at a treatment visit: the dose is computed from it.
    weight_kg = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    weight_measured_at = models.DateTimeField(null=True, blank=True)
    weight_recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["participant", "visit_type__order"]
        permissions = [("record_weight", "Can record body weight at a treatment visit")]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "visit_type"], name="visit_unique_per_participant"
            ),
            models.CheckConstraint(
                condition=models.Q(weight_kg__isnull=True)
                | models.Q(
                    weight_kg__gt=0,
                    weight_measured_at__isnull=False,
                    weight_recorded_by__isnull=False,
                ),
                name="visit_weight_positive_and_attributed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant.pseudonym} {self.visit_type.code}"

    def dose_plan(self) -> DosePlan | None:
        if self.weight_kg is None:
            return None
        return self.participant.study.dose_plan(self.weight_kg)
