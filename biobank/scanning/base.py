"""The scan page machinery: one autofocused field, Enter submits, the answer shows at once.

Each page keeps its small working state (current box, last placements...) in the session,
follows post/redirect/get so a reload never repeats a scan, and calls only services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.labels.commands import COMMANDS, command_for
from biobank.models import Container
from biobank.selectors.scan import ScanResult, scan_resolve
from biobank.services.containers import position_parse
from biobank.visibility import policy_for

RECENT = 15
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
    # The kinds of scan this page takes (None: any); others are refused before any lookup.
    accepts: ClassVar[frozenset[Kind] | None] = None
    site: admin.AdminSite | None = None

    # --- plumbing ----------------------------------------------------------------------------

    def state(self, request: HttpRequest) -> dict[str, Any]:
        return request.session.setdefault(f"scan_{self.slug}", {"recent": []})

    def save_state(self, request: HttpRequest, state: dict[str, Any]) -> None:
        request.session[f"scan_{self.slug}"] = state
        request.session.modified = True

    def url(self) -> str:
        return reverse(f"admin:scan_{self.slug}")

    @classmethod
    def allows(cls, user: Any) -> bool:
        """May ``user`` open this page (its menu entry, the page itself, the command sheet)?"""
        return user.has_perm(cls.permission)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.allows(request.user):
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
            kinds = set(self.accepts) if self.accepts is not None else None
            result = scan_resolve(raw=raw, viewer=request.user, kinds=kinds)
            return self.handle(request, state, result)
        except ServiceError as exc:
            position = self.maybe_position(state, raw)
            if position is not None:
                return position
            # A code of a kind the user may not see is not echoed back either.
            echo = "" if exc.code == "not_visible" else raw.strip()[:64]
            return Feedback(False, policy_for(request.user).redact(exc.message), echo)

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


def box_from_state(state: dict[str, Any]) -> Container | None:
    if not state.get("box"):
        return None
    return (
        Container.objects.select_related("box_type", "storage_unit").filter(pk=state["box"]).first()
    )


def position_in_box(state: dict[str, Any], raw: str) -> tuple[Container, str] | Feedback | None:
    """A scanned position label (e.g. from a box-position barcode) for the current box; a
    position-shaped scan the box does not have is answered with the box's geometry."""
    text = raw.strip().upper()
    box = box_from_state(state)
    if box is None or not box.is_box or not _POSITION.match(text):
        return None
    try:
        row, col = position_parse(box_type=box.box_type, label=text)
    except ServiceError as exc:
        return Feedback(False, exc.message, text)
    return box, box.box_type.position_label(row, col)
