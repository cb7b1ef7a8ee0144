"""The admin's "Reports" page and the export log: forms over the same builders as the API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from biobank import visibility
from biobank.api.reports import (
    AUDIT_PERMISSION,
    audit_export_response,
    inventory_response,
    participant_report_response,
)
from biobank.errors import ServiceError
from biobank.models import ExportLog, Participant
from biobank.selectors.audit_export import SOURCES
from biobank.selectors.inventory import inventory_counts, participant_whereabouts

from .steps import ReadOnlyAdminMixin


class AuditExportForm(forms.Form):
    date_from = forms.CharField(required=False, label="From", help_text="YYYY-MM-DD")
    date_to = forms.CharField(required=False, label="To", help_text="YYYY-MM-DD (inclusive)")
    item = forms.CharField(required=False, help_text="Item ID (AS…, DS…)")
    participant = forms.CharField(required=False, help_text="Participant ID or pseudonym")
    user = forms.CharField(required=False, help_text="Username")
    action = forms.CharField(required=False, help_text="Step(s), comma-separated")
    source = forms.ChoiceField(choices=[(s, s) for s in SOURCES], initial="events")
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("jsonl", "JSON Lines")])


class ParticipantForm(forms.Form):
    participant = forms.CharField(help_text="Participant ID or pseudonym")
    format = forms.ChoiceField(
        choices=[
            ("pdf", "Chain report (PDF)"),
            ("json", "Chain report (JSON)"),
            ("where", "Where is everything"),
        ]
    )


FIELD_PARAMS = {"date_from": "from", "date_to": "to"}


def reports_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    user = request.user
    if not user.has_perm("biobank.view_participant"):
        raise PermissionDenied
    audit_form = AuditExportForm(request.GET if "audit" in request.GET else None, prefix="a")
    person_form = ParticipantForm(request.GET if "person" in request.GET else None, prefix="p")
    whereabouts = None
    try:
        if audit_form.is_bound and audit_form.is_valid():
            d = audit_form.cleaned_data
            params = {FIELD_PARAMS.get(k, k): v for k, v in d.items() if k != "format"}
            return audit_export_response(user=user, fmt=d["format"], params=params)
        if person_form.is_bound and person_form.is_valid():
            d = person_form.cleaned_data
            if d["format"] == "where":
                found = Participant.objects.filter(code=d["participant"].strip().upper()).first()
                found = (
                    found
                    or Participant.objects.filter(
                        pseudonym=d["participant"].strip().upper()
                    ).first()
                )
                if found is None:
                    person_form.add_error("participant", "No such participant is registered.")
                else:
                    whereabouts = participant_whereabouts(participant=found, user=user)
            else:
                return participant_report_response(
                    user=user, code=d["participant"], fmt=d["format"]
                )
        if "inventory" in request.GET:
            return inventory_response(user=user, fmt=request.GET["inventory"], params={})
    except ServiceError as exc:
        form = audit_form if "audit" in request.GET else person_form
        field = {"from": "date_from", "to": "date_to"}.get(exc.field or "", exc.field)
        if form.is_bound and field in form.fields:
            form.add_error(field, exc.message)
        else:
            messages.error(request, exc.message)
    sees_units = visibility.may_see_kind(user, "unit") and user.has_perm("biobank.view_productunit")
    context = {
        **site.each_context(request),
        "title": "Reports",
        "audit_form": audit_form if user.has_perm(AUDIT_PERMISSION) else None,
        "person_form": person_form,
        "whereabouts": whereabouts,
        "counts": inventory_counts() if sees_units else None,
        "exports": (
            ExportLog.objects.select_related("requested_by", "participant")[:20]
            if user.has_perm("biobank.view_exportlog")
            else None
        ),
    }
    return TemplateResponse(request, "admin/biobank/reports/index.html", context)


def report_urls(site: admin.AdminSite) -> list[Any]:
    return [
        path(
            "reports/",
            site.admin_view(lambda request: reports_view(request, site)),
            name="reports",
        )
    ]


@admin.register(ExportLog)
class ExportLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["requested_at", "kind", "format", "requested_by", "participant", "blinded"]
    list_filter = ["kind", "format", "blinded"]
    search_fields = ["requested_by__username", "participant__code", "content_hash"]
    date_hierarchy = "requested_at"
    list_select_related = ["requested_by", "participant"]
