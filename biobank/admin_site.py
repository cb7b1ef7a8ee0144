from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import path, reverse
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

# The lab's workflows, in the order of a sample's life; each model sits in one of them.
# A model missing here (e.g. added by later work) lands in the last group, never hidden.
WORKFLOWS: list[tuple[str, str, list[str]]] = [
    ("samples", _("Samples"), ["aspirate", "processing", "passage", "qcresult", "freezingrun",
                               "productunit"]),
    ("storage", _("Storage"), ["storageunit", "container", "boxtype", "placement",
                               "temperaturereading"]),
    ("doses", _("Doses"), ["dose", "identitycheck"]),
    ("trial", _("Trial"), ["study", "site", "arm", "armschedule", "visittype", "participant",
                           "visit", "randomisationentry", "unblinding"]),
    ("reports", _("Reports"), ["exportlog"]),
    ("settings", _("Audit and settings"), ["custodyevent", "signature", "printer", "printjob",
                                           "idsequence", "user", "group", "tokenproxy"]),
]  # fmt: skip


# The models' plural names as the home page and sidebar show them, for the catalogue (the
# models themselves keep their English verbose names; the admin translates at display time).
MODEL_NAMES = [
    gettext_noop("Arm schedules"),
    gettext_noop("Arms"),
    gettext_noop("Aspirates"),
    gettext_noop("Box types"),
    gettext_noop("Containers"),
    gettext_noop("Custody events"),
    gettext_noop("Doses"),
    gettext_noop("Freezing runs"),
    gettext_noop("Groups"),
    gettext_noop("Id sequences"),
    gettext_noop("Identity checks"),
    gettext_noop("Participants"),
    gettext_noop("Passages"),
    gettext_noop("Placements"),
    gettext_noop("Print jobs"),
    gettext_noop("Printers"),
    gettext_noop("Processings"),
    gettext_noop("Product units"),
    gettext_noop("Qc results"),
    gettext_noop("Randomisation entries"),
    gettext_noop("Export logs"),
    gettext_noop("Signatures"),
    gettext_noop("Sites"),
    gettext_noop("Storage units"),
    gettext_noop("Studies"),
    gettext_noop("Temperature readings"),
    gettext_noop("Tokens"),
    gettext_noop("Unblindings"),
    gettext_noop("Users"),
    gettext_noop("Visit types"),
    gettext_noop("Visits"),
]


