from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from biobank.errors import ServiceError
from biobank.models import (
    Arm,
    ArmSchedule,
    Participant,
    RandomisationEntry,
    Site,
    Study,
    Visit,
    VisitType,
)
from biobank.selectors.participants import participant_chain
from biobank.services.randomisation import randomisation_in_use, randomisation_list_import
from biobank.services.trial import participant_enroll

from .doses import PREPARE_DOSE, RECORD_WEIGHT, UNBLIND
from .printing import LabelPreviewMixin, print_labels
from .steps import NoDeleteAdminMixin, ReadOnlyAdminMixin, ServiceForm, ServiceFormAdminMixin
from .widgets import events_table


class BaseAdmin(NoDeleteAdminMixin, SimpleHistoryAdmin):
    """History button on every page; never a delete."""


class TrialDefinitionAdmin(BaseAdmin):
    """The trial's definition: read-only once its study has a participant (a changed shelf life
    or dose limit would change what was already decided under the old one)."""

    LOCKED = (
        "The trial's definition is read-only: participants are enrolled and were treated under "
        "it. A protocol amendment is loaded from seeds/ under change control."
    )

    def study_of(self, obj: Any) -> Study:
        return obj.study

    def _locked(self, request: HttpRequest, study: Study | None) -> bool:
        """The study's lock (None: any study's), asked once per request: the admin's menus and
        a change page ask the permissions many times."""
        asked = vars(request).setdefault("_trial_definition_locked", {})
        key = study.pk if study is not None else None
        if key not in asked:
            locked = study.definition_locked() if study else Study.any_definition_locked()
            asked[key] = locked
        return asked[key]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not self._locked(request, None) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and self._locked(request, self.study_of(obj)):
            return False
        return super().has_change_permission(request, obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        obj = self.get_object(request, object_id)
        if obj is not None and self._locked(request, self.study_of(obj)):
            messages.info(request, self.LOCKED)
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Study)
class StudyAdmin(TrialDefinitionAdmin):
    list_display = ["code", "acronym", "sponsor"]
    search_fields = ["code", "acronym", "title"]

    def study_of(self, obj: Any) -> Study:
        return obj


@admin.register(Site)
class SiteAdmin(BaseAdmin):
    list_display = ["code", "name", "city", "is_lab", "study"]
    list_filter = ["study", "is_lab"]
    search_fields = ["code", "name", "city"]


@admin.register(VisitType)
class VisitTypeAdmin(TrialDefinitionAdmin):
    list_display = ["code", "name", "month", "order", "has_aspiration", "has_treatment", "study"]
    list_filter = ["study"]
    search_fields = ["code", "name"]


class AllocationOnlyAdmin(TrialDefinitionAdmin):
    """Arms and the crossover schedule are allocation data: the visibility policy shows them
    to unblinded roles only (they are not blinded-safe kinds)."""


@admin.register(Arm)
class ArmAdmin(AllocationOnlyAdmin):
    list_display = ["code", "name", "study"]
    list_filter = ["study"]
    search_fields = ["code", "name"]


@admin.register(ArmSchedule)
class ArmScheduleAdmin(AllocationOnlyAdmin):
    list_display = ["arm", "visit_type", "treatment"]
    list_filter = ["arm", "treatment"]

    def study_of(self, obj: Any) -> Study:
        return obj.arm.study


class RandomisationImportForm(forms.Form):
    study = forms.ModelChoiceField(Study.objects.all())
    file = forms.FileField(help_text="CSV: sequence, arm[, stratum][, block]")

    MAX_BYTES = 1_000_000

    def clean_file(self) -> str:
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {self.MAX_BYTES} bytes.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError("The file is not UTF-8 text.") from exc


@admin.register(RandomisationEntry)
class RandomisationEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The concealed list (unblinded roles only, by the visibility policy); import replaces it
    until an entry is used."""

    list_display = ["sequence", "stratum", "block", "arm", "participant", "used_at"]
    list_filter = ["study", "stratum", "arm", ("superseded_at", admin.EmptyFieldListFilter)]
    search_fields = ["participant__code", "participant__pseudonym"]
    list_select_related = ["arm", "participant"]
    change_list_template = "admin/biobank/randomisationentry/change_list.html"

    def get_urls(self) -> list[Any]:
        from django.urls import path

        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="biobank_randomisationentry_import",
            ),
            *super().get_urls(),
        ]

    def _may_import(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(
            "biobank.add_randomisationentry"
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra_context = {**(extra_context or {}), "can_import": self._may_import(request)}
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest) -> Any:
        from django.contrib import messages
        from django.core.exceptions import PermissionDenied
        from django.shortcuts import redirect
        from django.template.response import TemplateResponse

        if not self._may_import(request):
            raise PermissionDenied
        form = RandomisationImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                count = randomisation_list_import(
                    study=form.cleaned_data["study"],
                    text=form.cleaned_data["file"],
                    actor=request.user,
                )
            except ServiceError as exc:
                form.add_error("file", exc.message)
            else:
                self.message_user(request, f"Imported {count} entries.", messages.SUCCESS)
                return redirect("admin:biobank_randomisationentry_changelist")
        return TemplateResponse(
            request,
            "admin/biobank/randomisationentry/import.html",
            {
                **self.admin_site.each_context(request),
                "title": "Import randomisation list",
                "form": form,
                "opts": self.model._meta,
            },
        )


class ParticipantForm(ServiceForm):
    """Enrolment: the enrol service's refusals show as form errors."""

    class Meta:
        model = Participant
        fields = ["pseudonym", "study", "site", "arm", "enrolled_on", "weight_kg"]

    def create(self, data: dict[str, Any]) -> Participant:
        return participant_enroll(
            study=data["study"],
            site=data["site"],
            pseudonym=data["pseudonym"],
            enrolled_on=data["enrolled_on"],
            arm=data.get("arm"),
            weight_kg=data.get("weight_kg"),
            actor=self.actor,
        )


@admin.register(Participant)
class ParticipantAdmin(ServiceFormAdminMixin, LabelPreviewMixin, BaseAdmin):
    form = ParticipantForm
    list_display = ["pseudonym", "code", "site", "enrolled_on", "arm"]
    list_filter = ["site", "study", "arm"]
    search_fields = ["code", "pseudonym"]
    list_select_related = ["site", "arm"]
    change_form_template = "admin/biobank/participant/change_form.html"
    actions = [print_labels, UNBLIND]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = ["pseudonym", "study", "site", "arm", "enrolled_on", "weight_kg"]
        if obj is not None:
            fields = ["code", "label_preview", *fields]
        elif any(randomisation_in_use(study=s) for s in Study.objects.all()):
            fields.remove("arm")  # the list allocates: nobody types an arm
        return fields  # the visibility policy drops "arm" for blinded users

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        # Identity and allocation never change after enrolment.
        return ["code", "label_preview", "pseudonym", "study", "site", "arm", "enrolled_on"]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra_context = extra_context or {}
        participant = self.get_object(request, object_id)
        if participant is not None:
            chain = participant_chain(participant=participant, user=request.user)
            extra_context["chain"] = chain
            extra_context["custody_log"] = events_table(chain.events)
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Visit)
class VisitAdmin(BaseAdmin):
    actions = [RECORD_WEIGHT, PREPARE_DOSE]
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
