from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from biobank.identifiers import Kind
from biobank.models import (
    DEFAULT_CRYOPROTECTANT,
    Aspirate,
    ContainerType,
    CustodyEvent,
    FreezingRun,
    IdSequence,
    Passage,
    Processing,
    ProductUnit,
    QcResult,
    action_names,
)
from biobank.scan_input import ScanError, parse_scan
from biobank.selectors.participants import events_seen
from biobank.selectors.storage import (
    location_of,
    units_in,
    units_locate,
    units_sortable_by_location,
)
from biobank.services.actions import action_get, action_run
from biobank.services.lifecycle import EVENT_STEPS
from biobank.services.qc_release import qc_release_problems
from biobank.services.units import (
    MAX_UNITS_PER_PROCESSING,
)
from biobank.terms import local_minute, millions
from biobank.visibility import kind_of_model

from .printing import LabelPreviewMixin, print_labels
from .steps import (
    ConfirmForm,
    ReadOnlyAdminMixin,
    ServiceForm,
    ServiceFormAdminMixin,
    catalogue_actions,
    catalogue_step,
    make_action,
)
from .trial import BaseAdmin
from .widgets import events_table, expiry_text


class ReadOnlyItemAdmin(BaseAdmin):
    """Items change only through lifecycle actions; their pages show their custody log."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(self.fields or ())  # all an item's page shows is read-only

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # A display method gets only the object: it carries who is looking (per request).
            obj.viewer = request.user
        return obj

    @admin.display(description="Chain of custody")
    def custody_log(self, obj: Any) -> str:
        kind = kind_of_model(obj)  # an event links to its item by a field named as its kind
        # No viewer (never expected): shown as to an anonymous user, i.e. nothing.
        return events_table(events_seen(user=getattr(obj, "viewer", None), **{kind: obj}))


# --- aspirates -----------------------------------------------------------------------------


class CollectForm(ServiceForm):
    class Meta:
        model = Aspirate
        fields = ["visit", "volume_ml", "anticoagulant", "collected_at", "collected_by"]

    def create(self, data: dict[str, Any]) -> Aspirate:
        visit = data.pop("visit")
        return action_run(
            action=action_get("aspirate", "collect"),
            item=None,
            actor=self.actor,
            data={**data, "participant": visit.participant.code, "visit": visit.visit_type.code},
        )


@admin.register(Aspirate)
class AspirateAdmin(ServiceFormAdminMixin, LabelPreviewMixin, ReadOnlyItemAdmin):
    list_display = ["code", "participant", "visit", "site", "status", "collected_at", "volume_ml"]
    list_filter = [
        "status",
        "site",
        "anticoagulant",
        "condition",
        "visit__visit_type",
        "collected_at",
    ]
    show_full_result_count = False
    search_fields = ["code", "participant__code", "participant__pseudonym"]
    list_select_related = ["participant", "visit__visit_type", "visit__participant", "site"]
    actions = [*catalogue_actions("aspirate"), print_labels]
    fields = ["code", "label_preview", *Aspirate.RECORD_FIELDS, "recorded_by", "custody_log"]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is not None:
            return super().get_form(request, obj, **kwargs)
        kwargs.update(form=CollectForm, fields=CollectForm.Meta.fields)
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return list(CollectForm.Meta.fields)
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else super().get_readonly_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The add form needs change rights on an unsaved object; saved ones stay read-only.
        return obj is None and super(ReadOnlyItemAdmin, self).has_change_permission(request, obj)


# --- processing ----------------------------------------------------------------------------


class FillForm(ConfirmForm):
    container_type = forms.ChoiceField(choices=ContainerType.choices)
    count = forms.IntegerField(min_value=1, max_value=MAX_UNITS_PER_PROCESSING, label="Units")
    cell_number = forms.IntegerField(min_value=1, label="Cells per unit")
    volume_ml = forms.DecimalField(
        min_value=0, max_value=1000, decimal_places=2, label="mL per unit"
    )
    cryoprotectant = forms.CharField(max_length=100, initial=DEFAULT_CRYOPROTECTANT)


def _fill_input(item: Processing, d: dict[str, Any]) -> dict[str, Any]:
    """The admin fills N identical units; the step takes one spec per unit."""
    spec = {k: d[k] for k in ("container_type", "cell_number", "volume_ml", "cryoprotectant")}
    return {"units": [spec] * d["count"], "created_at": d["at"]}


PROCESSING_ACTIONS = [
    *catalogue_actions("processing", "passage", "qc_result"),
    make_action(catalogue_step("processing", "fill_units", form=FillForm, to_input=_fill_input)),
    *catalogue_actions("processing", "freezing_run", "harvest", "fail", "qc_release"),
]


class PassageInline(admin.TabularInline):
    model = Passage
    extra = 0
    can_delete = False
    fields = ["number", "passaged_at", "cell_count", "viability_pct", "recorded_by"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class QcResultInline(admin.TabularInline):
    model = QcResult
    extra = 0
    can_delete = False
    fields = ["test", "result", "value", "passed", "tested_at", "recorded_by"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Passage)
class PassageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["processing", "number", "passaged_at", "cell_count", "viability_pct"]
    search_fields = ["processing__code"]
    list_select_related = ["processing"]  # recorded from the processing ("Record passage")


@admin.register(QcResult)
class QcResultAdmin(PassageAdmin):
    list_display = ["processing", "test", "result", "value", "passed", "tested_at"]
    list_filter = ["test", "passed"]


@admin.register(Processing)
class ProcessingAdmin(ReadOnlyItemAdmin):
    list_display = ["code", "aspirate", "participant", "status", "started_at", "harvest_cell_count"]
    list_filter = ["status"]
    search_fields = ["code", "aspirate__code", "participant__code", "participant__pseudonym"]
    list_select_related = ["aspirate", "participant"]
    actions = PROCESSING_ACTIONS
    inlines = [PassageInline, QcResultInline]
    fields = [
        "code",
        *Processing.RECORD_FIELDS,
        "fresh_expiry",
        "started_by",
        "qc_release_display",
        "custody_log",
    ]

    @admin.display(description="Fresh dosing until")
    def fresh_expiry(self, obj: Processing) -> str:
        expires = obj.fresh_expires_at()
        return expiry_text(expires) if expires else "– (not harvested)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started from an aspirate ("Start processing")

    @admin.display(description="QC release")
    def qc_release_display(self, obj: Processing) -> str:
        from biobank.models import QcRelease

        release = QcRelease.objects.filter(processing=obj).select_related("signature").first()
        if release is None:
            problems = qc_release_problems(obj)
            return "Not released" + (f": {'; '.join(problems)}" if problems else ": ready to sign")
        return str(release.signature)


@admin.register(FreezingRun)
class FreezingRunAdmin(ReadOnlyAdminMixin, BaseAdmin):
    list_display = ["code", "processing", "program", "rate_c_per_min", "started_at", "finished_at"]
    search_fields = ["code", "processing__code"]
    list_select_related = ["processing"]
    readonly_fields = [
        "code",
        "processing",
        "operator",
        "started_at",
        "finished_at",
        "rate_c_per_min",
        "program",
    ]


# --- units ---------------------------------------------------------------------------------


class LocatedChangeList(ChangeList):
    """The unit list, each row with its place, read for the rows shown (one query). Counting
    the list never joins the placements: at 1,000,000 units that join was most of the time."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = units_locate(list(self.result_list))


