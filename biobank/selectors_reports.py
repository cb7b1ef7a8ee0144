"""Read-side queries for reports, exports, inventory and charts.

Every blinding decision is asked of ``biobank.visibility``; ``_event_visible`` is the one
adapter between an event (or history row) and that policy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Count, Model, Q, QuerySet
from django.db.models.sql.constants import MULTI
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from biobank import visibility
from biobank.models import (
    Container,
    ContainerKind,
    CustodyEvent,
    Dose,
    DoseStatus,
    DoseUnit,
    Participant,
    Placement,
    ProductUnit,
    QcRelease,
    Signature,
    StorageUnit,
    TemperatureReading,
    Treatment,
    Unblinding,
    Visit,
)
from biobank.selectors import events_for
from biobank.services.errors import ServiceError

CHUNK = 2000

# Every item kind an event or history row can carry. Blinded users get only the kinds the
# policy allows among these, so an unknown kind is left out rather than shown.
KNOWN_KINDS = (
    "study",
    "site",
    "participant",
    "visit",
    "visit_type",
    "aspirate",
    "processing",
    "passage",
    "qc_result",
    "freezing_run",
    "unit",
    "placement",
    "container",
    "storage_unit",
    "box_type",
    "temperature_reading",
    "dose",
    "shipment",
    "arm",
    "arm_schedule",
)

# Model name (history tables) -> item kind asked of the policy.
MODEL_KIND = {
    "productunit": "unit",
    "freezingrun": "freezing_run",
    "qcresult": "qc_result",
    "storageunit": "storage_unit",
    "boxtype": "box_type",
    "armschedule": "arm_schedule",
    "visittype": "visit_type",
}

# Steps that depart from the normal path; listed again under "Deviations" in the report.
DEVIATION_ACTIONS = frozenset(
    {
        "quarantine",
        "reject",
        "discard",
        "cancel",
        "fail",
        "unstore",
        "return_to_stock",
        "lift_quarantine",
        "release_quarantine",
        "emergency_unblinding",
    }
)


def _event_visible(user: Any, kind: str) -> bool:
    """The one adapter to the visibility policy for events and history rows.

    When the policy gains event-data filtering (issue 11), the data of visible events is to
    be passed through it here as well.
    """
    return visibility.may_see_kind(user, kind)


def visible_kinds(user: Any) -> list[str] | None:
    """Kinds this user may see, or None for "all" (unblinded roles)."""
    if visibility.can_see_allocation(user):
        return None
    return [k for k in KNOWN_KINDS if _event_visible(user, k)]


# --- shared formatting -----------------------------------------------------------------------


def iso(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return iso(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def content_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a report's content (the cover is not part of it)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- audit trail -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    item: str = ""
    participant: str = ""
    user: str = ""
    actions: tuple[str, ...] = ()
    source: str = "events"

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": iso(self.since),
            "to": iso(self.until),
            "item": self.item,
            "participant": self.participant,
            "user": self.user,
            "action": ",".join(self.actions),
            "source": self.source,
        }


SOURCES = ("events", "history", "all")


def _moment(raw: str, name: str, *, end: bool) -> dt.datetime | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    # A "+" in a query string arrives as a space: put the offset sign back.
    text = raw.replace(" ", "+", 1) if raw.count(" ") == 1 and "T" in raw else raw
    moment = None if len(raw) == 10 else parse_datetime(text)
    if moment is None:
        day = parse_date(raw)
        if day is None:
            raise ServiceError(
                f"{name} must be a date (2025-03-01) or a date-time with a time zone.",
                code="invalid_date",
                field=name,
            )
        moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
        moment = timezone.make_aware(moment)
    elif timezone.is_naive(moment):
        raise ServiceError(f"{name} must include a time zone.", code="naive_datetime", field=name)
    return moment


def audit_filters_from(params: Mapping[str, str]) -> AuditFilters:
    """Filters from query parameters; a bad one is refused naming the parameter."""
    for name in ("from", "to", "item", "participant", "user", "action", "source"):
        if "\x00" in (params.get(name) or ""):
            raise ServiceError(f"{name} contains a NUL character.", field=name)
    since = _moment(params.get("from", ""), "from", end=False)
    until = _moment(params.get("to", ""), "to", end=True)
    if since and until and since > until:
        raise ServiceError("'from' is after 'to'.", code="invalid_range", field="from")
    source = (params.get("source") or "events").strip().lower()
    if source not in SOURCES:
        raise ServiceError(
            f"source must be one of {', '.join(SOURCES)}.", code="invalid", field="source"
        )
    actions = tuple(a.strip().lower() for a in (params.get("action") or "").split(",") if a.strip())
    return AuditFilters(
        since=since,
        until=until,
        item=(params.get("item") or "").strip().upper(),
        participant=(params.get("participant") or "").strip().upper(),
        user=(params.get("user") or "").strip(),
        actions=actions,
        source=source,
    )


EVENT_COLUMNS = [
    "source",
    "id",
    "at",
    "recorded_at",
    "participant",
    "item_kind",
    "item_code",
    "action",
    "from_status",
    "to_status",
    "user",
    "site",
    "location",
    "reason",
    "data",
]
_EVENT_VALUES = [
    "id",
    "at",
    "recorded_at",
    "participant__code",
    "item_kind",
    "item_code",
    "action",
    "from_status",
    "to_status",
    "actor__username",
    "site__code",
    "location",
    "reason",
    "data",
]
_EVENT_BASE_FIELDS = frozenset(
    {
        "id",
        "item_code",
        "item_kind",
        "participant",
        "aspirate",
        "processing",
        "unit",
        "dose",
        "action",
        "from_status",
        "to_status",
        "actor",
        "at",
        "recorded_at",
        "site",
        "location",
        "reason",
        "data",
    }
)


def event_extra_columns() -> list[str]:
    """Further columns of the event table, exported as they are (e.g. hash-chain values)."""
    return [
        f.attname for f in CustodyEvent._meta.concrete_fields if f.name not in _EVENT_BASE_FIELDS
    ]


def audit_columns() -> list[str]:
    return [*EVENT_COLUMNS, *event_extra_columns()]


def _participant_of(code: str) -> Participant:
    found = Participant.objects.filter(Q(code=code) | Q(pseudonym=code)).first()
    if found is None:
        raise ServiceError(
            f"No participant {code} is registered.", code="not_found", field="participant"
        )
    return found


def audit_events(*, user: Any, filters: AuditFilters) -> QuerySet[CustodyEvent]:
    # The visibility policy's rows: blinded users get the blinded-safe steps only.
    qs = visibility.policy_for(user).rows(CustodyEvent.objects.all())
    if filters.since:
        qs = qs.filter(at__gte=filters.since)
    if filters.until:
        qs = qs.filter(at__lte=filters.until)
    if filters.item:
        qs = qs.filter(item_code=filters.item)
    if filters.participant:
        qs = qs.filter(participant=_participant_of(filters.participant))
    if filters.user:
        qs = qs.filter(actor__username=filters.user)
    if filters.actions:
        qs = qs.filter(action__in=filters.actions)
    return qs.order_by("at", "id")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _raw_ts(value: Any) -> str:
    """A timestamp as the driver returns it: SQLite gives naive UTC (text or datetime),
    PostgreSQL an aware datetime."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace(" ", "T", 1) + "+00:00"
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC).isoformat()
    return value.astimezone(dt.UTC).isoformat()


