"""Catalogued steps of shipments between sites."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.errors import ServiceError
from biobank.models import ShipmentKind, Site

from .. import shipment_receipt, shipments
from .inputs import AT, PASSWORD, Action, Input, calls, choices, reason


def _site(raw: str, field: str) -> Site:
    site = Site.objects.filter(code=str(raw or "").strip().upper()).first()
    if site is None:
        codes = ", ".join(Site.objects.order_by("code").values_list("code", flat=True))
        raise ServiceError(f"Unknown site '{raw}'; one of {codes}.", code="not_found", field=field)
    return site


def _shipment_create(_: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    rest = {k: v for k, v in d.items() if k not in ("from_site", "to_site")}
    return shipments.shipment_create(
        from_site=_site(d["from_site"], "from_site"),
        to_site=_site(d["to_site"], "to_site"),
        actor=actor,
        **rest,
    )


def _logger(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    upload = d["file"]
    return shipment_receipt.shipment_logger_upload(
        shipment=item, data=upload.read(), filename=upload.name, actor=actor
    )


PACK, RECEIVE = "biobank.pack_shipment", "biobank.receive_shipment"
ITEM_SCAN = Input("scan", max_length=200, help="An item's ID as scanned")
ARRIVAL = (
    ITEM_SCAN,
    Input("damaged", "bool", required=False, default=False),
    Input("note", "reason", required=False, max_length=2000, default=""),
)


def _optional(name: str, length: int) -> Input:
    return Input(name, required=False, max_length=length, default="")


STEPS: tuple[Action, ...] = (
    Action(
        "shipment",
        "create",
        "New shipment",
        PACK,
        (
            Input("from_site", max_length=16),
            Input("to_site", max_length=16),
            Input("kind", "choice", choices=choices(ShipmentKind)),
            _optional("label", 200),
            _optional("shipper_id", 64),
            _optional("logger_serial", 64),
            _optional("courier", 100),
            _optional("tracking_ref", 100),
        ),
        _shipment_create,
        on_item=False,
    ),
    Action(
        "shipment",
        "pack",
        "Pack",
        PACK,
        (ITEM_SCAN,),
        calls(shipments.shipment_pack, "shipment"),
    ),
    Action(
        "shipment",
        "unpack",
        "Take out",
        PACK,
        (ITEM_SCAN,),
        calls(shipments.shipment_unpack, "shipment"),
    ),
    Action(
        "shipment",
        "seal",
        "Seal and sign",
        PACK,
        (PASSWORD,),
        calls(shipments.shipment_seal, "shipment"),
    ),
    Action(
        "shipment",
        "ship",
        "Ship",
        PACK,
        (
            AT,
            Input("courier", required=False, max_length=100),
            Input("tracking_ref", required=False, max_length=100),
        ),
        lambda item, actor, d: shipments.shipment_ship(
            shipment=item,
            actor=actor,
            at=d.get("at"),
            courier=d.get("courier") or None,
            tracking_ref=d.get("tracking_ref") or None,
        ),
    ),
    Action(
        "shipment",
        "cancel",
        "Cancel",
        PACK,
        (reason(),),
        calls(shipments.shipment_cancel, "shipment"),
    ),
    Action(
        "shipment",
        "receive_scan",
        "Scan an arriving item",
        RECEIVE,
        ARRIVAL,
        calls(shipment_receipt.shipment_receive_scan, "shipment"),
    ),
    Action(
        "shipment",
        "receive",
        "Close the receipt",
        RECEIVE,
        (AT,),
        calls(shipment_receipt.shipment_receive, "shipment"),
    ),
    Action(
        "shipment",
        "find",
        "A missing item found",
        RECEIVE,
        (*ARRIVAL, AT),
        calls(shipment_receipt.shipment_item_find, "shipment"),
    ),
    Action(
        "shipment",
        "write_off",
        "Write off a missing item",
        RECEIVE,
        (ITEM_SCAN, reason()),
        calls(shipment_receipt.shipment_item_write_off, "shipment"),
    ),
    Action(
        "shipment",
        "logger",
        "Upload the logger file",
        RECEIVE,
        (Input("file", "file", help="The temperature logger's CSV"),),
        _logger,
        doc="The logger file is the one upload here: JSON everywhere else.",
    ),
)
