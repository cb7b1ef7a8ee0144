"""The admin's side of the visibility policy, applied to every registered model by the site.

``BiobankAdminSite.register`` mixes ``PolicyAdminMixin`` into every ModelAdmin, so a model
registered later is covered without anyone remembering to: permissions, querysets, fields,
list columns, filters, search, lookups in crafted URLs, inlines, label previews and history
pages all ask ``biobank.visibility``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from biobank.visibility import Policy, kind_of_model, policy_for


def _field_name(entry: Any) -> str | None:
    """The model field a list_display / list_filter / search entry refers to, if any."""
    if isinstance(entry, str):
        return entry.lstrip("^=@")
    if isinstance(entry, tuple) and entry and isinstance(entry[0], str):
        return entry[0]
    parameter = getattr(entry, "parameter_name", None)
    return parameter if isinstance(parameter, str) else None


class PolicyAdminMixin:
    """Every admin question about what a user may see goes to the visibility policy."""

    model: Any

    def _policy(self, request: HttpRequest | None) -> Policy:
        return policy_for(getattr(request, "user", None))

    def _kind(self) -> str:
        return kind_of_model(self.model)

    def _visible(self, request: HttpRequest, name: str | None) -> bool:
        if name is None:
            return True
        policy = self._policy(request)
        if policy.unblinded:
            return True
        if name == "label_preview":
            return policy.may_label(self._kind())
        if name in ("blinded_status", "blinded_status_reason"):
            return True
        return policy.lookup_allowed(self.model, name) if name else True

    def _keep(self, request: HttpRequest, entries: Sequence[Any]) -> list[Any]:
        policy = self._policy(request)
        kept = []
        for entry in entries:
            name = _field_name(entry)
            if entry in ("status", "status_reason") and policy.maps_status(self._kind()):
                kept.append(f"blinded_{entry}")  # shown as the policy maps it
                continue
            if self._visible(request, name):
                kept.append(entry)
        return kept

    # --- may the user see this model at all --------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._policy(request).sees_model(self.model) and super().has_module_permission(
            request
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._policy(request).sees_model(self.model) and super().has_view_permission(
            request, obj
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._policy(request).sees_model(self.model) and super().has_change_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._policy(request).sees_model(self.model) and super().has_add_permission(
            request, *args
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self._policy(request).rows(super().get_queryset(request))

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        # Asked before the lookup: where numbers would show where hidden rows are, every number
        # answers 403 alike (the list shows these records whole).
        if not self._policy(request).addresses_by_number(self._kind()):
            raise PermissionDenied
        return super().change_view(request, object_id, *args, **kwargs)  # type: ignore[misc]

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        # Asked before the object is looked up (Django asks after): without the model's
        # permission every id answers 403, so ids cannot tell which records exist but are hidden.
        if not self.has_view_or_change_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)  # type: ignore[misc]

    # --- which fields, columns, filters and searches -----------------------------------------

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return self._keep(request, super().get_fields(request, obj))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields = list(super().get_readonly_fields(request, obj))
        if self._policy(request).maps_status(self._kind()):
            fields += ["blinded_status", "blinded_status_reason"]
        return self._keep(request, fields)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fieldsets = super().get_fieldsets(request, obj)
        return [
            (name, {**options, "fields": self._keep(request, options.get("fields", ()))})
            for name, options in fieldsets
        ]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        return self._keep(request, super().get_list_display(request))

    def get_list_display_links(self, request: HttpRequest, list_display: Sequence[Any]) -> Any:
        if not self._policy(request).addresses_by_number(self._kind()):
            return None  # no links to numbered pages (see change_view)
        links = super().get_list_display_links(request, list_display)
        if links is None:
            return None
        kept = [link for link in links if link in list_display]
        return kept or list(list_display)[:1]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return [
            f for f in super().get_list_filter(request) if self._visible(request, _field_name(f))
        ]

    def get_search_fields(self, request: HttpRequest) -> list[Any]:
        return [
            f for f in super().get_search_fields(request) if self._visible(request, _field_name(f))
        ]

    def get_sortable_by(self, request: HttpRequest) -> Any:
        return self._keep(request, super().get_sortable_by(request))

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if not self._policy(request).lookup_allowed(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_inline_instances(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        policy = self._policy(request)
        return [
            inline
            for inline in super().get_inline_instances(request, obj)
            if policy.sees_model(inline.model)
        ]

    @admin.display(description="status")
    def blinded_status(self, obj: Any) -> str:
        status = getattr(obj, "status", "")
        shown = Policy(user=None, unblinded=False).status_of(self._kind(), status)
        choices = dict(type(obj)._meta.get_field("status").flatchoices)
        return str(choices.get(shown, shown))

    @admin.display(description="status reason")
    def blinded_status_reason(self, obj: Any) -> str:
        blinded = Policy(user=None, unblinded=False)
        return blinded.status_reason_of(self._kind(), obj.status, obj.status_reason)

    def message_user(self, request: HttpRequest, message: Any, *args: Any, **kwargs: Any) -> None:
        # Action messages often quote a service's refusal: no lab code reaches a blinded user.
        super().message_user(request, self._policy(request).redact(str(message)), *args, **kwargs)

    # --- history pages (django-simple-history) -----------------------------------------------

    def get_history_queryset(self, request: HttpRequest, *args: Any) -> QuerySet[Any]:
        queryset = super().get_history_queryset(request, *args)
        policy = self._policy(request)
        if policy.unblinded:
            return queryset
        # Versions whose status the policy maps (an aspirate's lab steps) are left out.
        hidden = policy.mapped_statuses(self._kind())
        return queryset.exclude(status__in=hidden) if hidden else queryset

    def set_history_delta_changes(self, request: HttpRequest, records: Any, *args: Any) -> None:
        super().set_history_delta_changes(request, records, *args)
        policy = self._policy(request)
        if policy.unblinded:
            return
        hidden = policy.hidden_fields(self._kind())
        for record in records:
            record.history_change_reason = policy.redact(record.history_change_reason or "")
            changes = getattr(record, "history_delta_changes", None) or []
            record.history_delta_changes = [
                c for c in changes if getattr(c.get("field"), "name", c.get("field")) not in hidden
            ]

    def history_form_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        # A past version is a whole form of old values: unblinded roles only.
        if not self._policy(request).unblinded:
            raise PermissionDenied
        return super().history_form_view(request, *args, **kwargs)
