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
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dataset import OUT, PLATE_BOX_TYPE, REPO, Target, django_setup

VENV_BIN = Path(sys.executable).parent
SCAN_REQUESTS = 2000  # sequential scan + floor pairs
SCAN_BUDGET_S = 90
LOAD_REQUESTS = 5000
LOAD_BUDGET_S = 20
LOAD_CONNECTIONS = 8
STATIC_REQUESTS = 1000
STATIC_PATH = "/static/admin/css/base.css"
SUGGEST_RUNS = 20
STORE_UNITS = 96
LABEL_HTTP = {"zpl": 400, "png": 100, "svg": 150, "pdf": 60}
LABEL_HTTP_BUDGET_S = 8
SLOW_PAGE_S = 2.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds) in milliseconds."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ms(ordered[index])


def unit_codes(units: int, count: int, seed: int = 1) -> list[str]:
    from biobank.identifiers import Kind, format_id

    rng = random.Random(seed)
    return [format_id(Kind.UNIT, rng.randint(1, units)) for _ in range(count)]


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
    participant = Participant.objects.order_by("pk").first()
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


def _store_setup(count: int) -> tuple[Any, list[Any], Any]:
    """An empty 8×12 box in an intake tank and ``count`` fresh frozen units (not timed)."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import F

    from biobank.identifiers import Kind, format_id
    from biobank.models import (
        BoxType,
        Container,
        FreezingRun,
        IdSequence,
        ProductUnit,
        Site,
        StorageUnit,
    )
    from biobank.services.containers import container_create, storage_unit_create

    user = get_user_model().objects.get(username="bench")
    lab = Site.objects.get(is_lab=True)
    tank = StorageUnit.objects.filter(site=lab, name="Bench intake tank").first()
    if tank is None:
        tank = storage_unit_create(
            site=lab,
            name="Bench intake tank",
            kind="ln2_tank",
            min_temperature_c=Decimal(-196),
            max_temperature_c=Decimal(-150),
            actor=user,
        )
    rack = Container.objects.filter(storage_unit=tank, parent=None, name="Intake rack").first()
    if rack is None:
        rack = container_create(name="Intake rack", kind="rack", storage_unit=tank, actor=user)
    box = container_create(
        name=f"Intake box {time.strftime('%Y%m%d-%H%M%S')}-{random.randrange(10**6):06d}",
        kind="box",
        parent=rack,
        box_type=BoxType.objects.get(name=PLATE_BOX_TYPE),
        actor=user,
    )
    run = FreezingRun.objects.select_related("processing").order_by("pk").first()
    with transaction.atomic():
        IdSequence.objects.filter(prefix=Kind.UNIT.value).update(
            last_number=F("last_number") + count
        )
        last = IdSequence.objects.get(prefix=Kind.UNIT.value).last_number
    codes = [format_id(Kind.UNIT, n) for n in range(last - count + 1, last + 1)]
    ProductUnit.objects.bulk_create(
        ProductUnit(
            code=code,
            processing=run.processing,
            aspirate_id=run.processing.aspirate_id,
            participant_id=run.processing.participant_id,
            container_type="cryovial",
            cell_number=1_000_000,
            volume_ml=1,
            freezing_run=run,
            status="frozen",
            created_at=run.finished_at,
        )
        for code in codes
    )
    units = list(ProductUnit.objects.filter(code__in=codes).order_by("code"))
    return box, units, user


def store_route(code: str) -> str | None:
    """The bulk-store API route for a box, if the project has one (looked up, not assumed)."""
    from django.urls import NoReverseMatch, reverse

    for name in ("containers-store", "boxes-store"):
        with contextlib.suppress(NoReverseMatch):
            return reverse(name, kwargs={"code": code})
    return None


def _store_body(box: Any, units: list[Any]) -> dict[str, Any]:
    box_type = box.box_type
    positions = [
        box_type.position_label(r, c)
        for r in range(1, box_type.rows + 1)
        for c in range(1, box_type.columns + 1)
    ]
    return {
        "placements": [
            {"unit": u.code, "position": p} for u, p in zip(units, positions, strict=False)
        ]
    }


def store_box_http(base: str, token: str) -> dict[str, Any]:
    """POST one 96-unit box to the bulk-store endpoint of the gunicorn server; then the same
    request once more in-process (django.test.Client), only to count its queries."""
    import requests
    from django.db import connection
    from django.test import Client

    box, units, _ = _store_setup(STORE_UNITS)
    url = store_route(box.code)
    if url is None:
        return {"error": "no bulk-store endpoint (containers-store) in the API yet"}
    start = time.perf_counter()
    response = requests.post(
        base + url,
        json=_store_body(box, units),
        headers={"Authorization": f"Token {token}"},
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    stored = box.placements.open().count()
    box2, units2, _ = _store_setup(STORE_UNITS)
    executed: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    with connection.execute_wrapper(count):
        second = client.post(
            store_route(box2.code), _store_body(box2, units2), content_type="application/json"
        )
    return {
        "mode": f"HTTP POST {url.replace(box.code, '{code}')}",
        "box": box.code,
        "units": len(units),
        "stored": stored,
        "status": response.status_code,
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "queries": len(executed) if second.status_code == 200 else -1,
    }


def store_box_service() -> dict[str, Any]:
    """Store 96 frozen units into an empty 8×12 box: one set-based ``units_store`` call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.services.storage import StoreItem, units_store

    box, units, user = _store_setup(STORE_UNITS)
    box_type = box.box_type
    positions = [
        box_type.position_label(r, c)
        for r in range(1, box_type.rows + 1)
        for c in range(1, box_type.columns + 1)
    ]
    items = [StoreItem(u, p) for u, p in zip(units, positions, strict=False)]
    with CaptureQueriesContext(connection) as ctx:
        start, cpu = time.perf_counter(), time.process_time()
        units_store(container=box, items=items, actor=user)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    stored = box.placements.open().count()
    return {
        "mode": "services only: units_store of 96 units",
        "box": box.code,
        "units": len(units),
        "stored": stored,
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "cpu_ms": ms(cpu),
        "queries": len(ctx.captured_queries),
    }


