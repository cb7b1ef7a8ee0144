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
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from biobank.errors import ConflictError, ServiceError, TransitionError
from biobank.identifiers import Kind
from biobank.labels.commands import COMMANDS, command_for, command_sheet_pdf, command_sheet_zpl
from biobank.models import (
    AspirateStatus,
    Condition,
    Container,
    IdentityStage,
    ProductUnit,
    UnitStatus,
)
from biobank.rack_csv import parse_rack_csv
from biobank.selectors.scan import ScanResult, scan_resolve
from biobank.selectors.storage import location_of
from biobank.services.aspirates import aspirate_receive_by_condition
from biobank.services.containers import position_parse
from biobank.services.doses import dose_administer, dose_dispatch
from biobank.services.racks import rack_scan_apply, rack_scan_compare, rack_scan_plan
from biobank.services.storage import unit_check_in, unit_check_out, unit_put, unit_put_undo
from biobank.visibility import policy_for

RECENT = 15
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
_POSITION = re.compile(r"^(?:[A-Za-z]\d{1,2}|\d{1,2}[-:]\d{1,2}|\d{1,3})$")


@dataclass
class Feedback:
    ok: bool
    message: str
    code: str = ""
    link: str = ""
    # "ok" | "warn" | "error": the colour and the sound; empty means ok or error from ``ok``.
    level: str = ""
    # "out" | "in" for check-out / check-in: their own colour and icon.
    mode: str = ""

    def __post_init__(self) -> None:
        self.message = str(self.message)  # lazy strings cannot go into the session
        if not self.level:
            self.level = "ok" if self.ok else "error"


class ScanPage(View):
    slug: ClassVar[str]
    title: ClassVar[Any]
    summary: ClassVar[Any]
    prompt: ClassVar[Any] = gettext_lazy("Scan")
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
        self.on_open(request, state)
        context = {
            **(self.site.each_context(request) if self.site else {}),
            "page": self,
            "title": self.title,
            "state": state,
            "feedback": state.pop("feedback", None),
            "recent": state.get("recent", []),
            "commands": COMMANDS,
            **self.extra_context(request, state),
        }
        self.save_state(request, state)
        return TemplateResponse(request, self.template_name(), context)

    def template_name(self) -> str:
        return "admin/biobank/scan/page.html"

    def post(self, request: HttpRequest) -> HttpResponse:
        state = self.state(request)
        self.update_settings(request, state)
        raw = request.POST.get("code", "")
        settings_only = not raw.strip() and (set(request.POST) - {"code", "csrfmiddlewaretoken"})
        command = command_for(raw)
        if request.POST.get("do"):
            feedback = self.command(request, state, request.POST["do"])
        elif command is not None:
            feedback = self.command(request, state, command.action) or Feedback(
                False,
                _("The %(command)s barcode does nothing on this page.")
                % {"command": command.title},
                command.barcode,
                level="warn",
            )
        elif settings_only:
            feedback = None  # a sticky setting changed; nothing was scanned
        else:
            feedback = self.scan(request, state, raw)
        if feedback is not None:
            state["feedback"] = feedback.__dict__
            state.setdefault("recent", []).insert(0, feedback.__dict__)
            del state["recent"][RECENT:]
        self.save_state(request, state)
        return HttpResponseRedirect(self.url())

    def scan(self, request: HttpRequest, state: dict[str, Any], raw: str) -> Feedback | None:
        try:
            result = scan_resolve(raw=raw, viewer=request.user, kinds=self.kinds(state))
            return self.handle(request, state, result)
        except ServiceError as exc:
            position = self.maybe_position(state, raw)
            if position is not None:
                return position
            # A code of a kind the user may not see is not echoed back either.
            echo = "" if exc.code == "not_visible" else raw.strip()[:64]
            return Feedback(False, policy_for(request.user).redact(exc.message), echo)

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

    def on_open(self, request: HttpRequest, state: dict[str, Any]) -> None:
        """A GET: the page may take a setting from the link it was opened from."""

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {}


