from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from simple_history.models import HistoricalRecords

from .aspirate import Aspirate
from .checks import choice_check, positive_check, range_check
from .trial import Participant


class ProcessingStatus(models.TextChoices):
    IN_CULTURE = "in_culture", "In culture"
    HARVESTED = "harvested", "Harvested"
    CRYOPRESERVED = "cryopreserved", "Cryopreserved"
    FAILED = "failed", "Failed"


class Processing(models.Model):
    """MSC isolation and culture expansion of one aspirate, up to the harvested product."""

    # Its record as people read it, after its ID: the admin page and the API show these.
    RECORD_FIELDS = (
        "aspirate",
        "participant",
        "status",
        "status_reason",
        "started_at",
        "harvested_at",
        "harvest_passage",
        "harvest_cell_count",
        "harvest_viability_pct",
    )

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (PR…)")
    aspirate = models.OneToOneField(Aspirate, on_delete=models.PROTECT, related_name="processing")
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="processings"
    )
    status = models.CharField(
        max_length=20, choices=ProcessingStatus.choices, default=ProcessingStatus.IN_CULTURE
    )
    started_at = models.DateTimeField()
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    harvested_at = models.DateTimeField(null=True, blank=True)
    harvest_passage = models.PositiveSmallIntegerField(null=True, blank=True)
    harvest_cell_count = models.BigIntegerField(null=True, blank=True)
    harvest_viability_pct = models.DecimalField(
        max_digits=4, decimal_places=1, null=True, blank=True
    )
    status_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-started_at"]
        permissions = [("approve_qc_release", "Can sign the QC release of a product")]
        constraints = [
            choice_check("status", ProcessingStatus, name="processing_status_valid"),
            range_check(
                "harvest_viability_pct",
                0,
                100,
                name="processing_viability_pct_range",
                optional=True,
            ),
            positive_check(
                "harvest_cell_count", name="processing_cell_count_positive", optional=True
            ),
            models.CheckConstraint(
                condition=~models.Q(
                    status__in=[ProcessingStatus.HARVESTED, ProcessingStatus.CRYOPRESERVED]
                )
                | models.Q(harvested_at__isnull=False, harvest_cell_count__isnull=False),
                name="processing_harvest_recorded",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=ProcessingStatus.FAILED) | ~models.Q(status_reason=""),
                name="processing_failed_needs_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def fresh_expires_at(self) -> dt.datetime | None:
        """A harvested product dosed fresh (never frozen) keeps for the trial's fresh shelf life."""
        if self.harvested_at is None:
            return None
        hours = self.participant.study.fresh_shelf_life_hours
        return self.harvested_at + dt.timedelta(hours=hours)

    def cells_taken(self) -> int:
        """Cells already taken from the harvest: filled into units (whatever became of them), or
        counted into a fresh dose made ready (a syringe cancelled later does not return them)."""

        def total(related: models.Manager, field: str) -> models.Subquery:
            per_product = related.order_by().values("processing").annotate(n=models.Sum(field))
            return models.Subquery(per_product.values("n")[:1])

        taken = Coalesce(total(self.units, "cell_number"), 0) + Coalesce(
            total(self.fresh_doses, "post_thaw_cell_count"), 0
        )
        # One query, however many units and doses.
        return type(self).objects.filter(pk=self.pk).values_list(taken, flat=True).get()

    def cells_left(self) -> int:
        """Harvested cells not yet taken (``cells_taken``): what a fill or a fresh dose may use."""
        return (self.harvest_cell_count or 0) - self.cells_taken()

    def fresh_is_expired(self, at: dt.datetime) -> bool:
        expires = self.fresh_expires_at()
        return expires is None or at >= expires


class Passage(models.Model):
    """One culture passage (P0…Pn) with its count."""

    processing = models.ForeignKey(Processing, on_delete=models.PROTECT, related_name="passages")
    number = models.PositiveSmallIntegerField()
    passaged_at = models.DateTimeField()
    cell_count = models.BigIntegerField()
    viability_pct = models.DecimalField(max_digits=4, decimal_places=1)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["processing", "number"]
        constraints = [
            models.UniqueConstraint(fields=["processing", "number"], name="passage_unique_number"),
            positive_check("cell_count", name="passage_count_positive"),
            range_check("viability_pct", 0, 100, name="passage_viability_range"),
        ]

    def __str__(self) -> str:
        return f"{self.processing.code} P{self.number}"


class QcTest(models.TextChoices):
    STERILITY = "sterility", "Sterility"
    MYCOPLASMA = "mycoplasma", "Mycoplasma"
    ENDOTOXIN = "endotoxin", "Endotoxin"
    IMMUNOPHENOTYPE = "immunophenotype", "Immunophenotype (ISCT)"
    VIABILITY = "viability", "Viability"


class QcResult(models.Model):
    processing = models.ForeignKey(Processing, on_delete=models.PROTECT, related_name="qc_results")
    test = models.CharField(max_length=20, choices=QcTest.choices)
    result = models.CharField(max_length=200, help_text="As reported, e.g. 'negative', '0.2 EU/mL'")
    value = models.DecimalField(max_digits=10, decimal_places=3, null=True, blank=True)
    passed = models.BooleanField()
    tested_at = models.DateTimeField()
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["processing", "test", "tested_at"]
        constraints = [choice_check("test", QcTest, name="qcresult_test_valid")]

    def __str__(self) -> str:
        return f"{self.processing.code} {self.test}: {self.result}"
