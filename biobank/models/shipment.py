"""Shipments between sites: the box that travels, what is in it, and its temperature logger."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from .aspirate import Aspirate
from .checks import choice_check
from .doses import Dose, Signature
from .trial import Site
from .unit import ProductUnit


class ShipmentKind(models.TextChoices):
    AMBIENT = "ambient", "Ambient (15–25 °C)"
    COOL = "cool", "Refrigerated (2–8 °C)"
    DRY_ICE = "dry_ice", "Dry ice (≤ −60 °C)"
    DRY_SHIPPER = "dry_shipper", "LN2 dry shipper (≤ −150 °C)"


# The range (°C, inclusive) the logger must stay within for each kind. Dry ice sublimates at
# −78.5 °C; an LN2 dry shipper holds vapour phase, −196 … −150 °C.
KIND_RANGE_C: dict[str, tuple[Decimal, Decimal]] = {
    ShipmentKind.AMBIENT: (Decimal("15"), Decimal("25")),
    ShipmentKind.COOL: (Decimal("2"), Decimal("8")),
    ShipmentKind.DRY_ICE: (Decimal("-100"), Decimal("-60")),
    ShipmentKind.DRY_SHIPPER: (Decimal("-196"), Decimal("-150")),
}


# A data logger travels with temperature-controlled shipments (DOMAIN.md, "Travel between
# sites"); an ambient one carries a logger only when it names one.
LOGGER_KINDS = frozenset({ShipmentKind.COOL, ShipmentKind.DRY_ICE, ShipmentKind.DRY_SHIPPER})


class ShipmentStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    PACKING = "packing", "Packing"
    SEALED = "sealed", "Sealed"
    IN_TRANSIT = "in_transit", "In transit"
    RECEIVED = "received", "Received"
    PARTIALLY_RECEIVED = "partially_received", "Partially received"
    CANCELLED = "cancelled", "Cancelled"


class Shipment(models.Model):
    """One shipper travelling from one site to another, with its sealed, signed manifest."""

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (SH…)")
    label = models.CharField(max_length=200, help_text="What people call it, e.g. 'UNN → HUS'")
    from_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="shipments_out")
    to_site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="shipments_in")
    kind = models.CharField(max_length=16, choices=ShipmentKind.choices)
    shipper_id = models.CharField(max_length=64, blank=True, help_text="Dry shipper / box ID")
    logger_serial = models.CharField(max_length=64, blank=True)
    courier = models.CharField(max_length=100, blank=True)
    tracking_ref = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=20, choices=ShipmentStatus.choices, default=ShipmentStatus.PLANNED
    )
    status_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    seal_signature = models.OneToOneField(
        Signature, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    manifest_digest = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the item IDs locked at sealing"
    )
    shipped_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("pack_shipment", "Can pack, seal and ship shipments"),
            ("receive_shipment", "Can receive shipments and upload logger files"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(from_site=models.F("to_site")),
                name="shipment_sites_differ",
            ),
            choice_check("status", ShipmentStatus, name="shipment_status_valid"),
            choice_check("kind", ShipmentKind, name="shipment_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(status__in=["planned", "packing", "cancelled"])
                | models.Q(seal_signature__isnull=False),
                name="shipment_sealed_is_signed",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="cancelled") | ~models.Q(status_reason=""),
                name="shipment_cancel_needs_reason",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.code} {self.label}"

    @property
    def temperature_range(self) -> tuple[Decimal, Decimal]:
        return KIND_RANGE_C[self.kind]

    @property
    def carries_logger(self) -> bool:
        """The one fact: a data logger travels with it (it names one, or its kind is
        temperature-controlled), so its receipt waits for the logger file."""
        return bool(self.logger_serial) or self.kind in LOGGER_KINDS


class ShipmentItemState(models.TextChoices):
    PACKED = "packed", "Packed (on the manifest)"
    ARRIVED = "arrived", "Scanned at receipt"
    RECEIVED = "received", "Received"
    MISSING = "missing", "Missing (still in transit)"
    WRITTEN_OFF = "written_off", "Written off"
    EXTRA = "extra", "Extra (arrived, not on the manifest)"
    REMOVED = "removed", "Taken out before sealing"


class ShipmentItem(models.Model):
    """One line of a manifest (or an extra item found at receipt).

    ``active`` is true while the item is bound to this shipment (packed until received or
    written off): the partial unique constraints make an item belong to one open shipment.
    """

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="items")
    item_kind = models.CharField(max_length=16)
    item_code = models.CharField(max_length=80)
    aspirate = models.ForeignKey(
        Aspirate, on_delete=models.PROTECT, related_name="shipment_items", null=True, blank=True
    )
    unit = models.ForeignKey(
        ProductUnit,
        on_delete=models.PROTECT,
        related_name="shipment_items",
        null=True,
        blank=True,
    )
    dose = models.ForeignKey(
        Dose, on_delete=models.PROTECT, related_name="shipment_items", null=True, blank=True
    )
    state = models.CharField(
        max_length=16, choices=ShipmentItemState.choices, default=ShipmentItemState.PACKED
    )
    active = models.BooleanField(default=True)
    damaged = models.BooleanField(default=False, help_text="Arrived damaged (quarantined)")
    packed_at = models.DateTimeField(null=True, blank=True)
    packed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True
    )
    scanned_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    note = models.TextField(blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["shipment", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["aspirate"],
                condition=models.Q(active=True),
                name="shipmentitem_aspirate_one_open",
            ),
            models.UniqueConstraint(
                fields=["unit"], condition=models.Q(active=True), name="shipmentitem_unit_one_open"
            ),
            models.UniqueConstraint(
                fields=["dose"], condition=models.Q(active=True), name="shipmentitem_dose_one_open"
            ),
            choice_check("state", ShipmentItemState, name="shipmentitem_state_valid"),
            models.CheckConstraint(
                # At most one item link (an extra may be an unknown code: no link at all).
                condition=models.Q(unit__isnull=True, dose__isnull=True)
                | models.Q(aspirate__isnull=True, dose__isnull=True)
                | models.Q(aspirate__isnull=True, unit__isnull=True),
                name="shipmentitem_at_most_one_item",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="written_off") | ~models.Q(note=""),
                name="shipmentitem_write_off_needs_reason",
            ),
        ]
        indexes = [models.Index(fields=["shipment", "state"])]

    def __str__(self) -> str:
        return f"{self.shipment.code}: {self.item_code} ({self.state})"

    @property
    def item(self) -> Aspirate | ProductUnit | Dose | None:
        return self.aspirate or self.unit or self.dose


class LoggerFile(models.Model):
    """A temperature logger's CSV as uploaded at receipt: the raw text is kept as evidence."""

    shipment = models.ForeignKey(Shipment, on_delete=models.PROTECT, related_name="logger_files")
    filename = models.CharField(max_length=200)
    sha256 = models.CharField(max_length=64)
    content = models.TextField(help_text="The file as uploaded (decoded), kept as evidence")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField()
    readings = models.PositiveIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    min_c = models.DecimalField(max_digits=6, decimal_places=2)
    max_c = models.DecimalField(max_digits=6, decimal_places=2)
    excursion = models.JSONField(
        default=dict, blank=True, help_text="Empty when the trace stayed within range"
    )

    class Meta:
        ordering = ["shipment", "uploaded_at", "id"]

    def __str__(self) -> str:
        return f"{self.shipment.code}: {self.filename}"
