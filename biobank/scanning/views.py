"""Scan-first admin pages: one autofocused field, Enter submits, the answer shows at once.

Each page keeps its small working state (current box, last placements...) in the session,
follows post/redirect/get so a reload never repeats a scan, and calls only services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views import View

from biobank.identifiers import Kind
from biobank.models import (
    AspirateStatus,
    Condition,
    Container,
    IdentityStage,
    ProductUnit,
    UnitStatus,
)
from biobank.scanning.rack_csv import parse_rack_csv
from biobank.scanning.resolve import ScanResult, scan_resolve
from biobank.selectors_storage import location_of
from biobank.services.aspirates import aspirate_receive
from biobank.services.doses import dose_administer, dose_dispatch
from biobank.services.errors import ServiceError
from biobank.services.storage import (
    position_parse,
    rack_scan_apply,
    rack_scan_compare,
    unit_check_in,
    unit_check_out,
    unit_move,
    unit_place,
    unit_remove,
)

RECENT = 15
_POSITION = re.compile(r"^(?:[A-Za-z]\d{1,2}|\d{1,2}[-:]\d{1,2}|\d{1,3})$")


@dataclass
class Feedback:
    ok: bool
    message: str
    code: str = ""
    link: str = ""


class ScanPage(View):
    slug: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]
    prompt: ClassVar[str] = "Scan"
    permission: ClassVar[str] = "biobank.view_productunit"
    site: admin.AdminSite | None = None

    # --- plumbing ----------------------------------------------------------------------------

    def state(self, request: HttpRequest) -> dict[str, Any]:
        return request.session.setdefault(f"scan_{self.slug}", {"recent": []})

    def save_state(self, request: HttpRequest, state: dict[str, Any]) -> None:
        request.session[f"scan_{self.slug}"] = state
        request.session.modified = True

    def url(self) -> str:
        return reverse(f"admin:scan_{self.slug}")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(self.permission):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        state = self.state(request)
        context = {
            **(self.site.each_context(request) if self.site else {}),
            "page": self,
            "title": self.title,
            "state": state,
            "feedback": state.pop("feedback", None),
            "recent": state.get("recent", []),
            **self.extra_context(request, state),
        }
        self.save_state(request, state)
        return TemplateResponse(request, self.template_name(), context)

    def template_name(self) -> str:
        return "admin/biobank/scan/page.html"

    def post(self, request: HttpRequest) -> HttpResponse:
        state = self.state(request)
        self.update_settings(request, state)
        settings_only = not request.POST.get("code", "").strip() and (
            set(request.POST) - {"code", "csrfmiddlewaretoken"}
        )
        if request.POST.get("do"):
            feedback = self.command(request, state, request.POST["do"])
        elif settings_only:
            feedback = None  # a sticky setting changed; nothing was scanned
        else:
            feedback = self.scan(request, state, request.POST.get("code", ""))
        if feedback is not None:
            state["feedback"] = feedback.__dict__
            state.setdefault("recent", []).insert(0, feedback.__dict__)
            del state["recent"][RECENT:]
            if feedback.ok and feedback.link and request.POST.get("follow"):
                self.save_state(request, state)
                return HttpResponseRedirect(feedback.link)
        self.save_state(request, state)
        return HttpResponseRedirect(self.url())

    def scan(self, request: HttpRequest, state: dict[str, Any], raw: str) -> Feedback | None:
        try:
            result = scan_resolve(raw=raw, kinds=self.kinds(state))
            return self.handle(request, state, result)
        except ServiceError as exc:
            position = self.maybe_position(state, raw)
            if position is not None:
                return position
            return Feedback(False, exc.message, raw.strip()[:64])

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return None

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        raise NotImplementedError

    def maybe_position(self, state: dict[str, Any], raw: str) -> Feedback | None:
        return None

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        return None

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        pass

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {}


def _box_from_state(state: dict[str, Any]) -> Container | None:
    if not state.get("box"):
        return None
    return (
        Container.objects.select_related("box_type", "storage_unit").filter(pk=state["box"]).first()
    )


def _position_in_box(state: dict[str, Any], raw: str) -> tuple[Container, str] | None:
    """A scanned position label (e.g. from a box-position barcode) for the current box."""
    text = raw.strip().upper()
    box = _box_from_state(state)
    if box is None or not box.is_box or not _POSITION.match(text):
        return None
    try:
        row, col = position_parse(box_type=box.box_type, label=text)
    except ServiceError:
        return None
    return box, box.box_type.position_label(row, col)


# --- pages ---------------------------------------------------------------------------------


class FindPage(ScanPage):
    slug = "find"
    title = "Find"
    summary = "Scan anything and land on its page."
    prompt = "Scan any barcode"

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        where = f" — {result.location}" if result.location else ""
        status = f" ({result.status_display})" if result.status_display else ""
        return Feedback(
            True,
            f"{result.kind.label.capitalize()} {result.code}{status}{where}",
            result.code,
            result.admin_url,
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        request.POST = request.POST.copy()
        request.POST["follow"] = "1"
        return super().post(request)


class ReceivePage(ScanPage):
    slug = "receive"
    title = "Receive aspirates"
    summary = "Scan aspirates arriving in the lab, one after another."
    prompt = "Scan an aspirate (AS…)"
    permission = "biobank.change_aspirate"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.ASPIRATE}

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if "temperature_c" in request.POST:
            state["temperature_c"] = request.POST.get("temperature_c", "").strip()
        if request.POST.get("condition") in Condition.values:
            state["condition"] = request.POST["condition"]

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {"conditions": Condition.choices, "condition": state.get("condition", "intact")}

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        aspirate = result.item
        if aspirate.status != AspirateStatus.COLLECTED:
            return Feedback(
                False,
                f"{aspirate.code} was already received: {aspirate.get_status_display()}.",
                aspirate.code,
                result.admin_url,
            )
        raw_temp = state.get("temperature_c", "")
        try:
            temperature = Decimal(raw_temp) if raw_temp else None
        except InvalidOperation:
            return Feedback(
                False, f"Transport temperature '{raw_temp}' is not a number.", aspirate.code
            )
        condition = state.get("condition", Condition.INTACT)
        decision = "accept" if condition == Condition.INTACT else "quarantine"
        aspirate_receive(
            aspirate=aspirate,
            decision=decision,
            actor=request.user,
            temperature_c=temperature,
            condition=condition,
            reason=""
            if decision == "accept"
            else f"Condition at receipt: {Condition(condition).label}",
        )
        verb = "accepted" if decision == "accept" else "QUARANTINED"
        who = aspirate.participant.pseudonym
        return Feedback(
            decision == "accept",
            f"{aspirate.code} received and {verb} ({who}).",
            aspirate.code,
            result.admin_url,
        )


class StorePage(ScanPage):
    slug = "store"
    title = "Store units in a box"
    summary = (
        "Scan a box, then units one by one; each goes to the next free or the scanned position."
    )
    prompt = "Scan a box (BX…), a position (e.g. A5) or a unit (UN…)"
    permission = "biobank.change_productunit"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.BOX, Kind.CONTAINER, Kind.UNIT}

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        box = _box_from_state(state)
        context: dict[str, Any] = {"box": box, "undo": state.get("undo", [])}
        if box is not None and box.is_box:
            from biobank.selectors_storage import box_map

            context["map"] = box_map(box=box)
        return context

    def maybe_position(self, state: dict[str, Any], raw: str) -> Feedback | None:
        found = _position_in_box(state, raw)
        if found is None:
            return None
        state["position"] = found[1]
        return Feedback(True, f"Next unit goes to {found[1]}.", found[1])

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        if result.kind in (Kind.BOX, Kind.CONTAINER):
            state.update(box=result.item.pk, position=None)
            return Feedback(
                True,
                f"Storing into {result.item.path} ({result.code}). Now scan units.",
                result.code,
                result.admin_url,
            )
        box = _box_from_state(state)
        if box is None:
            return Feedback(False, "Scan the box first, then the units.", result.code)
        unit: ProductUnit = result.item
        position = state.pop("position", None)
        before = location_of(unit)
        previous = unit.placements.filter(ended_at__isnull=True).select_related("container").first()
        if unit.status == UnitStatus.FROZEN:
            placement = unit_place(unit=unit, container=box, position=position, actor=request.user)
            undo = {"unit": unit.pk, "kind": "place"}
        elif unit.status in (UnitStatus.STORED, UnitStatus.QUARANTINED) and previous is not None:
            placement = unit_move(
                unit=unit,
                container=box,
                position=position,
                actor=request.user,
                reason="scanned into box",
            )
            undo = {
                "unit": unit.pk,
                "kind": "move",
                "container": previous.container_id,
                "position": previous.position,
            }
        else:
            return Feedback(
                False,
                f"{unit.code} is {unit.get_status_display().lower()}: it cannot be stored.",
                unit.code,
                result.admin_url,
            )
        state.setdefault("undo", []).insert(
            0, {**undo, "code": unit.code, "position_label": placement.position}
        )
        del state["undo"][10:]
        moved = f" (moved from {before})" if before else ""
        return Feedback(
            True,
            f"{unit.code} → {box.code} {placement.position}{moved}",
            unit.code,
            result.admin_url,
        )

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        if name == "done":
            state.update(box=None, position=None, undo=[])
            return Feedback(True, "Box finished. Scan the next box.")
        if name != "undo" or not state.get("undo"):
            return Feedback(False, "Nothing to undo.")
        last = state["undo"].pop(0)
        unit = ProductUnit.objects.get(pk=last["unit"])
        try:
            if last["kind"] == "place":
                unit_remove(
                    unit=unit,
                    actor=request.user,
                    reason=f"Undo: stored at {last['position_label']} by mistake",
                )
                return Feedback(
                    True,
                    f"Undone: {unit.code} is no longer stored (back to frozen, unplaced).",
                    unit.code,
                )
            container = Container.objects.select_related("box_type", "storage_unit").get(
                pk=last["container"]
            )
            unit_move(
                unit=unit,
                container=container,
                position=last["position"] or None,
                actor=request.user,
                reason="Undo: moved by mistake",
            )
            return Feedback(
                True,
                f"Undone: {unit.code} is back at {container.code} {last['position']}.",
                unit.code,
            )
        except ServiceError as exc:
            return Feedback(False, f"Cannot undo {unit.code}: {exc.message}", unit.code)


class CheckOutPage(ScanPage):
    slug = "checkout"
    title = "Check out / check in"
    summary = "Scan units leaving their slot, or coming back to it."
    prompt = "Scan a unit (UN…)"
    permission = "biobank.change_productunit"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.UNIT}

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if request.POST.get("mode") in ("auto", "out", "in"):
            state["mode"] = request.POST["mode"]

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "modes": [("auto", "Automatic"), ("out", "Check out"), ("in", "Check in")],
            "mode": state.get("mode", "auto"),
        }

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        unit: ProductUnit = result.item
        mode = state.get("mode", "auto")
        if mode == "auto":
            mode = "in" if unit.status == UnitStatus.CHECKED_OUT else "out"
        if mode == "out":
            placement = unit_check_out(unit=unit, actor=request.user)
            slot = f"{placement.container.code} {placement.position}"
            return Feedback(
                True,
                f"{unit.code} CHECKED OUT of {slot} (slot reserved).",
                unit.code,
                result.admin_url,
            )
        placement = unit_check_in(unit=unit, actor=request.user)
        slot = f"{placement.container.code} {placement.position}"
        return Feedback(
            True,
            f"{unit.code} CHECKED IN: put it back at {slot}.",
            unit.code,
            result.admin_url,
        )


class VerifyPage(ScanPage):
    slug = "verify"
    title = "Verify a box"
    summary = "Scan a box, then every unit in it: see what is missing, extra or misplaced."
    prompt = "Scan a box (BX…), then a position (optional) and each unit"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.BOX, Kind.CONTAINER, Kind.UNIT}

    def maybe_position(self, state: dict[str, Any], raw: str) -> Feedback | None:
        found = _position_in_box(state, raw)
        if found is None:
            return None
        state["position"] = found[1]
        return Feedback(True, f"Next unit is checked against position {found[1]}.", found[1])

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        if result.kind in (Kind.BOX, Kind.CONTAINER):
            state.update(box=result.item.pk, seen={}, position=None)
            return Feedback(
                True,
                f"Verifying {result.item.path} ({result.code}): scan every unit in it.",
                result.code,
            )
        if not state.get("box"):
            return Feedback(False, "Scan the box first.", result.code)
        position = state.pop("position", None) or ""
        state.setdefault("seen", {})[result.code] = position
        verdict = self._verdict(state)
        row = next((r for r in verdict["rows"] if r["code"] == result.code), None)
        ok = row is not None and row["state"] == "ok"
        return Feedback(ok, f"{result.code}: {row['note'] if row else 'recorded'}", result.code)

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        if name == "reset":
            state.update(seen={}, position=None)
            return Feedback(True, "Scans cleared; scan the units again.")
        return None

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "box": _box_from_state(state),
            "verdict": self._verdict(state) if state.get("box") else None,
        }

    def _verdict(self, state: dict[str, Any]) -> dict[str, Any]:
        box = _box_from_state(state)
        seen: dict[str, str] = state.get("seen", {})
        if box is None:
            return {"rows": [], "missing": 0, "extra": 0, "wrong": 0}
        expected = {
            p.unit.code: p
            for p in box.placements.filter(ended_at__isnull=True).select_related("unit")
        }
        elsewhere = {
            u.code: location_of(u)
            for u in ProductUnit.objects.filter(code__in=[c for c in seen if c not in expected])
        }
        rows = []
        for code, placement in expected.items():
            if code not in seen:
                rows.append(
                    {
                        "code": code,
                        "state": "missing",
                        "note": f"expected at {placement.position or box.code}, not scanned",
                    }
                )
            elif seen[code] and seen[code] != placement.position:
                note = f"scanned at {seen[code]}, the system has it at {placement.position}"
                rows.append({"code": code, "state": "wrong", "note": note})
            else:
                at = f" at {placement.position}" if placement.position else ""
                rows.append({"code": code, "state": "ok", "note": f"present{at}"})
        for code in seen:
            if code not in expected:
                where = elsewhere.get(code) or "not in storage"
                rows.append(
                    {
                        "code": code,
                        "state": "extra",
                        "note": f"not expected here; the system has it: {where}",
                    }
                )
        counts = {
            s: sum(1 for r in rows if r["state"] == s) for s in ("ok", "missing", "extra", "wrong")
        }
        return {"rows": sorted(rows, key=lambda r: (r["state"] == "ok", r["code"])), **counts}


class RackImportPage(ScanPage):
    slug = "rack-import"
    title = "Rack-scanner import"
    summary = "Upload a rack scanner's CSV, preview the differences, apply all or nothing."
    prompt = "Scan the box (BX…) the rack file belongs to"
    permission = "biobank.change_productunit"

    def template_name(self) -> str:
        return "admin/biobank/scan/rack_import.html"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.BOX}

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        state.update(box=result.item.pk, csv=None)
        return Feedback(True, f"Box {result.code} selected: upload its rack file.", result.code)

    def post(self, request: HttpRequest) -> HttpResponse:
        state = self.state(request)
        upload = request.FILES.get("file")
        if upload is not None:
            if upload.size > 1_000_000:
                state["feedback"] = Feedback(
                    False, "The file is larger than 1 MB: not a rack scan."
                ).__dict__
            else:
                state["csv"] = upload.read().decode("latin-1")  # bytes kept losslessly
                state["filename"] = upload.name
                state["feedback"] = Feedback(
                    True, f"{upload.name} read: check the preview, then apply."
                ).__dict__
            self.save_state(request, state)
            return HttpResponseRedirect(self.url())
        return super().post(request)

    def _read(self, state: dict[str, Any], box: Container) -> Any:
        return parse_rack_csv(
            state["csv"].encode("latin-1"),
            rows=box.box_type.rows,
            cols=box.box_type.columns,
        )

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        box = _box_from_state(state)
        if name == "clear":
            state.update(csv=None)
            return Feedback(True, "File cleared.")
        if name != "apply" or box is None or not state.get("csv"):
            return Feedback(False, "Scan the box and upload its file first.")
        try:
            counts = rack_scan_apply(
                box=box,
                read=self._read(state, box),
                actor=request.user,
                remove_missing=request.POST.get("remove_missing") == "1",
            )
        except ServiceError as exc:
            return Feedback(False, f"Nothing was changed. {exc.message}")
        state.update(csv=None)
        return Feedback(
            True,
            f"Applied to {box.code}: {counts['stored']} stored, {counts['moved']} moved, "
            f"{counts['removed']} removed, {counts['unchanged']} unchanged.",
            box.code,
        )

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        box = _box_from_state(state)
        if box is None or not state.get("csv"):
            return {"box": box}
        read = self._read(state, box)
        diffs = rack_scan_compare(box=box, read=read)
        summary: dict[str, int] = {}
        for d in diffs:
            summary[d.state] = summary.get(d.state, 0) + 1
        return {
            "box": box,
            "read": read,
            "diffs": [d for d in diffs if d.state != "empty"],
            "summary": sorted(summary.items()),
            "filename": state.get("filename", ""),
            "can_apply": not read.errors and not summary.get("bad_tube"),
        }


def dose_summary(dose: Any) -> str:
    """What a blinded person checks on the syringe: plan, volume, expiry (same for MSC/saline)."""
    expiry = f"{timezone.localtime(dose.expires_at):%Y-%m-%d %H:%M}" if dose.expires_at else "–"
    return f"Plan: {dose.plan_display()}; {dose.volume_ml} mL; expires {expiry}."


class DosePage(ScanPage):
    slug = "dose"
    title = "Dose identity check"
    summary = (
        "Before dispatch and at the bedside: scan the dose and the participant's ID. "
        "A mismatch is refused, recorded and shown."
    )
    prompt = "Scan the dose (DS…) and the participant (PT…)"
    permission = "biobank.administer_dose"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.DOSE, Kind.PARTICIPANT}

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if request.POST.get("stage") in IdentityStage.values:
            state["stage"] = request.POST["stage"]
        if "administered_by" in request.POST:
            state["administered_by"] = request.POST["administered_by"].strip()[:200]

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "stages": IdentityStage.choices,
            "stage": state.get("stage", IdentityStage.DISPATCH),
            "pending": state.get("pending", {}),
        }

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        pending = state.setdefault("pending", {})
        pending["dose" if result.kind is Kind.DOSE else "participant"] = result.code
        if not ("dose" in pending and "participant" in pending):
            other = "participant's ID" if result.kind is Kind.DOSE else "dose"
            return Feedback(True, f"{result.code} scanned. Now scan the {other}.", result.code)
        state["pending"] = {}
        stage = state.get("stage", IdentityStage.DISPATCH)
        try:
            if stage == IdentityStage.DISPATCH:
                dose = dose_dispatch(
                    dose_scan=pending["dose"],
                    participant_scan=pending["participant"],
                    actor=request.user,
                )
                return Feedback(
                    True,
                    f"Identity confirmed: {dose.code} DISPATCHED. {dose_summary(dose)}",
                    dose.code,
                )
            dose = dose_administer(
                dose_scan=pending["dose"],
                participant_scan=pending["participant"],
                actor=request.user,
                administered_by=state.get("administered_by", ""),
            )
            return Feedback(
                True,
                f"Identity confirmed: {dose.code} ADMINISTERED. {dose_summary(dose)}",
                dose.code,
            )
        except ServiceError as exc:
            return Feedback(False, exc.message, pending["dose"])


PAGES: list[type[ScanPage]] = [
    FindPage,
    ReceivePage,
    StorePage,
    CheckOutPage,
    VerifyPage,
    RackImportPage,
    DosePage,
]
