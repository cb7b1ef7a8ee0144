from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from biobank.models import Dose, DoseExpiry, IdentityCheck, Signature, Unblinding, millions
from biobank.terms import local_minute

from .steps import (
    NoDeleteAdminMixin,
    PlausibleDateTimeField,
    ReadOnlyAdminMixin,
    catalogue_actions,
    catalogue_step,
    make_action,
)


class ReadyForm(forms.Form):
    """Counts per unit typed one line each: the admin's way to give the step's ``units``."""

    ready_at = PlausibleDateTimeField(
        required=False, help_text="Leave empty for now. Format: YYYY-MM-DD HH:MM"
    )
    post_thaw_cell_count = forms.IntegerField(
        min_value=1, required=False, help_text="MSC from one unit or a fresh product"
    )
    post_thaw_viability_pct = forms.DecimalField(
        min_value=0, max_value=100, decimal_places=1, required=False, help_text="MSC doses"
    )
    unit_counts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Counts per unit",
        help_text="MSC from several units: one line per unit, 'UNIT-ID count viability', "
        "e.g. 'UN0000012K 30000000 88.5'",
    )
    saline_lot = forms.CharField(max_length=40, required=False, help_text="Placebo doses")

    def clean_unit_counts(self) -> list[dict[str, Any]]:
        counts = []
        for number, line in enumerate(self.cleaned_data.get("unit_counts", "").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                counts.append(
                    {
                        "unit": parts[0],
                        "post_thaw_cell_count": int(parts[1]),
                        "post_thaw_viability_pct": Decimal(parts[2]),
                    }
                )
            except (IndexError, ValueError, ArithmeticError) as exc:
                raise forms.ValidationError(
                    f"Line {number}: write 'UNIT-ID count viability'."
                ) from exc
        return counts


def _ready_input(item: Dose, d: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in d.items() if k != "unit_counts"}, "units": d["unit_counts"]}


def _planned(request: HttpRequest, item: Any, dose: Dose) -> None:
    messages.info(request, f"{dose.code}: {dose.plan_display()}.")


def _visit_of(item: Any, d: dict[str, Any]) -> dict[str, Any]:
    """Prepared from a visit in the admin; the step names the participant and the visit."""
    return {"participant": item.participant.code, "visit": item.visit_type.code}


def _unblinded(request: HttpRequest, item: Any, result: Any) -> None:
    schedule = "; ".join(f"{visit}: {treatment}" for visit, treatment in result.schedule)
    # Shown once, to the person who signed; the unblinding itself is on record.
    messages.warning(
        request, f"UNBLINDED {item.pseudonym}: {result.arm}. {schedule}. Recorded and signed."
    )


PREPARE_DOSE = make_action(
    catalogue_step("dose", "prepare", form=forms.Form, to_input=_visit_of, after=_planned)
)
RECORD_WEIGHT = make_action(catalogue_step("visit", "record_weight"))
UNBLIND = make_action(catalogue_step("participant", "unblind", after=_unblinded))

DOSE_ACTIONS = [
    *catalogue_actions("dose", "release", "deviation"),
    make_action(catalogue_step("dose", "make_ready", form=ReadyForm, to_input=_ready_input)),
    *catalogue_actions("dose", "cancel"),
]

DOSE_FIELDS = [
    "code",
    "participant",
    "visit",
    "treatment",
    "units_display",
    "processing",
    "post_thaw_cell_count",
    "post_thaw_viability_pct",
    "viable_cells_display",
    "saline_lot",
    "deviation_display",
    "status",
    "status_reason",
    "route",
    "volume_ml",
    "plan_display",
    "prepared_at",
    "release_signature_display",
    "ready_at",
    "expires_at",
    "expiry_state",
    "dispatched_at",
    "administered_at",
    "administered_by",
    "identity_checks_display",
]


