"""Scan-first admin pages (the list the admin links to), and the command barcode sheet.

The machinery is in ``scanning.base``; storage pages in ``storage_views``, the rack import in
``rack_views``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from biobank.errors import ConflictError, ServiceError
from biobank.identifiers import Kind
from biobank.labels.commands import command_sheet_pdf, command_sheet_zpl
from biobank.models import AspirateStatus, Condition, Dose, IdentityStage
from biobank.selectors.scan import ScanResult
from biobank.services.actions import action_get, action_permitted, action_run
from biobank.terms import local_minute
from biobank.visibility import policy_for

from .base import Feedback, ScanPage
from .rack_views import RackImportPage
from .storage_views import CheckOutPage, StorePage, VerifyPage

# Kind names as the lab reads them (Kind.label is the code's English word).
KIND_WORDS = {
    Kind.PARTICIPANT: gettext_lazy("participant"),
    Kind.ASPIRATE: gettext_lazy("aspirate"),
    Kind.PROCESSING: gettext_lazy("processing"),
    Kind.FREEZING_RUN: gettext_lazy("freezing run"),
    Kind.UNIT: gettext_lazy("unit"),
    Kind.STORAGE_UNIT: gettext_lazy("storage unit"),
    Kind.CONTAINER: gettext_lazy("container"),
    Kind.BOX: gettext_lazy("box"),
    Kind.DOSE: gettext_lazy("dose"),
}


class FindPage(ScanPage):
    slug = "find"
    title = gettext_lazy("Find")
    summary = gettext_lazy("Scan anything: see what and where it is, with a link to open it.")
    prompt = gettext_lazy("Scan any barcode")
    # Blinded roles may find what the visibility policy lets them see (participants, doses).
    permission = "biobank.view_participant"

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        # The answer stays on this page (with an "open" link), so the next scan lands here.
        where = f" — {result.location}" if result.location else ""
        status = f" ({result.status_display})" if result.status_display else ""
        return Feedback(
            True,
            f"{str(KIND_WORDS.get(result.kind, result.kind.label)).capitalize()} "
            f"{result.code}{status}{where}",
            result.code,
            result.admin_url,
        )


class ReceivePage(ScanPage):
    slug = "receive"
    title = gettext_lazy("Receive aspirates")
    summary = gettext_lazy("Scan aspirates arriving in the lab, one after another.")
    prompt = gettext_lazy("Scan an aspirate (AS…)")
    permission = action_get("aspirate", "receive_by_condition").permission

    accepts = frozenset({Kind.ASPIRATE})

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if "temperature_c" in request.POST:
            state["temperature_c"] = request.POST.get("temperature_c", "").strip()
        if request.POST.get("condition") in Condition.values:
            state["condition"] = request.POST["condition"]

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {"conditions": Condition.choices, "condition": state.get("condition", "intact")}

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        aspirate = result.item
        raw_temp = state.get("temperature_c", "")
        try:
            temperature = Decimal(raw_temp) if raw_temp else None
        except InvalidOperation:
            return Feedback(
                False,
                _("Transport temperature '%(value)s' is not a number.") % {"value": raw_temp},
                aspirate.code,
            )
        try:
            action_run(
                action=action_get("aspirate", "receive_by_condition"),
                item=aspirate,
                actor=request.user,
                data={
                    "condition": state.get("condition", Condition.INTACT),
                    "temperature_c": temperature,
                },
            )
        except ConflictError as exc:
            if exc.code != "already_received":
                raise
            aspirate.refresh_from_db()
            return Feedback(
                False,
                _("%(code)s was already received: %(status)s.")
                % {"code": aspirate.code, "status": aspirate.get_status_display()},
                aspirate.code,
                result.admin_url,
                level="warn",
            )
        aspirate.refresh_from_db(fields=["status", "status_reason"])
        accepted = aspirate.status == AspirateStatus.ACCEPTED
        if accepted:
            message = _("%(code)s received and accepted (%(who)s).")
        else:
            # The reason is the service's (the numbers it found), so the technician knows
            # what to tell QA without opening the record.
            message = _("%(code)s received and QUARANTINED (%(who)s): %(reason)s")
        return Feedback(
            accepted,
            message
            % {
                "code": aspirate.code,
                "who": aspirate.participant.pseudonym,
                "reason": aspirate.status_reason,
            },
            aspirate.code,
            result.admin_url,
            level="ok" if accepted else "warn",
        )


def dose_summary(dose: Any) -> str:
    """What a blinded person checks on the syringe: plan, volume, expiry (same for MSC/saline)."""
    expiry = local_minute(dose.expires_at) if dose.expires_at else "–"
    return f"Plan: {dose.plan_display()}; {dose.volume_ml} mL; expires {expiry}."


class DosePage(ScanPage):
    slug = "dose"
    title = gettext_lazy("Dose identity check")
    summary = gettext_lazy(
        "Before dispatch and at the bedside: scan the dose and the participant's ID. "
        "A mismatch is refused, recorded and shown."
    )
    prompt = gettext_lazy("Scan the dose (DS…) and the participant (PT…)")
    permission = action_get("dose", "dispatch").permission

    accepts = frozenset({Kind.DOSE, Kind.PARTICIPANT})

    @classmethod
    def allows(cls, user: Any) -> bool:
        # The lab checks before dispatch, the clinic at the bedside: either step opens it.
        return any(
            action_permitted(action_get("dose", s), user) for s in ("dispatch", "administer")
        )

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if request.POST.get("stage") in IdentityStage.values:
            state["stage"] = request.POST["stage"]
        if "administered_by" in request.POST:
            state["administered_by"] = request.POST["administered_by"].strip()[:200]

    def on_open(self, request: HttpRequest, state: dict[str, Any]) -> None:
        # The page it was opened from decides (?stage=administration from a bedside link);
        # otherwise the role: a user who may not prepare doses is at the bedside.
        if request.GET.get("stage") in IdentityStage.values:
            state["stage"] = request.GET["stage"]
        elif "stage" not in state:
            lab = any(
                action_permitted(action_get("dose", step), request.user)
                for step in ("prepare", "release")
            )
            state["stage"] = IdentityStage.DISPATCH if lab else IdentityStage.ADMINISTRATION

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "stages": [
                (IdentityStage.DISPATCH, _("Before dispatch (lab)")),
                (IdentityStage.ADMINISTRATION, _("At the bedside")),
            ],
            "stage": state.get("stage", IdentityStage.DISPATCH),
            "pending": state.get("pending", {}),
        }

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        if name in ("undo", "done"):
            state["pending"] = {}
            return Feedback(True, _("Scans cleared: scan the dose and the participant again."))
        return None

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        pending = state.setdefault("pending", {})
        pending["dose" if result.kind is Kind.DOSE else "participant"] = result.code
        if not ("dose" in pending and "participant" in pending):
            if result.kind is Kind.DOSE:
                message = _("%(code)s scanned. Now scan the participant's ID.")
            else:
                message = _("%(code)s scanned. Now scan the dose.")
            return Feedback(True, message % {"code": result.code}, result.code)
        state["pending"] = {}
        stage = state.get("stage", IdentityStage.DISPATCH)
        try:
            step = "dispatch" if stage == IdentityStage.DISPATCH else "administer"
            data = {"dose_scan": pending["dose"], "participant_scan": pending["participant"]}
            if step == "administer":
                data["administered_by"] = state.get("administered_by", "")
            target = Dose.objects.filter(code=pending["dose"]).first()
            dose = action_run(
                action=action_get("dose", step), item=target, actor=request.user, data=data
            )
            if step == "dispatch":
                done = _("Identity confirmed: %(code)s DISPATCHED.")
            else:
                done = _("Identity confirmed: %(code)s ADMINISTERED.")
            return Feedback(True, done % {"code": dose.code} + " " + dose_summary(dose), dose.code)
        except ServiceError as exc:
            return Feedback(False, policy_for(request.user).redact(exc.message), pending["dose"])


PAGES: list[type[ScanPage]] = [
    FindPage,
    ReceivePage,
    StorePage,
    CheckOutPage,
    VerifyPage,
    RackImportPage,
    DosePage,
]


def command_sheet(request: HttpRequest, fmt: str) -> HttpResponse:
    """The printable sheet of command barcodes (PDF for paper, ZPL for a label printer)."""
    if not any(p.allows(request.user) for p in PAGES):
        raise PermissionDenied
    titles = {
        "CMD-UNDO": (_("UNDO"), _("Undo the last scan")),
        "CMD-FINISH": (_("FINISH"), _("Finish the box / the check")),
        "CMD-CHECKOUT": (_("CHECK OUT"), _("Check-out mode")),
        "CMD-CHECKIN": (_("CHECK IN"), _("Check-in mode")),
        "CMD-AUTO": (_("AUTO"), _("Automatic in/out mode")),
    }
    if fmt == "pdf":
        response = HttpResponse(command_sheet_pdf(titles), content_type="application/pdf")
    elif fmt == "zpl":
        response = HttpResponse(command_sheet_zpl(titles), content_type="text/plain; charset=utf-8")
    else:
        raise Http404
    response["Content-Disposition"] = f'inline; filename="scan-commands.{fmt}"'
    return response
