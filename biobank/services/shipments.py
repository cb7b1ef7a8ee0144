"""Shipments between sites: plan, pack by scan, seal (signed), ship, cancel. (Receipt:
``shipment_receipt``.)

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
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ConflictError, NotFound, ServiceError, TransitionError
from biobank.identifiers import Kind, with_article
from biobank.models import (
    FROZEN_PRODUCT_MAX_C,
    KIND_RANGE_C,
    Aspirate,
    Dose,
    ProductUnit,
    Shipment,
    ShipmentItem,
    ShipmentItemState,
    ShipmentKind,
    ShipmentStatus,
    SignatureMeaning,
    Site,
)
from biobank.scan_input import ScanError, parse_scan
from biobank.selectors.shipments import ITEM_MODELS, item_site
from biobank.terms import local_minute

from .audit import history_save
from .doses import dose_cancel_apply
from .identifiers import identifier_allocate
from .lifecycle import TRANSITIONS, transition_apply
from .signatures import require_perm, signature_sign
from .time_order import check_time, not_before

S = ShipmentItemState
Item = Aspirate | ProductUnit | Dose

# Which shipment kinds each item kind may travel in, and why (DOMAIN.md, "Travel between
# sites"): frozen product only in an LN2 dry shipper; dry ice (≤ −60 °C) is for test samples.
ALLOWED_KINDS: dict[str, tuple[str, ...]] = {
    "aspirate": (ShipmentKind.AMBIENT, ShipmentKind.COOL),
    # Those that keep what cryopreserved product is stored at (today: the LN2 dry shipper).
    "unit": tuple(k for k, (_, high) in KIND_RANGE_C.items() if high <= FROZEN_PRODUCT_MAX_C),
    "dose": (ShipmentKind.AMBIENT, ShipmentKind.COOL),
}
WHY_KINDS: dict[str, str] = {
    "aspirate": "a fresh aspirate travels at ambient temperature or 2–8 °C",
    "unit": f"a cryopreserved unit must stay at ≤ {FROZEN_PRODUCT_MAX_C} °C (vapour-phase LN2) "
    "all the way",
    "dose": "a prepared dose travels at ambient temperature or 2–8 °C",
}


class PackRefused(ServiceError):
    """An item that may not go into this shipment; ``code`` names the reason."""

    status_code = 409


# --- the shipment's own steps ----------------------------------------------------------------


def shipment_lock(shipment: Shipment) -> Shipment:
    """Lock the row and refresh the caller's object in place (it sees the new state)."""
    locked = (
        Shipment.objects.select_for_update(of=("self",))
        .select_related("from_site", "to_site")
        .get(pk=shipment.pk)
    )
    shipment.__dict__.update(locked.__dict__)
    return shipment


def status_require(shipment: Shipment, action: str, *, code: str, why: str) -> None:
    """Refuse a manifest or receipt step on a shipment in a status its row in the transition
    table (``TRANSITIONS["shipment"][action]``) does not start from."""
    if shipment.status not in TRANSITIONS["shipment"][action].sources:
        raise TransitionError(
            f"{shipment.code} is {shipment.status}{why}", code=code, field="status"
        )


def shipment_begin(
    shipment: Shipment, action: str, *, actor: AbstractBaseUser, code: str, why: str
) -> Shipment:
    """How a manifest or receipt step starts: the catalogue's permission for the step, the
    locked row, then the table's check of the status it starts from."""
    from .actions import action_get, action_require  # the catalogue is built on this module

    action_require(action_get("shipment", action), actor)
    shipment = shipment_lock(shipment)
    status_require(shipment, action, code=code, why=why)
    return shipment


def item_step(
    shipment: Shipment,
    line: ShipmentItem,
    action: str,
    *,
    actor: AbstractBaseUser,
    site: Site,
    at: dt.datetime | None = None,
    reason: str = "",
    **data: Any,
) -> None:
    """The custody step of a manifest line's item (ship, receive, quarantine, write-off): the
    event is located at the shipment and carries its route."""
    item = line.item
    assert item is not None  # a manifest line always links its item
    where = {"site": site, "location": shipment.code, "data": event_data(shipment, **data)}
    if isinstance(item, Dose) and action == "cancel":
        # A dose lost or spoiled in transit is cancelled as any dose is: its units settled.
        dose_cancel_apply(dose=item, actor=actor, at=at, reason=reason, **where)
        return
    if isinstance(item, ProductUnit) and action == "discard":
        # A unit lost in transit takes the dose reserving it along: cancelled, its other units
        # settled as on any cancellation, this one discarded here.
        link = item.dose_links.filter(active=True).select_related("dose").first()
        if link is not None:
            why = f"{item.code} lost in transit: {reason}"
            dose_cancel_apply(
                dose=link.dose, actor=actor, at=at, reason=why, settled=frozenset({item.pk})
            )
    transition_apply(item=item, action=action, actor=actor, at=at, reason=reason, **where)


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
    history_save(shipment, actor=actor, reason="planned")
    return shipment


def scan_read(raw: str, field_name: str = "scan") -> tuple[Kind, str]:
    try:
        scan = parse_scan(raw if isinstance(raw, str) else "")
    except ScanError as exc:
        raise ServiceError(exc.message, code=exc.code, field=field_name) from exc
    return scan.parsed.kind, scan.value


