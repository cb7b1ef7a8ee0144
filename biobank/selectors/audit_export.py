"""The audit-trail export: custody events and field history as flat rows, streamed in chunks.

Blinded users get what the visibility policy lets them see: its rows, statuses as mapped,
free text redacted, and only the history of kinds the policy shows. They get no database id,
history id or hash-chain value either: gaps in those numbers, and which row a hash links to,
would show where hidden lab steps were recorded (an MSC dose's units are written just before
it). Their rows carry a row number of the export instead (column ``n``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Model, Q, QuerySet
from django.db.models.sql.constants import MULTI
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from biobank import visibility
from biobank.errors import ServiceError
from biobank.models import CustodyEvent, Participant, ShipmentItem, action_names
from biobank.models.events import CHAIN_FIELDS, RENAMED_ACTIONS
from biobank.moments import moment_check

CHUNK = 2000
# Who may export the audit trail (the API, the admin and the report tools ask this).
AUDIT_PERMISSION = "biobank.export_audit_trail"

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


# --- shared formatting (exports and the report) ----------------------------------------------


def iso(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return iso(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


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
    try:
        moment = None if len(raw) == 10 else parse_datetime(text)
        day = parse_date(raw) if moment is None else None
    except ValueError:  # well-formed but impossible: 2024-02-30, 25:00, a +99:00 offset
        moment = day = None
    found = moment or day
    if found is None:
        raise ServiceError(
            f"{name} must be a date (2025-03-01) or a date-time with a time zone.",
            code="invalid_date",
            field=name,
        )
    moment_check(found, field=name)
    if moment is None:
        edge = dt.time.max if end else dt.time.min
        moment = timezone.make_aware(dt.datetime.combine(found, edge))
    elif timezone.is_naive(moment):
        raise ServiceError(f"{name} must include a time zone.", code="naive_datetime", field=name)
    return moment


# What a field-history row's action is called (django-simple-history's type).
_HISTORY_ACTION = {"+": "created", "~": "changed", "-": "deleted"}


def known_actions(*, user: Any, steps: Collection[str]) -> list[str]:
    """The names ``action`` may take for this user: the custody steps among ``steps`` whose
    events the policy lets the user see (a blinded role's list names no hidden lab step),
    then the field history's created, changed and deleted."""
    return [*sorted(visibility.policy_for(user).event_steps(steps)), *_HISTORY_ACTION.values()]


def _actions(raw: str, *, user: Any, steps: Collection[str]) -> tuple[str, ...]:
    typed = [a.strip().lower() for a in raw.split(",") if a.strip()]
    known = known_actions(user=user, steps=steps)
    # A step's name from before it was renamed is read as its name today.
    asked = [RENAMED_ACTIONS.get(a, a) for a in typed]
    unknown = [t for t, a in zip(typed, asked, strict=True) if a not in known]
    if unknown:
        # An unknown name would match nothing: an empty trail that looks complete.
        raise ServiceError(
            f"Unknown action {', '.join(unknown)}; action must be one or more of: "
            f"{', '.join(known)}.",
            code="unknown_action",
            field="action",
        )
    return tuple(dict.fromkeys(asked))


def audit_filters_from(
    params: Mapping[str, str], *, user: Any, steps: Collection[str]
) -> AuditFilters:
    """Filters from query parameters; a bad one is refused naming the parameter. ``steps``:
    every custody step name (the services know them), for checking ``action``."""
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
    actions = _actions(params.get("action") or "", user=user, steps=steps)
    return AuditFilters(
        since=since,
        until=until,
        item=(params.get("item") or "").strip().upper(),
        participant=(params.get("participant") or "").strip().upper(),
        user=(params.get("user") or "").strip(),
        actions=actions,
        source=source,
    )


# Export column -> the event value it is read from (a ``values_list`` path), in column order.
_EVENT_SOURCES = {
    "id": "id",
    "at": "at",
    "recorded_at": "recorded_at",
    "participant": "participant__code",
    "item_kind": "item_kind",
    "item_code": "item_code",
    "action": "action",
    "from_status": "from_status",
    "to_status": "to_status",
    "user": "actor__username",
    "site": "site__code",
    "location": "location",
    "reason": "reason",
    "data": "data",
}
EVENT_COLUMNS = ["source", *_EVENT_SOURCES]
_EVENT_VALUES = list(_EVENT_SOURCES.values())
# A fetched row's index of each column, by name: the blinded view rewrites columns by name, so
# a column added or moved cannot shift a rule onto its neighbour.
_AT = {name: i for i, name in enumerate(_EVENT_SOURCES)}
_EVENT_TEXTS = ("item_kind", "from_status", "to_status", "reason", "location")


def event_extra_columns() -> list[str]:
    """Further columns of the event table, exported as they are: all but the row's id and the
    content its hash covers (``CHAIN_FIELDS``), today the hash-chain values themselves."""
    base = {"id", *CHAIN_FIELDS}
    return [f.attname for f in CustodyEvent._meta.concrete_fields if f.attname not in base]


# What a blinded role's export has instead of the row's id: its number in this export.
ROW_NUMBER = "n"


def audit_columns(*, user: Any) -> list[str]:
    """The export's columns for this user: a blinded role's have the row number for the id
    and none of the further columns (the hash chain; a column added later stays out too)."""
    if not visibility.can_see_allocation(user):
        return ["source", ROW_NUMBER, *EVENT_COLUMNS[2:]]
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
        qs = qs.filter(action__in=action_names(*filters.actions))
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
    return plain(value)


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
            data = row[_AT["data"]]
            if not policy.unblinded:
                row = _blinded_event_row(policy, row)
                data = row[_AT["data"]]
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
    """An event row as the policy shows it to a blinded user (``Policy.event_fields``, as on
    every page), rewritten column by column by name."""
    row = list(row)
    data = row[_AT["data"]]
    event = SimpleNamespace(
        **{name: row[_AT[name]] for name in _EVENT_TEXTS},
        data=json.loads(data or "{}") if isinstance(data, str) else data,
    )
    for name, value in policy.event_fields(event).items():
        row[_AT[name]] = value
    return row


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


# Kinds kept under a processing, found through it by participant or by the processing's ID.
_UNDER_PROCESSING = frozenset({"passage", "qc_result", "freezing_run"})
# Links of a history row to the items a participant owns (placements, shipment items).
_ITEM_LINKS = ("aspirate", "unit", "dose")


def _participant_rows(
    kind: str, names: set[str], participant: Participant, policy: visibility.Policy
) -> Q | None:
    """Which history rows of ``kind`` are the participant's; None: the kind has none (a site,
    a box type)."""
    if kind == "participant":
        return Q(id=participant.pk)
    if "participant" in names:
        return Q(participant_id=participant.pk)
    if kind in _UNDER_PROCESSING:
        return Q(processing__participant_id=participant.pk)
    # Through items of the kinds the user sees only: a shipment found through a unit would
    # tell a blinded role that the participant's product was shipped.
    links = [name for name in _ITEM_LINKS if policy.sees(name)]
    if kind != "shipment":
        links = [name for name in links if name in names]
    if not links:
        return None
    owned = Q(
        *(Q(**{f"{name}__participant_id": participant.pk}) for name in links), _connector=Q.OR
    )
    if kind == "shipment":
        return Q(id__in=ShipmentItem.objects.filter(owned).values("shipment_id"))
    return owned


def _item_rows(kind: str, names: set[str], code: str) -> Q | None:
    """Which history rows of ``kind`` are the item's: its own, and those of the records kept
    under it (placements of a unit, QC, passages and freezing runs of a processing, the items
    of a shipment); None: the kind has none."""
    found = Q()
    for name, lookup in (
        ("code", "code"),
        ("item_code", "item_code"),
        ("unit", "unit__code"),
        ("shipment", "shipment__code"),
    ):
        if name in names:
            found |= Q(**{lookup: code})
    if kind in _UNDER_PROCESSING:
        found |= Q(processing__code=code)
    return found or None


def audit_history_rows(*, user: Any, filters: AuditFilters) -> Iterator[list[Any]]:
    """Field history (old → new per field) of every tracked model, in chunks.

    A blinded role's rows name no database id: no foreign key among the changes, and an item
    without a code of its own is numbered within the export (``visit#3``)."""
    wanted_actions = {a for a in filters.actions if a in _HISTORY_ACTION.values()}
    if filters.actions and not wanted_actions:
        return
    participant = _participant_of(filters.participant) if filters.participant else None
    policy = visibility.policy_for(user)
    blinded = not policy.unblinded
    codes: dict[int, str] = {}
    users: dict[int, str] = {}
    extra_blank = [""] * len(event_extra_columns())
    User = get_user_model()
    for kind, hmodel in history_models():
        if not visibility.may_see_kind(user, kind):
            continue
        names = {f.name for f in hmodel._meta.concrete_fields}
        qs = hmodel.objects.all()
        mapped = policy.mapped_statuses(kind)
        if mapped and "status" in names:
            qs = qs.exclude(status__in=mapped)  # versions a blinded user may not see
        if participant is not None:
            mine = _participant_rows(kind, names, participant, policy)
            if mine is None:
                continue
            qs = qs.filter(mine)
        if filters.item:
            its = _item_rows(kind, names, filters.item)
            if its is None:
                continue
            qs = qs.filter(its)
        if filters.user:
            qs = qs.filter(history_user__username=filters.user)
        if filters.until:
            qs = qs.filter(history_date__lte=filters.until)
        tracked = [
            f.attname
            for f in hmodel._meta.concrete_fields
            if not f.name.startswith("history_")
            and f.name != "id"
            and not (blinded and f.is_relation)
        ]
        values = ["id", "history_id", "history_date", "history_type", "history_user_id"]
        values += ["history_change_reason", *tracked]
        if blinded and "participant" in names:
            values.append("participant_id")
        numbered: dict[int, int] = {}
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
                name: [plain(before[name]) if before else None, plain(row[name])]
                for name in tracked
                if before is None or before[name] != row[name]
            }
            if blinded and action == "changed" and not changes:
                continue  # a version whose every change is hidden from the user
            pid = row.get("participant_id") or (row["id"] if kind == "participant" else None)
            if participant is not None and kind != "shipment":
                pid = pid or participant.pk  # a QC result, a placement: the one asked for
            if pid and pid not in codes:
                codes[pid] = Participant.objects.filter(pk=pid).values_list("code", flat=True)[0]
            uid = row["history_user_id"]
            if uid and uid not in users:
                users[uid] = User.objects.filter(pk=uid).values_list("username", flat=True)[0]
            status = row.get("status")
            key = numbered.setdefault(row["id"], len(numbered) + 1) if blinded else row["id"]
            reason = row["history_change_reason"] or ""
            yield [
                "history",
                row["history_id"],
                iso(row["history_date"]),
                iso(row["history_date"]),
                codes.get(pid, "") if pid else "",
                kind,
                row.get("code") or f"{kind}#{key}",
                action,
                (before or {}).get("status") or "" if status is not None else "",
                status or "",
                users.get(uid, "") if uid else "",
                "",
                "",
                policy.redact(reason),
                _json(changes),
                *extra_blank,
            ]


def audit_rows(*, user: Any, filters: AuditFilters) -> Iterator[list[Any]]:
    """The export's rows in ``audit_columns(user=user)`` order."""
    rows = _audit_rows(user=user, filters=filters)
    if visibility.can_see_allocation(user):
        yield from rows
        return
    # A blinded role's: the row's number for its id (or history id), no further columns.
    width = len(EVENT_COLUMNS)
    for n, row in enumerate(rows, start=1):
        yield [row[0], n, *row[2:width]]


def _audit_rows(*, user: Any, filters: AuditFilters) -> Iterator[list[Any]]:
    if filters.source in ("events", "all"):
        yield from audit_event_rows(user=user, filters=filters)
    if filters.source in ("history", "all"):
        yield from audit_history_rows(user=user, filters=filters)
