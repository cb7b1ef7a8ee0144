from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from biobank.terms import local_minute

from .aspirate import Aspirate
from .doses import Dose
from .processing import Processing
from .trial import Participant, Site
from .unit import ProductUnit

# The columns a row's hash covers, in this order. Changing this list breaks every stored hash.
CHAIN_FIELDS = (
    "item_code",
    "item_kind",
    "participant_id",
    "aspirate_id",
    "processing_id",
    "unit_id",
    "dose_id",
    "action",
    "from_status",
    "to_status",
    "actor_id",
    "at",
    "recorded_at",
    "site_id",
    "location",
    "reason",
    "data",
)
GENESIS_HASH = "0" * 64

# Steps renamed after events were written under their old names: the log is append-only, so
# old rows keep them. Whatever selects events by step asks ``action_names``.
RENAMED_ACTIONS: dict[str, str] = {"release_quarantine": "lift_quarantine", "unstore": "remove"}


def action_names(*actions: str) -> frozenset[str]:
    """The steps' names and every name each was recorded under before."""
    return frozenset(actions) | {old for old, new in RENAMED_ACTIONS.items() if new in actions}


_AT = CHAIN_FIELDS.index("at")
_RECORDED_AT = CHAIN_FIELDS.index("recorded_at")
_DATA = CHAIN_FIELDS.index("data")
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(value: Any) -> Any:
    """One spelling per value whatever the database gave back (jsonb rewrites 1e20 as an int)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _instant(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def chain_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's content (``CHAIN_FIELDS``)."""
    items = [values.get(name) for name in CHAIN_FIELDS]
    items[_AT] = _instant(items[_AT])
    items[_RECORDED_AT] = _instant(items[_RECORDED_AT])
    data = items[_DATA]
    if data and not all(type(v) is str for v in data.values()):
        items[_DATA] = _canonical(data)  # most events carry only strings: skip the walk
    return hashlib.sha256(f"{prev_hash}\n{_ENCODER.encode(items)}".encode()).hexdigest()


class CustodyEvent(models.Model):
    """Append-only chain-of-custody log: one row per step, never updated or deleted.

    Database triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL). Rows are
    hash-chained: ``row_hash`` covers the row's content and ``prev_hash``, the hash of the
    row before it, so an edit made behind the application's back is found by
    ``manage.py audit_verify``. Rows are written only by ``services.audit.event_record_bulk``.
    """

    item_code = models.CharField(max_length=16, db_index=True)
    item_kind = models.CharField(max_length=20)
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="events")
    aspirate = models.ForeignKey(
        Aspirate, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    processing = models.ForeignKey(
        Processing, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    unit = models.ForeignKey(
        ProductUnit, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    dose = models.ForeignKey(
        Dose, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(help_text="When the step happened")
    # Set before insert (not auto_now_add) because the row hash covers it.
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    location = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    row_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.CheckConstraint(
                # At most one of the item links is set.
                condition=(
                    models.Q(processing__isnull=True, unit__isnull=True, dose__isnull=True)
                    | models.Q(aspirate__isnull=True, unit__isnull=True, dose__isnull=True)
                    | models.Q(aspirate__isnull=True, processing__isnull=True, dose__isnull=True)
                    | models.Q(aspirate__isnull=True, processing__isnull=True, unit__isnull=True)
                ),
                name="custodyevent_at_most_one_item",
            ),
            # Two rows chained to the same predecessor would be a fork in the chain.
            models.UniqueConstraint(fields=["prev_hash"], name="custodyevent_prev_hash_unique"),
        ]
        indexes = [
            models.Index(fields=["participant", "at"]),
            models.Index(fields=["at", "id"], name="custodyevent_at_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{local_minute(self.at)} {self.item_code} {self.action}"

    def content_hash(self, prev_hash: str) -> str:
        return chain_hash(prev_hash, {name: getattr(self, name) for name in CHAIN_FIELDS})


class AuditChainHead(models.Model):
    """The single row every event writer locks: the chain's last hash, row id and length.

    Locking it serialises writers so the chain cannot fork; keeping the head here lets
    verify notice rows removed from the end of the log, which no row's hash could show.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    length = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="auditchainhead_single_row")
        ]

    def __str__(self) -> str:
        return f"audit chain: {self.length} events, head {self.last_hash[:12]}"
