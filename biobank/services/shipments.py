"""Shipments between sites: plan, pack by scan, seal (signed), ship, receive by scan.

Every shipment step goes through the transition table (``TRANSITIONS["shipment"]``); every
item gets ``ship`` and ``receive`` custody events (``transition_apply``) in the transaction of
the shipment step. While an item is bound to an open shipment, ``transition_apply`` refuses
any other step on it (no storing, moving, thawing, dosing).

Blinding: messages and events name items by ID and kind only; doses of both arms walk the
same rules, so no refusal can tell MSC from saline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from biobank.identifiers import Kind
from biobank.logger_csv import (
    LoggerCsvError,
    decode,
    excursion_summary,
    excursions_find,
    parse_logger_csv,
)
from biobank.models import (
    Aspirate,
    AspirateStatus,
    Condition,
    Dose,
    DoseStatus,
    LoggerFile,
    ProductUnit,
    Shipment,
    ShipmentItem,
    ShipmentItemState,
    ShipmentKind,
    ShipmentStatus,
    SignatureMeaning,
    Site,
    UnitStatus,
)
from biobank.scan_input import ScanError, parse_scan
from biobank.selectors.shipments import ITEM_MODELS, item_site

from .aspirates import aspirate_receive
from .errors import ConflictError, NotFound, ServiceError, TransitionError
from .identifiers import identifier_allocate
from .lifecycle import TRANSITIONS, check_time, transition_apply
from .signatures import require_perm, signature_sign

S = ShipmentItemState
Item = Aspirate | ProductUnit | Dose

# Which shipment kinds each item kind may travel in (DOMAIN.md, "Travel between sites").
ALLOWED_KINDS: dict[str, tuple[str, ...]] = {
    "aspirate": (ShipmentKind.AMBIENT, ShipmentKind.COOL),
    "unit": (ShipmentKind.DRY_SHIPPER, ShipmentKind.DRY_ICE),
    "dose": (ShipmentKind.AMBIENT, ShipmentKind.COOL),
}
PACKABLE_STATUS: dict[str, tuple[str, ...]] = {
    "aspirate": (AspirateStatus.COLLECTED,),
    "unit": (UnitStatus.FROZEN, UnitStatus.RELEASED),
    "dose": (DoseStatus.RELEASED, DoseStatus.READY),
}
KIND_NAME = {Aspirate: "aspirate", ProductUnit: "unit", Dose: "dose"}


class PackRefused(ServiceError):
    """An item that may not go into this shipment; ``code`` names the reason."""

    status_code = 409


# --- the shipment's own steps ----------------------------------------------------------------


def _locked_open(shipment: Shipment) -> Shipment:
    """Lock the row and refresh the caller's object in place (it sees the new state)."""
    locked = (
        Shipment.objects.select_for_update(of=("self",))
        .select_related("from_site", "to_site")
        .get(pk=shipment.pk)
    )
    shipment.__dict__.update(locked.__dict__)
    return shipment


@transaction.atomic
def shipment_create(
    *,
    from_site: Site,
    to_site: Site,
    kind: str,
    actor: AbstractBaseUser,
    label: str = "",
    shipper_id: str = "",
    logger_serial: str = "",
    courier: str = "",
    tracking_ref: str = "",
) -> Shipment:
    """Plan a shipment; its label gets a new SH… ID."""
    require_perm(actor, "biobank.pack_shipment", "plan shipments")
    if kind not in ShipmentKind.values:
        raise ServiceError(
            f"Unknown shipment kind '{kind}'; one of {', '.join(ShipmentKind.values)}.",
            field="kind",
        )
    if from_site.pk == to_site.pk:
        raise ServiceError(
            "A shipment goes from one site to another: from and to are the same site.",
            code="same_site",
            field="to_site",
        )
    shipment = Shipment(
        code=identifier_allocate(kind=Kind.SHIPMENT),
        label=(label or "").strip()[:200] or f"{from_site.code} → {to_site.code}",
        from_site=from_site,
        to_site=to_site,
        kind=kind,
        shipper_id=shipper_id.strip(),
        logger_serial=logger_serial.strip(),
        courier=courier.strip(),
        tracking_ref=tracking_ref.strip(),
        created_by=actor,
        created_at=timezone.now(),
    )
    shipment._change_reason = "planned"
    shipment._history_user = actor
    shipment.save()
    return shipment


