"""Label printers (Zebra-compatible, ZPL II over raw TCP) and the log of what was printed."""

from __future__ import annotations

import ipaddress
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from biobank.labels import TEMPLATES

from .checks import choice_check, range_check

RAW_PRINT_PORT = 9100

# One DNS label: 1-63 letters, digits or hyphens, not starting or ending with a hyphen.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def validate_printer_host(value: str) -> None:
    """An IP address or a host name, nothing else: the socket library refuses some names
    (``10.0..5``, a 64-character label) only when a job is sent, so refuse them here."""
    text = value if isinstance(value, str) else ""
    try:
        ipaddress.ip_address(text)
        return
    except ValueError:
        pass
    hint = "Give an IP address or a host name only (no scheme, port, path or spaces)."
    if not text or len(text) > 253:
        raise ValidationError(f"{hint} A host name is 1 to 253 characters.", code="invalid_host")
    if any(c in text for c in ":/@ ") or not text.isascii():
        raise ValidationError(f"{value!r:.80} is not a host. {hint}", code="invalid_host")
    labels = text.split(".")
    for label in labels:
        if not _HOST_LABEL.match(label):
            raise ValidationError(
                f"{value!r:.80} is not a host name: each part between dots is 1 to 63 "
                f"letters, digits or hyphens, not starting or ending with a hyphen. {hint}",
                code="invalid_host",
            )
    if labels[-1].isdigit():  # all-numeric: meant as an IPv4 address, and not a valid one
        raise ValidationError(f"{value!r:.80} is not a valid IP address.", code="invalid_host")


class PrinterDpi(models.IntegerChoices):
    DPI_203 = 203, "203 dpi (8 dots/mm)"
    DPI_300 = 300, "300 dpi (12 dots/mm)"
    DPI_600 = 600, "600 dpi (24 dots/mm)"


LABEL_TEMPLATE_CHOICES = [
    (t.name, f"{t.title} ({t.width_mm:g}×{t.height_mm:g} mm)") for t in TEMPLATES.values()
]


class Printer(models.Model):
    """A label printer on the network and the label stock loaded in it."""

    # What the printer list shows: the admin's columns and the API's fields (after the id).
    RECORD_FIELDS = (
        "name",
        "host",
        "port",
        "dpi",
        "label_template",
        "label_size",
        "location",
        "active",
    )

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(
        max_length=253,
        validators=[validate_printer_host],
        help_text="IP address or DNS name (no scheme, no port)",
    )
    port = models.PositiveIntegerField(
        default=RAW_PRINT_PORT,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="Raw TCP port (9100)",
    )
    dpi = models.PositiveSmallIntegerField(choices=PrinterDpi.choices, default=PrinterDpi.DPI_300)
    label_template = models.CharField(
        max_length=32,
        choices=LABEL_TEMPLATE_CHOICES,
        help_text="The label stock loaded in the printer; its size is the template's size.",
    )
    location = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            range_check("port", 1, 65535, name="printer_port_range"),
            choice_check("dpi", PrinterDpi, name="printer_dpi_valid"),
            models.CheckConstraint(condition=~models.Q(host=""), name="printer_host_required"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def label_size(self) -> str:
        template = TEMPLATES.get(self.label_template)
        if template is None:
            return "?"
        return f"{template.width_mm:g}×{template.height_mm:g} mm"


class PrintJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent to printer"
    FAILED = "failed", "Failed"


class PrintJob(models.Model):
    """One request to print labels: who, what, when, on which printer, and how it went.

    Recorded as queued before the bytes go out, then marked sent or failed, so an
    attempt that never reached the printer still leaves a row.
    """

    # Its record as people read it, after its printer: the admin page and the API show these.
    RECORD_FIELDS = (
        "requested_by",
        "item_codes",
        "template",
        "dpi",
        "copies",
        "format",
        "byte_count",
        "status",
        "error",
        "created_at",
        "sent_at",
    )

    printer = models.ForeignKey(Printer, on_delete=models.PROTECT, related_name="jobs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    item_codes = models.JSONField(help_text="Identifiers printed, in order")
    template = models.CharField(
        max_length=100, help_text="Template name(s) used, comma-separated when mixed"
    )
    dpi = models.PositiveSmallIntegerField(choices=PrinterDpi.choices)
    copies = models.PositiveSmallIntegerField(default=1)
    format = models.CharField(max_length=8, default="zpl")
    byte_count = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=PrintJobStatus.choices, default=PrintJobStatus.QUEUED
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            choice_check("status", PrintJobStatus, name="printjob_status_valid"),
            range_check("copies", 1, 100, name="printjob_copies_range"),
            models.CheckConstraint(condition=models.Q(format="zpl"), name="printjob_format_zpl"),
            models.CheckConstraint(
                condition=~models.Q(status=PrintJobStatus.SENT) | models.Q(sent_at__isnull=False),
                name="printjob_sent_has_time",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=PrintJobStatus.FAILED) | ~models.Q(error=""),
                name="printjob_failed_has_error",
            ),
        ]
        indexes = [models.Index(fields=["printer", "-created_at"])]

    def __str__(self) -> str:
        return f"Print job {self.pk} ({self.get_status_display()})"
