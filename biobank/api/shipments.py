"""REST resource for shipments: read through the visibility policy, change through the services.

``/api/shipments/`` (list, create), ``/api/shipments/<SH…>/`` and the actions, each named as
its service: pack, unpack, seal, ship, receive-scan, receive, find, write-off, cancel,
logger (CSV upload), and the documents: manifest (PDF), label (ZPL/PDF), chart (SVG).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from biobank.errors import NotFound
from biobank.labels import content_type_for
from biobank.models import Shipment
from biobank.selectors.shipments import (
    manifest_pdf,
    manifest_rows,
    shipments_list,
    shipper_label,
    trace_chart,
)
from biobank.services import shipment_receipt as receiving
from biobank.services.actions import actions_open

from .actions import create_method, with_steps
from .serializers import PolicySerializer, code_field, signature_field
from .views import BaseViewSet


class ShipmentSerializer(PolicySerializer):
    from_site = code_field()
    to_site = code_field()
    temperature_range_c = serializers.SerializerMethodField()
    seal_signature = signature_field()
    items = serializers.SerializerMethodField()
    actions = serializers.SerializerMethodField()

    class Meta:
        model = Shipment
        fields = [
            "code",
            "label",
            "from_site",
            "to_site",
            "kind",
            "temperature_range_c",
            "shipper_id",
            "logger_serial",
            "courier",
            "tracking_ref",
            "status",
            "status_reason",
            "created_at",
            "seal_signature",
            "manifest_digest",
            "shipped_at",
            "received_at",
            "actions",
            "items",
        ]

    def get_temperature_range_c(self, obj: Shipment) -> list[str]:
        return [str(v) for v in obj.temperature_range]

    def get_actions(self, obj: Shipment) -> list[str]:
        """The steps this user may take on the shipment now (each is a POST path here)."""
        return actions_open(obj, getattr(self.context.get("request"), "user", None))

    def get_items(self, obj: Shipment) -> list[dict[str, Any]] | None:
        if not self.context.get("with_items"):
            return None
        user = getattr(self.context.get("request"), "user", None)
        return [
            {k: row[k] for k in ("code", "kind", "participant", "description", "state", "damaged")}
            for row in manifest_rows(shipment=obj, user=user)
        ]


class ShipmentFilter(filters.FilterSet):
    status = filters.CharFilter()
    kind = filters.CharFilter()
    from_site = filters.CharFilter(field_name="from_site__code")
    to_site = filters.CharFilter(field_name="to_site__code")

    class Meta:
        model = Shipment
        fields = ["status", "kind", "from_site", "to_site"]


def _with(view: Any, request: Request, shipment: Shipment, extra: dict[str, Any]) -> Response:
    """The shipment as it is now, with what the step has to say."""
    data = view.get_serializer(view.get_queryset().get(pk=shipment.pk)).data
    return Response({**data, **extra})


def _scanned(view: Any, request: Request, shipment: Shipment, outcome: Any) -> Response:
    return _with(
        view, request, shipment, {"scan": {"extra": outcome.extra, "message": outcome.message}}
    )


def _received(view: Any, request: Request, shipment: Shipment, receipt: Any) -> Response:
    return _with(view, request, shipment, {"receipt": _receipt(receipt, request)})


def _logged(view: Any, request: Request, shipment: Shipment, result: Any) -> Response:
    visible = _visible_codes(shipment, request)
    logger = {
        "readings": result.logger_file.readings,
        "excursion": result.logger_file.excursion,
        "quarantined": [c for c in result.quarantined if c in visible],
        # Found by the excursion but past quarantine (thawed, administered…): QA must act.
        "not_quarantined": [
            {"code": n.code, "kind": n.kind, "status": n.status}
            for n in result.not_quarantined
            if n.code in visible
        ],
    }
    return _with(view, request, shipment, {"logger": logger})


@with_steps(
    "shipment",
    receive_scan=(ShipmentSerializer, _scanned),
    receive=(ShipmentSerializer, _received),
    find=(ShipmentSerializer, _received),
    logger=(ShipmentSerializer, _logged, {"parser_classes": [MultiPartParser]}),
)
class ShipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "shipment"
    serializer_class = ShipmentSerializer
    filterset_class = ShipmentFilter
    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet[Shipment]:
        return shipments_list().select_related("seal_signature")

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context["with_items"] = self.action != "list"
        return context

    create = create_method("shipment", "create", ShipmentSerializer)

    @extend_schema(responses={(200, "application/pdf"): bytes})
    @action(detail=True, methods=["get"])
    def manifest(self, request: Request, code: str) -> HttpResponse:
        """The printable manifest; blinded roles get the blinded one (the same URL)."""
        shipment = self.get_object()
        return HttpResponse(manifest_pdf(shipment, request.user), content_type="application/pdf")

    @extend_schema(responses={(200, "application/pdf"): bytes, (200, "text/plain"): str})
    @action(detail=True, methods=["get"], url_path=r"label\.(?P<fmt>zpl|pdf|png|svg)")
    def label(self, request: Request, code: str, fmt: str) -> HttpResponse:
        """The shipper label with its 2D code: label.zpl, label.pdf, label.png or label.svg."""
        shipment = self.get_object()
        return HttpResponse(shipper_label(shipment, fmt), content_type=content_type_for(fmt))

    @extend_schema(responses={(200, "image/svg+xml"): bytes})
    @action(detail=True, methods=["get"])
    def chart(self, request: Request, code: str) -> HttpResponse:
        shipment = self.get_object()
        chart = trace_chart(shipment)
        if chart is None:
            raise NotFound(f"{shipment.code} has no logger file yet.", code="no_logger_file")
        return HttpResponse(chart[0], content_type="image/svg+xml")


def _visible_codes(shipment: Shipment, request: Request) -> set[str]:
    return {row["code"] for row in manifest_rows(shipment=shipment, user=request.user)}


def _receipt(receipt: receiving.Receipt, request: Request) -> dict[str, list[str]]:
    visible = _visible_codes(receipt.shipment, request)
    return {
        name: [c for c in getattr(receipt, name) if c in visible]
        for name in ("received", "damaged", "missing", "extra", "quarantined")
    }
