from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from biobank.models import Dose, IdentityCheck, Signature, Unblinding
from biobank.services import release as release_services

from .steps import (
    ConfirmForm,
    NoDeleteAdminMixin,
    ReadOnlyAdminMixin,
    ReasonForm,
    Step,
    make_action,
)


class SignForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        label="Your password",
        help_text="Re-enter your password to sign. Your name, the time and the meaning of "
        "the signature are stored with the record.",
    )


class QcSignForm(SignForm):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ReadyForm(ConfirmForm):
    expires_at = forms.DateTimeField(help_text="Expiry of the thawed/prepared dose")
    post_thaw_cell_count = forms.IntegerField(min_value=1, required=False, help_text="MSC doses")
    post_thaw_viability_pct = forms.DecimalField(
        min_value=0, max_value=100, decimal_places=1, required=False, help_text="MSC doses"
    )


class UnblindForm(SignForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Medical reason")


QC_RELEASE_STEP = Step(
    "qc_release",
    "Sign QC release",
    QcSignForm,
    lambda item, user, d: release_services.processing_qc_release(
        processing=item, actor=user, password=d["password"], comment=d["comment"]
    ),
    permission="biobank.approve_qc_release",
)

PREPARE_DOSE_STEP = Step(
    "prepare_dose",
    "Prepare dose",
    ConfirmForm,
    lambda item, user, d: release_services.dose_prepare(visit=item, actor=user),
    permission="biobank.prepare_dose",
)


def _unblind(item: Any, user: Any, d: dict[str, Any]) -> Any:
    result = release_services.participant_unblind(
        participant=item, actor=user, password=d["password"], reason=d["reason"]
    )
    schedule = "; ".join(f"{visit}: {treatment}" for visit, treatment in result.schedule)
    # Shown once, to the person who signed; the unblinding itself is on record.
    messages.warning(
        d["_request"], f"UNBLINDED {item.pseudonym}: {result.arm}. {schedule}. Recorded and signed."
    )
    return result


UNBLIND_STEP = Step(
    "unblind", "Emergency unblinding", UnblindForm, _unblind, permission="biobank.emergency_unblind"
)

DOSE_STEPS = [
    Step(
        "release",
        "Sign dose release",
        SignForm,
        lambda item, user, d: release_services.dose_release(
            dose=item, actor=user, password=d["password"]
        ),
        permission="biobank.release_dose",
    ),
    Step(
        "make_ready",
        "Thaw / fill syringe",
        ReadyForm,
        lambda item, user, d: release_services.dose_make_ready(
            dose=item,
            actor=user,
            ready_at=d["at"],
            expires_at=d["expires_at"],
            post_thaw_cell_count=d["post_thaw_cell_count"],
            post_thaw_viability_pct=d["post_thaw_viability_pct"],
        ),
        permission="biobank.prepare_dose",
    ),
    Step(
        "cancel",
        "Cancel dose",
        ReasonForm,
        lambda item, user, d: release_services.dose_cancel(
            dose=item, actor=user, reason=d["reason"]
        ),
        permission="biobank.prepare_dose",
    ),
]

DOSE_FIELDS = [
    "code",
    "participant",
    "visit",
    "treatment",
    "unit",
    "post_thaw_cell_count",
    "post_thaw_viability_pct",
    "status",
    "status_reason",
    "route",
    "volume_ml",
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
        "unit",
    ]
    list_filter = ["status", "visit__visit_type", "participant__site", "treatment"]
    search_fields = ["code", "participant__code", "participant__pseudonym", "unit__code"]
    list_select_related = ["participant", "visit__visit_type", "visit__participant", "unit"]
    actions = [make_action(s) for s in DOSE_STEPS]
    fields = DOSE_FIELDS
    readonly_fields = DOSE_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # doses are prepared from a visit ("Prepare dose")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Expiry")
    def expiry_state(self, obj: Dose) -> str:
        if obj.expires_at is None:
            return "–"
        if obj.status in ("administered", "cancelled"):
            return "–"
        if obj.expires_at < timezone.now():
            return format_html('<strong style="color:#b00">EXPIRED</strong>')
        return "valid"

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
                f"{c.checked_at:%Y-%m-%d %H:%M}",
                c.get_stage_display(),
                c.message,
                c.checked_by,
            )
            for c in checks
        ]
        return format_html("<ul>{}</ul>", format_html("".join(lines))) if lines else "none yet"


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