def _scanned(raw: str, field_name: str = "scan") -> tuple[Kind, str]:
    try:
        scan = parse_scan(raw if isinstance(raw, str) else "")
    except ScanError as exc:
        raise ServiceError(exc.message, code=exc.code, field=field_name) from exc
    return scan.parsed.kind, scan.value


def _item_for_scan(raw: str, *, lock: bool) -> tuple[str, Item]:
    kind, code = _scanned(raw)
    if kind not in ITEM_MODELS:
        raise PackRefused(
            f"{code} is a {kind.label}; only aspirates, units and doses travel in shipments.",
            code="wrong_kind",
            field="scan",
        )
    name, model = ITEM_MODELS[kind]
    rows = model.objects.select_related("participant__site")
    if lock:
        rows = rows.select_for_update(of=("self",))
    item = rows.filter(code=code).first()
    if item is None:
        raise NotFound(f"No {kind.label} {code} is registered.", code="not_found", field="scan")
    return name, item


def pack_refusal(*, shipment: Shipment, kind: str, item: Item) -> PackRefused | None:
    """Why this item may not go into this shipment, or None when it may."""
    code = item.code
    if item.status == "quarantined":
        return PackRefused(
            f"{code} is quarantined: it cannot be shipped until QA lifts the quarantine.",
            code="quarantined",
            field="scan",
        )
    if item.status not in PACKABLE_STATUS[kind]:
        allowed = ", ".join(PACKABLE_STATUS[kind])
        hint = " Take it out of storage first." if item.status in ("stored", "checked_out") else ""
        return PackRefused(
            f"{code} is {item.status}; a {kind} can be packed only when: {allowed}.{hint}",
            code="wrong_status",
            field="scan",
        )
    held = (
        ShipmentItem.objects.filter(active=True, **{kind: item}).select_related("shipment").first()
    )
    if held is not None:
        where = "this shipment" if held.shipment_id == shipment.pk else held.shipment.code
        return PackRefused(
            f"{code} is already in {where} ({held.get_state_display().lower()}).",
            code="already_in_shipment",
            field="scan",
        )
    if shipment.kind not in ALLOWED_KINDS[kind]:
        allowed = ", ".join(ShipmentKind(k).label for k in ALLOWED_KINDS[kind])
        return PackRefused(
            f"A {kind} cannot travel {ShipmentKind(shipment.kind).label.lower()}; "
            f"allowed: {allowed}.",
            code="wrong_shipment_kind",
            field="scan",
        )
    to_site = shipment.to_site
    home = item.participant.site
    if kind == "dose" and to_site.pk != home.pk:
        return PackRefused(
            f"{code} is a dose for {home.code}; it cannot be sent to {to_site.code}.",
            code="dose_for_other_site",
            field="scan",
        )
    if kind == "aspirate" and not to_site.is_lab:
        return PackRefused(
            f"An aspirate goes to the cell lab; {to_site.code} is not a lab.",
            code="destination_not_allowed",
            field="scan",
        )
    if kind == "unit" and not (to_site.is_lab or to_site.pk == home.pk):
        return PackRefused(
            f"{code} may go only to the cell lab or to its participant's site ({home.code}), "
            f"not to {to_site.code}.",
            code="destination_not_allowed",
            field="scan",
        )
    here = item_site(item)
    if here is not None and here.pk != shipment.from_site_id:
        return PackRefused(
            f"{code} is at {here.code}, not at {shipment.from_site.code} where this shipment "
            "is packed.",
            code="not_at_origin",
            field="scan",
        )
    return None


