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
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from biobank.labels import content_type_for
from biobank.models import Shipment, ShipmentKind, Site
from biobank.selectors.shipments import (
    manifest_pdf,
    manifest_rows,
    shipments_list,
    shipper_label,
    trace_chart,
)
from biobank.services import shipments as services
from biobank.services.errors import NotFound, ServiceError
from biobank.services.lifecycle import allowed_actions

from .views import BaseViewSet


def site_by_code(raw: str, field: str) -> Site:
    site = Site.objects.filter(code=str(raw or "").strip().upper()).first()
    if site is None:
        codes = ", ".join(Site.objects.order_by("code").values_list("code", flat=True))
        raise ServiceError(f"Unknown site '{raw}'; one of {codes}.", field=field)
    return site


class ShipmentSerializer(serializers.ModelSerializer):
    from_site = serializers.SlugRelatedField(slug_field="code", read_only=True)
    to_site = serializers.SlugRelatedField(slug_field="code", read_only=True)
    temperature_range_c = serializers.SerializerMethodField()
    seal_signature = serializers.SerializerMethodField()
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
        """The shipment steps the transition table allows now."""
        return allowed_actions(obj)

    def get_seal_signature(self, obj: Shipment) -> str | None:
        return str(obj.seal_signature) if obj.seal_signature_id else None

    def get_items(self, obj: Shipment) -> list[dict[str, Any]] | None:
        if not self.context.get("with_items"):
            return None
        user = getattr(self.context.get("request"), "user", None)
        return [
            {k: row[k] for k in ("code", "kind", "participant", "description", "state", "damaged")}
            for row in manifest_rows(shipment=obj, user=user)
        ]


class ShipmentCreateInput(serializers.Serializer):
    from_site = serializers.CharField(max_length=16)
    to_site = serializers.CharField(max_length=16)
    kind = serializers.ChoiceField(choices=ShipmentKind.choices)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    shipper_id = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    logger_serial = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )
    courier = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    tracking_ref = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )


class ScanInput(serializers.Serializer):
    scan = serializers.CharField(max_length=200, trim_whitespace=False)


class ReceiveScanInput(ScanInput):
    damaged = serializers.BooleanField(required=False, default=False)
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class FindInput(ReceiveScanInput):
    at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class WriteOffInput(ScanInput):
    reason = serializers.CharField(max_length=2000)


class ShipInput(serializers.Serializer):
    at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    courier = serializers.CharField(max_length=100, required=False, allow_null=True, default=None)
    tracking_ref = serializers.CharField(
        max_length=100, required=False, allow_null=True, default=None
    )


class AtInput(serializers.Serializer):
    at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class PasswordInput(serializers.Serializer):
    password = serializers.CharField(max_length=200, write_only=True)


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class LoggerInput(serializers.Serializer):
    file = serializers.FileField()


class ShipmentFilter(filters.FilterSet):
    status = filters.CharFilter()
    kind = filters.CharFilter()
    from_site = filters.CharFilter(field_name="from_site__code")
    to_site = filters.CharFilter(field_name="to_site__code")

    class Meta:
        model = Shipment
        fields = ["status", "kind", "from_site", "to_site"]


PACK = "biobank.pack_shipment"
RECEIVE = "biobank.receive_shipment"


class ShipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    model_name = "shipment"
    serializer_class = ShipmentSerializer
    filterset_class = ShipmentFilter
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    ordering = ["-created_at"]
    write_permissions = {
        "create": PACK,
        "pack": PACK,
        "unpack": PACK,
        "seal": PACK,
        "ship": PACK,
        "cancel": PACK,
        "receive_scan": RECEIVE,
        "receive": RECEIVE,
        "find": RECEIVE,
        "write_off": RECEIVE,
        "logger": RECEIVE,
    }

    def get_queryset(self) -> QuerySet[Shipment]:
        return shipments_list().select_related("seal_signature")

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context["with_items"] = self.action != "list"
        return context

    @extend_schema(request=ShipmentCreateInput, responses={201: ShipmentSerializer})
    def create(self, request: Request) -> Response:
        def call(d: dict[str, Any]) -> Shipment:
            return services.shipment_create(
                from_site=site_by_code(d.pop("from_site"), "from_site"),
                to_site=site_by_code(d.pop("to_site"), "to_site"),
                actor=request.user,
                **d,
            )

        return self.run(request, ShipmentCreateInput, call, status=201)

    def _act(self, request: Request, input_class: Any, fn: Any) -> Response:
        shipment = self.get_object()

        def call(d: dict[str, Any]) -> Any:
            extra = fn(shipment, d)
            response = self.get_serializer(self._reload(shipment)).data
            if isinstance(extra, dict):
                response = {**response, **extra}
            return Response(response)

        return self.run(request, input_class, call)

    @extend_schema(request=ScanInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def pack(self, request: Request, code: str) -> Response:
        return self._act(
            request,
            ScanInput,
            lambda s, d: services.shipment_pack(shipment=s, scan=d["scan"], actor=request.user),
        )

    @extend_schema(request=ScanInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def unpack(self, request: Request, code: str) -> Response:
        return self._act(
            request,
            ScanInput,
            lambda s, d: services.shipment_unpack(shipment=s, scan=d["scan"], actor=request.user),
        )

    @extend_schema(request=PasswordInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def seal(self, request: Request, code: str) -> Response:
        return self._act(
            request,
            PasswordInput,
            lambda s, d: services.shipment_seal(
                shipment=s, actor=request.user, password=d["password"]
            ),
        )

    @extend_schema(request=ShipInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def ship(self, request: Request, code: str) -> Response:
        return self._act(
            request,
            ShipInput,
            lambda s, d: services.shipment_ship(shipment=s, actor=request.user, **d),
        )

    @extend_schema(request=ReasonInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, code: str) -> Response:
        return self._act(
            request,
            ReasonInput,
            lambda s, d: services.shipment_cancel(
                shipment=s, actor=request.user, reason=d["reason"]
            ),
        )

    @extend_schema(request=ReceiveScanInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"], url_path="receive-scan")
    def receive_scan(self, request: Request, code: str) -> Response:
        def fn(s: Shipment, d: dict[str, Any]) -> dict[str, Any]:
            outcome = services.shipment_receive_scan(shipment=s, actor=request.user, **d)
            return {"scan": {"extra": outcome.extra, "message": outcome.message}}

        return self._act(request, ReceiveScanInput, fn)

    @extend_schema(request=AtInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def receive(self, request: Request, code: str) -> Response:
        def fn(s: Shipment, d: dict[str, Any]) -> dict[str, Any]:
            return {
                "receipt": _receipt(
                    services.shipment_receive(shipment=s, actor=request.user, **d), request
                )
            }

        return self._act(request, AtInput, fn)

    @extend_schema(request=FindInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def find(self, request: Request, code: str) -> Response:
        def fn(s: Shipment, d: dict[str, Any]) -> dict[str, Any]:
            return {
                "receipt": _receipt(
                    services.shipment_item_find(shipment=s, actor=request.user, **d), request
                )
            }

        return self._act(request, FindInput, fn)

    @extend_schema(request=WriteOffInput, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"], url_path="write-off")
    def write_off(self, request: Request, code: str) -> Response:
        return self._act(
            request,
            WriteOffInput,
            lambda s, d: services.shipment_item_write_off(
                shipment=s, scan=d["scan"], actor=request.user, reason=d["reason"]
            ),
        )

    @extend_schema(request={"multipart/form-data": LoggerInput}, responses=ShipmentSerializer)
    @action(detail=True, methods=["post"])
    def logger(self, request: Request, code: str) -> Response:
        def fn(s: Shipment, d: dict[str, Any]) -> dict[str, Any]:
            upload = d["file"]
            result = services.shipment_logger_upload(
                shipment=s, data=upload.read(), filename=upload.name, actor=request.user
            )
            visible = _visible_codes(s, request)
            return {
                "logger": {
                    "readings": result.logger_file.readings,
                    "excursion": result.logger_file.excursion,
                    "quarantined": [c for c in result.quarantined if c in visible],
                }
            }

        return self._act(request, LoggerInput, fn)

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


def _receipt(receipt: services.Receipt, request: Request) -> dict[str, list[str]]:
    visible = _visible_codes(receipt.shipment, request)
    return {
        name: [c for c in getattr(receipt, name) if c in visible]
        for name in ("received", "damaged", "missing", "extra", "quarantined")
    }
