"""Admin actions that run a lifecycle service, with an intermediate form where input is needed.

Every selected item is processed in one transaction: either all succeed or none is changed,
and the error names the item and the reason.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.moments import (
    PlausibleFormField,
    is_plausible,
    is_plausible_year,
    out_of_range_message,
)
from biobank.numbers import ascii_int
from biobank.services.actions import Action, Input, action_get, action_run, actions_for


class PlausibleDateTimeField(PlausibleFormField, forms.DateTimeField):
    """A date-time within the plausible years (``biobank.moments``): the admin's time inputs."""


class PlausibleDateField(PlausibleFormField, forms.DateField):
    """A model form's date (e.g. a visit's scheduled day) within the plausible years."""


class PlausibleSplitDateTimeField(forms.SplitDateTimeField):
    """A model form's date-time (the admin's date and time boxes) within the plausible years."""

    def compress(self, data_list: Any) -> Any:
        result = super().compress(data_list)
        if isinstance(result, datetime.date) and not is_plausible(result):
            raise ValidationError(out_of_range_message(), code="date_out_of_range")
        return result


# Lookups that read part of a date as a number.
_DATE_PARTS = frozenset(
    {"year", "iso_year", "quarter", "month", "week", "week_day", "iso_week_day", "day"}
    | {"hour", "minute", "second"}
)
_YEARS = frozenset({"year", "iso_year"})


class _PlausibleChangeList:
    """Every date or date-time in the query string, whatever the filter that reads it (a date
    list filter, the date hierarchy or a plain lookup), is checked before the query is built: a
    year outside the plausible ones, or a part of a date not in ASCII digits, is an invalid
    lookup (the change list's "?e=1" answer), not an overflow in the database driver."""

    def get_filters(self, request: HttpRequest) -> Any:
        for name, values in request.GET.lists():
            field_name, _, lookup = name.partition("__")
            try:
                field = self.model._meta.get_field(field_name)
            except Exception:  # not a field of the model: Django answers as usual
                continue
            if isinstance(field, models.DateField):  # DateTimeField is one too
                for value in values:
                    if not _date_value_ok(field, lookup, value):
                        raise IncorrectLookupParameters(out_of_range_message(field_name))
        return super().get_filters(request)  # type: ignore[misc]


@cache
def _plausible(changelist: type[ChangeList]) -> type[ChangeList]:
    """The admin's own change list class (some prefetch for their columns), with the check."""
    return type(f"Plausible{changelist.__name__}", (_PlausibleChangeList, changelist), {})


def _date_value_ok(field: models.DateField, lookup: str, value: str) -> bool:
    part = lookup.split("__")[0]  # at__year__gte: the year
    if part in _DATE_PARTS:
        number = ascii_int(value)
        return number is not None and (part not in _YEARS or is_plausible_year(number))
    try:
        moment = field.to_python(value)
    except ValidationError:
        return True  # not a date (e.g. the isnull flag): Django answers as usual
    return not isinstance(moment, datetime.date) or is_plausible(moment)


