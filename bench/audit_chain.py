"""How long ``manage.py audit_verify`` takes over a large custody log. Run::

    .venv/bin/python bench/audit_chain.py --db postgres --events 1000000
    .venv/bin/python bench/audit_chain.py --db sqlite --events 1000000

It builds its own database (``biobank_bench_audit`` / ``bench/out/bench_audit.sqlite3``):
migrations, the trial seeds, then ``--events`` hash-chained custody events written in
bulk (the hashes computed exactly as ``services.audit.event_record_bulk`` does), and times
the verification of the whole chain. It prints its figures and exits non-zero if the
chain does not verify.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rows import RowInserter, _chunks
from bench.target import OUT, Target, django_setup


@dataclass(frozen=True)
class AuditTarget(Target):
    @property
    def db_name(self) -> str:
        return "biobank_bench_audit"

    @property
    def sqlite_path(self) -> Path:
        return OUT / "bench_audit.sqlite3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    target = AuditTarget(args.db, args.events)
    target.recreate()
    django_setup(target)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from biobank.models import AuditChainHead, CustodyEvent, Participant, Site
    from biobank.models.events import chain_hash
    from biobank.services.audit import audit_chain_verify

    call_command("migrate", verbosity=0)
    call_command("seed", "--demo", verbosity=0)
    user = get_user_model().objects.first()
    participants = list(Participant.objects.values_list("id", "code"))
    site = Site.objects.values_list("id", flat=True).first()
    head = AuditChainHead.objects.get()
    prev, next_id = head.last_hash, (head.last_event_id or 0) + 1
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    insert = RowInserter(CustodyEvent)

    start = time.perf_counter()
    for chunk in _chunks(args.events):
        rows = []
        for i in chunk:
            pid, code = participants[i % len(participants)]
            at = base + dt.timedelta(seconds=i)
            row = {
                "id": next_id + i,
                "item_code": code,
                "item_kind": "unit",
                "participant_id": pid,
                "action": "move",
                "from_status": "stored",
                "to_status": "stored",
                "actor_id": user.pk,
                "at": at,
                "recorded_at": at,
                "site_id": site,
                "location": f"Tank {i % 7} / Rack {i % 13} / Box {i % 97} A{i % 9 + 1}",
                "reason": "",
                "data": {"container": f"BX{i % 97:06d}", "position": f"A{i % 9 + 1}"},
            }
            row["prev_hash"] = prev
            row["row_hash"] = prev = chain_hash(prev, row)
            rows.append(row)
        with transaction.atomic():
            insert(rows)
    total = head.length + args.events
    AuditChainHead.objects.filter(pk=1).update(
        last_hash=prev, last_event_id=next_id + args.events - 1, length=total
    )
    built = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    start = time.perf_counter()
    report = audit_chain_verify()
    seconds = time.perf_counter() - start
    print(f"database: {target.title.split(',')[0]}")
    print(f"events written (chained, bulk): {args.events:,} in {built:.1f} s")
    print(
        f"audit_verify: {report.checked:,} events in {seconds:.1f} s "
        f"({report.checked / seconds:,.0f} events/s); ok={report.ok}"
    )
    if not report.ok:
        print(report.problem)
        sys.exit(1)


if __name__ == "__main__":
    main()
