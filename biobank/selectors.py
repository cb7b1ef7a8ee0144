"""Read-side queries with bounded query counts (HackSoft style: selectors next to services)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, QuerySet

from biobank.blinding import can_see_allocation
from biobank.models import CustodyEvent, Participant, ProductUnit, Visit


@dataclass
class ParticipantChain:
    participant: Participant
    visits: list[Visit]
    events: list[CustodyEvent]
    show_products: bool


# Events a blinded user may see: collection/receipt of aspirates and the (blinded) dose steps.
BLINDED_EVENT_KINDS = ("aspirate", "dose")


def participant_chain(*, participant: Participant, user: Any) -> ParticipantChain:
    """Visits → aspirate → processing → units, and every event, in a fixed number of queries.

    For blinded users, products (processing, units) and their events are left out: which
    aspirate was expanded and released would tell the arm.
    """
    show_products = can_see_allocation(user) and user.has_perm("biobank.view_productunit")
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
    events = events_for(participant=participant)
    if not show_products:
        events = events.filter(item_kind__in=BLINDED_EVENT_KINDS)
    return ParticipantChain(
        participant=participant, visits=visits, events=list(events), show_products=show_products
    )


def events_for(**filters: object) -> QuerySet[CustodyEvent]:
    return (
        CustodyEvent.objects.filter(**filters).select_related("actor", "site").order_by("at", "id")
    )
