"""Errors shared by every layer: services raise them, interfaces translate them (API JSON,
admin message, scan-page banner)."""

from __future__ import annotations


class ServiceError(Exception):
    """A refused request, with a code, a message for a person and, where known, the field."""

    status_code = 400
    default_code = "invalid"
    index: int | None = None  # which item of a bulk request was refused

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        body["fields"] = {self.field: [self.message]} if self.field else {}
        return body


class NotFound(ServiceError):
    status_code = 404
    default_code = "not_found"


class TransitionError(ServiceError):
    """A lifecycle step that the transition table does not allow from the current status."""

    status_code = 409


class ConflictError(ServiceError):
    """Someone else changed or took the same thing at the same moment."""

    status_code = 409


class Forbidden(ServiceError):
    """The user's role may not take this step."""

    status_code = 403


class NotVisible(ServiceError):
    """The user's role may not see this kind of item (blinding). Names the role, not the item."""

    status_code = 403
