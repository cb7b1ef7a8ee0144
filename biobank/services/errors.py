"""Kept for older imports: the errors shared by every layer live in ``biobank.errors``."""

from biobank.errors import ConflictError, NotFound, NotVisible, ServiceError, TransitionError

__all__ = ["ConflictError", "NotFound", "NotVisible", "ServiceError", "TransitionError"]
