"""Chart figures and report buttons for admin pages: one tag line per page template."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import template
from django.urls import reverse

from biobank import visibility
from biobank.models import Participant, StorageUnit
from biobank.reports.charts_for import crossover_spec, occupancy_spec, temperature_spec
from biobank.selectors.audit_export import AUDIT_PERMISSION

register = template.Library()


def _user(context: Any) -> Any:
    request = context.get("request")
    return getattr(request, "user", None)


def _tools_tag(template_name: str, kind: str) -> Callable[[Callable[..., dict[str, Any]]], Any]:
    """An inclusion tag ``{% name item %}`` for an item's admin page: nothing (``show`` false)
    without an item or for a viewer who may not see its kind, else what ``build(item, user)``
    gives."""

    def register_tag(build: Callable[..., dict[str, Any]]) -> Any:
        def tag(context: Any, item: Any) -> dict[str, Any]:
            user = _user(context)
            if item is None or not visibility.may_see_kind(user, kind):
                return {"show": False}
            return {"show": True, **build(item, user)}

        tag.__name__ = build.__name__
        return register.inclusion_tag(template_name, takes_context=True)(tag)

    return register_tag


@_tools_tag("admin/biobank/reports/participant_tools.html", "participant")
def participant_report_tools(participant: Participant, user: Any) -> dict[str, Any]:
    code = participant.code
    spec = crossover_spec(participant=participant, user=user)
    return {
        "pdf": reverse("participant-report", kwargs={"code": code, "fmt": "pdf"}),
        "json": reverse("participant-report", kwargs={"code": code, "fmt": "json"}),
        "audit": (
            reverse("audit-export", kwargs={"fmt": "csv"}) + f"?participant={code}"
            if user.has_perm(AUDIT_PERMISSION)
            else ""
        ),
        "where": reverse("inventory-whereabouts", kwargs={"code": code}),
        "chart": reverse("chart-crossover", kwargs={"code": code, "fmt": "svg"}),
        "alt": spec.alt,
    }


@_tools_tag("admin/biobank/reports/storage_tools.html", "storage_unit")
def storage_report_tools(unit: StorageUnit, user: Any) -> dict[str, Any]:
    code = unit.code
    return {
        "temperature": reverse("chart-temperature", kwargs={"code": code, "fmt": "svg"}),
        "temperature_alt": temperature_spec(unit=unit).alt,
        "occupancy": reverse("chart-occupancy", kwargs={"code": code, "fmt": "svg"}),
        "occupancy_alt": occupancy_spec(unit=unit).alt,
        "csv": reverse("inventory", kwargs={"fmt": "csv"}) + f"?storage_unit={code}",
        "xlsx": reverse("inventory", kwargs={"fmt": "xlsx"}) + f"?storage_unit={code}",
    }
