"""The concealed randomisation list: enrolment takes the next unused entry, nobody types an arm.

ICH E9 §2.3.2 and CONSORT item 9: the list is prepared in advance (sequence number → arm,
often in blocks and per site) and each entry is used once. It is visible to unblinded roles
only (the visibility policy does not name this kind as blinded-safe).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .trial import Arm, Participant, Study


class RandomisationEntry(models.Model):
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="randomisation")
    sequence = models.PositiveIntegerField(help_text="Sequence number on the list")
    stratum = models.CharField(
        max_length=32, blank=True, help_text="e.g. the site code; blank for an unstratified list"
    )
    block = models.PositiveIntegerField(null=True, blank=True)
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="+")
    participant = models.OneToOneField(
        Participant,
        on_delete=models.PROTECT,
        related_name="randomisation_entry",
        null=True,
        blank=True,
    )
    used_at = models.DateTimeField(null=True, blank=True)
    imported_at = models.DateTimeField()
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    # A list replaced before any entry was used is kept, marked superseded (never deleted).
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "stratum", "sequence"]
        verbose_name_plural = "randomisation entries"
        constraints = [
            models.UniqueConstraint(
                fields=["study", "sequence"],
                condition=models.Q(superseded_at__isnull=True),
                name="randomisation_unique_sequence",
            ),
            models.CheckConstraint(
                condition=models.Q(participant__isnull=True, used_at__isnull=True)
                | models.Q(participant__isnull=False, used_at__isnull=False),
                name="randomisation_used_has_participant",
            ),
            models.CheckConstraint(
                condition=models.Q(superseded_at__isnull=True) | models.Q(participant__isnull=True),
                name="randomisation_used_never_superseded",
            ),
        ]
        indexes = [models.Index(fields=["study", "stratum", "sequence"])]

    def __str__(self) -> str:
        stratum = f" ({self.stratum})" if self.stratum else ""
        return f"{self.study.code} #{self.sequence}{stratum}"
