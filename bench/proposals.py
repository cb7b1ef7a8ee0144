"""Before/after figures for the changes the benchmark recommends in ``biobank/``.

    .venv/bin/python bench/proposals.py --db postgres|sqlite [--units 1000000]

Nothing in ``biobank/`` is edited: each proposal is a prototype here (the exact code to
apply is in its docstring), patched in for the measurement only, and the proposed indexes
are created inside a transaction that is rolled back, so the bench database is unchanged.
Once a proposal is applied in ``biobank/``, its "current" and "proposed" figures should
match and the prototype can be deleted from this file.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dataset import Target, django_setup


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def _interleaved(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


# --- 1. free-position suggestion ---------------------------------------------------------


def suggest_proposed(*, storage_unit: Any, container_type: str | None = None) -> Any:
    """Proposed body of the storage-unit branch of
    ``biobank.services.storage.free_position_suggest``::

        used = (
            Placement.objects.filter(container=OuterRef("pk"), ended_at__isnull=True)
            .order_by()
            .values("container")
            .annotate(n=Count("*"))
            .values("n")
        )
        boxes = (
            Container.objects.filter(storage_unit=storage_unit, kind=ContainerKind.BOX, active=True)
            .filter(_accepts(container_type))
            .annotate(
                used=Coalesce(Subquery(used), 0),
                capacity=F("box_type__rows") * F("box_type__columns"),
            )
            .values_list("pk", "used", "capacity", "path")
        )
        # Counted once per box, over open placements only; chosen here, not in a HAVING
        # (which would evaluate the count twice).
        with_space = [b for b in boxes if b[1] < b[2]]
        if not with_space:
            raise ServiceError(...)  # as now
        pk, used_n, capacity, _ = min(with_space, key=lambda b: (-b[1], b[3], b[0]))
        best = Container.objects.select_related("box_type").get(pk=pk)
        best.used, best.capacity = used_n, capacity
        # ... then first_free_position(box=best) and the Suggestion, as now.

    The current query LEFT JOINs every placement the boxes ever had (open and ended: the
    ended ones grow for decades) and reads their heap rows to count the open ones.
    """
    from django.db.models import Count, F, OuterRef, Subquery
    from django.db.models.functions import Coalesce

    from biobank.models import Container, ContainerKind, Placement
    from biobank.services.storage import Suggestion, _accepts, first_free_position

    used = (
        Placement.objects.filter(container=OuterRef("pk"), ended_at__isnull=True)
        .order_by()
        .values("container")
        .annotate(n=Count("*"))
        .values("n")
    )
    boxes = (
        Container.objects.filter(storage_unit=storage_unit, kind=ContainerKind.BOX, active=True)
        .filter(_accepts(container_type))
        .annotate(
            used=Coalesce(Subquery(used), 0),
            capacity=F("box_type__rows") * F("box_type__columns"),
        )
        .values_list("pk", "used", "capacity", "path")
    )
    with_space = [b for b in boxes if b[1] < b[2]]
    pk, used_n, capacity, _ = min(with_space, key=lambda b: (-b[1], b[3], b[0]))
    best = Container.objects.select_related("box_type").get(pk=pk)
    best.used, best.capacity = used_n, capacity
    found = first_free_position(box=best)
    label = best.box_type.position_label(*found)
    return Suggestion(best, *found, label, "proposed")


def proposal_suggest(target: Target, runs: int) -> None:
    from biobank.models import StorageUnit
    from biobank.services.storage import free_position_suggest

    tank = StorageUnit.objects.get(code=target.info()["suggest_tank"])
    now = free_position_suggest(storage_unit=tank, container_type="cryobag")
    new = suggest_proposed(storage_unit=tank, container_type="cryobag")
    same = (now.box.pk, now.position) == (new.box.pk, new.position)
    times = _interleaved(
        {
            "current": lambda: free_position_suggest(storage_unit=tank, container_type="cryobag"),
            "proposed": lambda: suggest_proposed(storage_unit=tank, container_type="cryobag"),
        },
        runs,
    )
    print(f"1. free-position suggestion, 1,000 boxes ({runs} runs each, interleaved)")
    print(f"   same suggestion: {same} ({new.box.code} {new.position})")
    for name, samples in times.items():
        print(f"   {name:<10}median {_median_ms(samples)}   max {max(samples) * 1000:8.1f} ms")


# --- 2. scan: a unit and its location in one query ---------------------------------------


@contextlib.contextmanager
def scan_one_query() -> Iterator[None]:
    """Proposed in ``biobank/scanning/resolve.py``: resolve a unit with its open placement
    in the same query (one LEFT JOIN; at most one open placement per unit, by constraint)::

        from django.db.models import F, FilteredRelation, Q

        def _units() -> QuerySet[ProductUnit]:
            return ProductUnit.objects.annotate(
                open_placement=FilteredRelation(
                    "placements", condition=Q(placements__ended_at__isnull=True)
                ),
                loc_path=F("open_placement__container__path"),
                loc_code=F("open_placement__container__code"),
                loc_position=F("open_placement__position"),
                loc_checked_out=F("open_placement__checked_out_at"),
            )

        # MODELS[Kind.UNIT]: no select_related("participant"), nothing reads it:
        Kind.UNIT: (ProductUnit, (), "units"),

        # in scan_resolve() (select_related() with no names would join every FK):
        queryset = _units() if kind is Kind.UNIT else model.objects.all()
        if related:
            queryset = queryset.select_related(*related)
        item = queryset.filter(code=scan.value).first()

        # in ScanResult.location, for a ProductUnit:
        if hasattr(item, "loc_code"):
            if not item.loc_code:
                return ""
            text = f"{item.loc_path} ({item.loc_code}) {item.loc_position}"
            if item.loc_checked_out:
                text += " — checked out, slot reserved"
            return text.strip()
        return location_of(item)
    """
    from django.db.models import F, FilteredRelation, Q

    import biobank.scanning.resolve as resolve
    from biobank.identifiers import Kind
    from biobank.models import ProductUnit

    original_location = resolve.ScanResult.location
    original_models = dict(resolve.MODELS)

    def location(self: Any) -> str:
        item = self.item
        if isinstance(item, ProductUnit) and hasattr(item, "loc_code"):
            if not item.loc_code:
                return ""
            text = f"{item.loc_path} ({item.loc_code}) {item.loc_position}"
            if item.loc_checked_out:
                text += " — checked out, slot reserved"
            return text.strip()
        return original_location.fget(self)

    class Units:
        class objects:  # stands in for the model manager
            @staticmethod
            def select_related(*related: str) -> Any:
                units = ProductUnit.objects.annotate(
                    open_placement=FilteredRelation(
                        "placements", condition=Q(placements__ended_at__isnull=True)
                    ),
                    loc_path=F("open_placement__container__path"),
                    loc_code=F("open_placement__container__code"),
                    loc_position=F("open_placement__position"),
                    loc_checked_out=F("open_placement__checked_out_at"),
                )
                # select_related() with no names would join every foreign key.
                return units.select_related(*related) if related else units

    resolve.ScanResult.location = property(location)
    # No select_related("participant") for units: the scan result does not use it.
    resolve.MODELS[Kind.UNIT] = (Units, (), original_models[Kind.UNIT][2])
    try:
        yield
    finally:
        resolve.ScanResult.location = original_location
        resolve.MODELS.clear()
        resolve.MODELS.update(original_models)


def proposal_scan(target: Target, runs: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from bench.measure import unit_codes

    user = get_user_model().objects.get(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    codes = iter(unit_codes(target.units, 3 * runs + 100, seed=7))

    def post(path: str) -> Any:
        return client.post(path, {"code": next(codes)}, content_type="application/json")

    def scan_proposed() -> Any:
        with scan_one_query():
            return post("/api/scan/")

    for _ in range(30):
        post("/bench/floor/")
        post("/api/scan/")
        scan_proposed()
    code = unit_codes(target.units, 1, seed=11)[0]
    now = client.post("/api/scan/", {"code": code}, content_type="application/json").json()
    executed: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append(sql)
        return execute(sql, params, many, context)

    with scan_one_query(), connection.execute_wrapper(count):
        new = client.post("/api/scan/", {"code": code}, content_type="application/json").json()
    times = _interleaved(
        {"floor": lambda: post("/bench/floor/"), "current": lambda: post("/api/scan/")}
        | {"proposed": scan_proposed},
        runs,
    )
    floor = statistics.median(times["floor"])
    print(f"2. scan view in-process (no HTTP; {runs} runs each, interleaved)")
    print(f"   same response: {now == new}; proposed queries: {len(executed)}")
    for name, samples in times.items():
        ratio = statistics.median(samples) / floor
        print(f"   {name:<10}median {_median_ms(samples)}   {ratio:4.2f}× the floor")


def proposal_scan_http(target: Target, pairs: int) -> None:
    """The target figure itself: gunicorn serving the current code and gunicorn serving
    the prototype (bench/settings_proposals.py) at the same time, requests interleaved."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from bench.measure import _session, gunicorn, percentile, unit_codes

    token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username="bench"))
    session = _session(token.key)
    codes = unit_codes(target.units, pairs + 100, seed=5)
    with (
        gunicorn(target) as current,
        gunicorn(target, settings="bench.settings_proposals") as proposed,
    ):
        urls = {
            "floor": f"{current}/bench/floor/",
            "current": f"{current}/api/scan/",
            "proposed": f"{proposed}/api/scan/",
        }
        for code in codes[:100]:
            for url in urls.values():
                session.post(url, json={"code": code})
        times: dict[str, list[float]] = {name: [] for name in urls}
        errors = 0
        deadline = time.monotonic() + 120
        for code in codes[100:]:
            for name, url in urls.items():
                start = time.perf_counter()
                response = session.post(url, json={"code": code})
                times[name].append(time.perf_counter() - start)
                errors += response.status_code != 200
            if time.monotonic() > deadline:
                break
    floor = percentile(times["floor"], 99)
    print(f"2b. scan over HTTP, gunicorn -w 2 each ({len(times['floor'])} interleaved triples)")
    for name, samples in times.items():
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(
            f"   {name:<10}p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            f"   p99 ÷ floor p99 {p99 / floor:4.2f}×"
        )
    print(f"   errors: {errors}")


