"""The record of every report and export handed out (21 CFR 11.10(b) copies are traceable)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from biobank.terms import local_minute

from .checks import choice_check
from .trial import Participant


class ExportKind(models.TextChoices):
    AUDIT_TRAIL = "audit_trail", "Audit-trail export"
    PARTICIPANT_REPORT = "participant_report", "Participant chain report"
    INVENTORY = "inventory", "Inventory"


class ExportLog(models.Model):
    """One row per report or export: who asked, when, for what, blinded or not. Append-only."""

    kind = models.CharField(max_length=24, choices=ExportKind.choices)
    format = models.CharField(max_length=8, help_text="csv, jsonl, json, pdf, xlsx")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    filters = models.JSONField(default=dict, blank=True)
    blinded = models.BooleanField(help_text="The blinded version was handed out")
    content_hash = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of a report's content (reports only)"
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        permissions = [("export_audit_trail", "Can export the audit trail")]
        constraints = [choice_check("kind", ExportKind, name="exportlog_kind_valid")]
        indexes = [models.Index(fields=["requested_at", "id"], name="exportlog_at_id_idx")]

    def __str__(self) -> str:
        return f"{local_minute(self.requested_at)} {self.kind}.{self.format} by {self.requested_by}"