class PlausibleDatesMixin:
    """A change list whose date lookups are checked (``_PlausibleChangeList``), and model forms
    whose dates are held to the plausible years; the admin site gives it to every ModelAdmin."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _plausible(super().get_changelist(request, **kwargs))  # type: ignore[misc]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if isinstance(db_field, models.DateTimeField):
            kwargs.setdefault("form_class", PlausibleSplitDateTimeField)
        elif isinstance(db_field, models.DateField):
            kwargs.setdefault("form_class", PlausibleDateField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]


class ConfirmForm(forms.Form):
    at = PlausibleDateTimeField(
        required=False,
        label="When",
        help_text="Leave empty for now. Format: YYYY-MM-DD HH:MM",
    )

    def clean_at(self) -> Any:
        value = self.cleaned_data.get("at")
        return value or timezone.now()


@dataclass(frozen=True)
class Step:
    """One admin action: its name, label, form and the service call for one item."""

    name: str
    label: str
    form: type[forms.Form]
    run: Callable[[Any, Any, dict[str, Any]], Any]
    permission: str | None = None  # hide the action from users without it
    # What to tell the user about one item's result (e.g. an unblinding's arm): called only
    # once every selected item has succeeded and the transaction has committed, never for a
    # result that was rolled back.
    after: Callable[[HttpRequest, Any, Any], None] | None = None


# --- forms from the action catalogue ------------------------------------------------------------


def _label(spec: Input) -> str:
    return spec.name.replace("_", " ").capitalize()


class RowsField(forms.CharField):
    """A list of records typed one per line, columns separated by commas, tabs or spaces."""

    widget = forms.Textarea(attrs={"rows": 4})

    def __init__(self, *, of: tuple[Input, ...], **kwargs: Any) -> None:
        self.of = of
        columns = ", ".join(spec.name for spec in of)
        kwargs.setdefault("help_text", f"One per line: {columns}")
        super().__init__(**kwargs)

    def clean(self, value: Any) -> list[dict[str, Any]]:
        rows = []
        for number, line in enumerate((super().clean(value) or "").splitlines(), 1):
            if not line.strip():
                continue
            parts = [p for p in re.split(r"[,;\t]\s*|\s+", line.strip()) if p]
            row: dict[str, Any] = {}
            for index, spec in enumerate(self.of):
                raw = parts[index] if index < len(parts) else ""
                try:
                    row[spec.name] = form_field(spec).clean(raw)
                except forms.ValidationError as exc:
                    raise forms.ValidationError(
                        f"Line {number}, {spec.name}: {' '.join(exc.messages)}"
                    ) from exc
            rows.append(row)
        return rows


def form_field(spec: Input) -> forms.Field:
    """The admin form field for one catalogued input (same bounds as the API's)."""
    common: dict[str, Any] = {"required": spec.required, "label": _label(spec)}
    if spec.help:
        common["help_text"] = spec.help
    if spec.default not in (None, "", []):
        common["initial"] = spec.default
    bounds = {
        k: v
        for k, v in (("min_value", spec.min_value), ("max_value", spec.max_value))
        if v is not None
    }
    if spec.type == "reason":
        return forms.CharField(
            widget=forms.Textarea(attrs={"rows": 2}), max_length=spec.max_length, **common
        )
    if spec.type == "password":
        common["help_text"] = (
            "Re-enter your password to sign. Your name, the time and the meaning of the "
            "signature are stored with the record."
        )
        return forms.CharField(widget=forms.PasswordInput(render_value=False), **common)
    if spec.name == "scan" or spec.name.endswith("_scan"):
        # A scan keeps its characters: the resolver explains stray scanner prefixes.
        widget = forms.TextInput(attrs={"autofocus": True, "autocomplete": "off"})
        return forms.CharField(max_length=spec.max_length, strip=False, widget=widget, **common)
    if spec.type in ("text", "code"):
        return forms.CharField(max_length=spec.max_length, **common)
    if spec.type == "file":
        return forms.FileField(**common)
    if spec.type == "int":
        return forms.IntegerField(**bounds, **common)
    if spec.type == "decimal":
        return forms.DecimalField(
            max_digits=spec.max_digits, decimal_places=spec.decimal_places, **bounds, **common
        )
    if spec.type == "datetime":
        common.setdefault("help_text", "Leave empty for now. Format: YYYY-MM-DD HH:MM")
        return PlausibleDateTimeField(**common)
    if spec.type == "date":
        return forms.DateField(**common)
    if spec.type == "choice":
        return forms.ChoiceField(choices=list(spec.choices), **common)
    if spec.type == "bool":
        return forms.BooleanField(**{**common, "required": False})
    if spec.type == "codes":
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), **common)
    if spec.type == "rows":
        return RowsField(of=spec.of, **common)
    raise ValueError(f"Unknown input type {spec.type!r} for {spec.name}")