def _raw(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return _raw_ts(value)
    return _plain(value)


def audit_event_rows(*, user: Any, filters: AuditFilters) -> Iterator[list[Any]]:
    """Event rows in ``audit_columns()`` order, fetched in chunks (a server-side cursor on
    PostgreSQL), so memory stays flat whatever the number of events.

    Rows are read without Django's per-value converters: the JSON text is passed through as
    stored, timestamps are formatted once. That is most of the export's speed.
    """
    extra = event_extra_columns()
    qs = audit_events(user=user, filters=filters).values_list(*_EVENT_VALUES, *extra)
    compiler = qs.query.get_compiler(using=qs.db)
    chunks = compiler.execute_sql(MULTI, chunked_fetch=True, chunk_size=CHUNK)
    policy = visibility.policy_for(user)
    for chunk in chunks:
        for row in chunk:
            data = row[13]
            if not policy.unblinded:
                row = _blinded_event_row(policy, row)
                data = row[13]
            yield [
                "event",
                row[0],
                _raw_ts(row[1]),
                _raw_ts(row[2]),
                row[3],
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                row[9] or "",
                row[10] or "",
                row[11],
                row[12],
                data if isinstance(data, str) else _json(data),
                *(_raw(v) for v in row[14:]),
            ]


def _blinded_event_row(policy: visibility.Policy, row: Any) -> list[Any]:
    """An event row as the policy shows it to a blinded user: whitelisted data, statuses as
    mapped, lab codes redacted from free text."""
    row = list(row)
    data = row[13]
    if isinstance(data, str):
        data = json.loads(data or "{}")
    event = _EventView(item_kind=row[4], data=data)
    row[7] = policy.event_status(event, row[7])
    row[8] = policy.event_status(event, row[8])
    row[11] = policy.redact(row[11] or "")
    row[12] = policy.redact(row[12] or "")
    row[13] = policy.event_data(event)
    return row


@dataclass
class _EventView:
    item_kind: str
    data: dict[str, Any]


def history_models() -> list[tuple[str, type[Model]]]:
    """(kind, historical model) for every model of the app with django-simple-history."""
    out = []
    for model in apps.get_app_config("biobank").get_models():
        manager = getattr(model, "history", None)
        if manager is None or not hasattr(manager, "model"):
            continue
        name = model._meta.model_name
        if name.startswith("historical"):
            continue
        out.append((MODEL_KIND.get(name, name), manager.model))
    return out


_HISTORY_ACTION = {"+": "created", "~": "changed", "-": "deleted"}


def audit_history_rows(*, user: Any, filters: AuditFilters) -> Iterator[list[Any]]:
    """Field history (old → new per field) of every tracked model, in chunks."""
    wanted_actions = {a for a in filters.actions if a in _HISTORY_ACTION.values()}
    if filters.actions and not wanted_actions:
        return
    participant = _participant_of(filters.participant) if filters.participant else None
    codes: dict[int, str] = {}
    users: dict[int, str] = {}
    extra_blank = [""] * len(event_extra_columns())
    User = get_user_model()
    for kind, hmodel in history_models():
        if not _event_visible(user, kind):
            continue
        names = {f.name for f in hmodel._meta.concrete_fields}
        qs = hmodel.objects.all()
        mapped = visibility.policy_for(user).mapped_statuses(kind)
        if mapped and "status" in names:
            qs = qs.exclude(status__in=mapped)  # versions a blinded user may not see
        if participant is not None:
            if kind == "participant":
                qs = qs.filter(id=participant.pk)
            elif "participant" in names:
                qs = qs.filter(participant_id=participant.pk)
            elif "unit" in names:
                unit_ids = ProductUnit.objects.filter(participant=participant).values("pk")
                qs = qs.filter(unit_id__in=unit_ids)
            else:
                continue
        if filters.item:
            if "code" in names:
                qs = qs.filter(code=filters.item)
            elif "unit" in names:
                qs = qs.filter(
                    unit_id__in=ProductUnit.objects.filter(code=filters.item).values("pk")
                )
            else:
                continue
        if filters.user:
            qs = qs.filter(history_user__username=filters.user)
        if filters.until:
            qs = qs.filter(history_date__lte=filters.until)
        tracked = [
            f.attname
            for f in hmodel._meta.concrete_fields
            if not f.name.startswith("history_") and f.name != "id"
        ]
        values = ["id", "history_id", "history_date", "history_type", "history_user_id"]
        values += ["history_change_reason", *tracked]
        previous: dict[str, Any] | None = None
        for row in (
            qs.order_by("id", "history_date", "history_id")
            .values(*values)
            .iterator(chunk_size=CHUNK)
        ):
            if previous is not None and previous["id"] != row["id"]:
                previous = None
            before = previous
            previous = row
            if filters.since and row["history_date"] < filters.since:
                continue
            action = _HISTORY_ACTION.get(row["history_type"], row["history_type"])
            if wanted_actions and action not in wanted_actions:
                continue
            changes = {
                name: [_plain(before[name]) if before else None, _plain(row[name])]
                for name in tracked
                if before is None or before[name] != row[name]
            }
            pid = row.get("participant_id") or (row["id"] if kind == "participant" else None)
            if pid and pid not in codes:
                codes[pid] = Participant.objects.filter(pk=pid).values_list("code", flat=True)[0]
            uid = row["history_user_id"]
            if uid and uid not in users:
                users[uid] = User.objects.filter(pk=uid).values_list("username", flat=True)[0]
            status = row.get("status")
            yield [
                "history",
                row["history_id"],
                iso(row["history_date"]),
                iso(row["history_date"]),
                codes.get(pid, "") if pid else "",
                kind,
                row.get("code") or f"{kind}#{row['id']}",
                action,
                (before or {}).get("status") or "" if status is not None else "",
                status or "",
                users.get(uid, "") if uid else "",
                "",
                "",
                row["history_change_reason"] or "",
                _json(changes),
                *extra_blank,
            ]


def audit_rows(*, user: Any, filters: AuditFilters) -> Iterator[list[Any]]:
    if filters.source in ("events", "all"):
        yield from audit_event_rows(user=user, filters=filters)
    if filters.source in ("history", "all"):
        yield from audit_history_rows(user=user, filters=filters)


# --- participant chain report ----------------------------------------------------------------


# Further report sections (e.g. shipments, issue 16): each gets (participant, user) and returns
# (title, rows) or None; rows are flat dicts. Register with ``report_sections.append(fn)``.
ReportSection = Callable[[Participant, Any], tuple[str, list[dict[str, Any]]] | None]
report_sections: list[ReportSection] = []


@dataclass
class ParticipantReport:
    body: dict[str, Any]
    generated_at: dt.datetime
    requested_by: str
    blinded: bool
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.content_hash = content_hash(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cover": {
                "title": "Participant chain report",
                "generated_at": iso(self.generated_at),
                "requested_by": self.requested_by,
                "blinded": self.blinded,
                "content_hash": self.content_hash,
                "hash_algorithm": "SHA-256 of the canonical JSON of 'content'",
            },
            "content": self.body,
        }


