from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.models import (
    BoxType,
    Container,
    Placement,
    ProductUnit,
    StorageUnit,
    TemperatureReading,
)
from biobank.scan_input import ScanError, parse_scan
from biobank.selectors.storage import box_map, boxes_with_occupancy
from biobank.services.actions import action_get, action_permitted, action_run
from biobank.services.containers import (
    container_create,
    free_position_suggest,
    storage_unit_create,
    temperature_record,
)

from .printing import LabelPreviewMixin, print_labels
from .steps import (
    ReadOnlyAdminMixin,
    ServiceForm,
    ServiceFormAdminMixin,
)
from .trial import BaseAdmin


@admin.register(BoxType)
class BoxTypeAdmin(BaseAdmin):
    list_display = ["name", "rows", "columns", "row_labelling", "column_labelling", "accepts"]
    search_fields = ["name"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Geometry is fixed once boxes use it, or their positions would change meaning.
        if obj is not None and obj.boxes.exists():
            return ["rows", "columns", "row_labelling", "column_labelling"]
        return []


class StorageUnitForm(ServiceForm):
    class Meta:
        model = StorageUnit
        fields = ["site", "name", "kind", "min_temperature_c", "max_temperature_c", "active"]

    def create(self, data: dict[str, Any]) -> StorageUnit:
        keys = ["site", "name", "kind", "min_temperature_c", "max_temperature_c"]
        return storage_unit_create(actor=self.actor, **{k: data[k] for k in keys})


@admin.register(StorageUnit)
class StorageUnitAdmin(ServiceFormAdminMixin, LabelPreviewMixin, BaseAdmin):
    form = StorageUnitForm
    list_display = ["code", "name", "site", "kind", "temperature_range", "active"]
    list_filter = ["site", "kind", "active"]
    search_fields = ["code", "name"]
    list_select_related = ["site"]
    change_form_template = "admin/biobank/storageunit/change_form.html"
    actions = [print_labels]

    @admin.display(description="Set range")
    def temperature_range(self, obj: StorageUnit) -> str:
        return f"{obj.min_temperature_c} … {obj.max_temperature_c} °C"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        fixed = ["code", "label_preview", "site"]
        # Units were placed in it under this kind and range (≤ −150 °C): while it holds them,
        # a warmer range would leave them stored somewhere they may not be.
        if obj.holds_product():
            fixed += ["kind", "min_temperature_c", "max_temperature_c"]
        return fixed

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        unit = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if unit is not None:
            # 1,000 boxes: plain rows and one pass of escaping, not 1,000 model instances and
            # 8,000 template lookups (those were most of the page's time).
            boxes = list(
                boxes_with_occupancy(storage_unit=unit).values_list(
                    "pk", "code", "path", "box_type__name", "used", "capacity"
                )
            )
            changelist = reverse("admin:biobank_container_changelist")
            extra_context["boxes"] = boxes
            extra_context["box_rows"] = format_html_join(
                "\n",
                '<tr><td><a href="{}{}/change/">{}</a></td><td>{}</td><td>{}</td>'
                '<td>{} / {}</td><td><progress max="{}" value="{}"></progress></td></tr>',
                (
                    (changelist, pk, code, path, type_name, used, cap, cap, used)
                    for pk, code, path, type_name, used, cap in boxes
                ),
            )
            extra_context["box_totals"] = (
                sum(b[4] for b in boxes),
                sum(b[5] for b in boxes),
            )
            extra_context["readings"] = list(
                unit.temperature_readings.select_related("recorded_by")[:20]
            )
        return super().change_view(request, object_id, form_url, extra_context)


class ContainerForm(ServiceForm):
    class Meta:
        model = Container
        fields = ["name", "kind", "storage_unit", "parent", "box_type", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "storage_unit" in self.fields:
            self.fields["storage_unit"].required = False
            self.fields["storage_unit"].help_text = "Or leave empty and choose a parent."

    def create(self, data: dict[str, Any]) -> Container:
        keys = ["name", "kind", "storage_unit", "parent", "box_type"]
        return container_create(actor=self.actor, **{k: data.get(k) for k in keys})


class PlaceForm(forms.Form):
    unit = forms.CharField(
        label="Unit barcode",
        max_length=80,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"}),
        help_text="Scan the unit's label (UN…).",
    )
    position = forms.CharField(max_length=8, required=False, help_text="Empty: next free")


@admin.register(Container)
class ContainerAdmin(ServiceFormAdminMixin, LabelPreviewMixin, BaseAdmin):
    form = ContainerForm
    list_display = ["code", "name", "kind", "path", "box_type", "active"]
    list_filter = ["kind", "storage_unit", "box_type", "active"]
    search_fields = ["code", "name", "path"]
    list_select_related = ["box_type"]
    change_form_template = "admin/biobank/container/change_form.html"
    actions = [print_labels]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["name", "kind", "storage_unit", "parent", "box_type"]
        return ["code", "label_preview", "name", "kind", "path", "box_type", "active"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = ["code", "label_preview", "name", "kind", "path", "box_type"]
        return readonly if obj is not None else []

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/place/",
                self.admin_site.admin_view(self.place_view),
                name="biobank_container_place",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra_context = extra_context or {}
        container = self.get_object(request, object_id)
        if container is not None:
            if container.is_box:
                extra_context["map"] = box_map(box=container)
            else:
                extra_context["children"] = list(
                    container.children.select_related("box_type").order_by("name")
                )
            extra_context["loose_units"] = list(
                Placement.objects.open()
                .filter(container=container, row=None)
                .select_related("unit")
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        queryset = self.get_queryset(request).select_related("box_type", "storage_unit")
        try:
            return queryset.get(pk=int(object_id))
        except (ValueError, Container.DoesNotExist):
            return None

    def place_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Scan a unit into a position of this box (or the next free one)."""
        container = get_object_or_404(Container.objects.select_related("box_type"), pk=pk)
        store = action_get("unit", "store")
        if not self.has_view_permission(request, container) or not action_permitted(
            store, request.user
        ):
            return HttpResponse(status=403)
        back = reverse("admin:biobank_container_change", args=[container.pk])
        initial = {"position": request.GET.get("position", "")}
        form = PlaceForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            unit = self._unit_from_scan(form)
            if unit is not None:
                try:
                    placement = action_run(
                        action=store,
                        item=unit,
                        actor=request.user,
                        data={
                            "container": container.code,
                            "position": form.cleaned_data["position"],
                        },
                    )
                except ServiceError as exc:
                    form.add_error("position" if exc.field == "position" else "unit", exc.message)
                else:
                    self.message_user(
                        request,
                        f"{unit.code} stored at {container.code} {placement.position}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(back)
        suggestion = None
        if container.is_box:
            try:
                suggestion = free_position_suggest(box=container)
            except ServiceError:
                suggestion = None
        return TemplateResponse(
            request,
            "admin/biobank/container/place.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Store a unit in {container.name} ({container.code})",
                "container": container,
                "form": form,
                "suggestion": suggestion,
                "opts": self.model._meta,
                "back": back,
            },
        )

    @staticmethod
    def _unit_from_scan(form: PlaceForm) -> ProductUnit | None:
        try:
            scan = parse_scan(form.cleaned_data["unit"])
        except ScanError as exc:
            form.add_error("unit", str(exc))
            return None
        if scan.parsed.kind is not Kind.UNIT:
            form.add_error("unit", f"{scan.value} is a {scan.parsed.kind.label}, not a unit.")
            return None
        unit = ProductUnit.objects.filter(code=scan.value).first()
        if unit is None:
            form.add_error("unit", f"No unit {scan.value} is registered.")
        return unit


@admin.register(Placement)
class PlacementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Location history: every stay of every unit, open or ended."""

    list_display = [
        "unit",
        "container",
        "position",
        "placed_at",
        "placed_by",
        "checked_out_at",
        "ended_at",
        "end_reason",
    ]
    list_filter = ["container__storage_unit", "placed_at"]
    show_full_result_count = False
    search_fields = ["unit__code", "container__code", "container__path"]
    list_select_related = ["unit", "container", "placed_by"]


class TemperatureForm(ServiceForm):
    class Meta:
        model = TemperatureReading
        fields = ["storage_unit", "at", "temperature_c", "note"]

    def create(self, data: dict[str, Any]) -> TemperatureReading:
        keys = ["storage_unit", "at", "temperature_c", "note"]
        return temperature_record(actor=self.actor, **{k: data.get(k) for k in keys})


@admin.register(TemperatureReading)
class TemperatureReadingAdmin(ServiceFormAdminMixin, admin.ModelAdmin):
    form = TemperatureForm
    list_display = ["storage_unit", "at", "temperature_c", "range_flag", "source", "recorded_by"]
    list_filter = ["out_of_range", "storage_unit", "source"]
    search_fields = ["storage_unit__code", "storage_unit__name", "note"]
    list_select_related = ["storage_unit", "recorded_by"]
    date_hierarchy = "at"

    @admin.display(description="Range", ordering="out_of_range")
    def range_flag(self, obj: TemperatureReading) -> str:
        if obj.out_of_range:
            return mark_safe('<strong style="color:#b00">OUT OF RANGE</strong>')
        return "ok"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