def _box_from_state(state: dict[str, Any]) -> Container | None:
    if not state.get("box"):
        return None
    return (
        Container.objects.select_related("box_type", "storage_unit").filter(pk=state["box"]).first()
    )


def _position_in_box(state: dict[str, Any], raw: str) -> tuple[Container, str] | Feedback | None:
    """A scanned position label (e.g. from a box-position barcode) for the current box; a
    position-shaped scan the box does not have is answered with the box's geometry."""
    text = raw.strip().upper()
    box = _box_from_state(state)
    if box is None or not box.is_box or not _POSITION.match(text):
        return None
    try:
        row, col = position_parse(box_type=box.box_type, label=text)
    except ServiceError as exc:
        return Feedback(False, exc.message, text)
    return box, box.box_type.position_label(row, col)


# --- pages ---------------------------------------------------------------------------------


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
            aspirate_receive_by_condition(
                aspirate=aspirate,
                actor=request.user,
                condition=state.get("condition", Condition.INTACT),
                temperature_c=temperature,
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
        accepted = aspirate.status == AspirateStatus.ACCEPTED
        if accepted:
            message = _("%(code)s received and accepted (%(who)s).")
        else:
            message = _("%(code)s received and QUARANTINED (%(who)s).")
        return Feedback(
            accepted,
            message % {"code": aspirate.code, "who": aspirate.participant.pseudonym},
            aspirate.code,
            result.admin_url,
            level="ok" if accepted else "warn",
        )


class StorePage(ScanPage):
    slug = "store"
    title = gettext_lazy("Store units in a box")
    summary = gettext_lazy(
        "Scan a box, then units one by one; each goes to the next free or the scanned position."
    )
    prompt = gettext_lazy("Scan a box (BX…), a position (e.g. A5) or a unit (UN…)")
    permission = "biobank.change_productunit"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.BOX, Kind.CONTAINER, Kind.UNIT}

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        box = _box_from_state(state)
        context: dict[str, Any] = {"box": box, "undo": state.get("undo", [])}
        if box is not None and box.is_box:
            from biobank.selectors.storage import box_map

            context["map"] = box_map(box=box)
        return context

    def maybe_position(self, state: dict[str, Any], raw: str) -> Feedback | None:
        found = _position_in_box(state, raw)
        if found is None or isinstance(found, Feedback):
            return found
        state["position"] = found[1]
        return Feedback(
            True, _("Next unit goes to %(position)s.") % {"position": found[1]}, found[1]
        )

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        if result.kind in (Kind.BOX, Kind.CONTAINER):
            state.update(box=result.item.pk, position=None)
            return Feedback(
                True,
                _("Storing into %(path)s (%(code)s). Now scan units.")
                % {"path": result.item.path, "code": result.code},
                result.code,
                result.admin_url,
            )
        box = _box_from_state(state)
        if box is None:
            return Feedback(False, _("Scan the box first, then the units."), result.code)
        unit: ProductUnit = result.item
        position = state.pop("position", None)
        before = location_of(unit)
        try:
            put = unit_put(
                unit=unit,
                container=box,
                position=position,
                actor=request.user,
                reason="scanned into box",
            )
        except TransitionError as exc:
            if exc.code != "not_storable":
                raise
            return Feedback(
                False,
                _("%(code)s is %(status)s: it cannot be stored.")
                % {"code": unit.code, "status": unit.get_status_display().lower()},
                unit.code,
                result.admin_url,
            )
        state.setdefault("undo", []).insert(0, {"unit": unit.pk, "code": unit.code})
        del state["undo"][10:]
        moved = _(" (moved from %(where)s)") % {"where": before} if before else ""
        return Feedback(
            True,
            f"{unit.code} → {box.code} {put.placement.position}{moved}",
            unit.code,
            result.admin_url,
        )

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        if name == "done":
            state.update(box=None, position=None, undo=[])
            return Feedback(True, _("Box finished. Scan the next box."))
        if name != "undo":
            return None
        if not state.get("undo"):
            return Feedback(False, _("Nothing to undo."), level="warn")
        last = state["undo"].pop(0)
        unit = ProductUnit.objects.get(pk=last["unit"])
        try:
            back = unit_put_undo(unit=unit, actor=request.user)
        except ServiceError as exc:
            return Feedback(
                False,
                _("Cannot undo %(code)s: %(reason)s") % {"code": unit.code, "reason": exc.message},
                unit.code,
            )
        if back is None:
            return Feedback(
                True,
                _("Undone: %(code)s is no longer stored (back to frozen, unplaced).")
                % {"code": unit.code},
                unit.code,
            )
        return Feedback(
            True,
            _("Undone: %(code)s is back at %(box)s %(position)s.")
            % {"code": unit.code, "box": back.container.code, "position": back.position},
            unit.code,
        )