def _user_name(user: Any) -> str:
    if user is None:
        return ""
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return f"{full} ({user.get_username()})" if full else user.get_username()


def _signature(sig: Signature | None) -> dict[str, Any] | None:
    if sig is None:
        return None
    return {
        "signer": sig.signer_name,
        "signed_at": iso(sig.signed_at),
        "meaning": sig.get_meaning_display(),
        "record": sig.record,
    }


def _placements(unit: ProductUnit) -> list[dict[str, Any]]:
    return [
        {
            "storage_unit": p.container.storage_unit.code,
            "container": p.container.code,
            "path": p.container.path,
            "position": p.position,
            "placed_at": iso(p.placed_at),
            "checked_out_at": iso(p.checked_out_at),
            "ended_at": iso(p.ended_at),
            "end_reason": p.end_reason,
        }
        for p in sorted(unit.placements.all(), key=lambda p: (p.placed_at, p.pk))
    ]


def participant_report(*, participant: Participant, user: Any) -> ParticipantReport:
    """Everything recorded for one participant, as the policy lets this user see it."""
    blinded = not visibility.can_see_allocation(user)
    show = {k: _event_visible(user, k) for k in ("unit", "processing", "freezing_run", "dose")}
    p = participant
    body: dict[str, Any] = {
        "participant": {
            "code": p.code,
            "pseudonym": p.pseudonym,
            "study": p.study.code,
            "site": p.site.code,
            "enrolled_on": iso(p.enrolled_on),
            "weight_kg": _plain(p.weight_kg),
        }
    }
    if not blinded and p.arm_id:
        body["participant"]["arm"] = f"{p.arm.code} – {p.arm.name}"
    visits = list(
        Visit.objects.filter(participant=p)
        .select_related("visit_type", "aspirate", "aspirate__site")
        .order_by("visit_type__order")
    )
    body["visits"] = [
        {
            "visit": v.visit_type.code,
            "name": v.visit_type.name,
            "scheduled_on": iso(v.scheduled_on),
            "done_on": iso(v.done_on),
        }
        for v in visits
    ]
    aspirates = [v.aspirate for v in visits if hasattr(v, "aspirate")]
    for a in aspirates:  # shown as the policy says, never saved
        a.status = visibility.policy_for(user).status_of("aspirate", a.status)
    body["aspirates"] = [
        {
            "code": a.code,
            "visit": a.visit.visit_type.code,
            "status": a.get_status_display(),
            "collected_at": iso(a.collected_at),
            "collected_by": a.collected_by,
            "site": a.site.code,
            "volume_ml": _plain(a.volume_ml),
            "anticoagulant": a.get_anticoagulant_display(),
            "received_at": iso(a.received_at),
            "transport_temperature_c": _plain(a.transport_temperature_c),
            "condition": a.get_condition_display() if a.condition else "",
            "status_reason": a.status_reason,
        }
        for a in aspirates
    ]
    signatures: list[tuple[str, Signature]] = []
    if show["processing"]:
        processings = list(
            p.processings.select_related("aspirate").prefetch_related(
                "passages", "qc_results", "freezing_runs"
            )
        )
        releases = {
            r.processing_id: r
            for r in QcRelease.objects.filter(processing__participant=p).select_related("signature")
        }
        body["processing"] = []
        for pr in sorted(processings, key=lambda x: x.started_at):
            release = releases.get(pr.pk)
            if release:
                signatures.append(("processing", release.signature))
            body["processing"].append(
                {
                    "code": pr.code,
                    "aspirate": pr.aspirate.code,
                    "status": pr.get_status_display(),
                    "started_at": iso(pr.started_at),
                    "harvested_at": iso(pr.harvested_at),
                    "harvest_passage": pr.harvest_passage,
                    "harvest_cell_count": pr.harvest_cell_count,
                    "harvest_viability_pct": _plain(pr.harvest_viability_pct),
                    "status_reason": pr.status_reason,
                    "passages": [
                        {
                            "number": ps.number,
                            "at": iso(ps.passaged_at),
                            "cell_count": ps.cell_count,
                            "viability_pct": _plain(ps.viability_pct),
                        }
                        for ps in pr.passages.all()
                    ],
                    "qc": [
                        {
                            "test": q.get_test_display(),
                            "result": q.result,
                            "passed": q.passed,
                            "tested_at": iso(q.tested_at),
                        }
                        for q in sorted(pr.qc_results.all(), key=lambda q: (q.tested_at, q.pk))
                    ],
                    "qc_release": _signature(release.signature) if release else None,
                    "freezing_runs": [
                        {
                            "code": fr.code,
                            "program": fr.program,
                            "started_at": iso(fr.started_at),
                            "finished_at": iso(fr.finished_at),
                        }
                        for fr in pr.freezing_runs.all()
                    ]
                    if show["freezing_run"]
                    else [],
                }
            )
    if show["unit"]:
        units = (
            ProductUnit.objects.filter(participant=p)
            .select_related("processing", "freezing_run")
            .prefetch_related(
                _prefetch_placements(),
            )
            .order_by("code")
        )
        body["units"] = [
            {
                "code": u.code,
                "processing": u.processing.code,
                "container_type": u.get_container_type_display(),
                "cell_number": u.cell_number,
                "volume_ml": _plain(u.volume_ml),
                "freezing_run": u.freezing_run.code if u.freezing_run else "",
                "status": u.get_status_display(),
                "status_reason": u.status_reason,
                "storage_history": _placements(u),
            }
            for u in units
        ]
    doses = list(
        Dose.objects.filter(participant=p)
        .select_related(
            "visit__visit_type", "processing", "release_signature", "deviation_signature"
        )
        .prefetch_related("identity_checks", "dose_units__unit")
        .order_by("prepared_at", "code")
    )
    body["doses"] = []
    for d in doses:
        if d.release_signature:
            signatures.append(("dose", d.release_signature))
        row: dict[str, Any] = {
            "code": d.code,
            "visit": d.visit.visit_type.code,
            "product": visibility.BLINDED_PRODUCT if blinded else Treatment(d.treatment).label,
            # The label of a planned dose reads "unit reserved or saline planned": fine for all.
            "status": DoseStatus(d.status).label,
            "route": d.route,
            "volume_ml": _plain(d.volume_ml),
            "prepared_at": iso(d.prepared_at),
            "ready_at": iso(d.ready_at),
            "expires_at": iso(d.expires_at),
            "dispatched_at": iso(d.dispatched_at),
            "administered_at": iso(d.administered_at),
            "administered_by": d.administered_by,
            "status_reason": d.status_reason,
            "release": _signature(d.release_signature),
            "identity_checks": [
                {
                    "stage": c.get_stage_display(),
                    "checked_at": iso(c.checked_at),
                    "dose_scan": c.dose_scan,
                    "participant_scan": c.participant_scan,
                    "matched": c.matched,
                    "message": c.message,
                }
                for c in sorted(d.identity_checks.all(), key=lambda c: (c.checked_at, c.pk))
            ],
        }
        if not blinded:
            # A dose may draw on several units (issue 13): their codes, in order.
            row["unit"] = ", ".join(link.unit.code for link in d.dose_units.all())
            row["processing"] = d.processing.code if d.processing_id else ""
            row["saline_lot"] = d.saline_lot
            row["viable_cells"] = d.viable_cells
            if d.deviation_signature:
                signatures.append(("dose", d.deviation_signature))
                row["deviation"] = {
                    "reason": d.deviation_reason,
                    "signature": _signature(d.deviation_signature),
                }
            row["post_thaw_cell_count"] = d.post_thaw_cell_count
            row["post_thaw_viability_pct"] = _plain(d.post_thaw_viability_pct)
        body["doses"].append(row)
    unblindings = list(
        Unblinding.objects.filter(participant=p)
        .select_related("signature")
        .order_by("signature__signed_at")
    )
    for u in unblindings:
        signatures.append(("participant", u.signature))
    body["unblindings"] = [
        {"reason": u.reason, "signature": _signature(u.signature)} for u in unblindings
    ]
    body["signatures"] = [
        _signature(sig)
        for kind, sig in sorted(signatures, key=lambda ks: (ks[1].signed_at, ks[1].pk))
        if _event_visible(user, kind)
    ]
    policy = visibility.policy_for(user)
    events = list(policy.rows(events_for(participant=p)))
    body["events"] = [
        {
            "n": n,
            "id": e.id,
            "at": iso(e.at),
            "item_kind": e.item_kind,
            "item_code": e.item_code,
            "action": e.action,
            "from_status": policy.event_status(e, e.from_status),
            "to_status": policy.event_status(e, e.to_status),
            "user": e.actor.get_username(),
            "site": e.site.code if e.site else "",
            "location": policy.redact(e.location),
            "reason": policy.redact(e.reason),
            "data": policy.event_data(e),
            **{c: _plain(getattr(e, c)) for c in event_extra_columns()},
        }
        for n, e in enumerate(events, start=1)
    ]
    body["deviations"] = [
        {
            "at": e["at"],
            "item_code": e["item_code"],
            "what": e["action"],
            "reason": e["reason"],
        }
        for e in body["events"]
        if e["action"] in DEVIATION_ACTIONS
    ] + [
        {
            "at": c["checked_at"],
            "item_code": d["code"],
            "what": f"identity MISMATCH ({c['stage']})",
            "reason": c["message"],
        }
        for d in body["doses"]
        for c in d["identity_checks"]
        if not c["matched"]
    ]
    extra = {}
    for section in report_sections:
        result = section(p, user)
        if result is not None:
            extra[result[0]] = result[1]
    if extra:
        body["sections"] = extra
    return ParticipantReport(
        body=body,
        generated_at=timezone.now(),
        requested_by=_user_name(user),
        blinded=blinded,
    )