def move_box_service() -> dict[str, Any]:
    """Move 96 stored units from one 8×12 box into another: one ``units_move`` call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.services.storage import MoveItem, StoreItem, units_move, units_store

    box, units, user = _store_setup(STORE_UNITS)
    units_store(container=box, items=[StoreItem(u) for u in units], actor=user)
    other, _, _ = _store_setup(0)
    items = [MoveItem(u, other) for u in units]
    with CaptureQueriesContext(connection) as ctx:
        start, cpu = time.perf_counter(), time.process_time()
        units_move(items=items, actor=user, reason="bench")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "mode": "services only: units_move of 96 units to another box",
        "box": other.code,
        "units": len(units),
        "stored": other.placements.open().count(),
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "cpu_ms": ms(cpu),
        "queries": len(ctx.captured_queries),
    }


def store_box_rack_scan() -> dict[str, Any]:
    """The same 96 units stored by a rack-scanner import: ``rack_scan_apply`` of a CSV
    (what the admin's rack-import page applies in one request), one transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from biobank.rack_csv import parse_rack_csv
    from biobank.services.racks import rack_scan_apply

    box, units, user = _store_setup(STORE_UNITS)
    box_type = box.box_type
    positions = [
        box_type.position_label(r, c)
        for r in range(1, box_type.rows + 1)
        for c in range(1, box_type.columns + 1)
    ]
    csv = "".join(f"{p},{u.code}\n" for p, u in zip(positions, units, strict=False)).encode()
    with CaptureQueriesContext(connection) as ctx:
        start, cpu = time.perf_counter(), time.process_time()
        read = parse_rack_csv(csv, rows=box_type.rows, cols=box_type.columns)
        counts = rack_scan_apply(box=box, read=read, actor=user)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "mode": "rack-scan import (rack_scan_apply)",
        "box": box.code,
        "units": len(units),
        "stored": counts["stored"],
        "ms": ms(elapsed),
        "ms_per_unit": round(elapsed * 1000 / len(units), 2),
        "cpu_ms": ms(cpu),
        "queries": len(ctx.captured_queries),
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


# --- HTTP: gunicorn in production mode ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(
    target: Target,
    *,
    workers: int = 2,
    conn_max_age: int = 60,
    settings: str = "bench.settings_bench",
) -> Iterator[str]:
    """Serve the project (bench URLconf) with gunicorn, DEBUG off; stopped on exit."""
    import requests

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key-not-for-production"),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": target.url,
        "CONN_MAX_AGE": str(conn_max_age),
    }
    suffix = "" if settings == "bench.settings_bench" else f"-{settings.rsplit('.', 1)[-1]}"
    log = (OUT / f"gunicorn-{target.engine}-{target.units}{suffix}.log").open("w")
    command = [
        str(VENV_BIN / "gunicorn"),
        "config.wsgi",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log.name}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/bench/floor/", timeout=2).status_code == 401:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer in 60 s; see {log.name}")
            time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group of the gunicorn we started
                proc.wait(timeout=10)
        log.close()