@admin.register(ProductUnit)
class ProductUnitAdmin(LabelPreviewMixin, ReadOnlyItemAdmin):
    list_display = [
        "code",
        "participant",
        "aspirate",
        "container_type",
        "status",
        "cell_number_display",
        "volume_ml",
        "expiry",
        "location",
    ]
    list_filter = ["status", "container_type", "participant__site"]
    search_fields = [
        "code",
        "aspirate__code",
        "processing__code",
        "participant__code",
        "participant__pseudonym",
    ]
    show_full_result_count = False

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        """A scanned or typed ID is an exact, indexed match (a box lists what is in it)."""
        try:
            scan = parse_scan(search_term)
        except ScanError:
            return super().get_search_results(request, queryset, search_term)
        field = {
            Kind.UNIT: "code",
            Kind.ASPIRATE: "aspirate__code",
            Kind.PROCESSING: "processing__code",
            Kind.PARTICIPANT: "participant__code",
        }.get(scan.parsed.kind)
        if field:
            return queryset.filter(**{field: scan.value}), False
        if scan.parsed.kind in (Kind.BOX, Kind.CONTAINER):
            return units_in(queryset, container_code=scan.value), False
        return super().get_search_results(request, queryset, search_term)

    list_select_related = ["participant__study", "aspirate"]
    actions = [*catalogue_actions("unit"), print_labels]
    fields = [
        "code",
        "label_preview",
        *ProductUnit.RECORD_FIELDS,
        "expiry",
        "location",
        "location_history",
        "custody_log",
    ]

    def get_queryset(self, request: HttpRequest) -> Any:
        return units_sortable_by_location(super().get_queryset(request))

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LocatedChangeList

    # Expiry is created_at plus the study's shelf life, so sorting by created_at sorts by it.
    @admin.display(description="Expires", ordering="created_at")
    def expiry(self, obj: ProductUnit) -> str:
        return expiry_text(obj.expires_at())

    @admin.display(description="Location", ordering="location_sort")
    def location(self, obj: ProductUnit) -> str:
        return location_of(obj) or "–"

    @admin.display(description="Location history")
    def location_history(self, obj: ProductUnit) -> str:
        stays = obj.placements.select_related("container", "placed_by", "ended_by").order_by(
            "placed_at", "id"
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    local_minute(p.placed_at),
                    p.container.path,
                    p.position,
                    p.container.code,
                    local_minute(p.ended_at) if p.ended_at else "now",
                    p.end_reason,
                )
                for p in stays
            ),
        )
        if not rows:
            return "Never stored."
        return format_html(
            "<table><thead><tr><th>From</th><th>Where</th><th>Box</th><th>Until</th>"
            "<th>Why it ended</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Cells", ordering="cell_number")
    def cell_number_display(self, obj: ProductUnit) -> str:
        return millions(obj.cell_number)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # filled from a harvested processing


# --- logs ----------------------------------------------------------------------------------


class ItemKindFilter(admin.SimpleListFilter):
    title = "item kind"
    parameter_name = "item_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(k, k) for k in ("participant", "aspirate", "processing", "unit", "dose")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(item_kind=self.value()) if self.value() else queryset


class ActionFilter(ItemKindFilter):
    title = "step"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(a, a.replace("_", " ")) for a in sorted(EVENT_STEPS)]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(action__in=action_names(self.value())) if self.value() else queryset


@admin.register(CustodyEvent)
class CustodyEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "at",
        "item_code",
        "item_kind",
        "action",
        "from_status",
        "to_status",
        "actor",
        "site",
        "reason",
    ]
    # Fixed-value filters: Django's default would scan the whole log for distinct values.
    list_filter = [ItemKindFilter, ActionFilter, "site", "at"]
    show_full_result_count = False
    search_fields = ["item_code", "participant__code", "participant__pseudonym", "reason"]
    list_select_related = ["actor", "site"]
    readonly_fields = [f.name for f in CustodyEvent._meta.fields]


@admin.register(IdSequence)
class IdSequenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "last_number"]