class CheckOutPage(ScanPage):
    slug = "checkout"
    title = gettext_lazy("Check out / check in")
    summary = gettext_lazy("Scan units leaving their slot, or coming back to it.")
    prompt = gettext_lazy("Scan a unit (UN…)")
    permission = "biobank.change_productunit"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.UNIT}

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if request.POST.get("mode") in ("auto", "out", "in"):
            state["mode"] = request.POST["mode"]

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "modes": [("auto", _("Automatic")), ("out", _("Check out")), ("in", _("Check in"))],
            "mode": state.get("mode", "auto"),
        }

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        words = {"auto": _("Automatic"), "out": _("Check out"), "in": _("Check in")}
        if name.startswith("mode-") and name[5:] in words:
            state["mode"] = name[5:]
            return Feedback(True, _("Mode: %(mode)s.") % {"mode": words[name[5:]]})
        return None

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
                _("%(code)s CHECKED OUT of %(slot)s (slot reserved).")
                % {"code": unit.code, "slot": slot},
                unit.code,
                result.admin_url,
                mode="out",
            )
        placement = unit_check_in(unit=unit, actor=request.user)
        slot = f"{placement.container.code} {placement.position}"
        return Feedback(
            True,
            _("%(code)s CHECKED IN: put it back at %(slot)s.") % {"code": unit.code, "slot": slot},
            unit.code,
            result.admin_url,
            mode="in",
        )


