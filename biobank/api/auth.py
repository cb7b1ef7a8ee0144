"""API sign-in: tokens with an optional lifetime, revocable in the admin; lockout answers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .authentication import token_expires_at
from .errors import ERROR_RESPONSES


class TokenObtainView(APIView):
    """Exchange username and password for an API token (JSON only).

    Repeated failures lock the account and the client address for a while (django-axes).
    """

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()

    @extend_schema(
        operation_id="auth_token_create",
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer(
                "TokenIssued",
                {
                    "token": serializers.CharField(),
                    "expires_at": serializers.DateTimeField(allow_null=True),
                },
            ),
            **{k: v for k, v in ERROR_RESPONSES.items() if k in (400, 413, 429)},
        },
        auth=[],
    )
    def post(self, request: Request) -> HttpResponse:
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            # django-axes marks the request it was given (DRF's); the middleware looks at
            # Django's, so answer the lockout here.
            if getattr(request, "axes_locked_out", False) or getattr(
                request._request, "axes_locked_out", False
            ):
                return lockout_response(request._request, None, None)
            raise ValidationError(serializer.errors)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        expires = token_expires_at(token)
        if expires is not None and timezone.now() >= expires:
            token.delete()
            token = Token.objects.create(user=user)
            expires = token_expires_at(token)
        return Response({"token": token.key, "expires_at": expires})


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """django-axes' answer to a locked account or address: JSON under /api/, text elsewhere."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed sign-ins for this account or address: locked for {minutes} minutes "
        f"after {settings.AXES_FAILURE_LIMIT} failures. An administrator can unlock it earlier."
    )
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {"code": "locked_out", "message": message, "fields": {}}, status=429
        )
    else:
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(minutes * 60)
    return response