# --- 3. admin list pages at scale --------------------------------------------------------

INDEXES = {
    # (table, name, columns): Meta.indexes to add, see the report
    ("biobank_custodyevent", "bench_custodyevent_at_id", "at, id"),
    ("biobank_placement", "bench_placement_placed_at_id", "placed_at, id"),
    ("biobank_aspirate", "bench_aspirate_collected_at_id", "collected_at, id"),
}


def _static_filter(field: str, values: list[str]) -> type:
    from django.contrib import admin

    class StaticValues(admin.SimpleListFilter):
        title = field.replace("_", " ")
        parameter_name = field

        def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
            return [(v, v.replace("_", " ")) for v in values]

        def queryset(self, request: Any, queryset: Any) -> Any:
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    return StaticValues


@contextlib.contextmanager
def admin_proposed() -> Iterator[None]:
    """Proposed in ``biobank/admin/samples.py`` and ``biobank/admin/storage.py`` (see the
    report for the code): no ``date_hierarchy`` on the big logs (its year list is a
    DISTINCT over every row) but a date filter; list filters on free-text columns from
    fixed values instead of a DISTINCT over every row; one COUNT instead of two; unit
    search by barcode through the unique indexes."""
    from django.contrib import admin

    from biobank.models import Aspirate, CustodyEvent, Placement, ProductUnit
    from biobank.scanning.clean import ScanError, resolve_scan_text
    from biobank.services.lifecycle import TRANSITIONS

    site = admin.site
    events, placements = site._registry[CustodyEvent], site._registry[Placement]
    aspirates, units = site._registry[Aspirate], site._registry[ProductUnit]
    saved = [
        (ma, name, ma.__dict__.get(name, AttributeError))
        for ma in (events, placements, aspirates, units)
        for name in ("date_hierarchy", "list_filter", "show_full_result_count", "search_fields")
    ]
    saved.append((units, "get_search_results", units.__dict__.get("get_search_results", None)))
    actions = sorted({a for table in TRANSITIONS.values() for a in table} | {"create"})
    statuses = sorted(
        {t.target for table in TRANSITIONS.values() for t in table.values() if t.target}
        | {s for table in TRANSITIONS.values() for t in table.values() for s in t.sources}
    )
    kinds = sorted({*TRANSITIONS, "participant", "dose"})
    events.date_hierarchy = None
    events.list_filter = [
        ("at", admin.DateFieldListFilter),
        _static_filter("item_kind", kinds),
        _static_filter("action", actions),
        _static_filter("to_status", statuses),
        "site",
    ]
    placements.date_hierarchy = None
    placements.list_filter = [
        ("placed_at", admin.DateFieldListFilter),
        "container__storage_unit",
        "ended_at",
    ]
    aspirates.date_hierarchy = None
    aspirates.list_filter = [("collected_at", admin.DateFieldListFilter), *aspirates.list_filter]
    for ma in (events, placements, aspirates, units):
        ma.show_full_result_count = False
    default_search = type(units).get_search_results

    def search(request: Any, queryset: Any, term: str) -> tuple[Any, bool]:
        from biobank.identifiers import Kind

        try:
            scan = resolve_scan_text(term)
        except ScanError:
            return default_search(units, request, queryset, term)
        field = {
            Kind.UNIT: "code",
            Kind.ASPIRATE: "aspirate__code",
            Kind.PROCESSING: "processing__code",
            Kind.PARTICIPANT: "participant__code",
        }.get(scan.parsed.kind)
        if field is not None:
            return queryset.filter(**{field: scan.value}), False
        if scan.parsed.kind in (Kind.BOX, Kind.CONTAINER):
            where = {"placements__container__code": scan.value}
            return queryset.filter(**where, placements__ended_at__isnull=True), False
        return default_search(units, request, queryset, term)

    units.get_search_results = search
    units.search_fields = [f for f in units.search_fields if not f.startswith("placements__")]
    try:
        yield
    finally:
        for ma, name, value in saved:
            if value is AttributeError or value is None:
                ma.__dict__.pop(name, None)
            else:
                setattr(ma, name, value)


