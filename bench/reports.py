#!/usr/bin/env python
"""Reports and exports at scale: audit-trail export of N custody events, chain report of a
participant with 50 units.

    .venv/bin/python bench/reports.py [--db sqlite|postgres] [--events 1000000] [--rebuild]

Builds its own database once (bench/out/reports-<db>.sqlite3 or PostgreSQL database
``bench_reports``), then prints:
- audit-trail export through the real endpoint (GET /api/exports/audit-trail.csv, Django
  test client, streamed body consumed chunk by chunk): rows, seconds, rows/s, time to first
  chunk and peak RSS growth over the whole export (it stays flat: rows are streamed), and
  the peak Python heap (tracemalloc) of an export of the first N/10 events;
- the same for JSON Lines;
- the chain report (JSON and PDF) of a participant with 50 stored units, built through the
  services (every unit created, frozen and placed, so every custody event is real).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))

BATCH = 10_000
REPORT_UNITS = 50


def setup(db: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if db == "sqlite":
        url = f"sqlite:///{OUT / 'reports-sqlite.sqlite3'}"
    else:
        url = "postgres://postgres@127.0.0.1:5432/bench_reports"
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as conn:
            conn.autocommit = True
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = 'bench_reports'"
            ).fetchone()
            if not exists:
                conn.execute("CREATE DATABASE bench_reports")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    os.environ["DEBUG"] = "0"  # as in production: no query log kept in memory
    os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain HTTP in-process
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_events(n: int) -> tuple[object, object]:
    """A user, a participant and n custody events inserted in batches of one statement."""
    from django.contrib.auth import get_user_model

    from biobank.models import CustodyEvent, Participant
    from biobank.services.audit import event_record_bulk
    from tests.factories import load_trial, make_participant, make_user

    User = get_user_model()
    user = User.objects.filter(username="bench-auditor").first()
    if user is None:
        load_trial()
        user = make_user("bench-auditor")
    participant = Participant.objects.filter(pseudonym="BENCH-EVENTS").first()
    if participant is None:
        participant = make_participant(actor=user)
        participant.pseudonym = "BENCH-EVENTS"
        participant.save(update_fields=["pseudonym"])
    have = CustodyEvent.objects.count()
    if have >= n:
        return user, participant
    print(f"-- inserting {n - have:,} custody events", flush=True)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    now = dt.datetime.now(dt.UTC)
    actions = ["collect", "accept", "store", "move", "check_out", "check_in", "thaw"]

    def event(i: int) -> CustodyEvent:
        return CustodyEvent(
            item_code=f"UN{i:09d}",
            item_kind="unit" if i % 3 else "aspirate",
            participant_id=participant.pk,
            action=actions[i % len(actions)],
            from_status="stored",
            to_status="stored",
            actor_id=user.pk,
            at=start + dt.timedelta(seconds=30 * i),
            recorded_at=now,
            location="Tank 1 / Rack 3 / BX0001 A1",
            reason="bench" if i % 10 == 0 else "",
            data={"container": "BX0000001", "position": f"A{i % 9 + 1}"},
        )

    t0 = time.perf_counter()
    for first in range(have, n, BATCH):
        # The log's one writer: rows hash-chained as in production.
        event_record_bulk([event(i) for i in range(first, min(first + BATCH, n))])
    print(f"   {time.perf_counter() - t0:.1f} s", flush=True)
    return user, participant


def export(client: object, fmt: str, query: str = "", trace: bool = False) -> dict[str, float]:
    rss0 = rss_mb()
    cpu0 = time.process_time()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    response = client.get(f"/api/exports/audit-trail.{fmt}{query}")
    assert response.status_code == 200, (response.status_code, response.headers)
    first = None
    size = 0
    lines = 0
    for chunk in response.streaming_content:
        if first is None:
            first = time.perf_counter() - t0
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak = 0.0
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    rows = lines - (1 if fmt == "csv" else 0)
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        # The machine is shared: rows per CPU-second of this process is the steadier figure.
        "cpu_s": round(cpu, 2),
        "rows_per_cpu_s": round(rows / cpu) if cpu else 0,
        "first_chunk_ms": round((first or 0) * 1000, 1),
        "mb": round(size / 2**20, 1),
        "rss_growth_mb": round(rss_mb() - rss0, 1),
        "heap_peak_mb": round(peak, 2),
    }


def report_participant(user: object) -> object:
    """A participant with 50 stored units, built through the services (the test factory)."""
    from biobank.models import Participant
    from tests.factories import make_units

    existing = Participant.objects.filter(pseudonym="BENCH-50-UNITS").first()
    if existing is not None:
        return existing
    participant = make_units(actor=user, count=REPORT_UNITS, stored=True)[0].participant
    participant.pseudonym = "BENCH-50-UNITS"
    participant.save(update_fields=["pseudonym"])
    return participant


def timed(call: object, runs: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    if args.rebuild and args.db == "sqlite":
        (OUT / "reports-sqlite.sqlite3").unlink(missing_ok=True)
    setup(args.db)
    from django.db import connection
    from django.test import Client

    from biobank.models import CustodyEvent
    from biobank.reports.pdf import report_pdf
    from biobank.selectors.reports import participant_report

    user, _ = build_events(args.events)
    participant = report_participant(user)
    total = CustodyEvent.objects.count()
    client = Client()
    client.force_login(user)
    print(f"== {connection.vendor}: {total:,} custody events", flush=True)

    results: dict[str, object] = {"db": connection.vendor, "events": total}
    tenth = CustodyEvent.objects.order_by("at", "id").values_list("at", flat=True)[total // 10]
    until = f"?to={tenth.isoformat().replace('+', '%2B')}"
    results["csv_all"] = export(client, "csv")
    results["csv_tenth_traced"] = export(client, "csv", until, trace=True)
    results["jsonl_all"] = export(client, "jsonl")
    for name in ("csv_all", "csv_tenth_traced", "jsonl_all"):
        print(f"{name:18} {json.dumps(results[name])}", flush=True)

    queries: list[str] = []

    def count(execute: object, sql: str, *args: object) -> object:
        queries.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        participant_report(participant=participant, user=user)
    json_s, report = timed(lambda: participant_report(participant=participant, user=user))
    pdf_s, pdf = timed(lambda: report_pdf(report.as_dict()))
    http_s, response = timed(
        lambda: client.get(f"/api/reports/participants/{participant.code}.pdf"), runs=3
    )
    assert response.status_code == 200
    results["report_50_units"] = {
        "units": len(report.body["units"]),
        "events": len(report.body["events"]),
        "queries": len(queries),
        "collect_ms": round(json_s * 1000, 1),
        "pdf_render_ms": round(pdf_s * 1000, 1),
        "pdf_kb": round(len(pdf) / 1024, 1),
        "http_pdf_ms": round(http_s * 1000, 1),
    }
    print(f"report_50_units    {json.dumps(results['report_50_units'])}", flush=True)
    out = OUT / f"reports-{connection.vendor}-{total}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"saved {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