@transaction.atomic
def shipment_pack(*, shipment: Shipment, scan: str, actor: AbstractBaseUser) -> ShipmentItem:
    """Scan one item into the shipment, or refuse it with the reason."""
    require_perm(actor, "biobank.pack_shipment", "pack shipments")
    shipment = _locked_open(shipment)
    if shipment.status not in (ShipmentStatus.PLANNED, ShipmentStatus.PACKING):
        raise TransitionError(
            f"{shipment.code} is {shipment.status}: its manifest is locked.",
            code="manifest_locked",
            field="status",
        )
    # The item row lock serialises two packers scanning the same item at once; the partial
    # unique constraint is the backstop.
    kind, item = _item_for_scan(scan, lock=True)
    refusal = pack_refusal(shipment=shipment, kind=kind, item=item)
    if refusal is not None:
        raise refusal
    if shipment.status == ShipmentStatus.PLANNED:
        transition_apply(item=shipment, action="pack", actor=actor)
    try:
        with transaction.atomic():
            line = ShipmentItem(
                shipment=shipment,
                item_kind=kind,
                item_code=item.code,
                packed_at=timezone.now(),
                packed_by=actor,
                **{kind: item},
            )
            line._change_reason = "packed"
            line._history_user = actor
            line.save()
    except IntegrityError as exc:
        raise ConflictError(
            f"{item.code} was packed into another shipment at the same moment.",
            code="already_in_shipment",
            field="scan",
        ) from exc
    return line


def _line(shipment: Shipment, raw: str, states: tuple[str, ...] | None = None) -> ShipmentItem:
    _, code = _scanned(raw)
    rows = ShipmentItem.objects.select_for_update(of=("self",)).filter(
        shipment=shipment, item_code=code
    )
    if states is not None:
        rows = rows.filter(state__in=states)
    line = rows.order_by("-id").first()
    if line is None:
        raise NotFound(f"{code} is not on the manifest of {shipment.code}.", field="scan")
    return line


def _save_line(line: ShipmentItem, actor: AbstractBaseUser, reason: str) -> None:
    line._change_reason = reason[:100]
    line._history_user = actor
    line.save()


@transaction.atomic
def shipment_unpack(*, shipment: Shipment, scan: str, actor: AbstractBaseUser) -> ShipmentItem:
    """Take an item out again before sealing."""
    require_perm(actor, "biobank.pack_shipment", "pack shipments")
    shipment = _locked_open(shipment)
    if shipment.status != ShipmentStatus.PACKING:
        raise TransitionError(
            f"{shipment.code} is {shipment.status}: its manifest is locked.",
            code="manifest_locked",
            field="status",
        )
    line = _line(shipment, scan, (S.PACKED,))
    line.state, line.active = S.REMOVED, False
    _save_line(line, actor, "taken out before sealing")
    return line


def manifest_digest(codes: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(codes)).encode()).hexdigest()


@transaction.atomic
def shipment_seal(*, shipment: Shipment, actor: AbstractBaseUser, password: str) -> Shipment:
    """Lock the manifest and e-sign it (password asked again)."""
    require_perm(actor, "biobank.pack_shipment", "seal shipments")
    shipment = _locked_open(shipment)
    codes = list(
        ShipmentItem.objects.filter(shipment=shipment, state=S.PACKED).values_list(
            "item_code", flat=True
        )
    )
    if shipment.status == ShipmentStatus.PACKING and not codes:
        raise ServiceError(
            f"{shipment.code} is empty: pack at least one item before sealing.",
            code="empty_shipment",
            field="items",
        )
    digest = manifest_digest(codes)
    if shipment.status == ShipmentStatus.PACKING:
        signature = signature_sign(
            user=actor,
            password=password,
            meaning=SignatureMeaning.SHIPMENT_SEAL,
            record=shipment.code,
        )
    else:
        signature = None  # transition_apply refuses with the table's message
    transition_apply(
        item=shipment,
        action="seal",
        actor=actor,
        changes={"seal_signature": signature, "manifest_digest": digest},
    )
    return shipment


