from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from biobank.selectors.scan import scan_resolve


class ScanRequestSerializer(serializers.Serializer):
    # Blank is let through: the scan parser refuses it with its own code (``empty``).
    code = serializers.CharField(
        max_length=10_000,
        trim_whitespace=False,
        allow_blank=True,
        help_text="Exactly what the scanner typed (AIM prefix, spaces and case are tolerated).",
    )


ScanResponse = inline_serializer(
    "ScanResult",
    fields={
        "kind": serializers.CharField(),
        "prefix": serializers.CharField(),
        "code": serializers.CharField(),
        "status": serializers.CharField(allow_blank=True),
        "status_display": serializers.CharField(allow_blank=True),
        "location": serializers.CharField(allow_blank=True),
        "api_url": serializers.CharField(allow_null=True),
        "admin_url": serializers.CharField(),
        "label_url": serializers.CharField(allow_null=True),
        "removed": serializers.ListField(child=serializers.CharField()),
    },
)


class ScanView(APIView):
    """Resolve one scan to the item it names."""

    @extend_schema(
        request=ScanRequestSerializer,
        responses={200: ScanResponse},
        examples=[OpenApiExample("AIM-prefixed Code 128", value={"code": "]C0AS0000001W"})],
    )
    def post(self, request: Request) -> Response:
        payload = ScanRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = scan_resolve(raw=payload.validated_data["code"], viewer=request.user)
        return Response(
            {
                "kind": result.kind.label,
                "prefix": result.kind.value,
                "code": result.code,
                "status": result.status,
                "status_display": result.status_display,
                "location": result.location,
                "api_url": result.api_url,
                "admin_url": result.admin_url,
                "label_url": result.label_url,
                "removed": result.removed,
            }
        )
