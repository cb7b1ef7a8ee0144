"""Request limits and one error format for everything under /api/, whatever raised it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import unquote_plus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

SESSION_SEEN = "_biobank_seen"

logger = logging.getLogger("django.request")

API_PREFIX = "/api/"

_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "fields": {}}, status=status)


_NUL_MESSAGE = "The address holds a NUL character (0x00), which no code or value contains."


class RequestLimitsMiddleware:
    """Refuse a body larger than ``REQUEST_MAX_BODY_BYTES`` before anything reads it, and an
    address with a NUL character (PostgreSQL text cannot hold one: a lookup would fail in the
    database driver)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit: int = settings.REQUEST_MAX_BODY_BYTES
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return error_response(400, "bad_request", f"Content-Length '{raw}' is not a number.")
        if length > limit:
            return error_response(
                413,
                "request_too_large",
                f"The request body is {length} bytes; the limit (REQUEST_MAX_BODY_BYTES) "
                f"is {limit} bytes.",
            )
        # The query string decoded as it will be read (keys and values alike).
        if "\x00" in request.path or "\x00" in unquote_plus(request.META.get("QUERY_STRING", "")):
            if request.path.startswith(API_PREFIX):
                return error_response(400, "bad_request", _NUL_MESSAGE)
            return HttpResponseBadRequest(_NUL_MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class ApiJsonErrorsMiddleware:
    """Every /api/ answer is JSON: Django's HTML 404/500 pages become {code, message, fields}.

    A crash answers 500 without internals (the traceback goes to the log only), with DEBUG
    on or off.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if "json" in response.get("Content-Type", ""):
            return response
        status = response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        code = _CODES.get(status, "server_error" if status >= 500 else "error")
        message = phrase + "."
        if status == 404:
            # The path is the caller's own text, but it still goes through the policy.
            from biobank.visibility import policy_for

            path = policy_for(getattr(request, "user", None)).redact(request.path)
            message = f"Nothing at {path}. The API's operations are listed at /api/schema/."
        converted = error_response(status, code, message)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                converted[header] = response[header]
        return converted

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        logger.error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"request": request},
        )
        return error_response(
            500, "server_error", "The server failed to answer this request; it has been logged."
        )


def session_mark_seen(sender: object, request: HttpRequest, **kwargs: object) -> None:
    """At login (user_logged_in): the session is fresh, so the next minute needs no write."""
    request.session[SESSION_SEEN] = int(time.time())


class SessionIdleMiddleware:
    """Idle timeout: push the session's expiry (SESSION_COOKIE_AGE) on as the user works.

    At most once a minute, not on every request as SESSION_SAVE_EVERY_REQUEST would, so an
    ordinary request does not write. Goes after SessionMiddleware (its save runs after us).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if session is not None and user is not None and user.is_authenticated:
            now = int(time.time())
            if now - int(session.get(SESSION_SEEN, 0)) >= 60:
                session[SESSION_SEEN] = now  # modified: SessionMiddleware saves a new expiry
        return response


_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


class BlindedRedactionMiddleware:
    """The last line of blinding: a lab-only identifier in any text a blinded user receives
    (a page, JSON, an error, a label's text) is replaced as the visibility policy redacts it.

    Every view already shapes its answer by the policy (the blinding sweep checks them with
    this middleware off); this catches what a view's own data brings along, such as a scan
    typed into a free-text record by a lab user.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if getattr(response, "streaming", False):
            return response  # exports redact row by row themselves
        if not response.get("Content-Type", "").startswith(_TEXT_TYPES):
            return response
        from biobank.visibility import policy_for

        policy = policy_for(getattr(request, "user", None))
        if policy.unblinded:
            return response
        charset = response.charset or "utf-8"
        text = response.content.decode(charset, "replace")
        redacted = policy.redact(text)
        if redacted != text:
            response.content = redacted.encode(charset)
        return response
