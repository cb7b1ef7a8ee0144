"""The tamper-evident custody log: hash chain, audit_verify, TRUNCATE refused, backup/restore."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from functools import partial
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from biobank.models import AuditChainHead, CustodyEvent
from biobank.models.events import GENESIS_HASH
from biobank.services.audit import event_record_bulk

from .factories import make_units, run_at_once

ROOT = Path(__file__).resolve().parent.parent


def _behind_the_apps_back(sql: str, params: list[Any]) -> None:
    """Run SQL as someone with database access would: with the append-only triggers off."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Run the test transaction's deferred FK checks now: ALTER TABLE waits for none.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE biobank_custodyevent DISABLE TRIGGER USER")
            cursor.execute(sql, params)
            cursor.execute("ALTER TABLE biobank_custodyevent ENABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER custodyevent_no_update")
            cursor.execute(sql, params)


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def _move_event(unit: Any, actor: Any, **fields: Any) -> CustodyEvent:
    """An unsaved "move" event of ``unit``, written straight through event_record_bulk."""
    values = {"from_status": "stored", "to_status": "stored", "at": timezone.now(), **fields}
    return CustodyEvent(
        participant_id=unit.participant_id,
        unit=unit,
        item_code=unit.code,
        item_kind="unit",
        action="move",
        actor=actor,
        **values,
    )


def _ids() -> list[int]:
    return list(CustodyEvent.objects.order_by("id").values_list("id", flat=True))


def test_events_are_chained_and_verify_passes(trial: Any, tech: Any) -> None:
    make_units(actor=tech, count=2, stored=True)
    rows = list(CustodyEvent.objects.order_by("id").values_list("prev_hash", "row_hash"))
    assert len(rows) >= 5
    assert rows[0][0] == GENESIS_HASH
    for (_, before), (prev, _) in itertools.pairwise(rows):
        assert prev == before
    head = AuditChainHead.objects.get()
    assert (head.length, head.last_hash) == (len(rows), rows[-1][1])
    assert f"audit chain OK: {len(rows)} events" in _verify()


