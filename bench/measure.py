"""Measurements on one built benchmark database, in one process (Django reads its settings
once per process). ``bench/run`` calls this; run it alone with::

    .venv/bin/python bench/measure.py --db postgres --units 1000000 --parts all --json out.json

Parts: ``admin`` (queries and time per admin page, in-process), ``service`` (free-position
suggestion, storing a 96-unit box), ``labels`` (pure rendering vs. the raw libraries) and
``http`` (gunicorn in production mode: scan vs. floor latency, load test, static files,
labels over HTTP). Every request loop is bounded in count and in time, and goes to
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure_http import http_part
from bench.measure_store import move_box_service, store_box_rack_scan, store_box_service
from bench.target import REPO, Target, django_setup
from bench.timing import guarded, machine, ms

SUGGEST_RUNS = 20
SLOW_PAGE_S = 2.0


# --- in-process: admin pages -------------------------------------------------------------


def admin_pages(target: Target) -> list[dict[str, Any]]:
    """Queries and time per admin page, through the full stack (django.test.Client)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from biobank.models import Container, Participant, ProductUnit, StorageUnit

    info = target.info()
    user = get_user_model().objects.get(username="bench")
    client = Client()
    client.force_login(user)
    box = Container.objects.get(code=info["full_box"])
    tank = StorageUnit.objects.get(code=info["suggest_tank"])
    unit = ProductUnit.objects.order_by("pk").first()
    # Not the first participant: the store figures give fresh units to its first freezing run.
    participant = Participant.objects.order_by("-pk").first()
    changelist = "admin:biobank_{}_changelist"
    pages: list[tuple[str, str, bool]] = [
        ("units (productunit) list", reverse(changelist.format("productunit")), True),
        ("aspirate list", reverse(changelist.format("aspirate")), True),
        ("participant list", reverse(changelist.format("participant")), True),
        ("custody event list", reverse(changelist.format("custodyevent")), True),
        ("placement list", reverse(changelist.format("placement")), True),
        ("container list", reverse(changelist.format("container")), True),
        (
            f"freezer map: full 9×9 box {box.code}",
            reverse("admin:biobank_container_change", args=[box.pk]),
            True,
        ),
        (
            f"storage unit page: {tank.code}, 1,000 boxes",
            reverse("admin:biobank_storageunit_change", args=[tank.pk]),
            True,
        ),
        # Extra pages, no target: one unit, one participant (chain), a code search.
        ("unit page", reverse("admin:biobank_productunit_change", args=[unit.pk]), False),
        (
            "participant page (chain)",
            reverse("admin:biobank_participant_change", args=[participant.pk]),
            False,
        ),
        (
            "unit list, search by code",
            reverse(changelist.format("productunit")) + f"?q={unit.code}",
            False,
        ),
    ]
    results = []
    for name, url, targeted in pages:
        # First request warms templates and caches; a page that took over SLOW_PAGE_S is
        # not repeated (bounded run time), its cold figures are reported.
        times, counts, cpus = [], [], []
        for attempt in range(4):
            with CaptureQueriesContext(connection) as ctx:
                start, cpu = time.perf_counter(), time.process_time()
                response = client.get(url)
                took, cpu = time.perf_counter() - start, time.process_time() - cpu
            if attempt == 0 and took > SLOW_PAGE_S * 4:
                times, counts, cpus = [took], [len(ctx.captured_queries)], [cpu]
                break
            if attempt > 0:
                times.append(took)
                counts.append(len(ctx.captured_queries))
                cpus.append(cpu)
        slowest = max(ctx.captured_queries, key=lambda q: float(q["time"]))
        results.append(
            {
                "page": name,
                "url": url,
                "targeted": targeted,
                "status": response.status_code,
                "queries": counts[-1],
                "queries_stable": len(set(counts)) == 1,
                "runs": len(times),
                "ms": ms(statistics.median(times)),
                "cpu_ms": ms(statistics.median(cpus)),
                "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
                "slowest_query": slowest["sql"][:400],
            }
        )
    return results


# --- in-process: services ----------------------------------------------------------------