class VerifyPage(ScanPage):
    slug = "verify"
    title = gettext_lazy("Verify a box")
    summary = gettext_lazy(
        "Scan a box, then every unit in it: see what is missing, extra or misplaced."
    )
    prompt = gettext_lazy("Scan a box (BX…), then a position (optional) and each unit")

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.BOX, Kind.CONTAINER, Kind.UNIT}

    def maybe_position(self, state: dict[str, Any], raw: str) -> Feedback | None:
        found = _position_in_box(state, raw)
        if found is None or isinstance(found, Feedback):
            return found
        state["position"] = found[1]
        return Feedback(
            True,
            _("Next unit is checked against position %(position)s.") % {"position": found[1]},
            found[1],
        )

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        if result.kind in (Kind.BOX, Kind.CONTAINER):
            state.update(box=result.item.pk, seen={}, position=None, finished=False)
            return Feedback(
                True,
                _("Verifying %(path)s (%(code)s): scan every unit in it.")
                % {"path": result.item.path, "code": result.code},
                result.code,
            )
        if not state.get("box"):
            return Feedback(False, _("Scan the box first."), result.code)
        position = state.pop("position", None) or ""
        state.setdefault("seen", {})[result.code] = position
        verdict = self._verdict(state)
        row = next((r for r in verdict["rows"] if r["code"] == result.code), None)
        ok = row is not None and row["state"] == "ok"
        note = row["note"] if row else _("recorded")
        return Feedback(ok, f"{result.code}: {note}", result.code)

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        if name == "reset":
            state.update(seen={}, position=None, finished=False)
            return Feedback(True, _("Scans cleared; scan the units again."))
        if name == "undo":
            seen = state.get("seen", {})
            if not seen:
                return Feedback(False, _("Nothing to undo."), level="warn")
            code = list(seen)[-1]
            del seen[code]
            return Feedback(True, _("Undone: %(code)s is to scan again.") % {"code": code}, code)
        if name == "done" and state.get("box"):
            state["finished"] = True
            verdict = self._verdict(state)
            clean = not (verdict["missing"] or verdict["extra"] or verdict["wrong"])
            return Feedback(
                clean,
                _(
                    "Box checked: %(ok)s ok, %(missing)s missing, %(extra)s extra, "
                    "%(wrong)s in the wrong place."
                )
                % verdict,
                level="ok" if clean else "warn",
            )
        return None

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "box": _box_from_state(state),
            "verdict": self._verdict(state) if state.get("box") else None,
        }

    def _verdict(self, state: dict[str, Any]) -> dict[str, Any]:
        box = _box_from_state(state)
        seen: dict[str, str] = state.get("seen", {})
        # Until the technician finishes, an unscanned unit is "to scan", not yet "missing".
        finished = state.get("finished", False)
        empty = {"rows": [], "ok": 0, "to_scan": 0, "missing": 0, "extra": 0, "wrong": 0}
        if box is None:
            return empty
        expected = {p.unit.code: p for p in box.placements.open().select_related("unit")}
        elsewhere = {
            u.code: location_of(u)
            for u in ProductUnit.objects.filter(code__in=[c for c in seen if c not in expected])
        }
        rows = []
        big = (10**6, 10**6)
        for code, placement in expected.items():
            where = placement.position or box.code
            sort = (placement.row or big[0], placement.column or big[1], code)
            if code not in seen:
                state_name = "missing" if finished else "to_scan"
                note = (
                    _("expected at %(where)s, not scanned")
                    if finished
                    else _("expected at %(where)s")
                ) % {"where": where}
            elif seen[code] and seen[code] != placement.position:
                state_name = "wrong"
                note = _("scanned at %(scanned)s, the system has it at %(position)s") % {
                    "scanned": seen[code],
                    "position": placement.position,
                }
            else:
                state_name = "ok"
                note = (
                    _("present at %(position)s") % {"position": placement.position}
                    if placement.position
                    else _("present")
                )
            rows.append({"code": code, "state": state_name, "note": note, "sort": sort})
        for code in seen:
            if code not in expected:
                where = elsewhere.get(code) or _("not in storage")
                rows.append(
                    {
                        "code": code,
                        "state": "extra",
                        "note": _("not expected here; the system has it: %(where)s")
                        % {"where": where},
                        "sort": (*big, code),
                    }
                )
        counts = {
            s: sum(1 for r in rows if r["state"] == s)
            for s in ("ok", "to_scan", "missing", "extra", "wrong")
        }
        return {"rows": sorted(rows, key=lambda r: r["sort"]), "finished": finished, **counts}


STATE_WORDS = {
    "match": gettext_lazy("matches"),
    "new": gettext_lazy("new: will be stored here"),
    "moved_here": gettext_lazy("moved here"),
    "mismatch": gettext_lazy("different tube"),
    "missing": gettext_lazy("missing from the rack"),
    "no_read": gettext_lazy("tube not readable"),
    "empty": gettext_lazy("empty"),
    "bad_tube": gettext_lazy("unknown tube"),
}


