from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import path


class BiobankAdminSite(admin.AdminSite):
    site_header = "SMART-MS biobank"
    site_title = "Biobank"
    index_title = "Sample tracking"
    index_template = "admin/biobank_index.html"

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
        due = path("due/", self.admin_view(self.due_view), name="due")
        return [due, *scan, *super().get_urls()]

    def due_view(self, request: Any) -> Any:
        """Treatment visits coming up: what to thaw or prepare, and which unit is reserved."""
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse

        from biobank.blinding import can_see_allocation
        from biobank.services.doses import doses_due

        if not request.user.has_perm("biobank.view_dose"):
            raise PermissionDenied
        try:
            days = max(1, min(int(request.GET.get("days", "30")), 365))
        except ValueError:
            days = 30
        rows = doses_due(within_days=days)
        return TemplateResponse(
            request,
            "admin/biobank/due.html",
            {
                **self.each_context(request),
                "title": f"Treatment visits due within {days} days",
                "rows": rows,
                "days": days,
                "unblinded": can_see_allocation(request.user),
            },
        )

    def each_context(self, request: Any) -> dict[str, Any]:
        from biobank.scanning import views

        context = super().each_context(request)
        user = getattr(request, "user", None)
        context["scan_pages"] = [
            p for p in views.PAGES if user is not None and user.has_perm(p.permission)
        ]
        return context


class BiobankAdminConfig(AdminConfig):
    default_site = "biobank.admin_site.BiobankAdminSite"
