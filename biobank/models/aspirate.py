from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from .checks import choice_check
from .trial import Participant, Site, Visit


class AspirateStatus(models.TextChoices):
    COLLECTED = "collected", "Collected"
    ACCEPTED = "accepted", "Received, accepted"
    QUARANTINED = "quarantined", "Received, quarantined"
    REJECTED = "rejected", "Received, rejected"
    IN_PROCESSING = "in_processing", "In processing"
    PROCESSED = "processed", "Processed"
    DISCARDED = "discarded", "Discarded"


class Anticoagulant(models.TextChoices):
    HEPARIN = "heparin", "Heparin"
    EDTA = "edta", "EDTA"
    ACD_A = "acd_a", "ACD-A"
    CITRATE = "citrate", "Sodium citrate"


class Condition(models.TextChoices):
    INTACT = "intact", "Intact"
    DAMAGED = "damaged", "Container damaged"
    LEAKING = "leaking", "Leaking"
    CLOTTED = "clotted", "Clotted"
    TEMPERATURE = "temperature", "Temperature excursion"
    LATE = "late", "Arrived late"


class Aspirate(models.Model):
    """A bone-marrow aspirate collected at a visit, from collection to processing."""

    # Its record as people read it, after its ID: the admin page and the API show these.
    RECORD_FIELDS = (
        "participant",
        "visit",
        "site",
        "status",
        "status_reason",
        "volume_ml",
        "anticoagulant",
        "collected_at",
        "collected_by",
        "received_at",
        "received_by",
        "transport_temperature_c",
        "condition",
    )

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (AS…)")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="aspirates")
    visit = models.OneToOneField(Visit, on_delete=models.PROTECT, related_name="aspirate")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="aspirates")
    status = models.CharField(
        max_length=20, choices=AspirateStatus.choices, default=AspirateStatus.COLLECTED
    )
    volume_ml = models.DecimalField(max_digits=6, decimal_places=1)
    anticoagulant = models.CharField(max_length=16, choices=Anticoagulant.choices)
    collected_at = models.DateTimeField()
    collected_by = models.CharField(max_length=100, help_text="Name of the collecting physician")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    received_at = models.DateTimeField(null=True, blank=True)
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    transport_temperature_c = models.DecimalField(
        max_digits=4, decimal_places=1, null=True, blank=True
    )
    condition = models.CharField(max_length=16, choices=Condition.choices, blank=True)
    status_reason = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-collected_at"]
        indexes = [models.Index(fields=["collected_at", "id"], name="aspirate_collected_at_id_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(volume_ml__gt=0) & models.Q(volume_ml__lte=500),
                name="aspirate_volume_range",
            ),
            choice_check("status", AspirateStatus, name="aspirate_status_valid"),
            models.CheckConstraint(
                condition=models.Q(status=AspirateStatus.COLLECTED)
                | models.Q(received_at__isnull=False, received_by__isnull=False)
                | models.Q(status=AspirateStatus.DISCARDED),
                name="aspirate_received_has_receipt",
            ),
            models.CheckConstraint(
                condition=~models.Q(status__in=[AspirateStatus.REJECTED, AspirateStatus.DISCARDED])
                | ~models.Q(status_reason=""),
                name="aspirate_reject_discard_needs_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.code
