"""The scan resolver: any scanned string → the registered item it names, as the visibility
policy lets the viewer see it, or a clear refusal.

The text itself is read by the pure ``biobank.scan_input.parse_scan``; this is the database
side, used by the scan pages, the API and the services that check a scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.urls import NoReverseMatch, reverse

from biobank.errors import NotFound, ServiceError
from biobank.identifiers import Kind, with_article
from biobank.models import (
    Aspirate,
    Container,
    Dose,
    FreezingRun,
    Participant,
    Processing,
    ProductUnit,
    Shipment,
    StorageUnit,
)
from biobank.scan_input import ParsedScan, ScanError, parse_scan
from biobank.selectors.shipments import item_site
from biobank.selectors.storage import location_of, units_with_location
from biobank.visibility import Policy, kind_of_identifier, policy_for

# Kind → (model, select_related, API resource name).
MODELS: dict[Kind, tuple[type[Model], tuple[str, ...], str]] = {
    Kind.PARTICIPANT: (Participant, ("site",), "participants"),
    Kind.ASPIRATE: (Aspirate, ("site", "participant", "visit__visit_type"), "aspirates"),
    Kind.PROCESSING: (Processing, ("participant",), "processings"),
    Kind.FREEZING_RUN: (FreezingRun, ("processing",), "freezing-runs"),
    Kind.UNIT: (ProductUnit, (), "units"),
    Kind.STORAGE_UNIT: (StorageUnit, ("site",), "storage-units"),
    Kind.CONTAINER: (Container, ("box_type", "storage_unit"), "containers"),
    Kind.BOX: (Container, ("box_type", "storage_unit"), "containers"),
    Kind.DOSE: (Dose, ("participant", "visit__visit_type"), "doses"),
    Kind.SHIPMENT: (Shipment, ("from_site", "to_site"), "shipments"),
}


@dataclass
class ScanResult:
    """What a scan found, as the viewer's visibility policy lets them see it."""

    kind: Kind
    code: str
    item: Any
    policy: Policy
    removed: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.policy.status_of(kind_of_identifier(self.kind), self.item_status)

    @property
    def item_status(self) -> str:
        """The real status, for the services a scan page calls (never shown as such)."""
        return getattr(self.item, "status", "") or ""

    @property
    def status_display(self) -> str:
        if not self.status:
            return ""
        choices = dict(type(self.item)._meta.get_field("status").flatchoices)
        return str(choices.get(self.status, self.status))

    @property
    def location(self) -> str:
        item = self.item
        if isinstance(item, ProductUnit):
            return location_of(item)
        if isinstance(item, Container):
            return item.path
        if isinstance(item, StorageUnit):
            return f"{item.site.code} › {item.name}"
        if isinstance(item, Aspirate | Dose):
            site = item_site(item)  # where it was last received, else where it was made
            return site.name if site else ""
        if isinstance(item, Participant):
            return item.site.name
        return ""

    @property
    def admin_url(self) -> str:
        meta = self.item._meta
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[self.item.pk])

    @property
    def api_url(self) -> str | None:
        resource = MODELS[self.kind][2]
        try:
            return reverse(f"{resource}-detail", kwargs={"code": self.code})
        except NoReverseMatch:
            return None

    @property
    def label_url(self) -> str | None:
        if not self.policy.may_label(kind_of_identifier(self.kind)):
            return None
        try:
            return reverse("label-render", kwargs={"code": self.code, "fmt": "png"})
        except NoReverseMatch:
            return None


class ScanRefused(ServiceError):
    """A scan that is not a valid identifier (400), with the scanner-specific reason."""


def _checked(raw: Any, policy: Policy, kinds: set[Kind] | None) -> tuple[ParsedScan, Kind]:
    """A scan parsed and allowed: valid text, a kind the viewer may see and this screen takes.
    Refused before any lookup, so the answer is the same whether such an item exists or not."""
    try:
        scan = parse_scan(raw if isinstance(raw, str) else "")
    except ScanError as exc:
        raise ScanRefused(exc.message, code=exc.code, field="code") from exc
    kind = scan.parsed.kind
    try:
        policy.require(kind_of_identifier(kind))
    except ServiceError as exc:
        exc.field = "code"
        raise
    if kinds is not None and kind not in kinds:
        wanted = " or ".join(with_article(label) for label in sorted(k.label for k in kinds))
        raise ScanRefused(
            f"{scan.value} is {with_article(kind.label)}; this screen expects {wanted}.",
            code="wrong_kind",
            field="code",
        )
    if kind not in MODELS:
        raise NotFound(
            f"No {kind.label} {scan.value} is registered.", code="not_found", field="code"
        )
    return scan, kind