class RackImportPage(ScanPage):
    slug = "rack-import"
    title = gettext_lazy("Rack-scanner import")
    summary = gettext_lazy(
        "Upload a rack scanner's CSV, preview the differences, apply all or nothing."
    )
    prompt = gettext_lazy("Scan the box (BX…) the rack file belongs to")
    permission = "biobank.change_productunit"

    def template_name(self) -> str:
        return "admin/biobank/scan/rack_import.html"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.BOX}

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        state.update(box=result.item.pk, csv=None)
        return Feedback(
            True,
            _("Box %(code)s selected: upload its rack file.") % {"code": result.code},
            result.code,
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        state = self.state(request)
        upload = request.FILES.get("file")
        if upload is not None:
            if upload.size > 1_000_000:
                state["feedback"] = Feedback(
                    False, _("The file is larger than 1 MB: not a rack scan.")
                ).__dict__
            else:
                state["csv"] = upload.read().decode("latin-1")  # bytes kept losslessly
                state["filename"] = upload.name
                state["feedback"] = Feedback(
                    True,
                    _("%(name)s read: check the preview, then apply.") % {"name": upload.name},
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
        if name in ("clear", "done"):
            state.update(csv=None)
            return Feedback(True, _("File cleared."))
        if name != "apply":
            return None
        if box is None or not state.get("csv"):
            return Feedback(False, _("Scan the box and upload its file first."))
        try:
            counts = rack_scan_apply(
                box=box,
                read=self._read(state, box),
                actor=request.user,
                remove_missing=request.POST.get("remove_missing") == "1",
            )
        except ServiceError as exc:
            return Feedback(False, _("Nothing was changed. %(reason)s") % {"reason": exc.message})
        state.update(csv=None)
        return Feedback(
            True,
            _(
                "Applied to %(box)s: %(stored)s stored, %(moved)s moved, %(removed)s removed, "
                "%(unchanged)s unchanged."
            )
            % {"box": box.code, **counts},
            box.code,
        )

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        box = _box_from_state(state)
        if box is None or not state.get("csv"):
            return {"box": box}
        read = self._read(state, box)
        diffs = rack_scan_compare(box=box, read=read)
        plan = rack_scan_plan(diffs=diffs)
        summary: dict[str, int] = {}
        for d in diffs:
            summary[d.state] = summary.get(d.state, 0) + 1
        return {
            "box": box,
            "read": read,
            # Empty positions are collapsed into one count; every other row is shown.
            "diffs": [
                {"d": d, "words": STATE_WORDS.get(d.state, d.state)}
                for d in diffs
                if d.state != "empty"
            ],
            "empty": summary.get("empty", 0),
            "summary": [
                (state_name, STATE_WORDS.get(state_name, state_name), n)
                for state_name, n in sorted(summary.items())
                if state_name != "empty"
            ],
            "plan": plan,
            "filename": state.get("filename", ""),
            # Apply is offered only when it can succeed: no file errors, no unknown tubes;
            # units to remove need the "remove" box ticked (the page enforces it).
            "can_apply": not read.errors and not plan.blocked,
        }


def dose_summary(dose: Any) -> str:
    """What a blinded person checks on the syringe: plan, volume, expiry (same for MSC/saline)."""
    expiry = f"{timezone.localtime(dose.expires_at):%Y-%m-%d %H:%M}" if dose.expires_at else "–"
    return f"Plan: {dose.plan_display()}; {dose.volume_ml} mL; expires {expiry}."


class DosePage(ScanPage):
    slug = "dose"
    title = gettext_lazy("Dose identity check")
    summary = gettext_lazy(
        "Before dispatch and at the bedside: scan the dose and the participant's ID. "
        "A mismatch is refused, recorded and shown."
    )
    prompt = gettext_lazy("Scan the dose (DS…) and the participant (PT…)")
    permission = "biobank.administer_dose"

    def kinds(self, state: dict[str, Any]) -> set[Kind] | None:
        return {Kind.DOSE, Kind.PARTICIPANT}

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
            lab = request.user.has_perm("biobank.prepare_dose") or request.user.has_perm(
                "biobank.release_dose"
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
            if stage == IdentityStage.DISPATCH:
                dose = dose_dispatch(
                    dose_scan=pending["dose"],
                    participant_scan=pending["participant"],
                    actor=request.user,
                )
                return Feedback(
                    True,
                    _("Identity confirmed: %(code)s DISPATCHED.") % {"code": dose.code}
                    + " "
                    + dose_summary(dose),
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
                _("Identity confirmed: %(code)s ADMINISTERED.") % {"code": dose.code}
                + " "
                + dose_summary(dose),
                dose.code,
            )
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
    if not any(request.user.has_perm(p.permission) for p in PAGES):
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