def proposal_admin(target: Target) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from biobank.models import ProductUnit

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    code = ProductUnit.objects.order_by("pk").values_list("code", flat=True).first()
    pages = [
        ("custody event list", "/admin/biobank/custodyevent/"),
        ("placement list", "/admin/biobank/placement/"),
        ("aspirate list", "/admin/biobank/aspirate/"),
        ("unit list", "/admin/biobank/productunit/"),
        ("unit list, search by code", f"/admin/biobank/productunit/?q={code}"),
    ]

    def measure() -> list[tuple[int, int, float]]:
        out = []
        for _, url in pages:
            with CaptureQueriesContext(connection) as ctx:
                start = time.perf_counter()
                response = client.get(url)
                out.append(
                    (response.status_code, len(ctx.captured_queries), time.perf_counter() - start)
                )
        return out

    print("3. admin pages (one request each, after one warm-up request)")
    measure()
    before = measure()
    start = time.perf_counter()
    with transaction.atomic():
        with connection.cursor() as cursor:
            for table, name, columns in sorted(INDEXES):
                cursor.execute(f'CREATE INDEX "{name}" ON "{table}" ({columns})')
        indexed = time.perf_counter() - start
        with admin_proposed():
            measure()
            after = measure()
        transaction.set_rollback(True)  # the bench database stays as built
    print(f"   (proposed indexes built in {indexed:.1f} s, then rolled back)")
    for (name, _), b, a in zip(pages, before, after, strict=True):
        print(
            f"   {name:<28} current {b[2] * 1000:8.0f} ms, {b[1]:2d} queries (HTTP {b[0]})"
            f"   proposed {a[2] * 1000:8.0f} ms, {a[1]:2d} queries (HTTP {a[0]})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--only", choices=("suggest", "scan", "scan-http", "admin"), action="append"
    )
    args = parser.parse_args()
    target = Target(args.db, args.units)
    if not target.exists():
        raise SystemExit(f"{target.title} is not built: run bench/build first")
    django_setup(target)
    import os

    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)  # admin pages, DEBUG off

    print(f"{target.title}; load average {os.getloadavg()[0]:.1f}")
    only = set(args.only or ("suggest", "scan", "scan-http", "admin"))
    if "suggest" in only:
        proposal_suggest(target, args.runs)
    if "scan" in only:
        proposal_scan(target, max(args.runs, 300))
    if "scan-http" in only:
        proposal_scan_http(target, 1500)
    if "admin" in only:
        proposal_admin(target)


if __name__ == "__main__":
    main()