def _event_data(shipment: Shipment, **extra: Any) -> dict[str, Any]:
    return {
        "shipment": shipment.code,
        "from_site": shipment.from_site.code,
        "to_site": shipment.to_site.code,
        "shipment_kind": shipment.kind,
        **extra,
    }


@transaction.atomic
def shipment_ship(
    *,
    shipment: Shipment,
    actor: AbstractBaseUser,
    at: dt.datetime | None = None,
    courier: str | None = None,
    tracking_ref: str | None = None,
) -> Shipment:
    """Hand the sealed shipper to the courier: every item gets its ``ship`` event."""
    require_perm(actor, "biobank.pack_shipment", "ship shipments")
    when = check_time(at)
    shipment = _locked_open(shipment)
    changes: dict[str, Any] = {"shipped_at": when}
    if courier is not None:
        changes["courier"] = courier.strip()
    if tracking_ref is not None:
        changes["tracking_ref"] = tracking_ref.strip()
    transition_apply(item=shipment, action="ship", actor=actor, changes=changes)
    lines = ShipmentItem.objects.filter(shipment=shipment, state=S.PACKED).select_related(
        "aspirate", "unit", "dose"
    )
    for line in lines:
        item = line.item
        assert item is not None
        transition_apply(
            item=item,
            action="ship",
            actor=actor,
            at=when,
            site=shipment.from_site,
            location=shipment.code,
            data=_event_data(shipment),
        )
    return shipment


@transaction.atomic
def shipment_cancel(*, shipment: Shipment, actor: AbstractBaseUser, reason: str) -> Shipment:
    """Cancel before it leaves; the items are free again."""
    require_perm(actor, "biobank.pack_shipment", "cancel shipments")
    transition_apply(item=shipment, action="cancel", actor=actor, reason=reason)
    for line in ShipmentItem.objects.filter(shipment=shipment, active=True):
        line.state, line.active = S.REMOVED, False
        _save_line(line, actor, "shipment cancelled")
    return shipment


# --- receipt ---------------------------------------------------------------------------------


@dataclass
class ScanOutcome:
    line: ShipmentItem
    extra: bool
    message: str


@transaction.atomic
def shipment_receive_scan(
    *,
    shipment: Shipment,
    scan: str,
    actor: AbstractBaseUser,
    damaged: bool = False,
    note: str = "",
) -> ScanOutcome:
    """Scan one arriving item against the manifest: on it (arrived), or extra."""
    require_perm(actor, "biobank.receive_shipment", "receive shipments")
    shipment = _locked_open(shipment)
    if shipment.status != ShipmentStatus.IN_TRANSIT:
        raise TransitionError(
            f"{shipment.code} is {shipment.status}; receipt scans are for a shipment in "
            "transit (a missing item found later is received with 'found').",
            code="not_in_transit",
            field="status",
        )
    kind, code = _scanned(scan)
    line = (
        ShipmentItem.objects.select_for_update(of=("self",))
        .filter(shipment=shipment, item_code=code)
        .exclude(state=S.REMOVED)
        .first()
    )
    now = timezone.now()
    if line is not None and line.state != S.PACKED:
        raise ConflictError(
            f"{code} was already scanned at receipt ({line.get_state_display().lower()}).",
            code="already_received",
            field="scan",
        )
    if line is None:
        links: dict[str, Any] = {}
        if kind in ITEM_MODELS:
            name, model = ITEM_MODELS[kind]
            found = model.objects.filter(code=code).first()
            if found is not None:
                links[name] = found
        extra = ShipmentItem(
            shipment=shipment,
            item_kind=ITEM_MODELS[kind][0] if kind in ITEM_MODELS else kind.label,
            item_code=code,
            state=S.EXTRA,
            active=False,
            damaged=damaged,
            scanned_at=now,
            received_by=actor,
            note=(note or "").strip(),
            **links,
        )
        _save_line(extra, actor, "extra: not on the manifest")
        return ScanOutcome(extra, True, f"{code} is NOT on the manifest: recorded as extra.")
    line.state, line.scanned_at, line.damaged = S.ARRIVED, now, damaged
    line.note = (note or "").strip()
    _save_line(line, actor, "scanned at receipt")
    verdict = "damaged" if damaged else "on the manifest"
    return ScanOutcome(line, False, f"{code}: {verdict}.")


