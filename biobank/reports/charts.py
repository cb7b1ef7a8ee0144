"""Charts drawn with matplotlib (Agg, no display) as SVG or PNG, each with its alt text.

Pure code over plain data, so the same functions serve storage units, participants and,
once they exist, shipment temperature traces (``temperature_chart`` takes any series).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import matplotlib

matplotlib.use("Agg")  # server side: never a GUI backend

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
OK_COLOUR = "#1f5fa8"
BAD_COLOUR = "#c0392b"
RANGE_COLOUR = "#2e8b57"


@dataclass(frozen=True)
class Chart:
    content: bytes
    content_type: str
    alt: str


def _render(fig: Figure, fmt: str, alt: str) -> Chart:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    # Fixed metadata and hash salt: the same data gives the same bytes.
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "biobank", "svg.fonttype": "none"}):
        fig.savefig(buffer, format=fmt, metadata=metadata, dpi=100)
    content = buffer.getvalue()
    if fmt == "svg":
        # Screen readers read the <title> of an <svg role="img">.
        title = f"<title>{escape(alt)}</title>"
        content = re.sub(
            rb"<svg ([^>]*)>",
            lambda m: (
                b'<svg role="img" aria-label="'
                + escape(alt).encode()
                + b'" '
                + m.group(1)
                + b">"
                + title.encode()
            ),
            content,
            count=1,
        )
    return Chart(content, FORMATS[fmt], alt)


def _empty(fig: Figure, message: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="#555")


def temperature_chart(
    *,
    title: str,
    points: Sequence[tuple[dt.datetime, float, bool]],
    low: float,
    high: float,
    fmt: str = "svg",
) -> Chart:
    """Temperature over time with the allowed range shaded and excursions marked in red."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    excursions = [p for p in points if p[2]]
    if not points:
        _empty(fig, f"{title}: no temperature readings yet")
        return _render(fig, fmt, temperature_alt(title=title, points=points, low=low, high=high))
    ax = fig.add_subplot()
    times = [p[0] for p in points]
    temps = [p[1] for p in points]
    ax.axhspan(low, high, color=RANGE_COLOUR, alpha=0.12, label=f"allowed {low:g} to {high:g} °C")
    ax.axhline(low, color=RANGE_COLOUR, lw=0.8, ls="--")
    ax.axhline(high, color=RANGE_COLOUR, lw=0.8, ls="--")
    ax.plot(
        times,
        temps,
        color=OK_COLOUR,
        lw=1.2,
        marker="o" if len(points) < 60 else None,
        ms=3,
        label="reading",
    )
    if excursions:
        ax.scatter(
            [p[0] for p in excursions],
            [p[1] for p in excursions],
            color=BAD_COLOUR,
            marker="X",
            s=40,
            zorder=3,
            label="excursion",
        )
    if len(points) == 1:
        only = times[0]
        ax.set_xlim(only - dt.timedelta(hours=12), only + dt.timedelta(hours=12))
    span = [*temps, low, high]
    pad = max((max(span) - min(span)) * 0.1, 1.0)
    ax.set_ylim(min(span) - pad, max(span) + pad)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("°C")
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    alt = temperature_alt(title=title, points=points, low=low, high=high)
    return _render(fig, fmt, alt)


def temperature_alt(
    *, title: str, points: Sequence[tuple[dt.datetime, float, bool]], low: float, high: float
) -> str:
    if not points:
        return f"{title}: no temperature readings yet; allowed range {low:g} to {high:g} °C."
    temps = [p[1] for p in points]
    excursions = [p for p in points if p[2]]
    first = points[0][0].astimezone(dt.UTC)
    last = points[-1][0].astimezone(dt.UTC)
    return (
        f"{title}: {len(points)} reading{'s' if len(points) != 1 else ''} from "
        f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, between "
        f"{min(temps):g} and {max(temps):g} °C; allowed range {low:g} to {high:g} °C; "
        f"{len(excursions)} excursion{'s' if len(excursions) != 1 else ''}"
        + (
            f" (first {excursions[0][0].astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC, "
            f"{excursions[0][1]:g} °C)."
            if excursions
            else "."
        )
    )


