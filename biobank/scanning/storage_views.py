"""Scan pages for storage: store units in a box, check out and in, verify a box."""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from biobank.errors import ServiceError, TransitionError
from biobank.identifiers import Kind
from biobank.models import ProductUnit
from biobank.selectors.scan import ScanResult
from biobank.selectors.storage import box_map, location_of
from biobank.services.actions import action_get, action_run

from .base import Feedback, ScanPage, box_from_state, position_in_box


class BoxScanPage(ScanPage):
    """A page that works on one box at a time: scan the box, then positions and units."""

    # What a scanned position is for (the next unit's place, or the position to check).
    position_message: ClassVar[Any]

    accepts = frozenset({Kind.BOX, Kind.CONTAINER, Kind.UNIT})

    def maybe_position(self, state: dict[str, Any], raw: str) -> Feedback | None:
        found = position_in_box(state, raw)
        if found is None or isinstance(found, Feedback):
            return found
        state["position"] = found[1]
        return Feedback(True, _(self.position_message) % {"position": found[1]}, found[1])


class StorePage(BoxScanPage):
    slug = "store"
    title = gettext_lazy("Store units in a box")
    summary = gettext_lazy(
        "Scan a box, then units one by one; each goes to the next free or the scanned position."
    )
    prompt = gettext_lazy("Scan a box (BX…), a position (e.g. A5) or a unit (UN…)")
    permission = action_get("unit", "put").permission
    position_message = gettext_noop("Next unit goes to %(position)s.")

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        box = box_from_state(state)
        context: dict[str, Any] = {"box": box, "undo": state.get("undo", [])}
        if box is not None and box.is_box:
            context["map"] = box_map(box=box)
        return context

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
        box = box_from_state(state)
        if box is None:
            return Feedback(False, _("Scan the box first, then the units."), result.code)
        unit: ProductUnit = result.item
        position = state.pop("position", None)
        before = location_of(unit)
        try:
            put = action_run(
                action=action_get("unit", "put"),
                item=unit,
                actor=request.user,
                data={"container": box.code, "position": position, "reason": "scanned into box"},
            )
        except TransitionError as exc:
            if exc.code != "not_storable":
                raise
            # Name the status the service refused, not the one read at the scan.
            unit.refresh_from_db(fields=["status"])
            return Feedback(
                False,
                _("%(code)s is %(status)s: it cannot be stored.")
                % {"code": unit.code, "status": unit.get_status_display().lower()},
                unit.code,
                result.admin_url,
            )
        # The undo button names the last unit and where it went.
        last = {"unit": unit.pk, "code": unit.code, "position_label": put.placement.position}
        state.setdefault("undo", []).insert(0, last)
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
            back = action_run(
                action=action_get("unit", "put_undo"), item=unit, actor=request.user, data={}
            )
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


# Each check-out page mode: the step it takes and its name on the page.
MODES = {
    "auto": ("check_out_or_in", gettext_lazy("Automatic")),
    "out": ("check_out", gettext_lazy("Check out")),
    "in": ("check_in", gettext_lazy("Check in")),
}


class CheckOutPage(ScanPage):
    slug = "checkout"
    title = gettext_lazy("Check out / check in")
    summary = gettext_lazy("Scan units leaving their slot, or coming back to it.")
    prompt = gettext_lazy("Scan a unit (UN…)")
    permission = action_get("unit", "check_out").permission

    accepts = frozenset({Kind.UNIT})

    def update_settings(self, request: HttpRequest, state: dict[str, Any]) -> None:
        if request.POST.get("mode") in MODES:
            state["mode"] = request.POST["mode"]

    def extra_context(self, request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "modes": [(mode, word) for mode, (_step, word) in MODES.items()],
            "mode": state.get("mode", "auto"),
        }

    def command(self, request: HttpRequest, state: dict[str, Any], name: str) -> Feedback | None:
        mode = name.removeprefix("mode-")
        if name.startswith("mode-") and mode in MODES:
            state["mode"] = mode
            return Feedback(True, _("Mode: %(mode)s.") % {"mode": MODES[mode][1]})
        return None

    def handle(self, request: HttpRequest, state: dict[str, Any], result: ScanResult) -> Feedback:
        unit: ProductUnit = result.item
        step = MODES[state.get("mode", "auto")][0]
        placement = action_run(
            action=action_get("unit", step), item=unit, actor=request.user, data={}
        )
        mode = "out" if placement.checked_out_at else "in"
        if mode == "out":
            message = _("%(code)s CHECKED OUT of %(slot)s (slot reserved).")
        else:
            message = _("%(code)s CHECKED IN: put it back at %(slot)s.")
        slot = f"{placement.container.code} {placement.position}"
        return Feedback(
            True,
            message % {"code": unit.code, "slot": slot},
            unit.code,
            result.admin_url,
            mode=mode,
        )


class VerifyPage(BoxScanPage):
    slug = "verify"
    title = gettext_lazy("Verify a box")
    summary = gettext_lazy(
        "Scan a box, then every unit in it: see what is missing, extra or misplaced."
    )
    prompt = gettext_lazy("Scan a box (BX…), then a position (optional) and each unit")
    position_message = gettext_noop("Next unit is checked against position %(position)s.")

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
            "box": box_from_state(state),
            "verdict": self._verdict(state) if state.get("box") else None,
        }

    def _verdict(self, state: dict[str, Any]) -> dict[str, Any]:
        box = box_from_state(state)
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