@dataclass
class Receipt:
    shipment: Shipment
    received: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)


@transaction.atomic
def shipment_receive(
    *, shipment: Shipment, actor: AbstractBaseUser, at: dt.datetime | None = None
) -> Receipt:
    """Close the receipt: scanned items are received (``receive`` events), unscanned ones are
    missing and stay in transit; the shipment is received or partially received."""
    require_perm(actor, "biobank.receive_shipment", "receive shipments")
    when = check_time(at)
    shipment = _locked_open(shipment)
    if shipment.shipped_at and when < shipment.shipped_at:
        raise ServiceError(
            f"Received at {when:%Y-%m-%d %H:%M} is before it was shipped "
            f"({shipment.shipped_at:%Y-%m-%d %H:%M}).",
            code="time_order",
            field="at",
        )
    lines = list(
        ShipmentItem.objects.select_for_update(of=("self",))
        .filter(shipment=shipment)
        .exclude(state=S.REMOVED)
        .select_related("aspirate", "unit", "dose")
        .order_by("id")
    )
    receipt = Receipt(shipment)
    missing = [line for line in lines if line.state == S.PACKED]
    transition_apply(
        item=shipment,
        action="receive_partially" if missing else "receive",
        actor=actor,
        changes={"received_at": when},
    )
    excursion = _excursion_evidence(shipment)
    for line in lines:
        if line.state == S.EXTRA:
            receipt.extra.append(line.item_code)
        elif line.state == S.PACKED:
            line.state = S.MISSING
            _save_line(line, actor, "missing at receipt")
            receipt.missing.append(line.item_code)
        elif line.state == S.ARRIVED:
            _receive_line(shipment, line, actor, when, receipt, excursion)
    return receipt


def _receive_line(
    shipment: Shipment,
    line: ShipmentItem,
    actor: AbstractBaseUser,
    when: dt.datetime,
    receipt: Receipt,
    excursion: dict[str, Any] | None,
) -> None:
    item = line.item
    assert item is not None
    transition_apply(
        item=item,
        action="receive",
        actor=actor,
        at=when,
        site=shipment.to_site,
        location=shipment.code,
        data=_event_data(shipment, condition="damaged" if line.damaged else "intact"),
    )
    line.state, line.active = S.RECEIVED, False
    line.received_at, line.received_by = when, actor
    _save_line(line, actor, "received")
    (receipt.damaged if line.damaged else receipt.received).append(line.item_code)
    if line.damaged:
        why = f"Damaged in transit in {shipment.code}" + (f": {line.note}" if line.note else "")
        if _quarantine(item, shipment, actor, when, why, {"damaged": True}, damaged=True):
            receipt.quarantined.append(line.item_code)
    if excursion is not None and _quarantine(
        item, shipment, actor, when, excursion["reason"], excursion["data"]
    ):
        receipt.quarantined.append(line.item_code)


