"""The visibility policy: the one place that decides who may see what.

Every surface asks this module and none decides blinding on its own: the admin (through the
admin site, for every registered model, inline, field, filter, search and history page), the
API (every viewset through its permission class, every serializer through its hidden
fields), the scan resolver, labels and print jobs, custody events, the participant chain,
error messages, reports and exports.

Blinded roles (clinicians, monitors, outcome assessors) see participants, visits, aspirates
and doses, and the blinded-safe custody steps of those. They never see the lab's product
records (units, processings, freezing runs, placements, QC, post-thaw figures, storage),
signatures that name lab items, or allocation. What they may not see answers the same
whether it exists or not: the refusal names their role, never the item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, Q, QuerySet

from biobank.errors import NotVisible
from biobank.models.doses import PRODUCT_FIELDS as DOSE_PRODUCT_FIELDS
from biobank.models.events import action_names

ALLOCATION_PERMISSION = "biobank.view_allocation"


# Django model name -> policy kind, where they differ. Any other model's kind is its name.
_MODEL_KIND: dict[str, str] = {
    "productunit": "unit",
    "freezingrun": "freezing_run",
    "qcresult": "qc_result",
    "qcrelease": "qc_release",
    "storageunit": "storage_unit",
    "boxtype": "box_type",
    "temperaturereading": "temperature_reading",
    "visittype": "visit_type",
    "armschedule": "arm_schedule",
    "identitycheck": "identity_check",
    "custodyevent": "custody_event",
    "printjob": "print_job",
    "idsequence": "id_sequence",
    "randomisationentry": "randomisation_entry",
}

# What a blinded role may see at all: nothing of these depends on the arm (row and field
# rules below narrow some of them). Everything else, including kinds added later, is
# hidden from blinded roles until it is named here: the policy fails closed.
BLINDED_KINDS: frozenset[str] = frozenset(
    {
        "study",
        "site",
        "visit_type",
        "participant",
        "visit",
        "aspirate",
        "dose",
        "identity_check",
        "custody_event",
        "signature",
        "printer",
        "print_job",
        "shipment",
    }
)

# Labels a blinded role may render or print.
BLINDED_LABEL_KINDS: frozenset[str] = frozenset({"participant", "dose"})

# Fields of a visible item that would tell the arm or the product.
BLINDED_HIDDEN_FIELDS: dict[str, frozenset[str]] = {
    "participant": frozenset({"arm", "randomisation", "randomisation_entry", "units", "doses"}),
    "dose": frozenset(
        {
            *DOSE_PRODUCT_FIELDS,
            "unit",
            "units",
            "dose_units",
            "todo",
            # the admin's and the API's read-outs of the fields above
            "deviation",
            "units_display",
            "viable_cells_display",
            "deviation_display",
        }
    ),
    "aspirate": frozenset({"processing", "units", "events"}),
    "visit": frozenset({"aspirate__processing"}),
}

# Records numbered in one sequence with rows a blinded role may not see (the gap before an MSC
# dose's release is its units' events, written just before): such a role gets them in lists
# only, without their number (``id`` is a hidden field of these kinds), never addressed by it
# (a page or an API path per number would show the gaps, and so where the hidden rows are).
UNNUMBERED_FOR_BLINDED: frozenset[str] = frozenset({"custody_event", "signature"})

# Fields a blinded role sees (as the policy shows them) but may not filter, search or sort
# by: the real value behind a blinded status, or behind a masked or redacted text (a dose
# step's reason, lab codes in a location, whitelisted event data), would answer the question
# the display hides.
BLINDED_UNFILTERABLE: dict[str, frozenset[str]] = {
    "aspirate": frozenset({"status", "status_reason"}),
    "custody_event": frozenset({"reason", "location", "data"}),
}

# Custody steps of visible items that a blinded role may see, and the event data keys of
# each (whitelists: a key or step added later stays hidden until it is named here).
BLINDED_EVENT_STEPS: dict[str, frozenset[str]] = {
    "aspirate": action_names("collect", "accept", "quarantine", "reject", "lift_quarantine"),
    "dose": frozenset({"prepare", "release", "make_ready", "dispatch", "administer", "cancel"}),
    "shipment": frozenset({"plan", "pack", "seal", "ship", "receive", "cancel"}),
}
BLINDED_EVENT_DATA: dict[str, frozenset[str]] = {
    # "signature": the QA signature that released it from quarantine (signer, time, meaning).
    "aspirate": frozenset(
        {"volume_ml", "anticoagulant", "temperature_c", "condition", "signature"}
    ),
    "dose": frozenset({"route", "administered_by", "volume_ml"}),
    "shipment": frozenset(),
}

# What a blinded role reads for the reason of a dose's step (a cancellation above all): the
# lab's words may say what was in the syringe, so every dose reads the same.
BLINDED_DOSE_REASON = "Recorded by the cell lab (not shown: the trial is blinded)"

# An aspirate's lab statuses tell whether it was expanded (and so the arm): a blinded role
# sees every aspirate the lab has accepted as simply "received".
BLINDED_ASPIRATE_STATUS = {
    "in_processing": "accepted",
    "processed": "accepted",
    "discarded": "accepted",
}

# Signatures a blinded role may see: those that name a dose, never a processing.
BLINDED_SIGNATURE_MEANINGS: frozenset[str] = frozenset({"dose_release"})

# Identifier prefixes of kinds blinded roles may never see (for redacting messages).
_LAB_PREFIXES = ("UN", "PR", "FR", "SU", "CT", "BX")
_LAB_CODE = re.compile(r"\b(?:" + "|".join(_LAB_PREFIXES) + r")[0-9]{4,}[0-9A-Z*]\b")
REDACTED = "[lab record]"


def kind_of_identifier(kind: Any) -> str:
    """The policy kind of an identifier's kind (``biobank.identifiers.Kind``): BX is a box,
    which is a container."""
    name = kind.name.lower()
    return "container" if name == "box" else name


def kind_name(model_name: str) -> str:
    """The policy kind of a Django model name (``productunit`` -> ``unit``)."""
    return _MODEL_KIND.get(model_name, model_name)


def kind_of_model(model: type[Model] | Model) -> str:
    return kind_name(model._meta.model_name or "")


def can_see_allocation(user: Any) -> bool:
    """True for the unblinded roles (cell lab, QA/release, administrators)."""
    return bool(user and user.is_authenticated and user.has_perm(ALLOCATION_PERMISSION))


def role_name(user: Any) -> str:
    """How a refusal names the user's role (never the item)."""
    if not (user and user.is_authenticated):
        return "anonymous"
    names = sorted(user.groups.values_list("name", flat=True))
    return ", ".join(names) or "no role"


