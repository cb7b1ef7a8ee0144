from __future__ import annotations

from collections.abc import Iterable

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from biobank.models import CustodyEvent


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
                f"{e.at:%Y-%m-%d %H:%M}",
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
