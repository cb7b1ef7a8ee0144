from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from biobank.identifiers import Kind
from biobank.models import (
    Aspirate,
    Condition,
    Container,
    ContainerType,
    CustodyEvent,
    FreezingRun,
    IdSequence,
    Passage,
    Processing,
    ProductUnit,
    QcResult,
    QcTest,
)
from biobank.models.storage import open_placement_q
from biobank.scanning.clean import ScanError, resolve_scan_text
from biobank.selectors import events_for
from biobank.selectors_storage import location_of, units_with_location
from biobank.services import aspirates as aspirate_services
from biobank.services import processing as processing_services
from biobank.services import storage as storage_services
from biobank.services.lifecycle import TRANSITIONS
from biobank.services.release import qc_release_problems
from biobank.services.units import (
    MAX_UNITS_PER_PROCESSING,
    UnitSpec,
    freezing_run_record,
    unit_transition,
    units_create,
)

from .printing import LabelPreviewMixin, print_labels
from .release import QC_RELEASE_STEP
from .steps import (
    ConfirmForm,
    OptionalReasonForm,
    ReadOnlyAdminMixin,
    ReasonForm,
    Step,
    make_action,
)
from .trial import BaseAdmin
from .widgets import events_table


class ReadOnlyItemAdmin(BaseAdmin):
    """Items change only through lifecycle actions; their pages show their custody log."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Chain of custody")
    def custody_log(self, obj: Any) -> str:
        kind = {Aspirate: "aspirate", Processing: "processing", ProductUnit: "unit"}[type(obj)]
        return events_table(events_for(**{kind: obj}))


# --- aspirates -----------------------------------------------------------------------------


class CollectForm(forms.ModelForm):
    class Meta:
        model = Aspirate
        fields = ["visit", "volume_ml", "anticoagulant", "collected_at", "collected_by"]

    def clean_visit(self) -> Any:
        visit = self.cleaned_data["visit"]
        if Aspirate.objects.filter(visit=visit).exists():
            raise forms.ValidationError(f"Visit {visit} already has an aspirate.")
        if not visit.visit_type.has_aspiration:
            raise forms.ValidationError(f"{visit.visit_type} has no bone-marrow aspiration.")
        return visit


class ReceiveForm(ConfirmForm):
    decision = forms.ChoiceField(
        choices=[(d, d.capitalize()) for d in ("accept", "quarantine", "reject")]
    )
    temperature_c = forms.DecimalField(
        label="Transport temperature (°C)", max_digits=4, decimal_places=1, required=False
    )
    condition = forms.ChoiceField(choices=Condition.choices, initial=Condition.INTACT)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="Required to quarantine or reject, or to accept a sample that is not intact.",
    )


ASPIRATE_STEPS = [
    Step(
        "receive",
        "Receive in lab",
        ReceiveForm,
        lambda item, user, d: aspirate_services.aspirate_receive(
            aspirate=item,
            decision=d["decision"],
            actor=user,
            temperature_c=d["temperature_c"],
            condition=d["condition"],
            received_at=d["at"],
            reason=d["reason"],
        ),
    ),
    Step(
        "release_quarantine",
        "Release from quarantine",
        ReasonForm,
        lambda item, user, d: aspirate_services.aspirate_release_quarantine(
            aspirate=item, actor=user, reason=d["reason"]
        ),
    ),
    Step(
        "reject",
        "Reject",
        ReasonForm,
        lambda item, user, d: aspirate_services.aspirate_reject(
            aspirate=item, actor=user, reason=d["reason"]
        ),
    ),
    Step(
        "start_processing",
        "Start processing",
        ConfirmForm,
        lambda item, user, d: processing_services.processing_start(
            aspirate=item, actor=user, started_at=d["at"]
        ),
    ),
    Step(
        "discard",
        "Discard",
        ReasonForm,
        lambda item, user, d: aspirate_services.aspirate_discard(
            aspirate=item, actor=user, reason=d["reason"]
        ),
    ),
]


@admin.register(Aspirate)
class AspirateAdmin(LabelPreviewMixin, ReadOnlyItemAdmin):
    list_display = ["code", "participant", "visit", "site", "status", "collected_at", "volume_ml"]
    list_filter = [
        "status",
        "site",
        "anticoagulant",
        "condition",
        "visit__visit_type",
        ("collected_at", admin.DateFieldListFilter),
    ]
    show_full_result_count = False
    search_fields = ["code", "participant__code", "participant__pseudonym"]
    list_select_related = ["participant", "visit__visit_type", "visit__participant", "site"]
    actions = [*(make_action(s) for s in ASPIRATE_STEPS), print_labels]
    fields = [
        "code",
        "label_preview",
        "participant",
        "visit",
        "site",
        "status",
        "status_reason",
        "volume_ml",
        "anticoagulant",
        "collected_at",
        "collected_by",
        "recorded_by",
        "received_at",
        "received_by",
        "transport_temperature_c",
        "condition",
        "custody_log",
    ]
    readonly_fields = fields

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs.update(form=CollectForm, fields=CollectForm.Meta.fields)
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return list(CollectForm.Meta.fields)
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The add form needs change rights on an unsaved object; saved ones stay read-only.
        return obj is None and super(ReadOnlyItemAdmin, self).has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Aspirate, form: Any, change: bool) -> None:
        d = form.cleaned_data
        created = aspirate_services.aspirate_collect(
            visit=d["visit"],
            volume_ml=d["volume_ml"],
            anticoagulant=d["anticoagulant"],
            collected_at=d["collected_at"],
            collected_by=d["collected_by"],
            actor=request.user,
        )
        obj.__dict__.update(created.__dict__)


# --- processing ----------------------------------------------------------------------------


class HarvestForm(ConfirmForm):
    cell_count = forms.IntegerField(min_value=1, label="Harvested cells")
    viability_pct = forms.DecimalField(min_value=0, max_value=100, decimal_places=1)
    passage = forms.IntegerField(min_value=0, max_value=30)


class PassageForm(ConfirmForm):
    number = forms.IntegerField(min_value=0, max_value=30, label="Passage (P…)")
    cell_count = forms.IntegerField(min_value=1)
    viability_pct = forms.DecimalField(min_value=0, max_value=100, decimal_places=1)


class QcForm(ConfirmForm):
    test = forms.ChoiceField(choices=QcTest.choices)
    result = forms.CharField(max_length=200, help_text="As reported, e.g. negative, 0.2 EU/mL")
    value = forms.DecimalField(required=False, max_digits=10, decimal_places=3)
    passed = forms.BooleanField(required=False, help_text="Meets the specification")


class FillForm(ConfirmForm):
    container_type = forms.ChoiceField(choices=ContainerType.choices)
    count = forms.IntegerField(min_value=1, max_value=MAX_UNITS_PER_PROCESSING, label="Units")
    cell_number = forms.IntegerField(min_value=1, label="Cells per unit")
    volume_ml = forms.DecimalField(
        min_value=0, max_value=1000, decimal_places=2, label="mL per unit"
    )
    cryoprotectant = forms.CharField(max_length=100, initial="10 % DMSO")


class FreezeForm(forms.Form):
    started_at = forms.DateTimeField()
    finished_at = forms.DateTimeField()
    rate_c_per_min = forms.DecimalField(max_digits=4, decimal_places=2, initial=-1)
    program = forms.CharField(max_length=100, initial="-1 °C/min to -80 °C, then LN2")


def _fill(item: Processing, user: Any, d: dict[str, Any]) -> Any:
    spec = UnitSpec(
        container_type=d["container_type"],
        cell_number=d["cell_number"],
        volume_ml=d["volume_ml"],
        cryoprotectant=d["cryoprotectant"],
    )
    return units_create(processing=item, specs=[spec] * d["count"], actor=user, created_at=d["at"])


def _freeze(item: Processing, user: Any, d: dict[str, Any]) -> Any:
    return freezing_run_record(
        processing=item,
        units=list(item.units.filter(status="created")),
        started_at=d["started_at"],
        finished_at=d["finished_at"],
        rate_c_per_min=d["rate_c_per_min"],
        program=d["program"],
        actor=user,
    )


PROCESSING_STEPS = [
    Step(
        "passage",
        "Record passage",
        PassageForm,
        lambda item, user, d: processing_services.passage_record(
            processing=item,
            number=d["number"],
            cell_count=d["cell_count"],
            viability_pct=d["viability_pct"],
            actor=user,
            passaged_at=d["at"],
        ),
    ),
    Step(
        "qc_result",
        "Record QC result",
        QcForm,
        lambda item, user, d: processing_services.qc_result_record(
            processing=item,
            test=d["test"],
            result=d["result"],
            value=d["value"],
            passed=d["passed"],
            actor=user,
            tested_at=d["at"],
        ),
    ),
    Step("fill_units", "Fill units", FillForm, _fill, permission="biobank.add_productunit"),
    Step(
        "freeze", "Record freezing run", FreezeForm, _freeze, permission="biobank.add_freezingrun"
    ),
    Step(
        "harvest",
        "Harvest",
        HarvestForm,
        lambda item, user, d: processing_services.processing_harvest(
            processing=item,
            cell_count=d["cell_count"],
            viability_pct=d["viability_pct"],
            passage=d["passage"],
            actor=user,
            harvested_at=d["at"],
        ),
    ),
    Step(
        "fail",
        "Mark failed",
        ReasonForm,
        lambda item, user, d: processing_services.processing_fail(
            processing=item, actor=user, reason=d["reason"]
        ),
    ),
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
    actions = [make_action(s) for s in [*PROCESSING_STEPS, QC_RELEASE_STEP]]
    inlines = [PassageInline, QcResultInline]
    fields = [
        "code",
        "aspirate",
        "participant",
        "status",
        "status_reason",
        "started_at",
        "started_by",
        "harvested_at",
        "harvest_passage",
        "harvest_cell_count",
        "harvest_viability_pct",
        "qc_release_display",
        "custody_log",
    ]
    readonly_fields = fields

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


def _unit_step(action: str, label: str) -> Step:
    form = ReasonForm if TRANSITIONS["unit"][action].needs_reason else OptionalReasonForm
    return Step(
        action,
        label,
        form,
        lambda item, user, d: unit_transition(
            unit=item, action=action, actor=user, reason=d.get("reason", ""), at=d["at"]
        ),
    )


class MoveForm(ConfirmForm):
    container = forms.CharField(
        label="Box or container barcode", max_length=80, help_text="Scan the box label (BX…/CT…)"
    )
    position = forms.CharField(max_length=8, required=False, help_text="Empty: next free")
    reason = forms.CharField(required=False)

    def clean_container(self) -> Container:
        raw = self.cleaned_data["container"]
        try:
            code = resolve_scan_text(raw).value
        except ScanError as exc:
            raise forms.ValidationError(str(exc)) from exc
        container = Container.objects.select_related("box_type", "storage_unit").filter(code=code)
        if not container.exists():
            raise forms.ValidationError(f"No box or container {code} is registered.")
        return container.get()


UNIT_STEPS = [
    Step(
        "move",
        "Move",
        MoveForm,
        lambda item, user, d: storage_services.unit_move(
            unit=item,
            container=d["container"],
            position=d["position"] or None,
            reason=d["reason"],
            actor=user,
            at=d["at"],
        ),
    ),
    Step(
        "check_out",
        "Check out (keep slot)",
        OptionalReasonForm,
        lambda item, user, d: storage_services.unit_check_out(
            unit=item, actor=user, reason=d["reason"], at=d["at"]
        ),
    ),
    Step(
        "check_in",
        "Check in",
        ConfirmForm,
        lambda item, user, d: storage_services.unit_check_in(unit=item, actor=user, at=d["at"]),
    ),
    Step(
        "unstore",
        "Remove from storage",
        ReasonForm,
        lambda item, user, d: storage_services.unit_remove(
            unit=item, actor=user, reason=d["reason"], at=d["at"]
        ),
    ),
    _unit_step("quarantine", "Quarantine"),
    _unit_step("lift_quarantine", "Lift quarantine"),
    _unit_step("release", "Release"),
    _unit_step("return_to_stock", "Return to stock"),
    _unit_step("thaw", "Thaw"),
    _unit_step("administer", "Record administration"),
    _unit_step("discard", "Discard"),
]


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
            scan = resolve_scan_text(search_term)
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
            inside = queryset.filter(
                open_placement_q("placements__"), placements__container__code=scan.value
            )
            return inside, False
        return super().get_search_results(request, queryset, search_term)

    list_select_related = ["participant", "aspirate"]
    actions = [*(make_action(s) for s in UNIT_STEPS), print_labels]
    fields = [
        "code",
        "label_preview",
        "participant",
        "aspirate",
        "processing",
        "container_type",
        "status",
        "status_reason",
        "cell_number",
        "volume_ml",
        "cryoprotectant",
        "freezing_run",
        "created_at",
        "location",
        "location_history",
        "custody_log",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> Any:
        return units_with_location(super().get_queryset(request))

    @admin.display(description="Location", ordering="location_path")
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
                    f"{p.placed_at:%Y-%m-%d %H:%M}",
                    p.container.path,
                    p.position,
                    p.container.code,
                    f"{p.ended_at:%Y-%m-%d %H:%M}" if p.ended_at else "now",
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
        return format_html("{} × 10⁶", f"{obj.cell_number / 1e6:,.1f}")

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
        actions = {a for table in TRANSITIONS.values() for a in table}
        actions |= {"collect", "start", "create", "prepare", "qc_release", "emergency_unblinding"}
        return [(a, a.replace("_", " ")) for a in sorted(actions)]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(action=self.value()) if self.value() else queryset


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
    list_filter = [ItemKindFilter, ActionFilter, "site", ("at", admin.DateFieldListFilter)]
    show_full_result_count = False
    search_fields = ["item_code", "participant__code", "participant__pseudonym", "reason"]
    list_select_related = ["actor", "site"]
    readonly_fields = [f.name for f in CustodyEvent._meta.fields]


@admin.register(IdSequence)
class IdSequenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "last_number"]