def _prefetch_placements() -> Any:
    from django.db.models import Prefetch

    return Prefetch(
        "placements",
        queryset=Placement.objects.select_related("container__storage_unit"),
    )


# --- inventory -------------------------------------------------------------------------------


INVENTORY_COLUMNS = [
    "site",
    "storage_unit",
    "storage_unit_name",
    "location",
    "box",
    "position",
    "unit",
    "participant",
    "pseudonym",
    "status",
    "container_type",
    "checked_out_at",
    "expires_at",
]


def inventory_placements(
    *, storage_unit: StorageUnit | None = None, participant: Participant | None = None
) -> QuerySet[Placement]:
    """Open placements (every stored unit) by storage unit, box and position."""
    qs = Placement.objects.filter(ended_at__isnull=True)
    if storage_unit is not None:
        qs = qs.filter(container__storage_unit=storage_unit)
    if participant is not None:
        qs = qs.filter(unit__participant=participant)
    return qs.order_by(
        "container__storage_unit__site__code",
        "container__storage_unit__name",
        "container__path",
        "row",
        "column",
        "unit__code",
    )


_INVENTORY_VALUES = [
    "container__storage_unit__site__code",
    "container__storage_unit__code",
    "container__storage_unit__name",
    "container__path",
    "container__code",
    "position",
    "unit__code",
    "unit__participant__code",
    "unit__participant__pseudonym",
    "unit__status",
    "unit__container_type",
    "checked_out_at",
    "unit_id",
]


