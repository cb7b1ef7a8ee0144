"""Shipment admin: the list, the shipment page (manifest, trace chart, documents, steps) and
the pack and receive scan pages. Every change, the add form's too, is a step of the action
catalogue run by ``action_run``."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from biobank.errors import ServiceError
from biobank.labels import content_type_for
from biobank.models import Shipment
from biobank.selectors.shipments import (
    logger_files,
    manifest_pdf,
    manifest_rows,
    shipments_list,
    shipper_label,
    trace_chart,
)
from biobank.services.actions import action_get, action_permitted, action_run
from biobank.services.lifecycle import allowed_actions

from .steps import NoDeleteAdminMixin, ServiceForm, ServiceFormAdminMixin, step_form


class ShipmentForm(ServiceForm):
    class Meta:
        model = Shipment
        fields = [
            "label",
            "from_site",
            "to_site",
            "kind",
            "shipper_id",
            "logger_serial",
            "courier",
            "tracking_ref",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "label" in self.fields:
            self.fields["label"].required = False
            self.fields["label"].help_text = "Leave empty for 'FROM → TO'."

    def create(self, data: dict[str, Any]) -> Shipment:
        """The catalogue's step "create" of a shipment (sites as their codes)."""
        sites = {name: data[name].code for name in ("from_site", "to_site")}
        step = action_get("shipment", "create")
        return action_run(action=step, item=None, actor=self.actor, data={**data, **sites})


# name → the message the step's result gives; the step itself (form, permission, service) is
# the action catalogue's.
STEP_MESSAGES: dict[str, Any] = {
    "pack": lambda s, u, r: f"{r.item_code} packed.",
    "unpack": lambda s, u, r: f"{r.item_code} taken out.",
    "seal": lambda s, u, r: "Sealed and signed: the manifest is locked.",
    "ship": lambda s, u, r: "Shipped: every item is in transit.",
    "cancel": lambda s, u, r: "Cancelled.",
    "receive_scan": lambda s, u, r: r.message,
    "receive": lambda s, u, r: _receipt_message(s, u, r),
    "find": lambda s, u, r: "Found and received.",
    "write_off": lambda s, u, r: f"{r.item_code} written off.",
    "logger": lambda s, u, r: _logger_message(s, u, r),
}


def _receipt_message(shipment: Shipment, user: Any, receipt: Any) -> str:
    visible = {row["code"] for row in manifest_rows(shipment=shipment, user=user)}
    parts = [
        f"{name}: {', '.join(c for c in getattr(receipt, name) if c in visible) or '–'}"
        for name in ("received", "damaged", "missing", "extra", "quarantined")
    ]
    return "Receipt closed. " + "; ".join(parts) + "."


def _logger_message(shipment: Shipment, user: Any, result: Any) -> str:
    excursion = result.logger_file.excursion
    if not excursion:
        return f"{result.logger_file.readings} readings, all within range."
    visible = {row["code"] for row in manifest_rows(shipment=shipment, user=user)}
    held = [c for c in result.quarantined if c in visible]
    message = (
        f"{result.logger_file.readings} readings. EXCURSION: {excursion['text']}. "
        f"{len(held)} item(s) quarantined."
    )
    missed = [str(n) for n in result.not_quarantined if n.code in visible]
    if missed:
        message += (
            f" NOT QUARANTINED, {len(missed)} item(s) already past quarantine (QA to decide): "
            + ", ".join(missed)
            + "."
        )
    return message