@cache
def step_form(kind: str, name: str) -> type[forms.Form]:
    """The intermediate form of a catalogued step."""
    step = action_get(kind, name)
    fields = {spec.name: form_field(spec) for spec in step.inputs}
    return type(f"{kind}_{name}_form", (forms.Form,), fields)


def _codes(value: Any) -> Any:
    return value.split() if isinstance(value, str) else value


def catalogue_step(
    kind: str,
    name: str,
    *,
    form: type[forms.Form] | None = None,
    to_input: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
    after: Callable[[HttpRequest, Any, Any], None] | None = None,
) -> Step:
    """An admin action for a catalogued step: its name, label, permission and service come
    from the catalogue; the admin may offer its own form and map it to the step's input."""
    step: Action = action_get(kind, name)
    codes = {spec.name for spec in step.inputs if spec.type == "codes"}

    def run(item: Any, user: Any, d: dict[str, Any]) -> Any:
        data = to_input(item, d) if to_input else dict(d)
        data = {k: (_codes(v) if k in codes else v) for k, v in data.items()}
        return action_run(action=step, item=item if step.on_item else None, actor=user, data=data)

    return Step(
        step.name,
        step.label,
        form or step_form(kind, name),
        run,
        permission=step.permission,
        after=after,
    )


def catalogue_actions(kind: str, *names: str) -> list[Callable[..., HttpResponse | None]]:
    """Admin actions for the named steps (default: every step on an item of ``kind``)."""
    chosen = names or tuple(a.name for a in actions_for(kind, on_item=True))
    return [make_action(catalogue_step(kind, name)) for name in chosen]


def make_action(step: Step) -> Callable[..., HttpResponse | None]:
    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
    ) -> HttpResponse | None:
        form = step.form(request.POST if "apply_step" in request.POST else None)
        if "apply_step" in request.POST and form.is_valid():
            done: list[tuple[Any, Any]] = []
            current = ""
            try:
                with transaction.atomic():
                    for item in queryset.order_by("pk"):
                        current = str(item)
                        done.append((item, step.run(item, request.user, dict(form.cleaned_data))))
            except ServiceError as exc:
                modeladmin.message_user(
                    request,
                    f"{step.label}: nothing was changed. {current}: {exc.message}",
                    messages.ERROR,
                )
                return None
            if step.after is not None:
                for item, result in done:
                    step.after(request, item, result)
            names = ", ".join(str(item) for item, _ in done)
            modeladmin.message_user(request, f"{step.label}: done for {names}.", messages.SUCCESS)
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


class ServiceForm(forms.ModelForm):
    """An admin add form whose record a service makes (``create``). ``clean`` runs the service
    in a dry run (rolled back), so its own refusals show as form errors; the admin saves an
    add through it (``ServiceFormAdminMixin``)."""

    def __init__(self, *args: Any, actor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor = actor

    def create(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is None and not self.errors:
            check_with_service(self, lambda: self.create(dict(data)))
        return data


def form_for_actor(base: Any, actor: Any) -> Any:
    """A ``ServiceForm`` class whose instances know who is acting (other forms as they are)."""
    if not (isinstance(base, type) and issubclass(base, ServiceForm)):
        return base

    class Bound(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, actor=actor, **kwargs)

    return Bound


class ServiceFormAdminMixin:
    """A model admin whose add form is a ``ServiceForm``: the form knows the actor, an add is
    saved by the service, an edit is a plain save with its history reason."""

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        return form_for_actor(super().get_form(request, obj, **kwargs), request.user)  # type: ignore[misc]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj._change_reason = "edited in admin"
            super().save_model(request, obj, form, change)  # type: ignore[misc]
            return
        obj.__dict__.update(form.create(dict(form.cleaned_data)).__dict__)


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
