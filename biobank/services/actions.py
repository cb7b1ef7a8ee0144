"""The action catalogue: every step a person can take, once.

One entry per step: its name (the same word in the API path, the admin action, the service and
the custody event), its label, the permission it needs, its input and the service it calls.
The API generates its POST actions from it, the admin its actions, the scan pages ask it for
permissions; `action_run` is the one place that checks the permission and resolves scanned
IDs before the service runs. A new step is one row in the transition table, one service and
one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.errors import Forbidden, NotFound, ServiceError
from biobank.identifiers import Kind
from biobank.models import Anticoagulant, Condition, ContainerType, QcTest, ShipmentKind, Site
from biobank.selectors.scan import scan_resolve
from biobank.visibility import can_see_allocation

from . import aspirates, doses, processing, qc_release, shipments, storage, unblinding, units
from .lifecycle import TRANSITIONS
from .trial import participant_enroll


@dataclass(frozen=True)
class Input:
    """One input of a step. ``type`` is one of: text, reason, password, int, decimal, datetime,
    date, choice, bool, file, code (an item ID, resolved like a scan), codes (a list of them),
    rows (a list of records, each with the ``of`` inputs)."""

    name: str
    type: str = "text"
    required: bool = True
    help: str = ""
    max_length: int | None = None
    min_value: int | Decimal | None = None
    max_value: int | Decimal | None = None
    max_digits: int = 0
    decimal_places: int = 0
    choices: tuple[tuple[str, str], ...] = ()
    kinds: frozenset[Kind] = frozenset()
    of: tuple[Input, ...] = ()
    max_items: int = 200
    default: Any = None


Run = Callable[[Any, AbstractBaseUser, dict[str, Any]], Any]


@dataclass(frozen=True)
class Action:
    kind: str  # "aspirate", "processing", "unit", "container", "dose", "visit", "participant"
    name: str
    label: str
    permission: str
    inputs: tuple[Input, ...]
    run: Run
    on_item: bool = True  # False: the step creates an item (API: POST to the collection)
    doc: str = ""

    @property
    def path(self) -> str:
        return self.name.replace("_", "-")

    @property
    def needs_signature(self) -> bool:
        return any(i.type == "password" for i in self.inputs)

    @property
    def needs_reason(self) -> bool:
        return any(i.type == "reason" and i.required for i in self.inputs)


# --- inputs used by several steps ------------------------------------------------------------

AT = Input("at", "datetime", required=False, help="When it happened (default: now)")


def reason(required: bool = True) -> Input:
    return Input("reason", "reason", required=required, max_length=2000, default="")


PASSWORD = Input("password", "password", max_length=200, help="Your password: the e-signature")


def viability(name: str, required: bool = True) -> Input:
    return Input(
        name, "decimal", required, max_digits=4, decimal_places=1, min_value=0, max_value=100
    )


def count(name: str, top: int = 10**12, required: bool = True, help: str = "") -> Input:
    return Input(name, "int", required, help=help, min_value=1, max_value=top)


def code(name: str, *kinds: Kind, required: bool = True, help: str = "") -> Input:
    return Input(name, "code", required, help=help, max_length=80, kinds=frozenset(kinds))


def _choices(enum: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(value), str(label)) for value, label in enum.choices)


def _unit_reason(action: str) -> Input:
    return reason(TRANSITIONS["unit"][action].needs_reason)


def _transition(action: str) -> Run:
    """A unit step that is a plain lifecycle transition."""
    return lambda item, actor, d: units.unit_transition(
        unit=item, action=action, actor=actor, reason=d.get("reason", ""), at=d.get("at")
    )


# --- steps that need more than a call --------------------------------------------------------


def _enrol(_: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    site = Site.objects.filter(code=d["site"].strip().upper()).select_related("study").first()
    if site is None:
        raise ServiceError(f"No site {d['site']}.", code="not_found", field="site")
    arm = None
    if d.get("arm"):
        if not can_see_allocation(actor):
            raise Forbidden(
                "Only unblinded roles may record an allocation.",
                code="permission_denied",
                field="arm",
            )
        arm = site.study.arms.filter(code=d["arm"].strip().upper()).first()
        if arm is None:
            raise ServiceError(f"No arm {d['arm']}.", code="not_found", field="arm")
    return participant_enroll(
        study=site.study,
        site=site,
        pseudonym=d["pseudonym"],
        enrolled_on=d["enrolled_on"],
        arm=arm,
        weight_kg=d.get("weight_kg"),
        actor=actor,
    )


def _visit(participant: Any, visit_code: str) -> Any:
    visit = participant.visits.filter(visit_type__code=visit_code.strip().upper()).first()
    if visit is None:
        raise ServiceError(
            f"{participant.pseudonym} has no visit {visit_code}.", code="not_found", field="visit"
        )
    return visit


def _fill(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    specs = [units.UnitSpec(**spec) for spec in d["units"]]
    return units.units_create(
        processing=item, specs=specs, actor=actor, created_at=d.get("created_at")
    )


def _freezing_run(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    chosen = d.get("units") or list(item.units.filter(status="created"))
    return units.freezing_run_record(
        processing=item,
        units=chosen,
        started_at=d["started_at"],
        finished_at=d["finished_at"],
        rate_c_per_min=d.get("rate_c_per_min", Decimal("-1")),
        program=d.get("program") or "-1 °C/min to -80 °C, then LN2",
        actor=actor,
    )


def _box_store(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    rows = d["placements"]
    try:
        return storage.units_store(
            container=item,
            items=[storage.StoreItem(p["unit"], p.get("position") or None) for p in rows],
            actor=actor,
            at=d.get("at"),
        )
    except ServiceError as exc:
        if exc.index is not None:  # name the refused row: its unit and its place in the list
            where = f"placements.{exc.index}"
            exc.message = f"{rows[exc.index]['unit'].code} ({where}): {exc.message}"
            exc.field = f"{where}.{exc.field or 'unit'}"
        raise


def _prepare(_: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    chosen = [*d.get("units", []), *([d["unit"]] if d.get("unit") else [])]
    return doses.dose_prepare(
        visit=_visit(d["participant"], d["visit"]),
        actor=actor,
        units=chosen,
        processing=d.get("processing"),
    )


def _make_ready(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    return doses.dose_make_ready(
        dose=item,
        actor=actor,
        ready_at=d.get("ready_at"),
        post_thaw_cell_count=d.get("post_thaw_cell_count"),
        post_thaw_viability_pct=d.get("post_thaw_viability_pct"),
        unit_counts=[
            doses.UnitCount(u["unit"], u["post_thaw_cell_count"], u["post_thaw_viability_pct"])
            for u in d.get("units", [])
        ],
        saline_lot=d.get("saline_lot", ""),
    )


def _bedside(step: Callable[..., Any], **extra: str) -> Run:
    """Dispatch and administration: the dose scan defaults to the dose the step is on."""

    def run(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
        more = {name: d.get(name, default) for name, default in extra.items()}
        return step(
            dose_scan=d.get("dose_scan") or item.code,
            participant_scan=d["participant_scan"],
            actor=actor,
            at=d.get("at"),
            **more,
        )

    return run


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
    return shipments.shipment_logger_upload(
        shipment=item, data=upload.read(), filename=upload.name, actor=actor
    )


PARTICIPANT_SCAN = Input("participant_scan", help="The participant ID as scanned", max_length=200)
DOSE_SCAN = Input(
    "dose_scan",
    required=False,
    help="The dose label as scanned (default: this dose)",
    max_length=200,
)
PLACEMENT = (code("unit", Kind.UNIT), Input("position", required=False, max_length=8, default=""))
POSITION = Input("position", required=False, max_length=8, default="", help="Empty: next free")
CONTAINER = code("container", Kind.BOX, Kind.CONTAINER, help="Box or container ID (BX…/CT…)")

# --- the catalogue ---------------------------------------------------------------------------

ACTIONS: tuple[Action, ...] = (
    # participants and visits
    Action(
        "participant",
        "enrol",
        "Enrol participant",
        "biobank.add_participant",
        (
            Input("pseudonym", max_length=32),
            Input("site", max_length=16),
            Input("enrolled_on", "date"),
            Input("arm", required=False, max_length=8, help="Only without a randomisation list"),
            Input("weight_kg", "decimal", False, max_digits=5, decimal_places=1, min_value=1),
        ),
        _enrol,
        on_item=False,
    ),
    Action(
        "participant",
        "unblind",
        "Emergency unblinding",
        "biobank.emergency_unblind",
        (PASSWORD, Input("reason", "reason", max_length=2000)),
        lambda item, actor, d: unblinding.participant_unblind(
            participant=item, actor=actor, password=d["password"], reason=d["reason"]
        ),
    ),
    Action(
        "visit",
        "record_weight",
        "Record body weight",
        "biobank.record_weight",
        (
            # No bounds here: the service refuses with the trial's plausible range.
            Input("weight_kg", "decimal", max_digits=8, decimal_places=2),
            Input("measured_at", "datetime", required=False),
        ),
        lambda item, actor, d: doses.visit_weight_record(
            visit=item, weight_kg=d["weight_kg"], measured_at=d.get("measured_at"), actor=actor
        ),
        doc="Record the body weight measured at a treatment visit; answers with the dose plan.",
    ),
    # aspirates
    Action(
        "aspirate",
        "collect",
        "Collect aspirate",
        "biobank.add_aspirate",
        (
            code("participant", Kind.PARTICIPANT),
            Input("visit", max_length=16, help="Visit type code, e.g. BASELINE or M6"),
            Input(
                "volume_ml", "decimal", max_digits=6, decimal_places=1, min_value=0, max_value=500
            ),
            Input("anticoagulant", "choice", choices=_choices(Anticoagulant)),
            Input("collected_at", "datetime"),
            Input("collected_by", max_length=100),
        ),
        lambda _, actor, d: aspirates.aspirate_collect(
            visit=_visit(d["participant"], d["visit"]),
            volume_ml=d["volume_ml"],
            anticoagulant=d["anticoagulant"],
            collected_at=d["collected_at"],
            collected_by=d["collected_by"],
            actor=actor,
        ),
        on_item=False,
    ),
    Action(
        "aspirate",
        "receive",
        "Receive in lab",
        "biobank.change_aspirate",
        (
            Input(
                "decision",
                "choice",
                choices=(("accept", "Accept"), ("quarantine", "Quarantine"), ("reject", "Reject")),
            ),
            Input(
                "temperature_c",
                "decimal",
                False,
                help="Transport temperature (°C)",
                max_digits=4,
                decimal_places=1,
            ),
            Input("condition", "choice", choices=_choices(Condition), default="intact"),
            Input("received_at", "datetime", required=False),
            Input(
                "reason",
                "reason",
                required=False,
                max_length=2000,
                default="",
                help="Required to quarantine or reject, or to accept a sample that is not intact.",
            ),
        ),
        lambda item, actor, d: aspirates.aspirate_receive(
            aspirate=item,
            decision=d["decision"],
            actor=actor,
            temperature_c=d.get("temperature_c"),
            condition=d["condition"],
            received_at=d.get("received_at"),
            reason=d.get("reason", ""),
        ),
    ),
    Action(
        "aspirate",
        "release_quarantine",
        "Release from quarantine",
        "biobank.change_aspirate",
        (reason(),),
        lambda item, actor, d: aspirates.aspirate_release_quarantine(
            aspirate=item, actor=actor, reason=d["reason"]
        ),
    ),
    Action(
        "aspirate",
        "reject",
        "Reject",
        "biobank.change_aspirate",
        (reason(),),
        lambda item, actor, d: aspirates.aspirate_reject(
            aspirate=item, actor=actor, reason=d["reason"]
        ),
    ),
    Action(
        "aspirate",
        "start_processing",
        "Start processing",
        "biobank.add_processing",
        (AT,),
        lambda item, actor, d: processing.processing_start(
            aspirate=item, actor=actor, started_at=d.get("at")
        ),
    ),
    Action(
        "aspirate",
        "discard",
        "Discard",
        "biobank.change_aspirate",
        (reason(),),
        lambda item, actor, d: aspirates.aspirate_discard(
            aspirate=item, actor=actor, reason=d["reason"]
        ),
    ),
    # processing
    Action(
        "processing",
        "passage",
        "Record passage",
        "biobank.add_passage",
        (
            Input("number", "int", min_value=0, max_value=30),
            count("cell_count", 10**13),
            viability("viability_pct"),
            Input("passaged_at", "datetime", required=False),
        ),
        lambda item, actor, d: processing.passage_record(processing=item, actor=actor, **d),
    ),
    Action(
        "processing",
        "qc_result",
        "Record QC result",
        "biobank.add_qcresult",
        (
            Input("test", "choice", choices=_choices(QcTest)),
            Input("result", max_length=200),
            Input("value", "decimal", False, max_digits=10, decimal_places=3),
            Input("passed", "bool"),
            Input("tested_at", "datetime", required=False),
        ),
        lambda item, actor, d: processing.qc_result_record(processing=item, actor=actor, **d),
    ),
    Action(
        "processing",
        "harvest",
        "Harvest",
        "biobank.change_processing",
        (
            count("cell_count", 10**13),
            viability("viability_pct"),
            Input("passage", "int", min_value=0, max_value=30),
            Input("harvested_at", "datetime", required=False),
        ),
        lambda item, actor, d: processing.processing_harvest(processing=item, actor=actor, **d),
    ),
    Action(
        "processing",
        "fail",
        "Mark failed",
        "biobank.change_processing",
        (reason(),),
        lambda item, actor, d: processing.processing_fail(
            processing=item, actor=actor, reason=d["reason"]
        ),
    ),
    Action(
        "processing",
        "qc_release",
        "Sign QC release",
        "biobank.approve_qc_release",
        (PASSWORD, Input("comment", "reason", required=False, max_length=2000, default="")),
        lambda item, actor, d: qc_release.processing_qc_release(
            processing=item, actor=actor, password=d["password"], comment=d.get("comment", "")
        ),
    ),
    Action(
        "processing",
        "fill_units",
        "Fill units",
        "biobank.add_productunit",
        (
            Input(
                "units",
                "rows",
                of=(
                    Input("container_type", "choice", choices=_choices(ContainerType)),
                    count("cell_number"),
                    Input(
                        "volume_ml",
                        "decimal",
                        max_digits=6,
                        decimal_places=2,
                        min_value=0,
                        max_value=1000,
                    ),
                    Input("cryoprotectant", required=False, max_length=100, default="10 % DMSO"),
                ),
            ),
            Input("created_at", "datetime", required=False),
        ),
        _fill,
        doc="Fill all units of a harvested product in one atomic request.",
    ),
    Action(
        "processing",
        "freezing_run",
        "Record freezing run",
        "biobank.add_freezingrun",
        (
            Input(
                "units",
                "codes",
                False,
                help="Default: every unit not yet frozen",
                kinds=frozenset({Kind.UNIT}),
                max_length=80,
            ),
            Input("started_at", "datetime"),
            Input("finished_at", "datetime"),
            Input(
                "rate_c_per_min",
                "decimal",
                False,
                max_digits=4,
                decimal_places=2,
                default=Decimal("-1"),
            ),
            Input(
                "program", required=False, max_length=100, default="-1 °C/min to -80 °C, then LN2"
            ),
        ),
        _freezing_run,
    ),
    # units
    Action(
        "unit",
        "store",
        "Store",
        "biobank.change_productunit",
        (CONTAINER, POSITION, AT),
        lambda item, actor, d: storage.unit_place(
            unit=item,
            container=d["container"],
            position=d.get("position") or None,
            actor=actor,
            at=d.get("at"),
        ),
    ),
    Action(
        "unit",
        "move",
        "Move",
        "biobank.change_productunit",
        (CONTAINER, POSITION, reason(required=False), AT),
        lambda item, actor, d: storage.unit_move(
            unit=item,
            container=d["container"],
            position=d.get("position") or None,
            reason=d.get("reason", ""),
            actor=actor,
            at=d.get("at"),
        ),
    ),
    Action(
        "unit",
        "check_out",
        "Check out (keep slot)",
        "biobank.change_productunit",
        (reason(required=False), AT),
        lambda item, actor, d: storage.unit_check_out(
            unit=item, actor=actor, reason=d.get("reason", ""), at=d.get("at")
        ),
    ),
    Action(
        "unit",
        "check_in",
        "Check in",
        "biobank.change_productunit",
        (AT,),
        lambda item, actor, d: storage.unit_check_in(unit=item, actor=actor, at=d.get("at")),
    ),
    Action(
        "unit",
        "unstore",
        "Remove from storage",
        "biobank.change_productunit",
        (reason(), AT),
        lambda item, actor, d: storage.unit_remove(
            unit=item, actor=actor, reason=d["reason"], at=d.get("at")
        ),
    ),
    *(
        Action(
            "unit",
            name,
            label,
            "biobank.change_productunit",
            (_unit_reason(name), AT),
            _transition(name),
        )
        for name, label in (
            ("quarantine", "Quarantine"),
            ("lift_quarantine", "Lift quarantine"),
            ("release", "Release"),
            ("return_to_stock", "Return to stock"),
            ("discard", "Discard"),
        )
    ),
    # containers
    Action(
        "container",
        "store",
        "Store units",
        "biobank.change_productunit",
        (Input("placements", "rows", of=PLACEMENT, max_items=1000), AT),
        _box_store,
        doc="Store many units into this box (or container), all or nothing.",
    ),
    # doses
    Action(
        "dose",
        "prepare",
        "Prepare dose",
        "biobank.prepare_dose",
        (
            code("participant", Kind.PARTICIPANT),
            Input("visit", max_length=16),
            Input(
                "units",
                "codes",
                False,
                help="Stored units to draw on (default: the suggestion)",
                kinds=frozenset({Kind.UNIT}),
                max_length=80,
                max_items=20,
            ),
            code("unit", Kind.UNIT, required=False, help="One unit"),
            code(
                "processing",
                Kind.PROCESSING,
                required=False,
                help="A harvested product dosed fresh (never frozen)",
            ),
        ),
        _prepare,
        on_item=False,
        doc="Plan the visit's dose from its recorded weight; MSC draws on the participant's "
        "own units (default: the suggestion) or a fresh product.",
    ),
    Action(
        "dose",
        "release",
        "Sign dose release",
        "biobank.release_dose",
        (PASSWORD,),
        lambda item, actor, d: doses.dose_release(dose=item, actor=actor, password=d["password"]),
    ),
    Action(
        "dose",
        "deviation",
        "Sign a documented deviation",
        "biobank.release_dose",
        (PASSWORD, Input("reason", "reason", max_length=2000)),
        lambda item, actor, d: doses.dose_deviation_sign(
            dose=item, actor=actor, password=d["password"], reason=d["reason"]
        ),
        doc="QA signs a documented deviation: the dose may then fall outside its window.",
    ),
    Action(
        "dose",
        "make_ready",
        "Thaw / fill syringe",
        "biobank.prepare_dose",
        (
            Input("ready_at", "datetime", required=False),
            count(
                "post_thaw_cell_count",
                required=False,
                help="One unit or a fresh product: the cells counted",
            ),
            viability("post_thaw_viability_pct", required=False),
            Input(
                "units",
                "rows",
                False,
                of=(
                    Input("unit", max_length=80),
                    count("post_thaw_cell_count"),
                    viability("post_thaw_viability_pct"),
                ),
                max_items=20,
            ),
            Input("saline_lot", required=False, max_length=40, default="", help="Placebo"),
        ),
        _make_ready,
        doc="Thaw the units / take the fresh product / fill saline; the expiry is computed.",
    ),
    Action(
        "dose",
        "cancel",
        "Cancel dose",
        "biobank.prepare_dose",
        (reason(),),
        lambda item, actor, d: doses.dose_cancel(dose=item, actor=actor, reason=d["reason"]),
    ),
    Action(
        "dose",
        "dispatch",
        "Dispatch",
        "biobank.administer_dose",
        (
            PARTICIPANT_SCAN,
            DOSE_SCAN,
            AT,
        ),
        _bedside(doses.dose_dispatch),
        doc="Chain-of-identity check (dose scan vs participant scan), expiry check, dispatch.",
    ),
    Action(
        "dose",
        "administer",
        "Record administration",
        "biobank.administer_dose",
        (
            PARTICIPANT_SCAN,
            DOSE_SCAN,
            AT,
            Input("administered_by", required=False, max_length=200, default=""),
            Input("route", required=False, max_length=30, default="intrathecal"),
        ),
        _bedside(doses.dose_administer, administered_by="", route="intrathecal"),
        doc="Bedside identity check, expiry check, then the administration is recorded.",
    ),
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


SHIPMENT_ACTIONS: tuple[Action, ...] = (
    Action(
        "shipment",
        "create",
        "New shipment",
        PACK,
        (
            Input("from_site", max_length=16),
            Input("to_site", max_length=16),
            Input("kind", "choice", choices=_choices(ShipmentKind)),
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
        lambda item, actor, d: shipments.shipment_pack(shipment=item, scan=d["scan"], actor=actor),
    ),
    Action(
        "shipment",
        "unpack",
        "Take out",
        PACK,
        (ITEM_SCAN,),
        lambda item, actor, d: shipments.shipment_unpack(
            shipment=item, scan=d["scan"], actor=actor
        ),
    ),
    Action(
        "shipment",
        "seal",
        "Seal and sign",
        PACK,
        (PASSWORD,),
        lambda item, actor, d: shipments.shipment_seal(
            shipment=item, actor=actor, password=d["password"]
        ),
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
        lambda item, actor, d: shipments.shipment_cancel(
            shipment=item, actor=actor, reason=d["reason"]
        ),
    ),
    Action(
        "shipment",
        "receive_scan",
        "Scan an arriving item",
        RECEIVE,
        ARRIVAL,
        lambda item, actor, d: shipments.shipment_receive_scan(shipment=item, actor=actor, **d),
    ),
    Action(
        "shipment",
        "receive",
        "Close the receipt",
        RECEIVE,
        (AT,),
        lambda item, actor, d: shipments.shipment_receive(
            shipment=item, actor=actor, at=d.get("at")
        ),
    ),
    Action(
        "shipment",
        "find",
        "A missing item found",
        RECEIVE,
        (*ARRIVAL, AT),
        lambda item, actor, d: shipments.shipment_item_find(shipment=item, actor=actor, **d),
    ),
    Action(
        "shipment",
        "write_off",
        "Write off a missing item",
        RECEIVE,
        (ITEM_SCAN, reason()),
        lambda item, actor, d: shipments.shipment_item_write_off(
            shipment=item, scan=d["scan"], actor=actor, reason=d["reason"]
        ),
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

ACTIONS = (*ACTIONS, *SHIPMENT_ACTIONS)
CATALOGUE: dict[tuple[str, str], Action] = {(a.kind, a.name): a for a in ACTIONS}


def actions_for(kind: str, *, on_item: bool | None = None) -> list[Action]:
    """The steps of one kind of item, in catalogue order."""
    return [a for a in ACTIONS if a.kind == kind and on_item in (None, a.on_item)]


def action_get(kind: str, name: str) -> Action:
    try:
        return CATALOGUE[(kind, name)]
    except KeyError:
        steps = ", ".join(a.name for a in actions_for(kind))
        raise NotFound(
            f"'{name}' is not a step for a {kind}. Steps: {steps}.",
            code="unknown_action",
            field="action",
        ) from None


def action_permitted(action: Action, actor: Any) -> bool:
    return bool(actor and actor.is_authenticated and actor.has_perm(action.permission))


def _resolved(inputs: tuple[Input, ...], data: dict[str, Any], actor: Any, at: str) -> dict:
    """Scanned IDs in the input become items, read through the viewer's visibility policy;
    a refusal names the field (``units.2``, ``placements.0.unit``)."""
    out = dict(data)
    for spec in inputs:
        value = data.get(spec.name)
        if value in (None, "", []):
            continue
        where = f"{at}{spec.name}"
        if spec.type == "code":
            out[spec.name] = _item(value, spec, actor, where)
        elif spec.type == "codes":
            out[spec.name] = [_item(v, spec, actor, f"{where}.{i}") for i, v in enumerate(value)]
        elif spec.type == "rows" and any(s.type in ("code", "codes") for s in spec.of):
            out[spec.name] = [
                _resolved(spec.of, row, actor, f"{where}.{i}.") for i, row in enumerate(value)
            ]
    return out


def _item(raw: Any, spec: Input, actor: Any, where: str) -> Any:
    try:
        return scan_resolve(raw=str(raw), viewer=actor, kinds=set(spec.kinds) or None).item
    except ServiceError as exc:
        exc.field = where
        raise


def action_run(*, action: Action, item: Any, actor: AbstractBaseUser, data: dict[str, Any]) -> Any:
    """Run one catalogued step for ``actor``: permission, scanned IDs, then the service.

    Every interface comes through here, so a role that may not take a step is refused the same
    way everywhere (403 ``permission_denied`` naming the step), before anything is read.
    Not atomic itself: each service is, and a refusal that records evidence (an identity
    mismatch) must keep that record.
    """
    if not action_permitted(action, actor):
        raise Forbidden(
            f"Your role may not {action.label.lower()}.", code="permission_denied", field=None
        )
    if action.on_item and item is None:
        raise ServiceError(f"{action.label}: which item?", code="required", field="code")
    return action.run(item, actor, _resolved(action.inputs, data, actor, ""))
