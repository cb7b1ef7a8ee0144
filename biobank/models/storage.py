"""Where every cryopreserved unit is: site → storage unit → containers → box → position."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from biobank.terms import local_minute

from .checks import range_check
from .trial import Site
from .unit import ProductUnit

ROW_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Labelling(models.TextChoices):
    LETTERS = "letters", "Letters (A, B, C…)"
    NUMBERS = "numbers", "Numbers (1, 2, 3…)"


class Accepts(models.TextChoices):
    ANY = "any", "Bags and vials"
    CRYOBAG = "cryobag", "Cryobags only"
    CRYOVIAL = "cryovial", "Cryovials only"


class BoxType(models.Model):
    """A reusable box template: geometry and how rows and columns are labelled."""

    name = models.CharField(max_length=100, unique=True)
    rows = models.PositiveSmallIntegerField()
    columns = models.PositiveSmallIntegerField()
    row_labelling = models.CharField(
        max_length=10, choices=Labelling.choices, default=Labelling.LETTERS
    )
    column_labelling = models.CharField(
        max_length=10, choices=Labelling.choices, default=Labelling.NUMBERS
    )
    accepts = models.CharField(max_length=10, choices=Accepts.choices, default=Accepts.ANY)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        constraints = [
            range_check("rows", 1, 26, name="boxtype_rows_range"),
            range_check("columns", 1, 26, name="boxtype_columns_range"),
            models.CheckConstraint(
                condition=~models.Q(row_labelling="letters", column_labelling="letters"),
                name="boxtype_not_letters_twice",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.rows}×{self.columns})"

    @property
    def capacity(self) -> int:
        return self.rows * self.columns

    @staticmethod
    def _part(value: int, labelling: str) -> str:
        return ROW_LETTERS[value - 1] if labelling == Labelling.LETTERS else str(value)

    def row_label(self, row: int) -> str:
        return self._part(row, self.row_labelling)

    def column_label(self, column: int) -> str:
        return self._part(column, self.column_labelling)

    def position_label(self, row: int, column: int) -> str:
        """A1…I9 for letters × numbers; 3-7 when both are numbers (no ambiguity)."""
        r, c = self.row_label(row), self.column_label(column)
        both_numbers = self.row_labelling == self.column_labelling == Labelling.NUMBERS
        return f"{r}-{c}" if both_numbers else f"{r}{c}"

    def positions(self) -> Iterator[tuple[int, int]]:
        """Every (row, column) of the box, row by row: A1, A2, … then B1, …"""
        for row in range(1, self.rows + 1):
            for column in range(1, self.columns + 1):
                yield row, column

    def position_number(self, row: int, column: int) -> int:
        return (row - 1) * self.columns + column


class StorageKind(models.TextChoices):
    LN2_TANK = "ln2_tank", "Liquid-nitrogen tank (vapour phase)"
    FREEZER_80 = "freezer_80", "−80 °C freezer"
    FRIDGE = "fridge", "2–8 °C refrigerator"


# Cryopreserved product is kept in vapour-phase LN2 at or below this (DOMAIN.md, "The path of
# one aspirate", 4 and 5); a −80 °C freezer or a fridge is for other material.
FROZEN_PRODUCT_MAX_C = Decimal("-150")


class StorageUnit(models.Model):
    """A tank or freezer at a site, with the temperature range it must hold."""

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (SU…)")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="storage_units")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=StorageKind.choices)
    min_temperature_c = models.DecimalField(max_digits=5, decimal_places=1)
    max_temperature_c = models.DecimalField(max_digits=5, decimal_places=1)
    active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["site", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="storageunit_unique_name"),
            models.CheckConstraint(
                condition=models.Q(min_temperature_c__lt=models.F("max_temperature_c")),
                name="storageunit_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def keeps_frozen_product(self) -> bool:
        """The one fact: the range it must hold never goes above −150 °C, so cryopreserved
        product may be kept in it."""
        return self.max_temperature_c <= FROZEN_PRODUCT_MAX_C

    def holds_product(self) -> bool:
        """Units are stored in it now: its kind and range are then what they were placed under."""
        return Placement.objects.open().filter(container__storage_unit=self).exists()


class ContainerKind(models.TextChoices):
    RACK = "rack", "Rack"
    CANISTER = "canister", "Canister"
    SHELF = "shelf", "Shelf"
    DRAWER = "drawer", "Drawer"
    BOX = "box", "Box"


class Container(models.Model):
    """Anything inside a storage unit. Boxes (BX…) have a box type and positions; other
    containers (CT…) hold containers, or units without positions."""

    code = models.CharField(max_length=16, unique=True, help_text="Barcode ID (BX… or CT…)")
    storage_unit = models.ForeignKey(
        StorageUnit, on_delete=models.PROTECT, related_name="containers"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="children", null=True, blank=True
    )
    kind = models.CharField(max_length=16, choices=ContainerKind.choices)
    name = models.CharField(max_length=100)
    box_type = models.ForeignKey(
        BoxType, on_delete=models.PROTECT, related_name="boxes", null=True, blank=True
    )
    # Materialised for one-query location paths; rewritten by container_move for a subtree.
    path = models.CharField(max_length=500, editable=False)
    depth = models.PositiveSmallIntegerField(default=0, editable=False)
    active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind="box", box_type__isnull=False)
                | (~models.Q(kind="box") & models.Q(box_type__isnull=True)),
                name="container_box_has_type",
            ),
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("id")), name="container_not_own_parent"
            ),
            models.UniqueConstraint(
                fields=["storage_unit", "parent", "name"], name="container_unique_name_in_parent"
            ),
        ]
        indexes = [models.Index(fields=["storage_unit", "kind"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def is_box(self) -> bool:
        return self.kind == ContainerKind.BOX


def open_placement_q(via: str = "") -> models.Q:
    """An open placement (not ended), optionally through a relation: ``open_placement_q(
    "placements__")`` on units. The one spelling of "open"; querysets use ``.open()``."""
    return models.Q(**{f"{via}ended_at__isnull": True})


class PlacementQuerySet(models.QuerySet["Placement"]):
    def open(self) -> PlacementQuerySet:
        """Placements still in force: the unit is (or is reserved) there now."""
        return self.filter(open_placement_q())


class Placement(models.Model):
    """One stay of a unit in a container (and position). Open while ``ended_at`` is null.

    The partial unique constraints are the double-booking guard: a position holds at most
    one open placement, and a unit has at most one. A checked-out unit keeps its open
    placement (the slot stays reserved) until it is checked in, released or removed.
    """

    unit = models.ForeignKey(ProductUnit, on_delete=models.PROTECT, related_name="placements")
    container = models.ForeignKey(Container, on_delete=models.PROTECT, related_name="placements")
    row = models.PositiveSmallIntegerField(null=True, blank=True)
    column = models.PositiveSmallIntegerField(null=True, blank=True)
    position = models.CharField(max_length=8, blank=True, help_text="Label, e.g. A1")
    placed_at = models.DateTimeField()
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    checked_out_at = models.DateTimeField(null=True, blank=True)
    checked_out_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    end_reason = models.CharField(max_length=200, blank=True)
    history = HistoricalRecords()

    objects = PlacementQuerySet.as_manager()

    class Meta:
        ordering = ["-placed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["unit"],
                condition=open_placement_q(),
                name="placement_one_open_per_unit",
            ),
            models.UniqueConstraint(
                fields=["container", "row", "column"],
                condition=open_placement_q(),
                name="placement_one_unit_per_position",
            ),
            models.CheckConstraint(
                condition=models.Q(row__isnull=True, column__isnull=True)
                | models.Q(row__gte=1, column__gte=1),
                name="placement_position_complete",
            ),
            models.CheckConstraint(
                condition=open_placement_q() | models.Q(ended_at__gte=models.F("placed_at")),
                name="placement_ends_after_start",
            ),
        ]
        indexes = [
            models.Index(fields=["container", "ended_at"]),
            models.Index(fields=["placed_at", "id"], name="placement_placed_at_id_idx"),
        ]

    def __str__(self) -> str:
        where = f"{self.container.code} {self.position}".strip()
        return f"{self.unit.code} @ {where}"


class TemperatureReading(models.Model):
    storage_unit = models.ForeignKey(
        StorageUnit, on_delete=models.PROTECT, related_name="temperature_readings"
    )
    at = models.DateTimeField()
    temperature_c = models.DecimalField(max_digits=5, decimal_places=1)
    # Judged against the range in force when recorded, so later range edits don't rewrite it.
    out_of_range = models.BooleanField()
    source = models.CharField(max_length=50, default="manual")
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["storage_unit", "-at"])]
        constraints = [
            models.UniqueConstraint(fields=["storage_unit", "at"], name="reading_unique_time")
        ]

    def __str__(self) -> str:
        return f"{self.storage_unit.code} {local_minute(self.at)} {self.temperature_c} °C"