def suggestion(target: Target) -> dict[str, Any]:
    """free_position_suggest on the 1,000-box tank: median and max over 20 runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.models import Container, StorageUnit
    from biobank.services.containers import free_position_suggest

    tank = StorageUnit.objects.get(code=target.info()["suggest_tank"])
    boxes = Container.objects.filter(storage_unit=tank, kind="box").count()
    for _ in range(3):
        free_position_suggest(storage_unit=tank, container_type="cryobag")
    times, cpus = [], []
    for _ in range(SUGGEST_RUNS):
        with CaptureQueriesContext(connection) as ctx:
            start, cpu = time.perf_counter(), time.process_time()
            found = free_position_suggest(storage_unit=tank, container_type="cryobag")
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return {
        "boxes": boxes,
        "runs": len(times),
        "median_ms": ms(statistics.median(times)),
        "cpu_median_ms": ms(statistics.median(cpus)),
        "max_ms": ms(max(times)),
        "queries": len(ctx.captured_queries),
        "query_ms": [round(float(q["time"]) * 1000, 1) for q in ctx.captured_queries],
        "suggestion": f"{found.box.code} {found.position}",
    }


# --- labels: pure rendering --------------------------------------------------------------


def _labels_module() -> Any:
    path = REPO / "bench" / "labels"
    loader = importlib.machinery.SourceFileLoader("bench_labels", str(path))
    spec = importlib.util.spec_from_loader("bench_labels", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def labels_render(budget: float = 1.0) -> list[dict[str, Any]]:
    """Labels/s per format and template (bench/labels' functions) next to the raw library."""
    import functools

    lab = _labels_module()
    names = list(lab.KIND_FOR)
    for name in names:  # warm fonts and imports outside the timed loops
        for fmt in ("zpl", "png", "svg", "pdf"):
            lab.render(lab._contents(name, 1)[0], lab.get_template(name, 300), fmt)
    rows = []
    for index, (fmt, name) in enumerate(
        (f, n) for f in ("zpl", "png", "svg", "pdf") for n in names
    ):
        template = lab.get_template(name, 300)
        n = {"zpl": 2000, "png": 400, "svg": 400, "pdf": 200}[fmt]
        contents = lab._contents(name, n, first=1 + index * 100_000)
        done, ours = lab._rate(
            contents, functools.partial(lab.render, template=template, fmt=fmt), budget
        )
        label, base_fn = lab.BASELINES[fmt]
        symbology = template.symbology
        label = label.format(lib=lab.LIBS[symbology], rl=lab._RL_NAMES[symbology])
        base_done, base = lab._rate(
            [c.barcode for c in contents],
            functools.partial(base_fn, symbology=symbology),
            budget,
        )
        rows.append(
            {
                "format": fmt,
                "template": name,
                "symbology": symbology,
                "n": done,
                "per_s": round(ours),
                "baseline": label,
                "baseline_n": base_done,
                "baseline_per_s": round(base),
            }
        )
    return rows


PARTS = ("admin", "service", "labels", "http")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--units", type=int, required=True)
    parser.add_argument("--parts", default="all", help=f"comma-separated of {', '.join(PARTS)}")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    parts = PARTS if args.parts == "all" else tuple(args.parts.split(","))
    target = Target(args.db, args.units)
    if not target.exists():
        raise SystemExit(f"{target.title} is not built: run bench/build first")
    django_setup(target)
    from django.core.management import call_command

    # The schema moves on while the data set stays: apply any newer migrations first.
    call_command("migrate", interactive=False, verbosity=0)
    # Production mode serves hashed static files from the manifest (whitenoise).
    call_command("collectstatic", interactive=False, verbosity=0)
    began = time.perf_counter()
    result: dict[str, Any] = {
        "engine": args.db,
        "units": args.units,
        "dataset": target.info(),
        "machine": machine(),
    }
    steps: dict[str, Callable[[], Any]] = {
        "admin": lambda: admin_pages(target),
        "service": lambda: {
            "suggest": suggestion(target),
            "store": guarded(store_box_service),
            "store_rack": guarded(store_box_rack_scan),
            "move": guarded(move_box_service),
        },
        "labels": labels_render,
        "http": lambda: http_part(target),
    }
    for part in parts:
        print(f"  measuring {part} on {target.title} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result[part] = steps[part]()
        result.setdefault("seconds", {})[part] = round(time.perf_counter() - started, 1)
    result["total_seconds"] = round(time.perf_counter() - began, 1)
    result["load_average_at_end"] = os.getloadavg()
    args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
