"""Races on PostgreSQL, with the interleaving forced: a step that waited for a lock judges by
the state the step it waited for left, and no two steps deadlock (a 500) over the audit chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.db import close_old_connections, connection

from biobank.errors import ServiceError
from biobank.models import Dose, Processing, ProductUnit, ShipmentItem
from biobank.services.audit import audit_chain_verify

from .factories import (
    PASSWORD,
    load_trial,
    make_box,
    make_participant,
    make_released_product_units,
    make_units,
    make_user,
    past,
    qa_signer,
    record_weight,
    site,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run_staggered(*calls: Callable[[], object], gap: float = 0.3) -> list[str]:
    """Start the calls ``gap`` seconds apart, each in its own thread: "ok" or the refusal's
    code for each; anything else (a deadlock) as "unexpected"."""
    outcomes = [""] * len(calls)

    def run(i: int, call: Callable[[], object]) -> None:
        try:
            call()
            outcomes[i] = "ok"
        except ServiceError as exc:
            outcomes[i] = exc.code
        except Exception as exc:
            outcomes[i] = f"unexpected: {type(exc).__name__}: {str(exc)[:120]}"
        finally:
            close_old_connections()
            connection.close()

    threads = []
    for i, call in enumerate(calls):
        thread = threading.Thread(target=run, args=(i, call))
        thread.start()
        threads.append(thread)
        time.sleep(gap)
    for thread in threads:
        thread.join()
    return outcomes


def _slow_after(monkeypatch: Any, module: Any, name: str, when: Callable[..., bool]) -> None:
    """Make ``module.name`` pause a second after the calls ``when`` picks (inside the step's
    transaction, holding its locks)."""
    original = getattr(module, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            time.sleep(1.0)
        return result

    monkeypatch.setattr(module, name, slow)


def test_a_unit_being_packed_is_not_discarded(postgres_only: None, monkeypatch: Any) -> None:
    from biobank.services import shipments
    from biobank.services.shipments import shipment_create, shipment_pack
    from biobank.services.units import unit_discard

    load_trial()
    tech = make_user("t1")
    unit = make_units(
        actor=tech, count=1, participant=make_participant(actor=tech, site_code="STO")
    )[0]
    shipment = shipment_create(
        from_site=site("HUS"), to_site=site("STO"), kind="dry_shipper", actor=tech
    )
    _slow_after(monkeypatch, shipments, "history_save", lambda *a, **k: k.get("reason") == "packed")
    outcomes = run_staggered(
        partial(shipment_pack, shipment=shipment, scan=unit.code, actor=tech),
        partial(unit_discard, unit=ProductUnit.objects.get(pk=unit.pk), actor=tech, reason="x"),
    )
    unit.refresh_from_db()
    assert outcomes == ["ok", "in_shipment"]
    assert unit.status == "frozen"
    assert ShipmentItem.objects.filter(unit=unit, active=True).count() == 1
    assert audit_chain_verify().ok


def test_a_dose_release_and_a_move_of_its_unit_do_not_deadlock(
    postgres_only: None, monkeypatch: Any
) -> None:
    from biobank.services import doses
    from biobank.services.doses import dose_prepare, dose_release
    from biobank.services.storage import unit_move

    load_trial()
    tech = make_user("t1")
    participant = make_participant(actor=tech, arm="B")
    units = make_released_product_units(actor=tech, participant=participant, count=2)
    visit = participant.visits.get(visit_type__code="M6")
    record_weight(visit=visit, actor=tech)
    dose = dose_prepare(visit=visit, actor=tech)
    second = max(units, key=lambda u: u.pk)
    other_box = make_box(actor=tech)
    released: list[str] = []
    _slow_after(
        monkeypatch, doses, "unit_transition", lambda **k: released.append(k["unit"].code) or True
    )
    outcomes = run_staggered(
        partial(
            dose_release, dose=Dose.objects.get(pk=dose.pk), actor=qa_signer(), password=PASSWORD
        ),
        partial(
            unit_move, unit=ProductUnit.objects.get(pk=second.pk), container=other_box, actor=tech
        ),
    )
    assert outcomes[0] == "ok" and not outcomes[1].startswith("unexpected"), outcomes
    assert outcomes[1] != "ok"  # the unit left storage for its dose before the move's turn
    assert audit_chain_verify().ok


def test_a_freezing_run_and_a_fill_of_one_product_do_not_deadlock(
    postgres_only: None, monkeypatch: Any
) -> None:
    from biobank.services import units as unit_services
    from biobank.services.units import UnitSpec, freezing_run_record, units_create

    load_trial()
    tech = make_user("t1")
    units = make_units(actor=tech, count=2, frozen=False)
    processing = units[0].processing
    _slow_after(monkeypatch, unit_services, "transitions_apply_bulk", lambda *a, **k: True)
    outcomes = run_staggered(
        partial(
            freezing_run_record, processing=processing, units=units, actor=tech,
            started_at=past(days=7, hours=3), finished_at=past(days=7, hours=1),
        ),
        partial(
            units_create, processing=Processing.objects.get(pk=processing.pk), actor=tech,
            specs=[UnitSpec("cryobag", 10_000_000, Decimal("10"))],
        ),
    )  # fmt: skip
    assert outcomes[0] == "ok" and not outcomes[1].startswith("unexpected"), outcomes
    assert audit_chain_verify().ok