@transaction.atomic
def shipment_item_find(
    *,
    shipment: Shipment,
    scan: str,
    actor: AbstractBaseUser,
    at: dt.datetime | None = None,
    damaged: bool = False,
    note: str = "",
) -> Receipt:
    """A missing item turned up: receive it now; the shipment is received when none is left."""
    require_perm(actor, "biobank.receive_shipment", "receive shipments")
    when = check_time(at)
    shipment = _locked_open(shipment)
    line = _line(shipment, scan)
    if line.state != S.MISSING:
        raise ConflictError(
            f"{line.item_code} is not missing ({line.get_state_display().lower()}): "
            "nothing is received twice.",
            code="already_received" if line.state == S.RECEIVED else "not_missing",
            field="scan",
        )
    line.damaged, line.note, line.scanned_at = damaged, (note or "").strip(), when
    receipt = Receipt(shipment)
    _receive_line(shipment, line, actor, when, receipt, _excursion_evidence(shipment))
    _close_if_complete(shipment, actor)
    return receipt


@transaction.atomic
def shipment_item_write_off(
    *, shipment: Shipment, scan: str, actor: AbstractBaseUser, reason: str
) -> ShipmentItem:
    """A missing item is given up: written off with a reason, and the item itself discarded
    (aspirate, unit) or cancelled (dose) with the same reason."""
    require_perm(actor, "biobank.receive_shipment", "write off shipment items")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(
            "A reason is required to write off a missing item.",
            code="reason_required",
            field="reason",
        )
    shipment = _locked_open(shipment)
    line = _line(shipment, scan)
    if line.state != S.MISSING:
        raise ConflictError(
            f"{line.item_code} is not missing ({line.get_state_display().lower()}).",
            code="not_missing",
            field="scan",
        )
    line.state, line.active, line.note = S.WRITTEN_OFF, False, reason
    _save_line(line, actor, f"written off: {reason}")
    item = line.item
    assert item is not None
    action = "cancel" if isinstance(item, Dose) else "discard"
    transition_apply(
        item=item,
        action=action,
        actor=actor,
        reason=f"Lost in transit ({shipment.code}): {reason}",
        site=shipment.to_site,
        location=shipment.code,
        data=_event_data(shipment, written_off=True),
    )
    _close_if_complete(shipment, actor)
    return line


def _close_if_complete(shipment: Shipment, actor: AbstractBaseUser) -> None:
    still = ShipmentItem.objects.filter(shipment=shipment, state=S.MISSING).exists()
    if shipment.status == ShipmentStatus.PARTIALLY_RECEIVED and not still:
        transition_apply(item=shipment, action="receive", actor=actor)


# --- quarantine and the temperature logger ---------------------------------------------------


def _quarantine(
    item: Item,
    shipment: Shipment,
    actor: AbstractBaseUser,
    when: dt.datetime,
    reason: str,
    data: dict[str, Any],
    *,
    damaged: bool = False,
) -> bool:
    """Quarantine one received item with the evidence; False if it already is (or has ended).

    Doses have no quarantine: an affected dose is cancelled (a new one can be prepared).
    """
    item.refresh_from_db()
    evidence = _event_data(shipment, **data)
    if isinstance(item, Aspirate):
        if item.status == AspirateStatus.COLLECTED:
            aspirate_receive(
                aspirate=item,
                decision="quarantine",
                actor=actor,
                temperature_c=_peak(data),
                condition=Condition.DAMAGED if damaged else Condition.TEMPERATURE,
                received_at=when,
                reason=reason,
                site=shipment.to_site,
            )
            return True
        if item.status != AspirateStatus.ACCEPTED:
            return False
    elif isinstance(item, ProductUnit):
        if item.status not in TRANSITIONS["unit"]["quarantine"].sources:
            return False
    elif isinstance(item, Dose):
        if item.status not in TRANSITIONS["dose"]["cancel"].sources:
            return False
        transition_apply(
            item=item, action="cancel", actor=actor, reason=reason, at=when, data=evidence
        )
        return True
    transition_apply(
        item=item,
        action="quarantine",
        actor=actor,
        reason=reason,
        at=when,
        site=shipment.to_site,
        location=shipment.code,
        data=evidence,
    )
    return True