def _session(token: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def scan_latency(base: str, token: str, codes: list[str]) -> dict[str, Any]:
    """Sequential, interleaved scan and floor requests (same noise for both)."""
    session = _session(token)
    scan_url, floor_url = f"{base}/api/scan/", f"{base}/bench/floor/"
    for code in codes[:100]:  # warm both workers' connections and caches
        session.post(scan_url, json={"code": code})
        session.post(floor_url, json={"code": code})
    scan, floor, errors = [], [], 0
    deadline = time.monotonic() + SCAN_BUDGET_S
    for code in codes[100 : 100 + SCAN_REQUESTS]:
        start = time.perf_counter()
        r = session.post(scan_url, json={"code": code})
        scan.append(time.perf_counter() - start)
        errors += r.status_code != 200 or r.json().get("code") != code
        start = time.perf_counter()
        r = session.post(floor_url, json={"code": code})
        floor.append(time.perf_counter() - start)
        errors += r.status_code != 200
        if time.monotonic() > deadline:
            break
    return {
        "requests": len(scan),
        "errors": int(errors),
        "scan_p50_ms": percentile(scan, 50),
        "scan_p99_ms": percentile(scan, 99),
        "floor_p50_ms": percentile(floor, 50),
        "floor_p99_ms": percentile(floor, 99),
        "ratio_p99": round(percentile(scan, 99) / percentile(floor, 99), 2),
        "ratio_p50": round(percentile(scan, 50) / percentile(floor, 50), 2),
    }


def load_test(
    base: str,
    token: str,
    request: Callable[[Any, int], bool],
    *,
    total: int = LOAD_REQUESTS,
    budget: float = LOAD_BUDGET_S,
    connections: int = LOAD_CONNECTIONS,
) -> dict[str, Any]:
    """``connections`` threads, each with its own keep-alive session, until ``total``
    requests are sent or ``budget`` seconds pass. ``request(session, i)`` returns ok."""
    lock = threading.Lock()
    counter = iter(range(total))
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + budget

    def worker() -> None:
        session = _session(token)
        while time.monotonic() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                ok = request(session, i)
            except Exception as exc:
                ok = False
                with lock:
                    errors.append(type(exc).__name__)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                if not ok:
                    errors.append("bad response")

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {
        "connections": connections,
        "requests": len(latencies),
        "seconds": round(elapsed, 1),
        "per_s": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def labels_http(base: str, token: str, codes: list[str]) -> list[dict[str, Any]]:
    """One client, sequential GET /api/labels/<code>.<fmt> (database lookup + render)."""
    session = _session(token)
    rows = []
    for fmt, count in LABEL_HTTP.items():
        session.get(f"{base}/api/labels/{codes[0]}.{fmt}")
        done = errors = 0
        start = time.perf_counter()
        for code in codes[1 : count + 1]:
            r = session.get(f"{base}/api/labels/{code}.{fmt}")
            done += 1
            errors += r.status_code != 200 or not r.content
            if time.perf_counter() - start > LABEL_HTTP_BUDGET_S:
                break
        elapsed = time.perf_counter() - start
        rows.append({"format": fmt, "n": done, "per_s": round(done / elapsed), "errors": errors})
    return rows


def http_part(target: Target) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.get(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    codes = unit_codes(target.units, 100 + SCAN_REQUESTS)
    load_codes = unit_codes(target.units, LOAD_REQUESTS, seed=2)
    result: dict[str, Any] = {"workers": 2, "conn_max_age": 60}
    with gunicorn(target) as base:
        result["latency"] = scan_latency(base, token.key, codes)

        def scan(session: Any, i: int) -> bool:
            code = load_codes[i]
            r = session.post(f"{base}/api/scan/", json={"code": code})
            return r.status_code == 200 and r.json().get("code") == code

        def floor(session: Any, i: int) -> bool:
            return session.post(f"{base}/bench/floor/", json={}).status_code == 200

        def static(session: Any, i: int) -> bool:
            r = session.get(f"{base}{STATIC_PATH}")
            return r.status_code == 200 and len(r.content) > 1000

        result["load_scan"] = load_test(base, token.key, scan)
        result["load_floor"] = load_test(base, token.key, floor)
        result["static"] = load_test(
            base, token.key, static, total=STATIC_REQUESTS, budget=10, connections=4
        )
        probe = _session(token.key).get(f"{base}{STATIC_PATH}")
        result["static"]["headers"] = {
            k: probe.headers.get(k, "") for k in ("Cache-Control", "Content-Type")
        }
        result["labels_http"] = labels_http(base, token.key, unit_codes(target.units, 800, 3))
        result["store"] = guarded(lambda: store_box_http(base, token.key))
    return result


# --- machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import sqlite3

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kib / 1024 / 1024:.0f} GiB"
    pg = "?"
    with contextlib.suppress(Exception):
        import psycopg

        from bench.dataset import PG_SERVER

        with psycopg.connect(f"{PG_SERVER}/postgres") as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
    import django
    import gunicorn as gunicorn_pkg

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg,
        "django": django.get_version(),
        "gunicorn": gunicorn_pkg.__version__,
        "os": platform.platform(terse=True),
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


PARTS = ("admin", "service", "labels", "http")


def guarded(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A figure that failed is reported as an error, not a crash of the whole run."""
    try:
        return measure()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}".strip()[:300]}


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