def _lookup(kind: Kind) -> QuerySet:
    model, related, _ = MODELS[kind]
    # A unit's place is joined in: a scan is one query (the hot path).
    queryset = (
        units_with_location(ProductUnit.objects.all()) if kind is Kind.UNIT else model.objects.all()
    )
    if related:  # select_related() without names would join every foreign key
        queryset = queryset.select_related(*related)
    return queryset


# The scan's hot path: one unit by code, its place joined in. Building and compiling that
# query (a FilteredRelation join with five annotations) cost more than running it, so its
# SQL is compiled once per database and reused with the scanned code as its parameter.
_CODE_MARK = "\x00scanned-code\x00"
_UNIT_SQL: dict[str, tuple[str, tuple[Any, ...], list[Any], Any]] = {}


def _unit_by_code(code: str) -> ProductUnit | None:
    alias = router.db_for_read(ProductUnit)
    connection = connections[alias]
    compiled = _UNIT_SQL.get(alias)
    if compiled is None:
        query = _lookup(Kind.UNIT).filter(code=_CODE_MARK).order_by()[:1].query
        sql, params = query.get_compiler(alias).as_sql()
        # A raw query converts model fields only: the time annotation gets the ORM's converters.
        when = query.annotations["location_checked_out"]
        convert = connection.ops.get_db_converters(when) + when.get_db_converters(connection)
        compiled = _UNIT_SQL[alias] = (sql, params, convert, when)
    sql, params, convert, when = compiled
    rows = ProductUnit.objects.using(alias).raw(
        sql, tuple(code if p == _CODE_MARK else p for p in params)
    )
    unit = next(iter(rows), None)
    if unit is not None:
        for converter in convert:
            unit.location_checked_out = converter(unit.location_checked_out, when, connection)
    return unit


def _unregistered(kind: Kind, code: str) -> NotFound:
    return NotFound(
        f"{code} is a valid {kind.label} barcode, but no such {kind.label} is registered here.",
        code="not_found",
        field="code",
    )


def scan_resolve(*, raw: str, viewer: Any, kinds: set[Kind] | None = None) -> ScanResult:
    """Resolve a scan for ``viewer``; ``kinds`` limits what this screen accepts (e.g. units).

    A kind the viewer may not see is refused before any lookup, so the answer is the same
    whether such an item exists or not (no oracle).
    """
    policy = policy_for(viewer)
    scan, kind = _checked(raw, policy, kinds)
    if kind is Kind.UNIT:
        item = _unit_by_code(scan.value)
    else:
        item = _lookup(kind).filter(code=scan.value).first()
    if item is None:
        raise _unregistered(kind, scan.value)
    return ScanResult(kind, scan.value, item, policy, [r.description for r in scan.removed])


def scans_resolve(
    *, raws: list[Any], viewer: Any, kinds: set[Kind] | None = None
) -> list[ScanResult]:
    """``scan_resolve`` for many scans in one query per kind (a box of 96 tubes: one query).

    The same checks and messages as one by one, in list order; a refusal carries the scan's
    place in the list in ``.index``.
    """
    policy = policy_for(viewer)
    checked = []
    for index, raw in enumerate(raws):
        try:
            checked.append(_checked(raw, policy, kinds))
        except ServiceError as exc:
            exc.index = index
            raise
    found: dict[tuple[Kind, str], Any] = {}
    for kind in {kind for _, kind in checked}:
        codes = {scan.value for scan, k in checked if k is kind}
        for item in _lookup(kind).filter(code__in=codes):
            found[(kind, item.code)] = item
    results = []
    for index, (scan, kind) in enumerate(checked):
        item = found.get((kind, scan.value))
        if item is None:
            exc = _unregistered(kind, scan.value)
            exc.index = index
            raise exc
        results.append(
            ScanResult(kind, scan.value, item, policy, [r.description for r in scan.removed])
        )
    return results
