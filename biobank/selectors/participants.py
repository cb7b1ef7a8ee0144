"""Reads of one participant: the chain shown on its page, and custody events by item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, QuerySet

from biobank.errors import NotFound
from biobank.models import CustodyEvent, Participant, ProductUnit, Visit
from biobank.visibility import policy_for


@dataclass
class ParticipantChain:
    participant: Participant
    visits: list[Visit]
    events: list[CustodyEvent]
    show_products: bool


def participant_chain(*, participant: Participant, user: Any) -> ParticipantChain:
    """Visits → aspirate → processing → units, and every event, in a fixed number of queries.

    What a blinded user sees is the visibility policy's: products (processing, units) and
    their events are left out, aspirate statuses and event data shown as the policy says.
    """
    policy = policy_for(user)
    show_products = policy.sees("unit") and user.has_perm("biobank.view_productunit")
    visits = list(
        Visit.objects.filter(participant=participant)
        .select_related("visit_type", "aspirate", "aspirate__processing", "aspirate__site")
        .prefetch_related(
            Prefetch(
                "aspirate__units",
                queryset=ProductUnit.objects.select_related("freezing_run").order_by("code"),
            ),
            "aspirate__processing__qc_results",
            "doses",
        )
        .order_by("visit_type__order")
    )
    events = events_seen(user=user, participant=participant)
    if not policy.unblinded:
        # Shown, never saved: the in-memory rows carry what this user may see.
        for visit in visits:
            aspirate = getattr(visit, "aspirate", None)
            if aspirate is not None:
                policy.show_item("aspirate", aspirate)
    return ParticipantChain(
        participant=participant, visits=visits, events=events, show_products=show_products
    )


def events_for(**filters: object) -> QuerySet[CustodyEvent]:
    return (
        CustodyEvent.objects.filter(**filters).select_related("actor", "site").order_by("at", "id")
    )


def events_seen(*, user: Any, **filters: object) -> list[CustodyEvent]:
    """The events ``user`` may see, each as the visibility policy shows it (every page and
    report of an item's custody log reads its events here)."""
    policy = policy_for(user)
    return [policy.event_shown(e) for e in policy.rows(events_for(**filters))]


def visit_of(participant: Participant, visit_code: str) -> Visit:
    """A participant's visit by its type code (BASELINE, M6...): visits carry no barcode."""
    code = str(visit_code or "").strip().upper()
    visit = participant.visits.select_related("visit_type").filter(visit_type__code=code).first()
    if visit is None:
        raise NotFound(
            f"{participant.pseudonym} has no visit {visit_code}.", code="not_found", field="visit"
        )
    return visit
