"""Shipment receipt: scan arriving items against the manifest, close the receipt (missing
items stay in transit), receive a missing item found later or write it off, and quarantine
what arrived damaged or with a temperature excursion in the logger file.

Blinding: as for packing, messages and events name items by ID and kind only; an affected
dose of either arm is cancelled the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ConflictError, ServiceError
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
    LoggerFile,
    Shipment,
    ShipmentItem,
    ShipmentItemState,
)
from biobank.selectors.shipments import ITEM_MODELS
from biobank.terms import local_minute

from .aspirates import aspirate_receive
from .lifecycle import HOLD_STEPS, TRANSITIONS, allowed_actions, transition_apply, transition_check
from .shipments import (
    item_step,
    line_save,
    manifest_line,
    scan_read,
    shipment_begin,
    shipment_lock,
    status_require,
)
from .signatures import require_perm
from .time_order import check_time, not_before

S = ShipmentItemState


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
    shipment = shipment_begin(
        shipment,
        "receive_scan",
        actor=actor,
        code="not_in_transit",
        why="; receipt scans are for a shipment in transit (a missing item found later is "
        "received with 'found').",
    )
    kind, code = scan_read(scan)
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
        line_save(extra, actor, "extra: not on the manifest")
        return ScanOutcome(extra, True, f"{code} is NOT on the manifest: recorded as extra.")
    line.state, line.scanned_at, line.damaged = S.ARRIVED, now, damaged
    line.note = (note or "").strip()
    line_save(line, actor, "scanned at receipt")
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
    shipment = shipment_lock(shipment)
    not_before(when, shipment.shipped_at, field="at", what=f"the shipping of {shipment.code}")
    transition_check(kind="shipment", action="receive", item=shipment)
    _logger_require(shipment)
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
            line_save(line, actor, "missing at receipt")
            receipt.missing.append(line.item_code)
        elif line.state == S.ARRIVED:
            _receive_line(shipment, line, actor, when, receipt, excursion)
    return receipt


# A logger's clock and ours may differ by a few minutes; a reading later than this is a
# logger set to the wrong time (or the wrong zone), and its trace cannot be matched to the trip.
LOGGER_CLOCK_TOLERANCE = dt.timedelta(minutes=5)


def _logger_clock_check(last_at: dt.datetime, shipment: Shipment) -> None:
    now = timezone.now()
    if last_at > now + LOGGER_CLOCK_TOLERANCE:
        raise ServiceError(
            f"The logger file for {shipment.code} has readings until {local_minute(last_at)}, "
            f"after now ({local_minute(now)}): the logger's clock or time zone is wrong, so its "
            "trace cannot be matched to the trip. Export it again with the right time.",
            code="logger_clock",
            field="file",
        )


def _logger_require(shipment: Shipment) -> None:
    """A shipment that carries a data logger is not received on trust: its logger file comes
    first, so an excursion quarantines what arrived before anyone can use it."""
    if not shipment.carries_logger or LoggerFile.objects.filter(shipment=shipment).exists():
        return
    low, high = shipment.temperature_range
    logger = f"logger {shipment.logger_serial}" if shipment.logger_serial else "a data logger"
    raise ServiceError(
        f"{shipment.code} ({shipment.get_kind_display()}, range {low} … {high} °C) carries "
        f"{logger}: upload its logger file before closing the receipt (0 files uploaded).",
        code="logger_required",
        field="file",
    )


def _receive_line(
    shipment: Shipment,
    line: ShipmentItem,
    actor: AbstractBaseUser,
    when: dt.datetime,
    receipt: Receipt,
    excursion: dict[str, Any] | None,
) -> None:
    item_step(
        shipment,
        line,
        "receive",
        actor=actor,
        at=when,
        site=shipment.to_site,
        condition="damaged" if line.damaged else "intact",
    )
    line.state, line.active = S.RECEIVED, False
    line.received_at, line.received_by = when, actor
    line_save(line, actor, "received")
    (receipt.damaged if line.damaged else receipt.received).append(line.item_code)
    if line.damaged:
        why = f"Damaged in transit in {shipment.code}" + (f": {line.note}" if line.note else "")
        if _quarantine(line, shipment, actor, when, why, {"damaged": True}, damaged=True):
            receipt.quarantined.append(line.item_code)
    if excursion is not None and _quarantine(
        line, shipment, actor, when, excursion["reason"], excursion["data"]
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
    shipment = shipment_lock(shipment)
    line = manifest_line(shipment, scan)
    if line.state != S.MISSING:
        raise ConflictError(
            f"{line.item_code} is not missing ({line.get_state_display().lower()}): "
            "nothing is received twice.",
            code="already_received" if line.state == S.RECEIVED else "not_missing",
            field="scan",
        )
    status_require(
        shipment,
        "find",
        code="not_missing",
        why="; only a partially received shipment has missing items to find.",
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
    shipment = shipment_lock(shipment)
    line = manifest_line(shipment, scan)
    if line.state != S.MISSING:
        raise ConflictError(
            f"{line.item_code} is not missing ({line.get_state_display().lower()}).",
            code="not_missing",
            field="scan",
        )
    status_require(
        shipment,
        "write_off",
        code="not_missing",
        why="; only a partially received shipment has missing items to write off.",
    )
    line.state, line.active, line.note = S.WRITTEN_OFF, False, reason
    line_save(line, actor, f"written off: {reason}")
    item_step(
        shipment,
        line,
        "cancel" if line.dose_id is not None else "discard",
        actor=actor,
        reason=f"Lost in transit ({shipment.code}): {reason}",
        site=shipment.to_site,
        written_off=True,
    )
    _close_if_complete(shipment, actor)
    return line


def _close_if_complete(shipment: Shipment, actor: AbstractBaseUser) -> None:
    still = ShipmentItem.objects.filter(shipment=shipment, state=S.MISSING).exists()
    if not still:
        transition_apply(item=shipment, action="complete_receipt", actor=actor)


# --- quarantine and the temperature logger ---------------------------------------------------


def _quarantine(
    line: ShipmentItem,
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
    item = line.item
    assert item is not None
    item.refresh_from_db()
    if isinstance(item, Aspirate) and item.status == AspirateStatus.COLLECTED:
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
    action = HOLD_STEPS[line.item_kind]
    if action not in allowed_actions(item):
        return False
    item_step(
        shipment,
        line,
        action,
        actor=actor,
        at=when,
        reason=reason,
        site=shipment.to_site,
        **data,
    )
    return True


def _held(line: ShipmentItem) -> bool:
    """The item is held already (quarantined, or a dose cancelled): nothing more to do."""
    item = line.item
    return item.status == TRANSITIONS[line.item_kind][HOLD_STEPS[line.item_kind]].target


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


@dataclass(frozen=True)
class NotHeld:
    """An item an excursion found but could not quarantine: it is past that point (e.g. a
    thawed or administered unit, an administered dose), so QA must act on it."""

    code: str
    kind: str
    status: str  # e.g. "thawed"
    status_label: str  # as people read it, e.g. "Thawed"

    def __str__(self) -> str:
        return f"{self.kind} {self.code} ({self.status_label.lower()})"


@dataclass
class LoggerUpload:
    logger_file: LoggerFile
    quarantined: list[str]
    # Received items the excursion could not quarantine: never left unsaid.
    not_quarantined: list[NotHeld] = field(default_factory=list)


@transaction.atomic
def shipment_logger_upload(
    *, shipment: Shipment, data: bytes, filename: str, actor: AbstractBaseUser
) -> LoggerUpload:
    """Attach the logger's CSV; an excursion quarantines every received item at once (and any
    item received later), with the file and the excursion as evidence."""
    shipment = shipment_begin(
        shipment,
        "logger",
        actor=actor,
        code="not_shipped",
        why="; a logger file is uploaded at receipt.",
    )
    try:
        readings = parse_logger_csv(data, default_tz=settings.TIME_ZONE)
    except LoggerCsvError as exc:
        raise ServiceError(exc.message, code=exc.code, field="file") from exc
    _logger_clock_check(readings[-1].at, shipment)
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
    not_quarantined: list[NotHeld] = []
    if summary:
        evidence = _evidence(shipment, logger)
        received = ShipmentItem.objects.filter(shipment=shipment, state=S.RECEIVED).select_related(
            "aspirate", "unit", "dose"
        )
        when = timezone.now()
        for line in received:
            if _quarantine(line, shipment, actor, when, evidence["reason"], evidence["data"]):
                quarantined.append(line.item_code)
            elif not _held(line):
                item = line.item
                not_quarantined.append(
                    NotHeld(line.item_code, line.item_kind, item.status, item.get_status_display())
                )
    return LoggerUpload(logger, quarantined, not_quarantined)
