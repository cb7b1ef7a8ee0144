"""Chart figures and report buttons for admin pages: one tag line per page template."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from biobank import visibility
from biobank.models import Participant, StorageUnit
from biobank.reports.charts_for import crossover_spec, occupancy_spec, temperature_spec

register = template.Library()


def _user(context: Any) -> Any:
    request = context.get("request")
    return getattr(request, "user", None)


@register.inclusion_tag("admin/biobank/reports/participant_tools.html", takes_context=True)
def participant_report_tools(context: Any, participant: Participant | None) -> dict[str, Any]:
    user = _user(context)
    if participant is None or not visibility.may_see_kind(user, "participant"):
        return {"show": False}
    code = participant.code
    spec = crossover_spec(participant=participant, user=user)
    return {
        "show": True,
        "pdf": reverse("participant-report", kwargs={"code": code, "fmt": "pdf"}),
        "json": reverse("participant-report", kwargs={"code": code, "fmt": "json"}),
        "audit": (
            reverse("audit-export", kwargs={"fmt": "csv"}) + f"?participant={code}"
            if user.has_perm("biobank.export_audit_trail")
            else ""
        ),
        "where": reverse("inventory-whereabouts", kwargs={"code": code}),
        "chart": reverse("chart-crossover", kwargs={"code": code, "fmt": "svg"}),
        "alt": spec.alt,
    }


@register.inclusion_tag("admin/biobank/reports/storage_tools.html", takes_context=True)
def storage_report_tools(context: Any, unit: StorageUnit | None) -> dict[str, Any]:
    user = _user(context)
    if unit is None or not visibility.may_see_kind(user, "storage_unit"):
        return {"show": False}
    code = unit.code
    return {
        "show": True,
        "temperature": reverse("chart-temperature", kwargs={"code": code, "fmt": "svg"}),
        "temperature_alt": temperature_spec(unit=unit).alt,
        "occupancy": reverse("chart-occupancy", kwargs={"code": code, "fmt": "svg"}),
        "occupancy_alt": occupancy_spec(unit=unit).alt,
        "csv": reverse("inventory", kwargs={"fmt": "csv"}) + f"?storage_unit={code}",
        "xlsx": reverse("inventory", kwargs={"fmt": "xlsx"}) + f"?storage_unit={code}",
    }
