"""Reports, exports, inventory and charts over HTTP (token or session: the admin links here).

Each ``*_response`` function builds the response for a user and query parameters and raises
``ServiceError`` on bad input; the API views wrap them (JSON errors) and the admin's Reports
page calls them too (form messages), so both hand out the same bytes and log the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from biobank import visibility
from biobank.errors import NotFound, ServiceError
from biobank.models import ExportKind, Participant, StorageUnit
from biobank.reports import charts
from biobank.reports.charts_for import crossover_spec, occupancy_spec, temperature_spec
from biobank.reports.exports import csv_stream, jsonl_stream, xlsx_bytes
from biobank.reports.pdf import report_pdf
from biobank.selectors.audit_export import (
    AUDIT_PERMISSION,
    audit_columns,
    audit_filters_from,
    audit_rows,
)
from biobank.selectors.inventory import (
    INVENTORY_COLUMNS,
    inventory_counts,
    inventory_rows,
    participant_whereabouts,
)
from biobank.selectors.reports import participant_report
from biobank.services.lifecycle import EVENT_STEPS
from biobank.services.reports import export_record
from biobank.services.signatures import PermissionRefused

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _require(user: Any, perm: str, what: str, kind: str | None = None) -> None:
    allowed = user.has_perm(perm) and (kind is None or visibility.may_see_kind(user, kind))
    if not allowed:
        raise PermissionRefused(f"You are not authorised to {what}.", code="permission_denied")


def _participant(code: str) -> Participant:
    code = (code or "").strip().upper().replace("\x00", "")
    found = Participant.objects.select_related("study", "site", "arm").filter(code=code).first()
    if found is None:
        found = (
            Participant.objects.select_related("study", "site", "arm")
            .filter(pseudonym=code)
            .first()
        )
    if found is None:
        raise NotFound(
            f"No participant {code} is registered.", code="not_found", field="participant"
        )
    return found


def _storage_unit(code: str) -> StorageUnit:
    code = (code or "").strip().upper().replace("\x00", "")
    found = StorageUnit.objects.filter(code=code).first()
    if found is None:
        raise NotFound(
            f"No storage unit {code} is registered.", code="not_found", field="storage_unit"
        )
    return found


def _fmt(fmt: str, allowed: tuple[str, ...]) -> str:
    fmt = (fmt or "").lower()
    if fmt not in allowed:
        raise ServiceError(
            f"format must be one of {', '.join(allowed)}.", code="invalid_format", field="format"
        )
    return fmt


def _stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")


def _attachment(response: HttpResponse | StreamingHttpResponse, name: str) -> Any:
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


# --- builders --------------------------------------------------------------------------------


def participant_report_response(*, user: Any, code: str, fmt: str) -> HttpResponse:
    fmt = _fmt(fmt, ("pdf", "json"))
    _require(user, "biobank.view_participant", "see participant reports", "participant")
    participant = _participant(code)
    report = participant_report(participant=participant, user=user)
    data = report.as_dict()
    name = f"chain-report-{participant.code}-{_stamp()}.{fmt}"
    # Built before it is logged: a build that fails leaves no record of a copy handed out.
    if fmt == "pdf":
        response = HttpResponse(report_pdf(data), content_type="application/pdf")
    else:
        body = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)
        response = HttpResponse(body, content_type="application/json")
    export_record(
        kind=ExportKind.PARTICIPANT_REPORT,
        format=fmt,
        actor=user,
        blinded=report.blinded,
        participant=participant,
        content_hash=report.content_hash,
    )
    response["X-Content-Hash"] = report.content_hash
    return _attachment(response, name)


def audit_export_response(
    *, user: Any, fmt: str, params: Mapping[str, str]
) -> StreamingHttpResponse:
    fmt = _fmt(fmt, ("csv", "jsonl"))
    _require(user, AUDIT_PERMISSION, "export the audit trail")
    filters = audit_filters_from(params, user=user, steps=EVENT_STEPS)
    participant = _participant(filters.participant) if filters.participant else None
    export_record(
        kind=ExportKind.AUDIT_TRAIL,
        format=fmt,
        actor=user,
        blinded=not visibility.can_see_allocation(user),
        filters=filters.as_dict(),
        participant=participant,
    )
    columns = audit_columns(user=user)
    rows = audit_rows(user=user, filters=filters)
    if fmt == "csv":
        response = StreamingHttpResponse(csv_stream(columns, rows), content_type="text/csv")
    else:
        response = StreamingHttpResponse(
            jsonl_stream(columns, rows), content_type="application/x-ndjson"
        )
    return _attachment(response, f"audit-trail-{_stamp()}.{fmt}")


def inventory_response(*, user: Any, fmt: str, params: Mapping[str, str]) -> Any:
    fmt = _fmt(fmt, ("csv", "xlsx", "json"))
    _require(user, "biobank.view_productunit", "see the inventory", "unit")
    storage_unit = _storage_unit(params["storage_unit"]) if params.get("storage_unit") else None
    participant = _participant(params["participant"]) if params.get("participant") else None
    rows = inventory_rows(storage_unit=storage_unit, participant=participant)
    name = f"inventory-{_stamp()}.{fmt}"
    response: Any
    if fmt == "csv":
        response = _attachment(
            StreamingHttpResponse(csv_stream(INVENTORY_COLUMNS, rows), content_type="text/csv"),
            name,
        )
    elif fmt == "json":
        body = [dict(zip(INVENTORY_COLUMNS, r, strict=True)) for r in rows]
        response = HttpResponse(
            json.dumps(body, ensure_ascii=False), content_type="application/json"
        )
    else:
        counts = [
            [c["participant"], c["pseudonym"], c["stored"], c["total"], json.dumps(c["by_status"])]
            for c in inventory_counts()
        ]
        content = xlsx_bytes(
            [
                ("Units by location", INVENTORY_COLUMNS, rows),
                (
                    "Per participant",
                    ["participant", "pseudonym", "stored", "total", "by_status"],
                    counts,
                ),
            ]
        )
        response = _attachment(HttpResponse(content, content_type=XLSX), name)
    # Logged once built (a stream: once it is ready to start), so a failed build logs nothing.
    export_record(
        kind=ExportKind.INVENTORY,
        format=fmt,
        actor=user,
        blinded=False,
        filters={
            "storage_unit": storage_unit.code if storage_unit else "",
            "participant": participant.code if participant else "",
        },
        participant=participant,
    )
    return response


# ASCII stand-ins for what the alt texts write, so the header still reads right.
_ASCII = str.maketrans(
    {
        "—": "-",
        "–": "-",
        "−": "-",
        "…": "...",
        "×": "x",
        "≤": "<=",
        "≥": ">=",
        "→": "->",
        "µ": "u",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
    }
)


def header_text(text: str) -> str:
    """``text`` as a safe header value: ASCII (headers are Latin-1 at best), "°C" as "deg C",
    accents dropped, and no CR, LF or other control character (Django refuses a header with
    a newline, and one could end the header early)."""
    text = text.replace("°C", "deg C").replace("°", " deg").translate(_ASCII)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    return " ".join(text.encode("ascii", "replace").decode().split())


def _chart_response(chart: charts.Chart) -> HttpResponse:
    response = HttpResponse(chart.content, content_type=chart.content_type)
    response["X-Alt-Text"] = header_text(chart.alt)
    response["Cache-Control"] = "private, max-age=60"
    return response


def temperature_chart_for(*, user: Any, code: str, fmt: str, days: str = "") -> charts.Chart:
    fmt = _fmt(fmt, tuple(charts.FORMATS))
    _require(user, "biobank.view_storageunit", "see storage units", "storage_unit")
    unit = _storage_unit(code)
    since = None
    if days:
        try:
            since = timezone.now() - dt.timedelta(days=max(1, min(int(days), 3650)))
        except ValueError as exc:
            raise ServiceError("days must be a whole number.", field="days") from exc
    return temperature_spec(unit=unit, since=since).render(fmt)


def occupancy_chart_for(*, user: Any, code: str, fmt: str) -> charts.Chart:
    fmt = _fmt(fmt, tuple(charts.FORMATS))
    _require(user, "biobank.view_storageunit", "see storage units", "storage_unit")
    return occupancy_spec(unit=_storage_unit(code)).render(fmt)


def crossover_chart_for(*, user: Any, code: str, fmt: str) -> charts.Chart:
    fmt = _fmt(fmt, tuple(charts.FORMATS))
    _require(user, "biobank.view_participant", "see participants", "participant")
    return crossover_spec(participant=_participant(code), user=user).render(fmt)


# --- API views -------------------------------------------------------------------------------

FILTER_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="date or date-time (inclusive)"),
    OpenApiParameter("to", OpenApiTypes.STR, description="date or date-time (inclusive)"),
    OpenApiParameter("item", OpenApiTypes.STR, description="item ID, e.g. AS…, UN…, DS…"),
    OpenApiParameter("participant", OpenApiTypes.STR, description="participant ID or pseudonym"),
    OpenApiParameter("user", OpenApiTypes.STR, description="username"),
    OpenApiParameter("action", OpenApiTypes.STR, description="step(s), comma-separated"),
    OpenApiParameter("source", OpenApiTypes.STR, enum=["events", "history", "all"]),
]


COUNTS = inline_serializer(
    "InventoryCount",
    fields={
        "participant": serializers.CharField(),
        "pseudonym": serializers.CharField(),
        "stored": serializers.IntegerField(),
        "total": serializers.IntegerField(),
        "by_status": serializers.DictField(child=serializers.IntegerField()),
    },
    many=True,
)
INVENTORY_ROWS = inline_serializer(
    "InventoryRow",
    fields={name: serializers.CharField(allow_blank=True) for name in INVENTORY_COLUMNS},
    many=True,
)

# Typed path parameters, so the schema (and check --deploy) need not guess.
CODE_PATH = [
    OpenApiParameter("code", str, OpenApiParameter.PATH, description="Identifier or pseudonym"),
    OpenApiParameter("fmt", str, OpenApiParameter.PATH, description="Output format"),
]

CHART_RESPONSES = {
    (200, "image/svg+xml"): OpenApiTypes.BINARY,
    (200, "image/png"): OpenApiTypes.BINARY,
}


class ParticipantReportView(APIView):
    @extend_schema(
        parameters=CODE_PATH,
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
    )
    def get(self, request: Request, code: str, fmt: str) -> HttpResponse:
        """The participant chain report (PDF or JSON); blinded roles get the blinded version."""
        return participant_report_response(user=request.user, code=code, fmt=fmt)


class AuditExportView(APIView):
    @extend_schema(
        parameters=FILTER_PARAMS,
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request, fmt: str) -> StreamingHttpResponse:
        """The audit trail (custody events and/or field history), streamed as CSV or JSON Lines."""
        return audit_export_response(user=request.user, fmt=fmt, params=request.query_params)


class InventoryView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("storage_unit", OpenApiTypes.STR),
            OpenApiParameter("participant", OpenApiTypes.STR),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, XLSX): OpenApiTypes.BINARY,
            (200, "application/json"): INVENTORY_ROWS,
        },
    )
    def get(self, request: Request, fmt: str) -> Any:
        """Every stored unit with its location, by storage unit, box and position."""
        return inventory_response(user=request.user, fmt=fmt, params=request.query_params)


class InventoryCountsView(APIView):
    @extend_schema(responses={200: COUNTS})
    def get(self, request: Request) -> HttpResponse:
        """Per participant: units stored and units by status."""
        _require(request.user, "biobank.view_productunit", "see the inventory", "unit")
        return HttpResponse(json.dumps(inventory_counts()), content_type="application/json")


class WhereaboutsView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, code: str) -> HttpResponse:
        """Where is everything of one participant (units only for unblinded roles)."""
        _require(request.user, "biobank.view_participant", "see participants", "participant")
        body = participant_whereabouts(participant=_participant(code), user=request.user)
        return HttpResponse(json.dumps(body), content_type="application/json")


class TemperatureChartView(APIView):
    @extend_schema(
        parameters=[*CODE_PATH, OpenApiParameter("days", OpenApiTypes.INT)],
        responses=CHART_RESPONSES,
    )
    def get(self, request: Request, code: str, fmt: str) -> HttpResponse:
        """Temperature log of a storage unit with the allowed range and excursions marked."""
        days = request.query_params.get("days", "")
        return _chart_response(
            temperature_chart_for(user=request.user, code=code, fmt=fmt, days=days)
        )


class OccupancyChartView(APIView):
    @extend_schema(parameters=CODE_PATH, responses=CHART_RESPONSES)
    def get(self, request: Request, code: str, fmt: str) -> HttpResponse:
        """Box-by-box occupancy heat map of a storage unit."""
        return _chart_response(occupancy_chart_for(user=request.user, code=code, fmt=fmt))


class CrossoverChartView(APIView):
    @extend_schema(parameters=CODE_PATH, responses=CHART_RESPONSES)
    def get(self, request: Request, code: str, fmt: str) -> HttpResponse:
        """Visits, aspirations and doses of one participant (blinded wording when blinded)."""
        return _chart_response(crossover_chart_for(user=request.user, code=code, fmt=fmt))
