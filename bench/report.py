"""Figures, targets and verdicts from the JSON that ``bench/measure.py`` writes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bench.target import ENGINE_NAMES

SCAN_RATIO_TARGET = 1.5
STORE_QUERIES_TARGET = 30
STORE_MS_TARGET = 100
STORAGE_PAGE_MS_TARGET = 150
ZPL_TARGET = 1000
SUGGEST_TARGET_MS = 50


@dataclass
class Figure:
    name: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: no target
    key: str = ""  # stable across databases (the name may differ), for the table

    def __post_init__(self) -> None:
        self.key = self.key or self.name

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def figures(result: dict[str, Any], small: dict[str, Any] | None) -> list[Figure]:
    out: list[Figure] = []
    http = result.get("http")
    if http:
        lat = http["latency"]
        out.append(
            Figure(
                "Scan via API (POST /api/scan/, random units), p50 / p99",
                f"{_ms(lat['scan_p50_ms'])} / {_ms(lat['scan_p99_ms'])}",
            )
        )
        out.append(
            Figure(
                "Floor: minimal authenticated DRF endpoint, p50 / p99",
                f"{_ms(lat['floor_p50_ms'])} / {_ms(lat['floor_p99_ms'])}",
            )
        )
        out.append(
            Figure(
                "Scan p99 ÷ floor p99 (p50 ratio in brackets)",
                f"{lat['ratio_p99']:.2f}× ({lat['ratio_p50']:.2f}×), "
                f"{lat['requests']:,} pairs, {lat['errors']} errors",
                f"≤ {SCAN_RATIO_TARGET:g}×",
                lat["ratio_p99"] <= SCAN_RATIO_TARGET and lat["errors"] == 0,
            )
        )
        for key, label in (
            ("load_scan", "Load test: scan"),
            ("load_floor", "Load test: floor (reference)"),
            ("static", "Load test: static file via whitenoise"),
        ):
            load = http[key]
            out.append(
                Figure(
                    f"{label}, {load['connections']} connections",
                    f"{load['per_s']:,.0f} req/s ({load['requests']:,} requests in "
                    f"{load['seconds']} s, p99 {_ms(load['p99_ms'])}), {load['errors']} errors",
                    "0 errors",
                    load["errors"] == 0,
                )
            )
    labels = result.get("labels")
    if labels:
        for fmt in ("zpl", "png", "svg", "pdf"):
            rows = [r for r in labels if r["format"] == fmt]
            ours = " / ".join(_n(r["per_s"]) for r in rows)
            base = " / ".join(_n(r["baseline_per_s"]) for r in rows)
            slowest = min(r["per_s"] for r in rows)
            names = "/".join(r["template"] for r in rows)
            target, ok = ("", None)
            if fmt == "zpl":
                target, ok = f"> {ZPL_TARGET:,}/s", slowest > ZPL_TARGET
            out.append(
                Figure(
                    f"Labels/s {fmt.upper()} ({names}); raw library",
                    f"{ours}; raw {base}",
                    target,
                    ok,
                )
            )
    if http and http.get("labels_http"):
        rows = http["labels_http"]
        out.append(
            Figure(
                "Labels/s via API, 1 client (" + "/".join(r["format"] for r in rows) + ")",
                " / ".join(_n(r["per_s"]) for r in rows)
                + f", {sum(r['errors'] for r in rows)} errors",
            )
        )
    admin = result.get("admin")
    if admin:
        small_by_page = {p["page"]: p for p in (small or {}).get("admin", [])}
        small_units = (small or {}).get("units")
        for page in admin:
            other = small_by_page.get(page["page"])
            ok_status = page["status"] == 200 and page["queries_stable"]
            if other is not None:
                same = other["queries"] == page["queries"] and other["status"] == 200
                value = (
                    f"{page['queries']} queries (at {small_units:,} units: {other['queries']}), "
                    f"{_ms(page['ms'])} (at {small_units:,}: {_ms(other['ms'])})"
                )
            else:
                same = ok_status
                value = f"{page['queries']} queries, {_ms(page['ms'])}"
            if "cpu_ms" in page:
                value += f" (CPU {_ms(page['cpu_ms'])})"
            if page["status"] != 200:
                value += f", HTTP {page['status']}"
            targeted = page["targeted"]
            target, ok = "constant queries", same and ok_status
            if page["page"].startswith("storage unit page"):
                target = f"constant queries, ≤ {STORAGE_PAGE_MS_TARGET} ms"
                ok = ok and page["ms"] <= STORAGE_PAGE_MS_TARGET
            out.append(
                Figure(
                    f"Admin: {page['page']}",
                    value,
                    target if targeted else "",
                    ok if targeted else None,
                    key=f"admin-{page['page'].split(':')[0]}",
                )
            )
    service = result.get("service")
    if service:
        s = service["suggest"]
        out.append(
            Figure(
                f"Free-position suggestion, storage unit with {s['boxes']:,} boxes",
                f"median {_ms(s['median_ms'])}"
                + (f" (CPU {_ms(s['cpu_median_ms'])})" if "cpu_median_ms" in s else "")
                + ", "
                + f"max {_ms(s['max_ms'])} over {s['runs']} runs, "
                f"{s['queries']} queries",
                f"< {SUGGEST_TARGET_MS} ms (median)",
                s["median_ms"] < SUGGEST_TARGET_MS,
            )
        )
    stores = [("one request", (http or {}).get("store"))]
    stores += [(k, (service or {}).get(k)) for k in ("store", "store_rack", "move")]
    modes = {
        "one request": "one request to the bulk-store API",
        "store": "services only: units_store",
        "store_rack": "rack-scan import (rack_scan_apply)",
        "move": "services only: units_move of all 96 to another box",
    }
    for key, st in stores:
        if st is None:
            continue
        name = f"{'Move' if key == 'move' else 'Store'} a 96-unit 8×12 box: {modes[key]}"
        if "error" in st:
            out.append(Figure(name, f"ERROR {st['error']}", key=f"store-{key}"))
            continue
        ok = st["stored"] == st["units"] and st.get("status", 200) == 200
        status = f", HTTP {st['status']}" if "status" in st else ""
        queries = f"{st['queries']:,} queries" if st["queries"] >= 0 else "queries not counted"
        how = f" ({st['mode']})".replace("<code>", "{code}") if key == "one request" else ""
        cpu = f", CPU {_ms(st['cpu_ms'])}" if "cpu_ms" in st else ""
        cpu += f", slowest {_ms(st['max_ms'])}" if "max_ms" in st else ""
        out.append(
            Figure(
                name,
                f"{_ms(st['ms'])} ({st['ms_per_unit']:.1f} ms/unit{cpu}, {queries}), "
                f"{st['stored']}/{st['units']} {'moved' if key == 'move' else 'stored'}"
                f"{status}{how}",
                f"all stored, ≤ {STORE_QUERIES_TARGET} queries, ≤ {STORE_MS_TARGET} ms"
                if key == "one request"
                else "",
                ok and 0 <= st["queries"] <= STORE_QUERIES_TARGET and st["ms"] <= STORE_MS_TARGET
                if key == "one request"
                else None,
                key=f"store-{key}",
            )
        )
    return out


def header(result: dict[str, Any]) -> str:
    info = result["dataset"]
    counts = info["counts"]
    size = info["size_bytes"] / 1024**3
    return (
        f"{ENGINE_NAMES[result['engine']]}, {result['units']:,} units "
        f"({counts.get('biobank.Participant', 0):,} participants, "
        f"{counts.get('biobank.Aspirate', 0):,} aspirates, {info['boxes']:,} boxes in "
        f"{info['tanks']} tanks, {counts.get('biobank.CustodyEvent', 0):,} custody events; "
        f"built in {info['seconds']:.0f} s, {size:.2f} GiB)"
    )


def text(result: dict[str, Any], small: dict[str, Any] | None) -> str:
    rows = figures(result, small)
    width = max(len(f.name) for f in rows)
    vwidth = min(max(len(f.value) for f in rows), 96)
    lines = [f"== {header(result)} ==", ""]
    lines.append(f"{'figure':<{width}}  {'value':<{vwidth}}  {'target':<22}result")
    lines.append("-" * (width + vwidth + 32))
    for f in rows:
        lines.append(f"{f.name:<{width}}  {f.value:<{vwidth}}  {f.target:<22}{f.verdict}")
    load = result["machine"].get("load_average_at_start")
    end = result.get("load_average_at_end")
    if load and end:
        lines.append("")
        lines.append(
            f"load average at start {load[0]:.1f}, at end {end[0]:.1f} on "
            f"{result['machine']['nproc']} cores (other work on the machine makes timings noisy)"
        )
    misses = [f.name for f in rows if f.ok is False]
    lines.append(f"targets: {sum(f.ok is True for f in rows)} PASS, {len(misses)} MISS")
    return "\n".join(lines)


def markdown(results: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> str:
    """One table, a column per database, for the README."""
    columns = [{f.key: f for f in figures(r, s)} for r, s in results]
    keys: list[str] = []
    for column in columns:
        keys += [k for k in column if k not in keys]
    heads = [f"{ENGINE_NAMES[r['engine']]}, {r['units']:,} units" for r, _ in results]
    lines = [
        "| figure | target | " + " | ".join(heads) + " |",
        "|---|---|" + "---|" * len(heads),
    ]
    for key in keys:
        present = [c[key] for c in columns if key in c]
        target = next((f.target for f in present if f.target), "")
        cells = []
        for column in columns:
            f = column.get(key)
            cells.append(
                "" if f is None else f"{f.value} **{f.verdict}**" if f.verdict else f.value
            )
        lines.append(f"| {present[0].name} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line(result: dict[str, Any]) -> str:
    m = result["machine"]
    return (
        f"{m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, {m['os']}; Python {m['python']}, "
        f"Django {m['django']}, gunicorn {m['gunicorn']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']}; {m['date']}"
    )


# The main operations, one row each, for the table of how cost grows with the data set.
GROWTH_KEYS = [
    ("Scan via API (POST /api/scan/, random units), p50 / p99", "scan p50 / p99"),
    ("Floor: minimal authenticated DRF endpoint, p50 / p99", "floor p50 / p99"),
    ("Scan p99 ÷ floor p99 (p50 ratio in brackets)", "scan ÷ floor, p99 (p50)"),
    ("store-one request", "store 96-unit box, one API request"),
    ("store-store", "store 96 units, units_store"),
    ("store-store_rack", "rack-scan import of 96 units"),
    ("store-move", "move 96 units, units_move"),
    ("admin-storage unit page", "storage-unit page, 1,000 boxes"),
    ("Free-position suggestion, storage unit with 1,000 boxes", "free-position suggestion"),
    ("admin-units (productunit) list", "admin unit list"),
    ("admin-freezer map", "freezer map (one box)"),
]


def _short(figure: Figure) -> str:
    """The figure's value without the long explanations: time, CPU and queries."""
    value = figure.value
    if figure.key.startswith("store-"):
        took = value.split(" (")[0]
        cpu = re.search(r"CPU ([\d,.]+ ms)", value)
        queries = re.search(r"([\d,]+) queries", value)
        value = took + (f" (CPU {cpu.group(1)})" if cpu else "")
        value += f", {queries.group(1)} q." if queries else ""
    else:
        if " pairs" in value:  # the scan ratio: drop the pair and error counts
            value = value.split(" pairs")[0].rsplit(", ", 1)[0]
        value = value.replace(" queries", " q.").replace(" over 20 runs", "")
    return value + (f" **{figure.verdict}**" if figure.verdict else "")


def growth(results: list[dict[str, Any]]) -> str:
    """A row per main operation, a column per database and size: how cost grows."""
    columns = [{f.key: f for f in figures(r, None)} for r in results]
    heads = [f"{ENGINE_NAMES[r['engine']]} {r['units']:,}" for r in results]
    lines = ["| operation | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for key, label in GROWTH_KEYS:
        cells = [_short(c[key]) if key in c else "" for c in columns]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
