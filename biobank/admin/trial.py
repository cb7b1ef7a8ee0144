from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from biobank.blinding import can_see_allocation
from biobank.models import Arm, ArmSchedule, Participant, Site, Study, Visit, VisitType
from biobank.selectors import participant_chain
from biobank.services.trial import participant_enroll

from .printing import LabelPreviewMixin, print_labels
from .release import PREPARE_DOSE_STEP, RECORD_WEIGHT_STEP, UNBLIND_STEP
from .steps import NoDeleteAdminMixin, concealed_lookup_allowed, make_action


class BaseAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    """History button on every page; never a delete."""


@admin.register(Study)
class StudyAdmin(BaseAdmin):
    list_display = ["code", "acronym", "sponsor"]
    search_fields = ["code", "acronym", "title"]


@admin.register(Site)
class SiteAdmin(BaseAdmin):
    list_display = ["code", "name", "city", "is_lab", "study"]
    list_filter = ["study", "is_lab"]
    search_fields = ["code", "name", "city"]


@admin.register(VisitType)
class VisitTypeAdmin(BaseAdmin):
    list_display = ["code", "name", "month", "order", "has_aspiration", "has_treatment", "study"]
    list_filter = ["study"]
    search_fields = ["code", "name"]


class AllocationOnlyAdmin(BaseAdmin):
    """Arms and the crossover schedule are allocation data: unblinded roles only."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_see_allocation(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_see_allocation(request.user) and super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_see_allocation(request.user) and super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return can_see_allocation(request.user) and super().has_add_permission(request)


@admin.register(Arm)
class ArmAdmin(AllocationOnlyAdmin):
    list_display = ["code", "name", "study"]
    list_filter = ["study"]
    search_fields = ["code", "name"]


@admin.register(ArmSchedule)
class ArmScheduleAdmin(AllocationOnlyAdmin):
    list_display = ["arm", "visit_type", "treatment"]
    list_filter = ["arm", "treatment"]


class ParticipantForm(forms.ModelForm):
    """Catches in the form what the enrol service would refuse, so the user sees a form error."""

    class Meta:
        model = Participant
        fields = ["pseudonym", "study", "site", "arm", "enrolled_on", "weight_kg"]

    def clean_pseudonym(self) -> str:
        pseudonym = self.cleaned_data["pseudonym"].strip().upper()
        clash = Participant.objects.filter(pseudonym=pseudonym).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"Participant {pseudonym} already exists.")
        return pseudonym

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        study, site, arm = data.get("study"), data.get("site"), data.get("arm")
        if study and site and site.study_id != study.pk:
            self.add_error("site", f"Site {site.code} is not a site of {study.code}.")
        if study and arm and arm.study_id != study.pk:
            self.add_error("arm", "The arm belongs to another study.")
        return data


@admin.register(Participant)
class ParticipantAdmin(LabelPreviewMixin, BaseAdmin):
    form = ParticipantForm
    list_display = ["pseudonym", "code", "site", "enrolled_on"]
    list_filter = ["site", "study"]
    search_fields = ["code", "pseudonym"]
    list_select_related = ["site", "arm"]
    change_form_template = "admin/biobank/participant/change_form.html"
    actions = [print_labels, make_action(UNBLIND_STEP)]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["pseudonym", "study", "site", "arm", "enrolled_on", "weight_kg"]
        if obj is not None:
            fields = ["code", "label_preview", *fields]
        if not can_see_allocation(request.user):
            fields.remove("arm")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        # Identity and allocation never change after enrolment.
        return ["code", "label_preview", "pseudonym", "study", "site", "arm", "enrolled_on"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return concealed_lookup_allowed(lookup, request, ("arm", "doses", "units")) and (
            super().lookup_allowed(lookup, value, request)
        )

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if can_see_allocation(request.user):
            return [*self.list_display, "arm"]
        return list(self.list_display)

    def get_list_filter(self, request: HttpRequest) -> list[str]:
        if can_see_allocation(request.user):
            return [*self.list_filter, "arm"]
        return list(self.list_filter)

    def save_model(self, request: HttpRequest, obj: Participant, form: Any, change: bool) -> None:
        if change:
            obj._change_reason = "edited in admin"
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        created = participant_enroll(
            study=data["study"],
            site=data["site"],
            pseudonym=data["pseudonym"],
            enrolled_on=data["enrolled_on"],
            arm=data.get("arm") if can_see_allocation(request.user) else None,
            weight_kg=data.get("weight_kg"),
            actor=request.user,
        )
        obj.__dict__.update(created.__dict__)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra_context = extra_context or {}
        participant = self.get_object(request, object_id)
        if participant is not None:
            extra_context["chain"] = participant_chain(participant=participant, user=request.user)
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Visit)
class VisitAdmin(BaseAdmin):
    actions = [make_action(RECORD_WEIGHT_STEP), make_action(PREPARE_DOSE_STEP)]
    list_display = ["participant", "visit_type", "scheduled_on", "done_on", "weight_kg", "plan"]
    list_filter = ["visit_type", "participant__site"]
    search_fields = ["participant__code", "participant__pseudonym"]
    list_select_related = ["participant__study", "visit_type"]
    readonly_fields = [
        "participant",
        "visit_type",
        "weight_kg",
        "weight_measured_at",
        "weight_recorded_by",
        "plan",
    ]
    date_hierarchy = "scheduled_on"

    @admin.display(description="Dose plan")
    def plan(self, obj: Visit) -> str:
        plan = obj.dose_plan()
        return plan.summary() if plan else "record the body weight first"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # visits are scheduled at enrolment
