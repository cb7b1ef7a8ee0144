from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from .aspirate import Aspirate
from .checks import choice_check, positive_check
from .processing import Processing
from .trial import Participant

# What the lab uses unless a record says otherwise (forms, the API and services default to these).
DEFAULT_FREEZING_PROGRAM = "-1 °C/min to -80 °C, then LN2"
DEFAULT_CRYOPROTECTANT = "10 % DMSO"


class FreezingRun(models.Model):
    """A controlled-rate freezing run that cryopreserves the units of one processing."""

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (FR…)")
    processing = models.ForeignKey(
        Processing, on_delete=models.PROTECT, related_name="freezing_runs"
    )
    program = models.CharField(max_length=100, default=DEFAULT_FREEZING_PROGRAM)
    rate_c_per_min = models.DecimalField(max_digits=4, decimal_places=2, default=-1)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(finished_at__isnull=True)
                | models.Q(finished_at__gte=models.F("started_at")),
                name="freezingrun_finish_after_start",
            ),
            models.CheckConstraint(
                condition=models.Q(rate_c_per_min__lt=0), name="freezingrun_rate_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class UnitStatus(models.TextChoices):
    CREATED = "created", "Filled, not yet frozen"
    FROZEN = "frozen", "Cryopreserved"
    STORED = "stored", "Stored"
    CHECKED_OUT = "checked_out", "Checked out (slot reserved)"
    QUARANTINED = "quarantined", "Quarantined"
    RELEASED = "released", "Released"
    THAWED = "thawed", "Thawed"
    ADMINISTERED = "administered", "Administered"
    DISCARDED = "discarded", "Discarded"


class ContainerType(models.TextChoices):
    CRYOBAG = "cryobag", "Cryobag"
    CRYOVIAL = "cryovial", "Cryovial"


class ProductUnit(models.Model):
    """One cryobag or vial of a product. Keeps its aspirate and participant (chain of identity)."""

    # Its record as people read it, after its ID: the admin page and the API show these.
    RECORD_FIELDS = (
        "participant",
        "aspirate",
        "processing",
        "container_type",
        "status",
        "status_reason",
        "cell_number",
        "volume_ml",
        "cryoprotectant",
        "freezing_run",
        "created_at",
    )

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (UN…)")
    processing = models.ForeignKey(Processing, on_delete=models.PROTECT, related_name="units")
    aspirate = models.ForeignKey(Aspirate, on_delete=models.PROTECT, related_name="units")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="units")
    container_type = models.CharField(max_length=16, choices=ContainerType.choices)
    cell_number = models.BigIntegerField(help_text="Total viable cells in the unit")
    volume_ml = models.DecimalField(max_digits=6, decimal_places=2)
    cryoprotectant = models.CharField(max_length=100, default=DEFAULT_CRYOPROTECTANT)
    freezing_run = models.ForeignKey(
        FreezingRun, on_delete=models.PROTECT, related_name="units", null=True, blank=True
    )
    status = models.CharField(max_length=20, choices=UnitStatus.choices, default=UnitStatus.CREATED)
    status_reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]
        # One QA permission for lifting any quarantine (units and aspirates), always signed.
        permissions = [("lift_quarantine", "Can lift a quarantine, with an e-signature (QA)")]
        constraints = [
            positive_check("cell_number", name="unit_cells_positive"),
            models.CheckConstraint(
                condition=models.Q(volume_ml__gt=0) & models.Q(volume_ml__lte=1000),
                name="unit_volume_range",
            ),
            choice_check("status", UnitStatus, name="unit_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(status=UnitStatus.DISCARDED) | ~models.Q(status_reason=""),
                name="unit_discard_needs_reason",
            ),
            models.CheckConstraint(
                condition=models.Q(status=UnitStatus.CREATED)
                | models.Q(status=UnitStatus.DISCARDED)
                | models.Q(freezing_run__isnull=False),
                name="unit_frozen_has_run",
            ),
        ]
        indexes = [models.Index(fields=["participant", "status"])]

    def __str__(self) -> str:
        return self.code

    @staticmethod
    def expiry_of(created_at: dt.datetime, stored_shelf_life_days: int) -> dt.datetime:
        """The one rule: a cryopreserved unit may be used up to the trial's stored shelf life
        after filling. For bulk reads that fetch both values with the unit, no query per unit."""
        return created_at + dt.timedelta(days=stored_shelf_life_days)

    def expires_at(self) -> dt.datetime:
        return self.expiry_of(self.created_at, self.participant.study.stored_shelf_life_days)

    def is_expired(self, at: dt.datetime) -> bool:
        return at >= self.expires_at()