@admin.register(Shipment)
class ShipmentAdmin(ServiceFormAdminMixin, NoDeleteAdminMixin, admin.ModelAdmin):
    form = ShipmentForm
    list_display = [
        "code",
        "label",
        "from_site",
        "to_site",
        "kind",
        "status",
        "shipped_at",
        "received_at",
        "missing",
    ]
    list_filter = ["status", "kind", "from_site", "to_site"]
    search_fields = ["code", "label", "shipper_id", "logger_serial", "tracking_ref"]
    change_form_template = "admin/biobank/shipment/change_form.html"

    def get_queryset(self, request: HttpRequest) -> Any:
        return shipments_list().select_related("seal_signature")

    @admin.display(description="Missing", ordering="missing_count")
    def missing(self, obj: Shipment) -> str:
        count = getattr(obj, "missing_count", 0)
        if not count:
            return "–"
        return format_html('<strong style="color:#b00">{} in transit</strong>', count)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return action_permitted(action_get("shipment", "create"), request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return [
            "code",
            *ShipmentForm.Meta.fields,
            "status",
            "status_reason",
            "seal_signature",
            "manifest_digest",
            "shipped_at",
            "received_at",
        ]

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/pack/", view(self.pack_view), name="biobank_shipment_pack"),
            path("<int:pk>/receive/", view(self.receive_view), name="biobank_shipment_receive"),
            path("<int:pk>/step/<str:name>/", view(self.step_view), name="biobank_shipment_step"),
            path(
                "<int:pk>/manifest.pdf", view(self.manifest_view), name="biobank_shipment_manifest"
            ),
            path("<int:pk>/label.<str:fmt>", view(self.label_view), name="biobank_shipment_label"),
            path("<int:pk>/chart.svg", view(self.chart_view), name="biobank_shipment_chart"),
            *super().get_urls(),
        ]

    def _shipment(self, request: HttpRequest, pk: int) -> Shipment:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(shipments_list().select_related("seal_signature"), pk=pk)

    def _context(self, request: HttpRequest, shipment: Shipment) -> dict[str, Any]:
        chart = trace_chart(shipment)
        user = request.user
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "shipment": shipment,
            "original": shipment,
            "rows": manifest_rows(shipment=shipment, user=user),
            "logger_files": logger_files(shipment=shipment),
            "chart_alt": chart[1] if chart else "",
            "can_pack": action_permitted(action_get("shipment", "pack"), user),
            "can_receive": action_permitted(action_get("shipment", "receive"), user),
            # The steps the transition table allows now: the pages offer these and no others.
            "steps": allowed_actions(shipment),
            "low_high": shipment.temperature_range,
            "forms": {
                "scan": step_form("shipment", "pack")(),
                "receive_scan": step_form("shipment", "receive_scan")(),
                "password": step_form("shipment", "seal")(),
                "reason": step_form("shipment", "cancel")(),
                "ship": step_form("shipment", "ship")(),
                "write_off": step_form("shipment", "write_off")(),
                "logger": step_form("shipment", "logger")(),
            },
        }

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        shipment = self.get_object(request, object_id)
        extra = extra_context or {}
        if shipment is not None:
            context = self._context(request, shipment)
            extra.update({k: v for k, v in context.items() if k not in ("opts", "original")})
        return super().change_view(request, object_id, form_url, extra)

    def pack_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._scan_page(request, pk, "pack")

    def receive_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._scan_page(request, pk, "receive")

    def _scan_page(self, request: HttpRequest, pk: int, mode: str) -> HttpResponse:
        """The scan page of a shipment, for the step ``mode`` (pack or receive)."""
        shipment = self._shipment(request, pk)
        if not action_permitted(action_get("shipment", mode), request.user):
            raise PermissionDenied
        context = self._context(request, shipment)
        context["title"] = f"{mode.capitalize()} {shipment.code}: scan items"
        context["mode"] = mode
        return TemplateResponse(request, "admin/biobank/shipment/scan.html", context)

    def step_view(self, request: HttpRequest, pk: int, name: str) -> HttpResponse:
        shipment = self._shipment(request, pk)
        if name not in STEP_MESSAGES or request.method != "POST":
            raise PermissionDenied
        step = action_get("shipment", name)
        if not action_permitted(step, request.user):
            raise PermissionDenied
        form = step_form("shipment", name)(request.POST, request.FILES)
        back = request.POST.get("next") or reverse(
            "admin:biobank_shipment_change", args=[shipment.pk]
        )
        if not back.startswith("/"):
            back = reverse("admin:biobank_shipment_change", args=[shipment.pk])
        if not form.is_valid():
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            messages.error(request, f"Nothing was changed. {problems}")
            return HttpResponseRedirect(back)
        try:
            result = action_run(
                action=step, item=shipment, actor=request.user, data=form.cleaned_data
            )
            messages.success(request, STEP_MESSAGES[name](shipment, request.user, result))
        except ServiceError as exc:
            messages.error(request, f"Refused: {exc.message}")
        return HttpResponseRedirect(back)

    def manifest_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        shipment = self._shipment(request, pk)
        response = HttpResponse(manifest_pdf(shipment, request.user), "application/pdf")
        response["Content-Disposition"] = f'inline; filename="{shipment.code}-manifest.pdf"'
        return response

    def label_view(self, request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
        shipment = self._shipment(request, pk)
        if fmt not in ("zpl", "pdf", "png", "svg"):
            raise PermissionDenied
        return HttpResponse(shipper_label(shipment, fmt), content_type_for(fmt))

    def chart_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        shipment = self._shipment(request, pk)
        chart = trace_chart(shipment)
        if chart is None:
            return HttpResponse(status=404)
        return HttpResponse(chart[0], "image/svg+xml")
