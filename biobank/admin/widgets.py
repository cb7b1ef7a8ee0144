from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from simple_history.models import DeletedObject
from simple_history.template_utils import HistoricalRecordContextHelper

from biobank.models import CustodyEvent
from biobank.terms import local_minute, local_second


def expiry_text(expires_at: dt.datetime) -> str:
    """An expiry in local time, marked once it has passed (unusable from that minute on)."""
    text = local_minute(expires_at)
    return f"{text} (expired)" if timezone.now() >= expires_at else text


def _reason(event: CustodyEvent) -> str:
    """The reason, and the e-signature of a signed step (its event's data names it)."""
    signature = (event.data or {}).get("signature")
    return f"{event.reason} ({signature})" if signature else event.reason


def events_table(events: Iterable[CustodyEvent]) -> SafeString:
    """The chain-of-custody log of one item as a read-only table."""
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td>"
        "<td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                local_minute(e.at),
                e.item_code,
                e.action.replace("_", " "),
                e.from_status or "–",
                e.to_status,
                e.actor.get_username(),
                e.site.code if e.site else e.location,
                _reason(e),
            )
            for e in events
        ),
    )
    if not rows:
        return format_html("<p>No events yet.</p>")
    return format_html(
        '<table class="custody-log"><thead><tr><th>When</th><th>Item</th><th>Step</th>'
        "<th>Status</th><th>By</th><th>Where</th><th>Reason</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )


class LocalHistoryHelper(HistoricalRecordContextHelper):
    """History pages' old → new values as the rest of the page shows them: times in the site's
    zone, an empty link as "–" (simple-history shows a null foreign key as a deleted object,
    "Deleted user (pk=None)", and nothing here is ever deleted)."""

    def prepare_delta_change_value(self, change: Any, value: Any) -> Any:
        if value is None or (isinstance(value, DeletedObject) and value.pk is None):
            return "–"
        if isinstance(value, dt.datetime) and timezone.is_aware(value):
            return local_second(value)
        return super().prepare_delta_change_value(change, value)


class HistoryDisplayMixin:
    """Mixed into every ModelAdmin by the site (see BiobankAdminSite.register)."""

    def get_historical_record_context_helper(self, request: Any, record: Any) -> Any:
        return LocalHistoryHelper(self.model, record)  # type: ignore[attr-defined]