def inventory_rows(
    *, storage_unit: StorageUnit | None = None, participant: Participant | None = None
) -> Iterator[list[Any]]:
    qs = inventory_placements(storage_unit=storage_unit, participant=participant)
    # Expiry exists only for a thawed product (its dose); stored units have none.
    expiry = dict(
        DoseUnit.objects.filter(active=True, dose__expires_at__isnull=False)
        .exclude(dose__status=DoseStatus.CANCELLED)
        .values_list("unit_id", "dose__expires_at")
    )
    for row in qs.values_list(*_INVENTORY_VALUES).iterator(chunk_size=CHUNK):
        yield [*row[:11], iso(row[11]), iso(expiry.get(row[12]))]


def inventory_counts() -> list[dict[str, Any]]:
    """Per participant: units stored (open placement), by status, and in total."""
    rows = (
        ProductUnit.objects.values("participant__code", "participant__pseudonym", "status")
        .annotate(n=Count("id"))
        .order_by("participant__pseudonym", "status")
    )
    stored = dict(
        Placement.objects.filter(ended_at__isnull=True)
        .values("unit__participant__code")
        .annotate(n=Count("id"))
        .values_list("unit__participant__code", "n")
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(
            r["participant__code"],
            {
                "participant": r["participant__code"],
                "pseudonym": r["participant__pseudonym"],
                "stored": stored.get(r["participant__code"], 0),
                "total": 0,
                "by_status": {},
            },
        )
        entry["by_status"][r["status"]] = r["n"]
        entry["total"] += r["n"]
    return list(out.values())


def participant_whereabouts(*, participant: Participant, user: Any) -> dict[str, Any]:
    """ "Where is everything of participant X": aspirates, units (lab only), doses."""
    out: dict[str, Any] = {
        "participant": participant.code,
        "pseudonym": participant.pseudonym,
        "aspirates": [
            {"code": a.code, "status": a.status, "site": a.site.code}
            for a in participant.aspirates.select_related("site").order_by("collected_at")
        ],
        "doses": [
            {"code": d.code, "status": d.status, "visit": d.visit.visit_type.code}
            for d in participant.doses.select_related("visit__visit_type").order_by("code")
        ],
    }
    if _event_visible(user, "unit"):
        placed = {
            row[6]: row
            for row in inventory_placements(participant=participant).values_list(*_INVENTORY_VALUES)
        }
        out["units"] = [
            {
                "code": u.code,
                "status": u.status,
                "storage_unit": placed[u.code][1] if u.code in placed else "",
                "location": placed[u.code][3] if u.code in placed else "",
                "box": placed[u.code][4] if u.code in placed else "",
                "position": placed[u.code][5] if u.code in placed else "",
            }
            for u in participant.units.order_by("code")
        ]
    return out


# --- chart data ------------------------------------------------------------------------------


def temperature_series(
    *, storage_unit: StorageUnit, since: dt.datetime | None = None
) -> list[tuple[dt.datetime, float, bool]]:
    qs = TemperatureReading.objects.filter(storage_unit=storage_unit)
    if since is not None:
        qs = qs.filter(at__gte=since)
    return [
        (at, float(t), bool(out))
        for at, t, out in qs.order_by("at").values_list("at", "temperature_c", "out_of_range")
    ]


@dataclass
class BoxOccupancy:
    code: str
    name: str
    parent: str
    used: int
    capacity: int


def box_occupancy(*, storage_unit: StorageUnit) -> list[BoxOccupancy]:
    qs = (
        Container.objects.filter(storage_unit=storage_unit, kind=ContainerKind.BOX)
        .select_related("parent", "box_type")
        .annotate(used=Count("placements", filter=Q(placements__ended_at__isnull=True)))
        .order_by("path")
    )
    return [
        BoxOccupancy(
            code=b.code,
            name=b.name,
            parent=b.parent.name if b.parent else "",
            used=b.used,
            capacity=b.box_type.capacity,
        )
        for b in qs
    ]


@dataclass
class TimelinePoint:
    row: str
    at: dt.date
    label: str
    done: bool


def crossover_timeline(*, participant: Participant, user: Any) -> list[TimelinePoint]:
    """Visits, aspirations and doses of one participant; dose wording by the policy."""
    blinded = not visibility.can_see_allocation(user)
    points = []
    for v in participant.visits.select_related("visit_type").order_by("visit_type__order"):
        points.append(
            TimelinePoint("Visits", v.done_on or v.scheduled_on, v.visit_type.code, bool(v.done_on))
        )
    for a in participant.aspirates.select_related("visit__visit_type"):
        points.append(
            TimelinePoint("Aspiration", a.collected_at.date(), a.visit.visit_type.code, True)
        )
    for d in participant.doses.select_related("visit__visit_type").exclude(
        status=DoseStatus.CANCELLED
    ):
        when = d.administered_at or d.ready_at or d.prepared_at
        # Blinded pages name no product at all (not even the blinded pack name).
        product = "blinded dose" if blinded else Treatment(d.treatment).label.split(" (")[0]
        points.append(
            TimelinePoint(
                "Dose",
                when.date(),
                f"{d.visit.visit_type.code}: {product}",
                d.status == DoseStatus.ADMINISTERED,
            )
        )
    return points