def _item_for_scan(raw: str, *, lock: bool) -> tuple[str, Item]:
    kind, code = scan_read(raw)
    if kind not in ITEM_MODELS:
        raise PackRefused(
            f"{code} is {with_article(kind.label)}; "
            "only aspirates, units and doses travel in shipments.",
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


def _expired_dose(item: Item, at: dt.datetime) -> PackRefused | None:
    """A prepared syringe past its expiry does not travel (the bedside would refuse it)."""
    if not isinstance(item, Dose) or not item.is_expired(at):
        return None
    assert item.expires_at is not None
    return PackRefused(
        f"{item.code} EXPIRED at {local_minute(item.expires_at)}: it cannot be shipped.",
        code="expired",
        field="scan",
    )


def pack_refusal(*, shipment: Shipment, kind: str, item: Item) -> PackRefused | None:
    """Why this item may not go into this shipment, or None when it may."""
    code = item.code
    steps = TRANSITIONS[kind]
    quarantine = steps.get("quarantine")
    if quarantine is not None and item.status == quarantine.target:
        return PackRefused(
            f"{code} is quarantined: it cannot be shipped until QA lifts the quarantine.",
            code="quarantined",
            field="scan",
        )
    expired = _expired_dose(item, timezone.now())
    if expired is not None:
        return expired
    packable = steps["ship"].sources
    if item.status not in packable:
        # In the order of the item's statuses, as the message always listed them.
        allowed = ", ".join(
            s for s, _ in type(item)._meta.get_field("status").choices if s in packable
        )
        remove = steps.get("remove")
        in_storage = remove is not None and item.status in remove.sources
        hint = " Take it out of storage first." if in_storage else ""
        return PackRefused(
            f"{code} is {item.status}; "
            f"{with_article(kind)} can be packed only when: {allowed}.{hint}",
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
            f"A {kind} cannot travel in {ShipmentKind(shipment.kind).label}; "
            f"allowed: {allowed}, because {WHY_KINDS[kind]}.",
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
    shipment = shipment_begin(
        shipment, "pack", actor=actor, code="manifest_locked", why=": its manifest is locked."
    )
    # The item row lock serialises two packers scanning the same item at once; the partial
    # unique constraint is the backstop.
    kind, item = _item_for_scan(scan, lock=True)
    refusal = pack_refusal(shipment=shipment, kind=kind, item=item)
    if refusal is not None:
        raise refusal
    if shipment.status == ShipmentStatus.PLANNED:
        transition_apply(item=shipment, action="pack", actor=actor)
    line = ShipmentItem(
        shipment=shipment,
        item_kind=kind,
        item_code=item.code,
        packed_at=timezone.now(),
        packed_by=actor,
        **{kind: item},
    )
    history_save(
        line,
        actor=actor,
        reason="packed",
        conflict=ConflictError(
            f"{item.code} was packed into another shipment at the same moment.",
            code="already_in_shipment",
            field="scan",
        ),
    )
    return line


def manifest_line(
    shipment: Shipment, raw: str, states: tuple[str, ...] | None = None
) -> ShipmentItem:
    _, code = scan_read(raw)
    rows = ShipmentItem.objects.select_for_update(of=("self",)).filter(
        shipment=shipment, item_code=code
    )
    if states is not None:
        rows = rows.filter(state__in=states)
    line = rows.order_by("-id").first()
    if line is None:
        raise NotFound(f"{code} is not on the manifest of {shipment.code}.", field="scan")
    return line


def line_save(line: ShipmentItem, actor: AbstractBaseUser, reason: str) -> None:
    history_save(line, actor=actor, reason=reason[:100])


@transaction.atomic
def shipment_unpack(*, shipment: Shipment, scan: str, actor: AbstractBaseUser) -> ShipmentItem:
    """Take an item out again before sealing."""
    shipment = shipment_begin(
        shipment, "unpack", actor=actor, code="manifest_locked", why=": its manifest is locked."
    )
    line = manifest_line(shipment, scan, (S.PACKED,))
    line.state, line.active = S.REMOVED, False
    line_save(line, actor, "taken out before sealing")
    return line


def manifest_digest(codes: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(codes)).encode()).hexdigest()


@transaction.atomic
def shipment_seal(*, shipment: Shipment, actor: AbstractBaseUser, password: str) -> Shipment:
    """Lock the manifest and e-sign it (password asked again)."""
    require_perm(actor, "biobank.pack_shipment", "seal shipments")
    shipment = shipment_lock(shipment)
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


def event_data(shipment: Shipment, **extra: Any) -> dict[str, Any]:
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
    shipment = shipment_lock(shipment)
    sealed = shipment.seal_signature.signed_at if shipment.seal_signature_id else None
    not_before(when, sealed, field="at", what=f"the seal signature of {shipment.code}")
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
        expired = _expired_dose(line.item, when)
        if expired is not None:
            raise expired
        item_step(shipment, line, "ship", actor=actor, at=when, site=shipment.from_site)
    return shipment


@transaction.atomic
def shipment_cancel(*, shipment: Shipment, actor: AbstractBaseUser, reason: str) -> Shipment:
    """Cancel before it leaves; the items are free again."""
    require_perm(actor, "biobank.pack_shipment", "cancel shipments")
    transition_apply(item=shipment, action="cancel", actor=actor, reason=reason)
    for line in ShipmentItem.objects.filter(shipment=shipment, active=True):
        line.state, line.active = S.REMOVED, False
        line_save(line, actor, "shipment cancelled")
    return shipment