def occupancy_chart(
    *,
    title: str,
    boxes: Sequence[tuple[str, str, int, int]],
    fmt: str = "svg",
) -> Chart:
    """One cell per box (rows: racks/canisters, columns: boxes in them), coloured by fill."""
    import numpy as np

    fig = Figure(figsize=(8, 1.2 + 0.45 * max(1, len({b[0] for b in boxes}))), layout="constrained")
    if not boxes:
        _empty(fig, f"{title}: no boxes yet")
        return _render(fig, fmt, occupancy_alt(title=title, boxes=boxes))
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for parent, name, used, capacity in boxes:
        groups.setdefault(parent or "(top level)", []).append((name, used, capacity))
    width = max(len(v) for v in groups.values())
    grid = np.full((len(groups), width), np.nan)
    ax = fig.add_subplot()
    for r, (_parent, items) in enumerate(groups.items()):
        for c, (name, used, capacity) in enumerate(items):
            grid[r, c] = used / capacity if capacity else 0
            ax.text(
                c,
                r,
                f"{name}\n{used}/{capacity}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if capacity and used / capacity > 0.6 else "black",
            )
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="YlOrRd", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(groups)), list(groups))
    ax.set_xticks([])
    ax.set_title(title, fontsize=11)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04)
    colorbar.set_label("share of positions used")
    alt = occupancy_alt(title=title, boxes=boxes)
    return _render(fig, fmt, alt)


def occupancy_alt(*, title: str, boxes: Sequence[tuple[str, str, int, int]]) -> str:
    if not boxes:
        return f"{title}: no boxes yet."
    racks = len({b[0] for b in boxes})
    used = sum(b[2] for b in boxes)
    capacity = sum(b[3] for b in boxes)
    full = [b[1] for b in boxes if b[3] and b[2] >= b[3]]
    return (
        f"{title}: {len(boxes)} box{'es' if len(boxes) != 1 else ''} in {racks} "
        f"rack{'s' if racks != 1 else ''}, {used} of {capacity} positions used "
        f"({(100 * used / capacity) if capacity else 0:.0f} %); "
        + (f"full: {', '.join(full)}." if full else "no box is full.")
    )


TIMELINE_ROWS = ("Visits", "Aspiration", "Dose")
MARKERS = {"Visits": "s", "Aspiration": "v", "Dose": "D"}


def timeline_chart(
    *,
    title: str,
    points: Sequence[tuple[str, dt.date, str, bool]],
    fmt: str = "svg",
) -> Chart:
    """The crossover of one participant: visits, aspirations and doses on one time axis.

    Filled markers are done, hollow ones planned. Labels come from the selector, which
    words doses by the visibility policy.
    """
    fig = Figure(figsize=(8, 2.6), layout="constrained")
    if not points:
        _empty(fig, f"{title}: nothing scheduled yet")
        return _render(fig, fmt, timeline_alt(title=title, points=points))
    ax = fig.add_subplot()
    for y, row in enumerate(TIMELINE_ROWS):
        mine = [p for p in points if p[0] == row]
        for _row, at, label, done in mine:
            ax.plot(
                [at],
                [y],
                marker=MARKERS[row],
                ms=9,
                color=OK_COLOUR,
                markerfacecolor=OK_COLOUR if done else "white",
                ls="none",
            )
            ax.annotate(
                label, (at, y), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=7
            )
    dates = [p[1] for p in points]
    first, last = min(dates), max(dates)
    pad = max((last - first) / 10, dt.timedelta(days=15))
    ax.set_xlim(first - pad, last + pad)
    ax.set_ylim(-0.6, len(TIMELINE_ROWS) - 0.2)
    ax.set_yticks(range(len(TIMELINE_ROWS)), TIMELINE_ROWS)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=11)
    return _render(fig, fmt, timeline_alt(title=title, points=points))


def timeline_alt(*, title: str, points: Sequence[tuple[str, dt.date, str, bool]]) -> str:
    if not points:
        return f"{title}: nothing scheduled yet."
    parts = [
        f"{p[0].lower()} {p[2]} {'on' if p[3] else 'planned'} {p[1]:%Y-%m-%d}"
        for p in sorted(points, key=lambda p: (p[1], TIMELINE_ROWS.index(p[0])))
    ]
    return f"{title}: " + "; ".join(parts) + "."
