"""Admin actions that run a lifecycle service, with an intermediate form where input is needed.

Every selected item is processed in one transaction: either all succeed or none is changed,
and the error names the item and the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from biobank.services.errors import ServiceError


class ConfirmForm(forms.Form):
    at = forms.DateTimeField(
        required=False,
        label="When",
        help_text="Leave empty for now. Format: YYYY-MM-DD HH:MM",
    )

    def clean_at(self) -> Any:
        value = self.cleaned_data.get("at")
        return value or timezone.now()


class ReasonForm(ConfirmForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Reason")


class OptionalReasonForm(ConfirmForm):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


@dataclass(frozen=True)
class Step:
    """One admin action: its name, label, form and the service call for one item."""

    name: str
    label: str
    form: type[forms.Form]
    run: Callable[[Any, Any, dict[str, Any]], Any]
    permission: str | None = None  # hide the action from users without it


def make_action(step: Step) -> Callable[..., HttpResponse | None]:
    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        form = step.form(request.POST if "apply_step" in request.POST else None)
        if "apply_step" in request.POST and form.is_valid():
            done: list[str] = []
            current = ""
            try:
                with transaction.atomic():
                    for item in queryset.order_by("pk"):
                        current = str(item)
                        step.run(item, request.user, {**form.cleaned_data, "_request": request})
                        done.append(current)
            except ServiceError as exc:
                modeladmin.message_user(
                    request,
                    f"{step.label}: nothing was changed. {current}: {exc.message}",
                    messages.ERROR,
                )
                return None
            modeladmin.message_user(
                request, f"{step.label}: done for {', '.join(done)}.", messages.SUCCESS
            )
            return None
        return TemplateResponse(
            request,
            "admin/biobank/step_form.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": f"{step.label}: {queryset.count()} selected",
                "step": step,
                "form": form,
                "items": list(queryset[:200]),
                "opts": modeladmin.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            },
        )

    action.required_perm = step.permission  # type: ignore[attr-defined]
    action.__name__ = f"step_{step.name}"
    action.short_description = f"{step.label}…"  # type: ignore[attr-defined]
    return action


class NoDeleteAdminMixin:
    """Nothing is ever hard-deleted: no delete button, no bulk delete action."""

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        for name in list(actions):
            perm = getattr(actions[name][0], "required_perm", None)
            if perm and not request.user.has_perm(perm):
                del actions[name]
        return actions


class ReadOnlyAdminMixin(NoDeleteAdminMixin):
    """Records that only services write (logs, results, signatures): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class _DryRun(Exception):
    """Raised to roll back a trial run of a service inside form validation."""


def check_with_service(form: forms.Form, call: Callable[[], Any]) -> None:
    """Run ``call`` in a savepoint that is always rolled back, turning a refusal into form
    errors, so admin add forms show the service's own message instead of failing on save."""
    try:
        with transaction.atomic():
            call()
            raise _DryRun
    except _DryRun:
        pass
    except ServiceError as exc:
        field = exc.field if exc.field in form.fields else None
        form.add_error(field, exc.message)
