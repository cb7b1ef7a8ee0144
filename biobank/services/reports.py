"""Recording of reports and exports: every copy handed out leaves a row (who, what, filters)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import ExportKind, ExportLog, Participant

FORMATS = {
    ExportKind.AUDIT_TRAIL: ("csv", "jsonl"),
    ExportKind.PARTICIPANT_REPORT: ("pdf", "json"),
    ExportKind.INVENTORY: ("csv", "xlsx", "json"),
}


@transaction.atomic
def export_record(
    *,
    kind: str,
    format: str,
    actor: AbstractBaseUser,
    blinded: bool,
    filters: dict[str, Any] | None = None,
    participant: Participant | None = None,
    content_hash: str = "",
) -> ExportLog:
    """Log one report or export before it is handed out (an export that starts is recorded)."""
    if kind not in FORMATS:
        raise ServiceError(f"Unknown export kind '{kind}'.", field="kind")
    if format not in FORMATS[ExportKind(kind)]:
        allowed = ", ".join(FORMATS[ExportKind(kind)])
        raise ServiceError(
            f"format must be one of {allowed} for {ExportKind(kind).label.lower()}.",
            code="invalid_format",
            field="format",
        )
    return ExportLog.objects.create(
        kind=kind,
        format=format,
        requested_by=actor,
        requested_at=timezone.now(),
        participant=participant,
        filters={k: v for k, v in (filters or {}).items() if v not in (None, "")},
        blinded=blinded,
        content_hash=content_hash,
    )