@dataclass(frozen=True)
class Policy:
    """What one user may see. Build it with ``policy_for(user)``."""

    user: Any
    unblinded: bool

    # --- kinds -----------------------------------------------------------------------------

    def sees(self, kind: str) -> bool:
        if not (self.user and self.user.is_authenticated):
            return False
        return self.unblinded or kind in BLINDED_KINDS

    def sees_model(self, model: type[Model] | Model) -> bool:
        return self.sees(kind_of_model(model))

    def may_label(self, kind: str) -> bool:
        return self.unblinded or (self.sees(kind) and kind in BLINDED_LABEL_KINDS)

    def refusal(self, what: str = "lab records") -> NotVisible:
        return NotVisible(
            f"Your role ({role_name(self.user)}) may not see {what}: the trial is blinded.",
            code="not_visible",
        )

    def require(self, kind: str) -> None:
        if not self.sees(kind):
            raise self.refusal()

    def require_label(self, kind: str) -> None:
        if not self.may_label(kind):
            raise self.refusal("labels of lab records")

    # --- fields ----------------------------------------------------------------------------

    def hidden_fields(self, kind: str) -> frozenset[str]:
        if self.unblinded:
            return frozenset()
        hidden = BLINDED_HIDDEN_FIELDS.get(kind, frozenset())
        return hidden | {"id"} if kind in UNNUMBERED_FOR_BLINDED else hidden

    def addresses_by_number(self, kind: str) -> bool:
        """May this user open a record of ``kind`` by its number (admin page, API path)?"""
        return self.unblinded or kind not in UNNUMBERED_FOR_BLINDED

    def lookup_allowed(self, model: type[Model], lookup: str) -> bool:
        """May this user filter, search or order ``model`` by ``lookup``? Walks the lookup:
        every field must be visible and every relation must lead to a visible kind."""
        if self.unblinded:
            return True
        current = model
        for part in lookup.split("__"):
            kind = kind_of_model(current)
            if part in self.hidden_fields(kind) or part in BLINDED_UNFILTERABLE.get(kind, ()):
                return False
            try:
                field = current._meta.get_field(part)
            except Exception:  # a transform or lookup name (icontains, year...): not a field
                return True
            related = getattr(field, "related_model", None)
            if related is None:
                continue
            if not self.sees_model(related):
                return False
            current = related
        return True

    def mapped_statuses(self, kind: str) -> frozenset[str]:
        """Statuses of ``kind`` this user sees as another (blinded aspirates' lab steps)."""
        if self.unblinded or kind != "aspirate":
            return frozenset()
        return frozenset(BLINDED_ASPIRATE_STATUS)

    def maps_status(self, kind: str) -> bool:
        return bool(self.mapped_statuses(kind))

    def status_of(self, kind: str, status: str) -> str:
        if not self.unblinded and kind == "aspirate":
            return BLINDED_ASPIRATE_STATUS.get(status, status)
        return status

    def status_reason_of(self, kind: str, status: str, reason: str) -> str:
        """A status's reason goes with it: where the status is shown as another (a lab step),
        its reason ("not needed for treatment...") is not shown at all."""
        return "" if status in self.mapped_statuses(kind) else reason

    def show_item(self, kind: str, item: Any) -> Any:
        """The in-memory ``item`` (never saved) with its status and reason as this user sees
        them: for pages and reports that read a model's fields directly."""
        if self.maps_status(kind):
            item.status_reason = self.status_reason_of(kind, item.status, item.status_reason)
            item.status = self.status_of(kind, item.status)
        return item

    # --- rows ------------------------------------------------------------------------------

    def rows(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of a visible kind this user may see (events, signatures, print jobs)."""
        kind = kind_of_model(queryset.model)
        if not self.sees(kind):
            return queryset.none()
        if self.unblinded:
            return queryset
        if kind == "custody_event":
            visible = Q()
            for item_kind, steps in BLINDED_EVENT_STEPS.items():
                visible |= Q(item_kind=item_kind, action__in=steps)
            return queryset.filter(visible)
        if kind == "signature":
            return queryset.filter(meaning__in=BLINDED_SIGNATURE_MEANINGS)
        if kind == "print_job":
            # A blinded user can print only dose and participant labels: their own jobs.
            return queryset.filter(requested_by=self.user)
        return queryset

    def event_steps(self, steps: Iterable[str]) -> frozenset[str]:
        """The step names among ``steps`` whose events this user may see (for lists of steps
        offered or named to the user: a blinded role's never names a hidden lab step)."""
        if self.unblinded:
            return frozenset(steps)
        shown = frozenset().union(*BLINDED_EVENT_STEPS.values())
        return frozenset(steps) & shown

    def event_data(self, event: Any) -> dict[str, Any]:
        data = dict(event.data or {})
        if self.unblinded:
            return data
        keep = BLINDED_EVENT_DATA.get(event.item_kind, frozenset())
        return {k: v for k, v in data.items() if k in keep}

    def event_status(self, event: Any, status: str) -> str:
        return self.status_of(event.item_kind, status)

    def event_fields(self, event: Any) -> dict[str, Any]:
        """The fields of an event (any object with its ``item_kind``, statuses, reason, location
        and data) that a blinded user reads otherwise: statuses as mapped, a dose step's reason
        masked, lab codes redacted, data whitelisted. Pages, the API and the export ask here."""
        return {
            "from_status": self.event_status(event, event.from_status),
            "to_status": self.event_status(event, event.to_status),
            "reason": self.event_reason(event.item_kind, event.reason or ""),
            "location": self.redact(event.location or ""),
            "data": self.event_data(event),
        }

    def event_shown(self, event: Any) -> Any:
        """``event`` as this user may read it, changed in memory (never saved)."""
        if not self.unblinded:
            for name, value in self.event_fields(event).items():
                setattr(event, name, value)
        return event

    # --- text ------------------------------------------------------------------------------

    def event_reason(self, item_kind: str, reason: str) -> str:
        """The reason of a custody step as this user may read it."""
        if not self.unblinded and item_kind == "dose" and reason:
            return BLINDED_DOSE_REASON
        return self.redact(reason)

    def redact(self, text: str) -> str:
        """A message for this user: lab-only identifiers replaced for blinded roles."""
        if self.unblinded or not text:
            return text
        return _LAB_CODE.sub(REDACTED, text)


def policy_for(user: Any) -> Policy:
    return Policy(user=user, unblinded=can_see_allocation(user))


def may_see_kind(user: Any, kind: str) -> bool:
    """May this user see items of this kind at all (scan, label, list, detail, report)?"""
    return policy_for(user).sees(kind)


def visible_kinds(user: Any, kinds: Iterable[str]) -> list[str]:
    policy = policy_for(user)
    return [k for k in kinds if policy.sees(k)]
