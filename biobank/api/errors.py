"""One error format for every 4xx: {"code", "message", "fields"}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, OperationalError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from biobank.errors import ServiceError
from biobank.visibility import policy_for

logger = logging.getLogger(__name__)

# PostgreSQL: deadlock detected, serialization failure: a concurrent change; retrying works.
RETRYABLE_SQLSTATES = {"40P01", "40001"}


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (schema only)."""

    code = serializers.CharField(help_text="Stable machine-readable reason, e.g. 'invalid'.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name → messages about that field (empty when not about a field).",
    )


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


ERROR_RESPONSES: dict[int, OpenApiResponse] = {
    400: _error("Invalid input: the message and `fields` name the field and the reason."),
    401: _error("Not signed in, or the token is unknown, revoked or expired."),
    403: _error("Signed in, but this role may not do this."),
    404: _error("No such resource (or not visible to this user)."),
    405: _error("Method not allowed on this path."),
    409: _error(
        "Conflict: the step is not allowed from the current status, was already done, "
        "or a concurrent change got there first. Re-read and retry."
    ),
    413: _error("Request body larger than REQUEST_MAX_BODY_BYTES."),
    415: _error("Unsupported media type: send application/json."),
    429: _error("Too many failed sign-ins: account or address locked for a while."),
    500: _error("Server error (logged; no internals in the answer)."),
}


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(value, dict):
                for sub, msgs in _flatten(value).items():
                    out[f"{key}.{sub}"] = msgs
            elif isinstance(value, list):
                out[str(key)] = [str(v) for v in value if not isinstance(v, dict)] or [
                    str(v) for v in value
                ]
            else:
                out[str(key)] = [str(value)]
        return out
    return {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        # Messages go through the visibility policy too: no lab-only identifier reaches a
        # blinded user, not even in a refusal.
        request = context.get("request")
        policy = policy_for(getattr(request, "user", None))
        body = exc.as_dict()
        body["message"] = policy.redact(str(body["message"]))
        body["fields"] = {k: [policy.redact(m) for m in v] for k, v in body["fields"].items()}
        return Response(body, status=exc.status_code)
    if isinstance(exc, IntegrityError):
        # A database invariant caught what the services did not: still a clear 409, not a 500.
        logger.warning("integrity error reached the API: %s", exc)
        return Response(
            {
                "code": "conflict",
                "message": "The change conflicts with the current data and was not saved.",
                "fields": {},
            },
            status=status.HTTP_409_CONFLICT,
        )
    if (
        isinstance(exc, OperationalError)
        and getattr(getattr(exc, "__cause__", None), "sqlstate", None) in RETRYABLE_SQLSTATES
    ):
        return Response(
            {
                "code": "conflict",
                "message": "A concurrent change got in the way; nothing was saved. Try again.",
                "fields": {},
            },
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail) if isinstance(exc.detail, dict) else {}
        if isinstance(exc.detail, list):
            message = "; ".join(str(m) for m in exc.detail)
        else:
            message = (
                "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()) or "Invalid input."
            )
        response.data = {"code": "invalid", "message": message, "fields": fields}
    else:
        detail = getattr(exc, "detail", str(exc))
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = {"code": str(code), "message": str(detail), "fields": {}}
    if response.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        response.data["code"] = "method_not_allowed"
    return response