class BiobankAdminSite(admin.AdminSite):
    site_header = _("SMART-MS biobank")
    site_title = _("Biobank")
    index_title = _("Sample tracking")
    index_template = "admin/biobank_index.html"

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        """Every ModelAdmin answers through the visibility policy, by construction."""
        from django.contrib.admin import ModelAdmin

        from biobank.admin.policy import PolicyAdminMixin
        from biobank.admin.steps import PlausibleDatesMixin
        from biobank.admin.widgets import HistoryDisplayMixin

        admin_class = admin_class or ModelAdmin
        # And every change list checks the dates of its query string; every history page shows
        # values as the other pages do.
        for mixin in (HistoryDisplayMixin, PlausibleDatesMixin, PolicyAdminMixin):
            if not issubclass(admin_class, mixin):
                admin_class = type(admin_class.__name__, (mixin, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[Any]:
        from biobank.scanning import views

        scan = [
            path(
                f"scan/{page.slug}/",
                self.admin_view(page.as_view(site=self)),
                name=f"scan_{page.slug}",
            )
            for page in views.PAGES
        ]
        extra = [
            path("due/", self.admin_view(self.due_view), name="due"),
            path(
                "commands/<str:fmt>/",
                self.admin_view(views.command_sheet),
                name="command_sheet",
            ),
        ]
        from biobank.admin.reports import report_urls

        return [*extra, *scan, *report_urls(self), *super().get_urls()]

    def get_app_list(self, request: Any, app_label: str | None = None) -> list[dict[str, Any]]:
        """The home page and sidebar by workflow (Scan first); an app's own page unchanged."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        models = {
            m["object_name"].lower(): {**m, "name": gettext(str(m["name"]))}
            for app in self._build_app_dict(request).values()
            for m in app["models"]
        }
        groups = []
        scan = self.scan_entries(request)
        if scan:
            groups.append(self._group("scan", _("Scan"), scan))
        placed: set[str] = set()
        for slug, name, names in WORKFLOWS:
            entries = [models[n] for n in names if n in models]
            placed.update(names)
            if slug == "doses" and request.user.has_perm("biobank.view_dose"):
                entries.insert(0, self._link("due", _("Due treatments"), reverse("admin:due")))
            if slug == "reports" and request.user.has_perm("biobank.view_participant"):
                entries.insert(
                    0, self._link("reports", _("Reports and exports"), reverse("admin:reports"))
                )
            if slug == "settings":
                entries += [m for n, m in sorted(models.items()) if n not in placed]
            if entries:
                groups.append(self._group(slug, name, entries))
        return groups

    def scan_entries(self, request: Any) -> list[dict[str, Any]]:
        from biobank.scanning import views

        user = request.user
        entries = [
            {**self._link(f"scan-{p.slug}", p.title, reverse(f"admin:scan_{p.slug}")),
             "summary": p.summary}
            for p in views.PAGES
            if p.allows(user)
        ]  # fmt: skip
        if entries:
            entries.append(
                {
                    **self._link(
                        "commands",
                        _("Command barcodes"),
                        reverse("admin:command_sheet", args=["pdf"]),
                    ),
                    "summary": _("A printable sheet of UNDO, FINISH and mode barcodes."),
                }
            )
        return entries

    @staticmethod
    def _link(key: str, name: Any, url: str) -> dict[str, Any]:
        return {"name": name, "object_name": key, "admin_url": url, "add_url": None,
                "view_only": True, "perms": {}, "link": True}  # fmt: skip

    @staticmethod
    def _group(slug: str, name: Any, models: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "app_label": f"wf-{slug}", "app_url": f"#wf-{slug}",
                "has_module_perms": True, "models": models}  # fmt: skip

    def due_view(self, request: Any) -> Any:
        """Treatment visits coming up: what to thaw or prepare, and which unit is reserved."""
        from django.contrib import messages
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse
        from django.utils import timezone

        from biobank.errors import ServiceError
        from biobank.services.dose_plan import DUE_DAYS_DEFAULT, doses_due, due_days_parse
        from biobank.services.lifecycle import allowed_actions
        from biobank.visibility import can_see_allocation

        if not request.user.has_perm("biobank.view_dose"):
            raise PermissionDenied
        try:
            days = due_days_parse(request.GET.get("days"))
        except ServiceError as exc:
            messages.error(request, f"{exc.message} Showing {DUE_DAYS_DEFAULT} days.")
            days = DUE_DAYS_DEFAULT
        today = timezone.localdate()
        rows = doses_due(within_days=days, today=today)
        # Overdue first (the service sorts by date already; keep it explicit here).
        rows = sorted(rows, key=lambda r: r.visit.scheduled_on >= today)
        for row in rows:
            row.overdue_days = max(0, (today - row.visit.scheduled_on).days)
            # The bedside check is offered when the table allows the dose's administration.
            row.bedside = row.dose is not None and "administer" in allowed_actions(row.dose)
        return TemplateResponse(
            request,
            "admin/biobank/due.html",
            {
                **self.each_context(request),
                "title": _("Treatment visits due within %(days)s days") % {"days": days},
                "rows": rows,
                "days": days,
                "today": today,
                "unblinded": can_see_allocation(request.user),
            },
        )

    def each_context(self, request: Any) -> dict[str, Any]:
        from biobank.scanning import views

        context = super().each_context(request)
        user = getattr(request, "user", None)
        context["scan_pages"] = [p for p in views.PAGES if user is not None and p.allows(user)]
        return context


class BiobankAdminConfig(AdminConfig):
    default_site = "biobank.admin_site.BiobankAdminSite"
