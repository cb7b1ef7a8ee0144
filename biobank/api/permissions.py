from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from biobank.services.actions import action_permitted
from biobank.visibility import kind_name, policy_for


class RolePermission(BasePermission):
    """Reads need the model's view permission; a write needs what the action catalogue names
    for its step (other writes: change_<model>).

    The same Django permissions (held through role groups) govern the admin, so a role
    can do the same things in both. Before any of that the visibility policy decides whether
    the user may see this kind of item at all; a refusal names the role, not the item.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        policy_for(user).require(kind_name(view.model_name))
        if request.method in SAFE_METHODS:
            readers = getattr(view, "read_permissions", ()) or (f"biobank.view_{view.model_name}",)
            return any(user.has_perm(perm) for perm in readers)
        # A catalogued step: the action catalogue names its permission (one rule, one place).
        step = getattr(getattr(view, getattr(view, "action", None) or "", None), "catalogue", None)
        if step is not None:
            return action_permitted(step, user)
        return user.has_perm(f"biobank.change_{view.model_name}")