def test_verify_names_a_row_edited_behind_the_apps_back(trial: Any, tech: Any) -> None:
    make_units(actor=tech, count=2, stored=True)
    ids = _ids()
    victim = ids[len(ids) // 2]
    _behind_the_apps_back(
        "UPDATE biobank_custodyevent SET reason = %s WHERE id = %s", ["nothing to see", victim]
    )
    with pytest.raises(CommandError) as caught:
        _verify()
    assert caught.value.returncode == 1
    assert f"event {victim}: content does not match its hash (row edited)" in str(caught.value)
    assert f"after {ids.index(victim)} good events" in str(caught.value)


def test_verify_finds_a_removed_row(trial: Any, tech: Any) -> None:
    make_units(actor=tech, count=2, stored=True)
    ids = _ids()
    victim = ids[2]
    _behind_the_apps_back("DELETE FROM biobank_custodyevent WHERE id = %s", [victim])
    with pytest.raises(CommandError) as caught:
        _verify()
    assert f"event {ids[3]}: its prev_hash does not match the hash of event {ids[1]}" in str(
        caught.value
    )


def test_verify_finds_rows_removed_from_the_end(trial: Any, tech: Any) -> None:
    make_units(actor=tech, count=1, stored=True)
    ids = _ids()
    _behind_the_apps_back("DELETE FROM biobank_custodyevent WHERE id = %s", [ids[-1]])
    with pytest.raises(CommandError) as caught:
        _verify()
    message = str(caught.value)
    assert f"the log ends at event {ids[-2]} after {len(ids) - 1} events" in message
    assert f"the chain head records {len(ids)} events" in message


def test_truncate_is_refused_on_postgres(postgres_only: None, trial: Any, tech: Any) -> None:
    make_units(actor=tech, count=1)
    before = CustodyEvent.objects.count()
    with (
        pytest.raises(DatabaseError, match="TRUNCATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks in the way
        cursor.execute("SET LOCAL biobank.allow_truncate = 'off'")
        cursor.execute("TRUNCATE biobank_custodyevent CASCADE")
    assert CustodyEvent.objects.count() == before > 0


def test_bulk_record_chains_many_events_in_one_insert(
    trial: Any, tech: Any, django_assert_max_num_queries: Any
) -> None:
    unit = make_units(actor=tech, count=1)[0]
    start = CustodyEvent.objects.count()
    now = timezone.now()
    events = [_move_event(unit, tech, at=now, location=f"box {i}") for i in range(200)]
    # Head lock, head update, and one INSERT (SQLite: one per ~50 rows, its parameter limit).
    with django_assert_max_num_queries(10):
        saved = event_record_bulk(events)
    assert len(saved) == 200 and all(e.pk for e in saved)
    assert CustodyEvent.objects.count() == start + 200
    assert saved[1].prev_hash == saved[0].row_hash
    assert f"audit chain OK: {start + 200} events" in _verify()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain(postgres_only: None) -> None:
    from .factories import load_trial, make_user

    load_trial()
    tech = make_user("chain-racer")
    units = make_units(actor=tech, count=8)

    def write(unit: Any) -> None:
        for _ in range(5):
            with transaction.atomic():
                event_record_bulk(
                    [_move_event(unit, tech, from_status="frozen", to_status="frozen")]
                )

    assert run_at_once(*(partial(write, u) for u in units)) == ["ok"] * len(units)
    total = CustodyEvent.objects.count()
    assert f"audit chain OK: {total} events" in _verify()


def _psql(db: str, sql: str) -> str:
    settings = connection.settings_dict
    return subprocess.run(
        ["psql", "-X", "-At", *_pg_args(settings), "-d", db, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _pg_args(settings: dict[str, Any]) -> list[str]:
    return ["-h", settings["HOST"] or "127.0.0.1", "-p", str(settings["PORT"] or 5432)] + (
        ["-U", settings["USER"]] if settings["USER"] else []
    )


def _counts(db: str) -> dict[str, int]:
    tables = _psql(
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename LIKE 'biobank_%' ORDER BY 1",
    ).split()
    return {t: int(_psql(db, f'SELECT count(*) FROM "{t}"')) for t in tables}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_backup_and_restore_keep_everything_and_the_chain(
    postgres_only: None, tmp_path: Path
) -> None:
    """The README's path: pg_dump -Fc, createdb, pg_restore, then audit_verify."""
    from .factories import load_trial, make_user

    load_trial()
    tech = make_user("backup")
    make_units(actor=tech, count=3, stored=True)
    settings = connection.settings_dict
    source = settings["NAME"]
    restored = f"restore_{uuid.uuid4().hex[:10]}"
    dump = tmp_path / "biobank.dump"
    args = _pg_args(settings)
    env = {**os.environ, "PGPASSWORD": settings.get("PASSWORD") or ""}
    subprocess.run(["pg_dump", *args, "-Fc", "-f", str(dump), source], check=True, env=env)
    subprocess.run(["createdb", *args, restored], check=True, env=env)
    try:
        subprocess.run(
            ["pg_restore", *args, "--no-owner", "--exit-on-error", "-d", restored, str(dump)],
            check=True,
            env=env,
        )
        expected = _counts(source)
        assert expected["biobank_custodyevent"] > 0 and expected["biobank_productunit"] == 3
        assert _counts(restored) == expected
        user = f"{settings['USER']}@" if settings["USER"] else ""
        url = f"postgres://{user}{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"
        verify = subprocess.run(
            [sys.executable, "manage.py", "audit_verify"],
            cwd=ROOT,
            env={**env, "DATABASE_URL": f"{url}/{restored}"},
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stderr
        events = expected["biobank_custodyevent"]
        assert f"audit chain OK: {events} events" in verify.stdout
    finally:
        subprocess.run(["dropdb", *args, "--if-exists", restored], check=False, env=env)