@admin.register(Dose)
class DoseAdmin(NoDeleteAdminMixin, admin.ModelAdmin):
    """Doses look the same for MSC and saline to blinded users: the visibility policy drops
    treatment, unit and post-thaw figures from every field, column, filter and search."""

    list_display = [
        "code",
        "participant",
        "visit",
        "status",
        "expires_at",
        "expiry_state",
        "treatment",
        "units_display",
    ]
    list_filter = ["status", "visit__visit_type", "participant__site", "treatment"]
    search_fields = ["code", "participant__code", "participant__pseudonym", "units__code"]
    list_select_related = ["participant", "visit__visit_type", "visit__participant"]
    actions = DOSE_ACTIONS
    fields = DOSE_FIELDS
    readonly_fields = DOSE_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # doses are prepared from a visit ("Prepare dose")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Expiry")
    def expiry_state(self, obj: Dose) -> str:
        state = obj.expiry_state(timezone.now())
        if state == DoseExpiry.EXPIRED:
            return format_html('<strong style="color:#b00">{}</strong>', "EXPIRED")
        return "valid" if state == DoseExpiry.VALID else "–"

    @admin.display(description="Dose plan")
    def plan_display(self, obj: Dose) -> str:
        return obj.plan_display()

    @admin.display(description="Units (post-thaw count × viability)")
    def units_display(self, obj: Dose) -> str:
        links = obj.dose_units.select_related("unit")
        parts = [
            f"{link.unit.code}"
            + (
                f" ({millions(link.post_thaw_cell_count)} × {link.post_thaw_viability_pct} %)"
                if link.post_thaw_cell_count
                else ""
            )
            for link in links
        ]
        return ", ".join(parts) or "–"

    @admin.display(description="Viable cells given")
    def viable_cells_display(self, obj: Dose) -> str:
        return millions(obj.viable_cells) if obj.viable_cells is not None else "–"

    @admin.display(description="Documented deviation")
    def deviation_display(self, obj: Dose) -> str:
        if obj.deviation_signature_id is None:
            return "none"
        return f"{obj.deviation_reason} — {obj.deviation_signature}"

    @admin.display(description="Release signature")
    def release_signature_display(self, obj: Dose) -> str:
        return str(obj.release_signature) if obj.release_signature_id else "not signed"

    @admin.display(description="Identity checks")
    def identity_checks_display(self, obj: Dose) -> str:
        checks = obj.identity_checks.select_related("checked_by")
        lines = [
            format_html(
                '<li style="{}">{} {}: {} ({})</li>',
                "" if c.matched else "color:#b00;font-weight:bold",
                local_minute(c.checked_at),
                c.get_stage_display(),
                c.message,
                c.checked_by,
            )
            for c in checks
        ]
        return (
            format_html("<ul>{}</ul>", format_html_join("", "{}", ((li,) for li in lines)))
            if lines
            else "none yet"
        )


@admin.register(IdentityCheck)
class IdentityCheckAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["checked_at", "stage", "dose_scan", "participant_scan", "verdict", "checked_by"]
    list_filter = ["matched", "stage"]
    search_fields = ["dose_scan", "participant_scan", "expected_participant"]
    list_select_related = ["checked_by"]

    @admin.display(description="Result", ordering="matched")
    def verdict(self, obj: IdentityCheck) -> str:
        if obj.matched:
            return "match"
        return format_html('<strong style="color:#b00">{}</strong>', obj.message)


@admin.register(Signature)
class SignatureAdmin(IdentityCheckAdmin):
    list_display = ["signed_at", "signer_name", "meaning", "record"]
    list_filter = ["meaning"]
    search_fields = ["record", "signer_name"]
    list_select_related = []


@admin.register(Unblinding)
class UnblindingAdmin(IdentityCheckAdmin):
    """Every emergency unblinding, for the trial's administrators (view_unblinding)."""

    list_display = ["participant", "signature", "reason"]
    list_filter = []
    search_fields = ["participant__code", "participant__pseudonym", "reason"]
    list_select_related = ["participant", "signature"]
