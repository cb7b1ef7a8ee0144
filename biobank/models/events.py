from __future__ import annotations

from django.conf import settings
from django.db import models

from .aspirate import Aspirate
from .processing import Processing
from .release import Dose
from .trial import Participant, Site
from .unit import ProductUnit


class CustodyEvent(models.Model):
    """Append-only chain-of-custody log: one row per step, never updated or deleted.

    Database triggers (migration 0002) refuse UPDATE and DELETE on this table.
    """

    item_code = models.CharField(max_length=16, db_index=True)
    item_kind = models.CharField(max_length=20)
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="events")
    aspirate = models.ForeignKey(
        Aspirate, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    processing = models.ForeignKey(
        Processing, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    unit = models.ForeignKey(
        ProductUnit, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    dose = models.ForeignKey(
        Dose, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(help_text="When the step happened")
    recorded_at = models.DateTimeField(auto_now_add=True)
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    location = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(
                # At most one of the item links is set.
                condition=(
                    models.Q(processing__isnull=True, unit__isnull=True, dose__isnull=True)
                    | models.Q(aspirate__isnull=True, unit__isnull=True, dose__isnull=True)
                    | models.Q(aspirate__isnull=True, processing__isnull=True, dose__isnull=True)
                    | models.Q(aspirate__isnull=True, processing__isnull=True, unit__isnull=True)
                ),
                name="custodyevent_at_most_one_item",
            )
        ]
        indexes = [
            models.Index(fields=["participant", "at"]),
            models.Index(fields=["at", "id"], name="custodyevent_at_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.item_code} {self.action}"
