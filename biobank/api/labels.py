"""Labels over HTTP (one label as ZPL/PNG/SVG/PDF, a batch as one ZPL stream or one PDF
sheet), the printers, and print jobs that send ZPL to a printer. Views only parse the
request and call ``biobank.services.printing``; errors come back as JSON."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from biobank.errors import ServiceError
from biobank.labels import ALLOWED_DPI, FORMATS, TEMPLATES
from biobank.models import Printer, PrinterDpi, PrintJob, PrintJobStatus
from biobank.selectors.labels import may_label_any
from biobank.services.printing import (
    BATCH_FORMATS,
    MAX_BATCH_CODES,
    MAX_COPIES,
    MAX_PRINT_CODES,
    PRINT_PERMISSION,
    PrinterUnavailable,
    RenderedLabels,
    label_render,
    labels_batch_render,
    print_job_submit,
    printer_get,
)
from biobank.visibility import policy_for

from .errors import ErrorSerializer
from .permissions import RolePermission

TEMPLATE_NAMES = sorted(TEMPLATES)


class PrintJobError(ErrorSerializer):
    """A refused print: the error, and the job that was recorded as failed."""

    print_job = serializers.IntegerField(help_text="The failed job, recorded")


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Bad identifier, format, template or dpi"),
    401: OpenApiResponse(ErrorSerializer, description="Not logged in"),
    403: OpenApiResponse(ErrorSerializer, description="Not allowed"),
    404: OpenApiResponse(ErrorSerializer, description="No item with this identifier"),
    422: OpenApiResponse(ErrorSerializer, description="The text does not fit the chosen label"),
}


class JsonErrorsNegotiation(BaseContentNegotiation):
    """Binary endpoints: ignore the client's Accept header (an <img> or a printer driver
    asks for image/* or anything), so errors are always rendered as JSON, never a 406."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0]

    def select_renderer(
        self, request: Request, renderers: list[Any], format_suffix: str | None = None
    ) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


def _file(rendered: RenderedLabels) -> HttpResponse:
    response = HttpResponse(rendered.data, content_type=rendered.content_type)
    response["Content-Disposition"] = f'inline; filename="{rendered.filename}"'
    # Labels carry pseudonyms: keep them out of shared caches.
    response["Cache-Control"] = "private, no-store"
    if rendered.content_type.startswith("image/svg"):
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


# --- labels ------------------------------------------------------------------------------


class CanHaveLabels(BasePermission):
    """A user with no label permission at all is refused before the code is read, so the
    answer is the same for every code; each code's kind is then checked by the selector."""

    message = "Your role may not view or print labels."

    def has_permission(self, request: Request, view: Any) -> bool:
        return may_label_any(request.user)


class LabelView(APIView):
    """One label for the item an identifier names."""

    content_negotiation_class = JsonErrorsNegotiation
    permission_classes = [IsAuthenticated, CanHaveLabels]

    @extend_schema(
        operation_id="label_render",
        summary="One label as ZPL, PNG, SVG or PDF",
        parameters=[
            OpenApiParameter(
                "code",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="Identifier (PT, AS, PR, FR, UN, SU, CT, BX…)",
            ),
            OpenApiParameter("fmt", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(FORMATS)),
            OpenApiParameter(
                "template",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=TEMPLATE_NAMES,
                description="Label stock; default depends on the item (cryobag/cryovial…)",
            ),
            OpenApiParameter(
                "dpi",
                OpenApiTypes.INT,
                OpenApiParameter.QUERY,
                enum=list(ALLOWED_DPI),
                description="Printer resolution; default the template's (300)",
            ),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="ZPL II"),
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="1-bit PNG"),
            (200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, description="SVG"),
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="PDF"),
            **ERRORS,
        },
    )
    def get(self, request: Request, code: str, fmt: str) -> HttpResponse:
        rendered = label_render(
            code=code,
            fmt=fmt,
            viewer=request.user,
            template=request.query_params.get("template") or None,
            dpi=request.query_params.get("dpi") or None,
        )
        return _file(rendered)


class LabelWithoutFormatView(APIView):
    """``/api/labels/<ID>`` without a known ``.<format>``: a JSON error, not an HTML 404."""

    content_negotiation_class = JsonErrorsNegotiation
    permission_classes = [IsAuthenticated, CanHaveLabels]
    schema = None

    def get(self, request: Request, rest: str) -> Response:
        raise ServiceError(
            f"Add a format to the identifier: /api/labels/<ID>.<format>, format one of "
            f"{', '.join(FORMATS)}.",
            code="unknown_format",
            field="format",
        )


class LabelBatchRequest(serializers.Serializer):
    codes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        max_length=MAX_BATCH_CODES,
        help_text=f"Identifiers, in print order (at most {MAX_BATCH_CODES})",
    )
    format = serializers.ChoiceField(choices=list(BATCH_FORMATS))
    template = serializers.ChoiceField(choices=TEMPLATE_NAMES, required=False)
    dpi = serializers.ChoiceField(choices=PrinterDpi.choices, required=False)


class LabelBatchView(APIView):
    """Many labels at once: one ZPL stream for a label printer, or one A4 PDF sheet."""

    content_negotiation_class = JsonErrorsNegotiation
    permission_classes = [IsAuthenticated, CanHaveLabels]

    @extend_schema(
        operation_id="labels_batch",
        summary="Many labels as one ZPL stream or one PDF sheet",
        request=LabelBatchRequest,
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="ZPL II"),
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="A4 sheet"),
            **ERRORS,
        },
        examples=[
            OpenApiExample(
                "A participant and a dose as ZPL",
                value={"codes": ["PT0000001E", "DS0000001D"], "format": "zpl"},
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        payload = LabelBatchRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        rendered = labels_batch_render(
            codes=data["codes"],
            fmt=data["format"],
            viewer=request.user,
            template=data.get("template"),
            dpi=data.get("dpi"),
        )
        return _file(rendered)


# --- printers and print jobs -------------------------------------------------------------


class PrinterSerializer(serializers.ModelSerializer):
    label_size = serializers.CharField(read_only=True)

    class Meta:
        model = Printer
        fields = ["id", *Printer.RECORD_FIELDS]


class PrintJobSerializer(serializers.ModelSerializer):
    printer = serializers.CharField(source="printer.name", read_only=True)
    requested_by = serializers.CharField(source="requested_by.get_username", read_only=True)
    item_codes = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = PrintJob
        fields = ["id", "printer", "printer_id", *PrintJob.RECORD_FIELDS]
        read_only_fields = fields


class PrintJobRequest(serializers.Serializer):
    printer = serializers.CharField(max_length=100, help_text="Printer name or id")
    codes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        max_length=MAX_PRINT_CODES,
        help_text=f"Identifiers, in print order (at most {MAX_PRINT_CODES})",
    )
    template = serializers.ChoiceField(
        choices=TEMPLATE_NAMES,
        required=False,
        help_text="Default: each item's own stock if the printer holds that size, "
        "else the printer's template",
    )
    copies = serializers.IntegerField(min_value=1, max_value=MAX_COPIES, default=1)


class CanPrint(BasePermission):
    """Anyone logged in may read; sending a job needs the add-print-job permission."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or request.user.has_perm(PRINT_PERMISSION)


class PrinterList(generics.ListAPIView):
    """Configured printers (set up in the admin). Their hosts and ports are internal: the
    list needs view_printer, which the roles that print hold."""

    permission_classes = [RolePermission]
    model_name = "printer"
    queryset = Printer.objects.order_by("name")
    serializer_class = PrinterSerializer
    filterset_fields = ["active", "dpi", "label_template"]
    ordering_fields = ["name"]


class PrintJobList(generics.ListAPIView):
    """Print jobs, newest first; POST sends a new one."""

    queryset = PrintJob.objects.select_related("printer", "requested_by").order_by(
        "-created_at", "-id"
    )
    serializer_class = PrintJobSerializer
    permission_classes = [IsAuthenticated, CanPrint]
    filterset_fields = ["status", "printer"]
    ordering_fields = ["created_at", "id"]

    def get_queryset(self) -> Any:
        return policy_for(self.request.user).rows(super().get_queryset())

    @extend_schema(
        operation_id="print_jobs_create",
        summary="Send labels to a printer (ZPL over raw TCP)",
        request=PrintJobRequest,
        responses={
            201: PrintJobSerializer,
            503: OpenApiResponse(
                PrintJobError, description="The printer did not take the job (recorded failed)"
            ),
            **ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        payload = PrintJobRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        job = print_job_submit(
            printer=printer_get(ref=data["printer"]),
            codes=data["codes"],
            actor=request.user,
            template=data.get("template"),
            copies=data["copies"],
        )
        if job.status == PrintJobStatus.FAILED:
            raise PrinterUnavailable(job)
        return Response(PrintJobSerializer(job).data, status=status.HTTP_201_CREATED)


class PrintJobDetail(generics.RetrieveAPIView):
    queryset = PrintJob.objects.select_related("printer", "requested_by")
    serializer_class = PrintJobSerializer

    def get_queryset(self) -> Any:
        return policy_for(self.request.user).rows(super().get_queryset())