def _peak(data: dict[str, Any]) -> Decimal | None:
    worst = (data.get("excursion") or {}).get("worst") or {}
    peak = worst.get("peak_c")
    if peak is None:
        return None
    value = Decimal(peak)
    # aspirate_receive records a transport temperature within −200 … 60 °C.
    return max(Decimal(-200), min(Decimal(60), value))


def _excursion_evidence(shipment: Shipment) -> dict[str, Any] | None:
    """The first uploaded logger file that shows an excursion, as a reason and event data."""
    logger = (
        LoggerFile.objects.filter(shipment=shipment).exclude(excursion={}).order_by("id").first()
    )
    if logger is None:
        return None
    return _evidence(shipment, logger)


def _evidence(shipment: Shipment, logger: LoggerFile) -> dict[str, Any]:
    summary = logger.excursion
    low, high = summary["range_c"]
    reason = (
        f"Temperature excursion in {shipment.code} (range {low} … {high} °C): "
        f"{summary['total_minutes']:g} min outside; {summary['text']}. "
        f"Logger file {logger.filename} (SHA-256 {logger.sha256[:16]}…)."
    )
    return {
        "reason": reason,
        "data": {
            "logger_file": logger.pk,
            "logger_sha256": logger.sha256,
            "logger_serial": shipment.logger_serial,
            "excursion": summary,
        },
    }


@dataclass
class LoggerUpload:
    logger_file: LoggerFile
    quarantined: list[str]


@transaction.atomic
def shipment_logger_upload(
    *, shipment: Shipment, data: bytes, filename: str, actor: AbstractBaseUser
) -> LoggerUpload:
    """Attach the logger's CSV; an excursion quarantines every received item at once (and any
    item received later), with the file and the excursion as evidence."""
    require_perm(actor, "biobank.receive_shipment", "upload logger files")
    shipment = _locked_open(shipment)
    if shipment.status not in (
        ShipmentStatus.IN_TRANSIT,
        ShipmentStatus.PARTIALLY_RECEIVED,
        ShipmentStatus.RECEIVED,
    ):
        raise TransitionError(
            f"{shipment.code} is {shipment.status}; a logger file is uploaded at receipt.",
            code="not_shipped",
            field="status",
        )
    try:
        readings = parse_logger_csv(data, default_tz=settings.TIME_ZONE)
    except LoggerCsvError as exc:
        raise ServiceError(exc.message, code=exc.code, field="file") from exc
    low, high = shipment.temperature_range
    summary = excursion_summary(excursions_find(readings, low, high), low, high)
    temperatures = [r.temperature_c for r in readings]
    logger = LoggerFile.objects.create(
        shipment=shipment,
        filename=(filename or "logger.csv")[:200],
        sha256=hashlib.sha256(data).hexdigest(),
        content=decode(data),
        uploaded_by=actor,
        uploaded_at=timezone.now(),
        readings=len(readings),
        first_at=readings[0].at,
        last_at=readings[-1].at,
        min_c=min(temperatures),
        max_c=max(temperatures),
        excursion=summary,
    )
    quarantined: list[str] = []
    if summary:
        evidence = _evidence(shipment, logger)
        received = ShipmentItem.objects.filter(shipment=shipment, state=S.RECEIVED).select_related(
            "aspirate", "unit", "dose"
        )
        when = timezone.now()
        for line in received:
            item = line.item
            assert item is not None
            if _quarantine(item, shipment, actor, when, evidence["reason"], evidence["data"]):
                quarantined.append(line.item_code)
    return LoggerUpload(logger, quarantined)


__all__ = [
    "LoggerUpload",
    "PackRefused",
    "Receipt",
    "ScanOutcome",
    "pack_refusal",
    "shipment_cancel",
    "shipment_create",
    "shipment_item_find",
    "shipment_item_write_off",
    "shipment_logger_upload",
    "shipment_pack",
    "shipment_receive",
    "shipment_receive_scan",
    "shipment_seal",
    "shipment_ship",
    "shipment_unpack",
]
