"""The rack-scanner import page: upload a rack CSV, preview the differences, apply."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.models import Container
from biobank.rack_csv import MAX_FILE_SIZE, parse_rack_csv
from biobank.selectors.scan import ScanResult
from biobank.services.actions import action_get
from biobank.services.racks import rack_scan_apply, rack_scan_compare, rack_scan_plan

from .base import Feedback, ScanPage, box_from_state

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
    permission = action_get("unit", "put").permission

    def template_name(self) -> str:
        return "admin/biobank/scan/rack_import.html"

    accepts = frozenset({Kind.BOX})

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
            if upload.size > MAX_FILE_SIZE:  # refused before it is read into memory
                state["feedback"] = Feedback(
                    False,
                    _("The file is larger than %(limit)s bytes: not a rack scan.")
                    % {"limit": MAX_FILE_SIZE},
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
        box = box_from_state(state)
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
        box = box_from_state(state)
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
