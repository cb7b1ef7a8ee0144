"""Read-side queries with bounded query counts (HackSoft style: selectors next to services)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from biobank.models import CustodyEvent, Participant, ProductUnit, Visit


@dataclass
class ParticipantChain:
    participant: Participant
    visits: list[Visit]
    events: list[CustodyEvent]


def participant_chain(*, participant: Participant) -> ParticipantChain:
    """Visits → aspirate → processing → units, and every event, in a fixed number of queries."""
    visits = list(
        Visit.objects.filter(participant=participant)
        .select_related("visit_type", "aspirate", "aspirate__processing", "aspirate__site")
        .prefetch_related(
            Prefetch(
                "aspirate__units",
                queryset=ProductUnit.objects.select_related("freezing_run").order_by("code"),
            ),
            "aspirate__processing__qc_results",
        )
        .order_by("visit_type__order")
    )
    return ParticipantChain(
        participant=participant, visits=visits, events=list(events_for(participant=participant))
    )


def events_for(**filters: object) -> QuerySet[CustodyEvent]:
    return (
        CustodyEvent.objects.filter(**filters).select_related("actor", "site").order_by("at", "id")
    )
