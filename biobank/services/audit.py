"""The tamper-evident audit trail: the one writer of custody events (``event_new`` builds a
row, ``event_record_bulk`` chains and saves), and its verifier; and the one way a service
saves a row with its history (who, why)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from biobank.errors import ServiceError
from biobank.models import (
    Aspirate,
    AuditChainHead,
    CustodyEvent,
    Dose,
    Processing,
    ProductUnit,
    Site,
)
from biobank.models.events import CHAIN_FIELDS, GENESIS_HASH, chain_hash
from biobank.visibility import kind_of_model

Item = Aspirate | Processing | ProductUnit | Dose


def history_save(
    row: models.Model,
    *,
    actor: AbstractBaseUser | None,
    reason: str,
    update_fields: list[str] | None = None,
    conflict: ServiceError | None = None,
) -> None:
    """Save ``row`` with its history row naming who and why (the reason column holds 100
    characters). With ``conflict``: a unique-constraint clash (the same thing taken by
    someone else at the same moment) is refused with that error, the transaction intact."""
    obj: Any = row
    obj._change_reason = reason[:100]
    obj._history_user = actor
    if conflict is None:
        row.save(update_fields=update_fields)
        return
    try:
        with transaction.atomic():
            row.save(update_fields=update_fields)
    except IntegrityError as exc:
        raise conflict from exc


def _head_lock() -> AuditChainHead:
    """Lock the chain head for the rest of the transaction (creating it after a flush)."""
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditChainHead.objects.get_or_create(pk=1)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


@transaction.atomic
def event_record_bulk(events: Sequence[CustodyEvent]) -> list[CustodyEvent]:
    """Chain and insert unsaved custody events in one statement, in the order given.

    Every writer of the log goes through here (``event_record`` for one row).
    The chain head row stays locked until the caller's transaction commits, so two
    writers can never chain onto the same predecessor.
    """
    if not events:
        return []
    head = _head_lock()
    now = timezone.now()
    prev = head.last_hash
    for event in events:
        if event.pk is not None:
            raise ValueError("event_record_bulk takes unsaved events only")
        if event.recorded_at is None:
            event.recorded_at = now
        event.prev_hash = prev
        event.row_hash = prev = event.content_hash(prev)
    saved = CustodyEvent.objects.bulk_create(events)
    last_id = saved[-1].pk
    if last_id is None:  # a backend that does not return ids from bulk inserts
        last_id = CustodyEvent.objects.get(row_hash=prev).pk
    AuditChainHead.objects.filter(pk=1).update(
        last_hash=prev, last_event_id=last_id, length=head.length + len(saved)
    )
    return saved


# Items with a chain of custody: each event links to its item by a field named as the
# item's kind (CustodyEvent.aspirate, .unit…). A shipment has steps here too, but no events.
CUSTODY_KINDS = frozenset({"aspirate", "processing", "unit", "dose"})


def event_new(
    *,
    item: Item | None,
    action: str,
    actor: AbstractBaseUser,
    at: datetime,
    from_status: str = "",
    to_status: str | None = None,
    participant_id: int | None = None,
    item_code: str = "",
    item_kind: str = "",
    site: Site | None = None,
    location: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> CustodyEvent:
    """One unsaved chain-of-custody row, for ``event_record_bulk`` (which chains and saves).

    The participant, code, kind and status after default to the item's (no status before: a
    creation); an event without an item (e.g. an unblinding) names them itself.
    """
    if item is not None:
        participant_id = item.participant_id if participant_id is None else participant_id
        item_code = item_code or item.code
        item_kind = item_kind or kind_of_model(item)
        to_status = item.status if to_status is None else to_status
    return CustodyEvent(
        participant_id=participant_id,
        item_code=item_code,
        item_kind=item_kind,
        action=action,
        from_status=from_status,
        to_status=to_status or "",
        actor=actor,
        at=at,
        site=site,
        location=location,
        reason=reason,
        data=data or {},
        **_links(item),
    )


def event_record(
    *, item: Item | None, action: str, actor: AbstractBaseUser, at: datetime, **fields: Any
) -> CustodyEvent:
    """Append one chain-of-custody row (hash-chained; ``event_new`` for the fields). Callers
    are services in their transaction."""
    return event_record_bulk([event_new(item=item, action=action, actor=actor, at=at, **fields)])[0]


def _links(item: Item | None) -> dict[str, Any]:
    kind = kind_of_model(item) if item is not None else ""
    return {kind: item} if kind in CUSTODY_KINDS else {}


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head_hash: str
    broken_at: int | None = None  # id of the first event that does not fit the chain
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def _rows(chunk: int) -> Iterator[tuple]:
    """All events in id order as plain tuples, read in chunks through a server-side cursor."""
    columns = ["id", *CHAIN_FIELDS, "prev_hash", "row_hash"]
    yield from CustodyEvent.objects.order_by("id").values_list(*columns).iterator(chunk_size=chunk)


def audit_chain_verify(*, chunk: int = 5000) -> ChainReport:
    """Recompute every row's hash in id order; report the first row that does not fit."""
    head = AuditChainHead.objects.filter(pk=1).first()
    prev = GENESIS_HASH
    prev_id: int | None = None
    count = 0
    names = CHAIN_FIELDS
    width = len(names)
    for row in _rows(chunk):
        pk, values, prev_hash, row_hash = row[0], row[1 : 1 + width], row[-2], row[-1]
        if prev_hash != prev:
            where = f"event {prev_id}" if prev_id is not None else "the start of the chain"
            return ChainReport(
                count,
                prev,
                pk,
                f"event {pk}: its prev_hash does not match the hash of {where} "
                "(a row before it was removed, inserted or re-chained)",
            )
        if chain_hash(prev_hash, dict(zip(names, values, strict=True))) != row_hash:
            return ChainReport(
                count, prev, pk, f"event {pk}: content does not match its hash (row edited)"
            )
        prev, prev_id = row_hash, pk
        count += 1
    expected = head.length if head else 0
    head_hash = head.last_hash if head else GENESIS_HASH
    if (count, prev) != (expected, head_hash):
        return ChainReport(
            count,
            prev,
            prev_id,
            f"the log ends at event {prev_id} after {count} events, but the chain head "
            f"records {expected} events ending in {head_hash[:12]}… "
            "(rows removed from the end, or the head edited)",
        )
    return ChainReport(count, prev)
