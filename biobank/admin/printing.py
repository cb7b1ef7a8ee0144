"""Printers, the print-job log, the "Print label…" action and the label preview.

Imports only ``.steps`` from this package, because trial, samples and storage import
this module. The action is not a ``steps.Step``: those run inside one transaction, and a
print job must send its bytes with no transaction open (see ``biobank.services.printing``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from simple_history.admin import SimpleHistoryAdmin

from biobank.errors import ServiceError
from biobank.labels import TEMPLATES
from biobank.models import Printer, PrintJob, PrintJobStatus
from biobank.selectors.labels import default_template_for
from biobank.services.printing import MAX_COPIES, PRINT_PERMISSION, print_job_submit

from .steps import NoDeleteAdminMixin, ReadOnlyAdminMixin

PREVIEW_PX_PER_MM = 5


@admin.register(Printer)
class PrinterAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    """Printers are switched off (active), never deleted: print jobs refer to them."""

    list_display = list(Printer.RECORD_FIELDS)
    list_filter = ["active", "dpi", "label_template"]
    search_fields = ["name", "host", "location"]
    fields = ["name", "host", "port", "dpi", "label_template", "location", "active"]

    @admin.display(description="Label size")
    def label_size(self, obj: Printer) -> str:
        return obj.label_size

    def save_model(self, request: HttpRequest, obj: Printer, form: Any, change: bool) -> None:
        obj._change_reason = "edited in admin" if change else "added in admin"
        super().save_model(request, obj, form, change)


@admin.register(PrintJob)
class PrintJobAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    """The print log: written by print jobs only, never edited or deleted."""

    list_display = [
        "id",
        "created_at",
        "printer",
        "requested_by",
        "codes",
        "template",
        "copies",
        "status",
        "error",
        "sent_at",
    ]
    list_filter = ["status", "printer"]
    search_fields = ["item_codes", "printer__name", "requested_by__username"]
    list_select_related = ["printer", "requested_by"]
    date_hierarchy = "created_at"
    fields = ["printer", *PrintJob.RECORD_FIELDS]
    readonly_fields = fields

    @admin.display(description="Items")
    def codes(self, obj: PrintJob) -> str:
        codes = [str(c) for c in obj.item_codes or []]
        return ", ".join(codes[:5]) + (f" (+{len(codes) - 5})" if len(codes) > 5 else "")


# --- on every labelled item ------------------------------------------------------------------


class PrintLabelsForm(forms.Form):
    printer = forms.ModelChoiceField(
        queryset=Printer.objects.filter(active=True).order_by("name"),
        help_text="Active printers; add one under Printers.",
    )
    copies = forms.IntegerField(min_value=1, max_value=MAX_COPIES, initial=1)
    template = forms.ChoiceField(
        choices=[("", "Default (the item's own stock if the printer holds that size)")]
        + [(t.name, f"{t.title} ({t.width_mm:g}×{t.height_mm:g} mm)") for t in TEMPLATES.values()],
        required=False,
        label="Label",
    )


@admin.action(description="Print label…")
def print_labels(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse | None:
    """Send the selected items' labels to a printer as one print job."""
    # (also hidden from users without the permission, see NoDeleteAdminMixin.get_actions)
    if not request.user.has_perm(PRINT_PERMISSION):
        modeladmin.message_user(request, "You may not print labels.", messages.ERROR)
        return None
    applying = "apply_print" in request.POST
    form = PrintLabelsForm(request.POST if applying else None)
    if applying and form.is_valid():
        data = form.cleaned_data
        codes = list(queryset.order_by("pk").values_list("code", flat=True))
        try:
            job = print_job_submit(
                printer=data["printer"],
                codes=codes,
                actor=request.user,
                template=data["template"] or None,
                copies=data["copies"],
            )
        except ServiceError as exc:
            modeladmin.message_user(
                request, f"Print label: nothing was printed. {exc.message}", messages.ERROR
            )
            return None
        if job.status == PrintJobStatus.FAILED:
            modeladmin.message_user(
                request, f"Print job {job.pk} failed: {job.error}", messages.ERROR
            )
        else:
            modeladmin.message_user(
                request,
                f"Print job {job.pk}: {len(codes)} label(s) × {job.copies} sent to "
                f"{job.printer.name} ({', '.join(codes[:10])}{'…' if len(codes) > 10 else ''}).",
                messages.SUCCESS,
            )
        return None
    return TemplateResponse(
        request,
        "admin/biobank/print_labels.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": f"Print labels: {queryset.count()} selected",
            "form": form,
            "items": list(queryset[:200]),
            "opts": modeladmin.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        },
    )


class LabelPreviewMixin:
    """Adds ``label_preview``, a read-only field: the item's label as the API renders it
    (an <img> the browser loads with the admin session; no query on this page)."""

    @admin.display(description="Label")
    def label_preview(self, obj: Model | None) -> SafeString | str:
        code = getattr(obj, "code", "")
        if obj is None or not code:
            return "–"
        template = TEMPLATES[default_template_for(obj)]
        links = format_html_join(
            " · ",
            '<a href="{}">{}</a>',
            (
                (reverse("label-render", kwargs={"code": code, "fmt": fmt}), fmt.upper())
                for fmt in ("pdf", "svg", "zpl")
            ),
        )
        return format_html(
            '<img src="{}" alt="Label {}" width="{}" class="label-preview" '
            'style="height:auto;border:1px solid #bbb;background:#fff"><br>'
            "<small>{} ({}×{} mm) · {}</small>",
            reverse("label-render", kwargs={"code": code, "fmt": "png"}),
            code,
            round(template.width_mm * PREVIEW_PX_PER_MM),
            template.title,
            f"{template.width_mm:g}",
            f"{template.height_mm:g}",
            links,
        )


print_labels.required_perm = PRINT_PERMISSION  # type: ignore[attr-defined]
