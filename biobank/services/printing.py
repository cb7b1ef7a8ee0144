"""Labels for the API (one label, or a batch as one ZPL stream or one PDF sheet) and print
jobs sent to Zebra-compatible printers as ZPL II over a raw TCP socket (port 9100).

A print job is recorded as queued in its own short transaction, then the bytes are sent
with no transaction open, then the outcome is recorded: a slow or dead printer never
holds a database lock, and an attempt that failed still leaves its row (status failed,
with the error). Call ``print_job_submit`` outside any ``transaction.atomic`` block.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from biobank.errors import NotFound, ServiceError
from biobank.labels import (
    FORMATS,
    LabelError,
    LabelTemplate,
    content_type_for,
    get_template,
    render,
    render_pdf,
)
from biobank.labels.layout import layout
from biobank.models import Printer, PrintJob, PrintJobStatus
from biobank.numbers import ascii_int
from biobank.selectors.labels import LabelSubject, label_subject_get, label_subjects_get

from .audit import history_save
from .signatures import require_perm

BATCH_FORMATS: tuple[str, ...] = ("zpl", "pdf")
MAX_BATCH_CODES = 500
MAX_PRINT_CODES = 200
MAX_COPIES = 20
DEFAULT_PRINTER_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


class RenderedLabels(NamedTuple):
    data: bytes
    content_type: str
    filename: str


class LabelUnrenderable(ServiceError):
    """The item exists and the template is known, but its text does not fit that stock."""

    status_code = 422


class PrinterUnavailable(ServiceError):
    """The printer did not take the job (refused, unreachable, timed out). The job row
    exists with status failed; its id is in the error body so the client can look it up."""

    status_code = 503

    def __init__(self, job: PrintJob) -> None:
        super().__init__(
            f"Printer {job.printer.name} did not take print job {job.pk}: {job.error}",
            code="printer_unavailable",
            field="printer",
        )
        self.job_id = job.pk

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "print_job": self.job_id}


# --- arguments ---------------------------------------------------------------------------


def _format(fmt: object, allowed: Sequence[str]) -> str:
    value = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if value not in allowed:
        shown = repr(fmt)[:20]
        raise ServiceError(
            f"Unknown label format {shown}; use one of {', '.join(allowed)}.",
            code="unknown_format",
            field="format",
        )
    return str(value)


def _template(name: object, dpi: object = None) -> LabelTemplate:
    """A template by name at ``dpi`` (None: the template's own), as 400 errors by field."""
    try:
        template = get_template(name)  # type: ignore[arg-type]
    except LabelError as exc:
        raise ServiceError(str(exc)[:300], code="unknown_template", field="template") from exc
    if dpi is None or dpi == "":
        return template
    if isinstance(dpi, str) and len(dpi) > 8:
        dpi = dpi[:8] + "…"
    try:
        return get_template(template.name, dpi)  # type: ignore[arg-type]
    except LabelError as exc:
        raise ServiceError(str(exc), code="invalid_dpi", field="dpi") from exc


def _codes(codes: object, limit: int) -> list[Any]:
    if isinstance(codes, str) or not isinstance(codes, Sequence):
        raise ServiceError("codes must be a list of identifiers.", code="invalid", field="codes")
    if not codes:
        raise ServiceError("No codes were given.", code="required", field="codes")
    if len(codes) > limit:
        raise ServiceError(
            f"{len(codes)} codes is too many for one request; at most {limit}.",
            code="too_many",
            field="codes",
        )
    return list(codes)


def _render(subject: LabelSubject, template: LabelTemplate, fmt: str, where: str = "") -> bytes:
    try:
        return render(subject.content_for(template), template, fmt)
    except LabelError as exc:
        raise LabelUnrenderable(
            f"{where}{subject.code} cannot be printed on the {template.name} label: {exc}",
            code="label_does_not_fit",
            field="template",
        ) from exc


def _where(index: int, total: int) -> str:
    return f"Code {index + 1} of {total}: " if total > 1 else ""


# --- rendering ---------------------------------------------------------------------------


def label_render(
    *,
    code: str,
    fmt: str,
    viewer: Any,
    template: str | None = None,
    dpi: int | str | None = None,
) -> RenderedLabels:
    """One label for the item ``code`` names, in ``fmt`` (zpl, png, svg or pdf), on its
    default stock unless ``template`` is given, at the template's dpi unless ``dpi`` is."""
    fmt = _format(fmt, FORMATS)
    if template:
        _template(template, dpi)  # a bad template or dpi is reported before the lookup
    subject = label_subject_get(code=code, viewer=viewer)
    chosen = _template(template or subject.template, dpi)
    data = _render(subject, chosen, fmt)
    filename = f"{subject.code}-{chosen.name}-{chosen.dpi}dpi.{fmt}"
    return RenderedLabels(data, content_type_for(fmt), filename)


def labels_batch_render(
    *,
    codes: Sequence[str],
    fmt: str,
    viewer: Any,
    template: str | None = None,
    dpi: int | str | None = None,
) -> RenderedLabels:
    """Labels for many items: one ZPL stream (each item on its own stock unless
    ``template`` is given) or one A4 PDF sheet (one stock for all: pass ``template`` when
    the items' default stocks differ)."""
    fmt = _format(fmt, BATCH_FORMATS)
    codes = _codes(codes, MAX_BATCH_CODES)
    if template:
        _template(template, dpi)
    subjects = label_subjects_get(codes=codes, viewer=viewer)
    total = len(subjects)
    filename = f"labels-{total}.{fmt}"
    if fmt == "zpl":
        templates: dict[str, LabelTemplate] = {}
        parts = []
        for i, subject in enumerate(subjects):
            name = template or subject.template
            if name not in templates:
                templates[name] = _template(name, dpi)
            parts.append(_render(subject, templates[name], "zpl", _where(i, total)))
        return RenderedLabels(b"".join(parts), content_type_for("zpl"), filename)

    names = sorted({template or s.template for s in subjects})
    if len(names) > 1:
        counts = ", ".join(
            f"{name}: {sum(1 for s in subjects if s.template == name)}" for name in names
        )
        raise ServiceError(
            f"These codes are printed on different label stocks ({counts}); a PDF sheet "
            "holds one size. Pass a template, or ask for each stock separately.",
            code="mixed_templates",
            field="template",
        )
    chosen = _template(names[0], dpi)
    return RenderedLabels(_sheet(subjects, chosen), content_type_for("pdf"), filename)


def _sheet(subjects: list[LabelSubject], template: LabelTemplate) -> bytes:
    try:
        return render_pdf([s.content_for(template) for s in subjects], template, sheet=True)
    except LabelError:
        # Name the label that failed: lay them out one by one (only on this error path).
        for i, subject in enumerate(subjects):
            try:
                layout(subject.content_for(template), template)
            except LabelError as exc:
                raise LabelUnrenderable(
                    f"{_where(i, len(subjects))}{subject.code} cannot be printed on the "
                    f"{template.name} label: {exc}",
                    code="label_does_not_fit",
                    field="template",
                ) from exc
        raise


# --- printers and print jobs -------------------------------------------------------------


def printer_get(*, ref: object) -> Printer:
    """A printer by name, or by id when ``ref`` is a number."""
    if isinstance(ref, str) and ref.strip():
        printer = Printer.objects.filter(name=ref.strip()).first()
        if printer is None and (number := ascii_int(ref)) is not None:
            printer = Printer.objects.filter(pk=number).first()
    elif isinstance(ref, int) and not isinstance(ref, bool):
        printer = Printer.objects.filter(pk=ref).first()
    else:
        raise ServiceError("Name a printer (its name or id).", code="required", field="printer")
    if printer is None:
        raise NotFound(f"No printer {str(ref)[:100]!r} is configured.", field="printer")
    return printer


def _print_template(
    subject: LabelSubject, template: str | None, stock: LabelTemplate, printer: Printer
) -> LabelTemplate:
    """The template for one item on ``printer``: the one asked for, else the item's default
    if it has the size of the loaded stock, else the printer's own template."""
    if template:
        chosen = _template(template, printer.dpi)
        if (chosen.width_mm, chosen.height_mm) != (stock.width_mm, stock.height_mm):
            raise ServiceError(
                f"Printer {printer.name} is loaded with {printer.label_size} labels; the "
                f"{chosen.name} template is {chosen.width_mm:g}×{chosen.height_mm:g} mm.",
                code="wrong_label_size",
                field="template",
            )
        return chosen
    default = _template(subject.template, printer.dpi)
    if (default.width_mm, default.height_mm) == (stock.width_mm, stock.height_mm):
        return default
    return stock


@transaction.atomic
def _job_create(
    *,
    printer: Printer,
    actor: AbstractBaseUser,
    codes: list[str],
    templates: list[str],
    copies: int,
    byte_count: int,
) -> PrintJob:
    job = PrintJob(
        printer=printer,
        requested_by=actor,
        item_codes=codes,
        template=",".join(templates)[:100],
        dpi=printer.dpi,
        copies=copies,
        format="zpl",
        byte_count=byte_count,
        status=PrintJobStatus.QUEUED,
    )
    history_save(job, actor=actor, reason="print job queued")
    return job


@transaction.atomic
def _job_finish(*, job: PrintJob, error: str) -> PrintJob:
    if error:
        job.status, job.error = PrintJobStatus.FAILED, error[:2000]
    else:
        job.status, job.sent_at = PrintJobStatus.SENT, timezone.now()
    history_save(
        job,
        actor=job.requested_by,
        reason=f"print job {job.status}",
        update_fields=["status", "error", "sent_at"],
    )
    return job


def zpl_send(*, host: str, port: int, data: bytes, timeout: float) -> str:
    """Send ``data`` to a raw-TCP printer and close; the error text, or "" when sent.

    Raw port 9100 has no reply: "sent" means the printer accepted the connection and
    every byte, not that labels came out (out of labels, head open... are not reported).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
    except TimeoutError:
        return f"No answer from {host}:{port} within {timeout:g} s (timed out)."
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"Could not send to {host}:{port}: {reason}."
    except ValueError as exc:
        # The socket library refuses some host names before any network I/O (UnicodeError
        # from the idna codec for "10.0..5" or a 64-character label): a failed job too.
        reason = str(exc) or type(exc).__name__
        return f"Could not send to {host}:{port}: the host name is not valid ({reason})."
    return ""


PRINT_PERMISSION = "biobank.add_printjob"


def print_job_submit(
    *,
    printer: Printer,
    codes: Sequence[str],
    actor: AbstractBaseUser,
    template: str | None = None,
    copies: int = 1,
) -> PrintJob:
    """Render the labels of ``codes`` as ZPL for ``printer`` and send them to it.

    Returns the job with status sent or failed (the error says why); raises
    ``ServiceError`` before any job is recorded when the request itself is wrong.
    """
    require_perm(actor, PRINT_PERMISSION, "print labels")
    if not printer.active:
        raise ServiceError(
            f"Printer {printer.name} is not active.", code="printer_inactive", field="printer"
        )
    if type(copies) is not int or not 1 <= copies <= MAX_COPIES:
        raise ServiceError(f"copies must be a whole number from 1 to {MAX_COPIES}.", field="copies")
    codes = _codes(codes, MAX_PRINT_CODES)
    try:
        stock = get_template(printer.label_template, printer.dpi)
    except LabelError as exc:
        raise ServiceError(
            f"Printer {printer.name} is misconfigured: {exc}",
            code="printer_misconfigured",
            field="printer",
        ) from exc
    if template:
        _template(template, printer.dpi)
    subjects = label_subjects_get(codes=codes, viewer=actor)
    used: list[str] = []
    parts: list[bytes] = []
    for i, subject in enumerate(subjects):
        chosen = _print_template(subject, template, stock, printer)
        if chosen.name not in used:
            used.append(chosen.name)
        parts.append(_render(subject, chosen, "zpl", _where(i, len(subjects))) * copies)
    data = b"".join(parts)

    job = _job_create(
        printer=printer,
        actor=actor,
        codes=[s.code for s in subjects],
        templates=used,
        copies=copies,
        byte_count=len(data),
    )
    timeout = float(getattr(settings, "LABEL_PRINTER_TIMEOUT_S", DEFAULT_PRINTER_TIMEOUT_S))
    try:
        error = zpl_send(host=printer.host, port=printer.port, data=data, timeout=timeout)
    except Exception as exc:
        # The queued row is already committed: whatever went wrong, finish it as failed
        # rather than leave it queued forever behind a 500.
        logger.exception("print job %s: sending to printer %s failed", job.pk, printer.pk)
        error = f"Could not send to {printer.host}:{printer.port}: {type(exc).__name__}."
    return _job_finish(job=job, error=error)
