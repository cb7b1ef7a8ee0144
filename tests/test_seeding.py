from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from biobank.models import (
    Arm,
    ArmSchedule,
    Aspirate,
    AspirateStatus,
    CustodyEvent,
    Participant,
    Processing,
    ProcessingStatus,
    ProductUnit,
    Site,
    Study,
    UnitStatus,
    Visit,
)


def _snapshot() -> dict[str, int]:
    """Row counts of every biobank table, history tables included."""
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_app_config("biobank").get_models()
    }


@pytest.fixture
def seeded(db: None) -> dict[str, int]:
    call_command("seed", "--demo", "--demo-user", stdout=StringIO())
    return _snapshot()


def test_trial_definition_matches_the_registry_record(seeded: dict[str, int]) -> None:
    study = Study.objects.get(code="NCT04749667")
    assert study.acronym == "SMART-MS"
    assert set(Site.objects.values_list("city", flat=True)) == {
        "Bergen",
        "Lørenskog",
        "Tromsø",
        "Trondheim",
    }
    schedule = {
        (s.arm.code, s.visit_type.code): s.treatment
        for s in ArmSchedule.objects.select_related("arm", "visit_type")
    }
    assert schedule == {
        ("A", "BASELINE"): "MSC",
        ("A", "M6"): "PLACEBO",
        ("B", "BASELINE"): "PLACEBO",
        ("B", "M6"): "MSC",
    }


def test_demo_data_has_18_participants_over_sites_and_arms(seeded: dict[str, int]) -> None:
    assert Participant.objects.count() == 18
    assert Participant.objects.values("site").distinct().count() == 4
    assert set(Participant.objects.values_list("arm__code", flat=True)) == {"A", "B"}
    assert Arm.objects.count() == 2
    # Every participant has every scheduled visit.
    assert Visit.objects.count() == 18 * 4


def test_demo_data_has_every_stage(seeded: dict[str, int]) -> None:
    assert set(Aspirate.objects.values_list("status", flat=True)) == set(AspirateStatus.values)
    assert set(Processing.objects.values_list("status", flat=True)) >= {
        ProcessingStatus.IN_CULTURE,
        ProcessingStatus.HARVESTED,
        ProcessingStatus.CRYOPRESERVED,
    }
    assert set(ProductUnit.objects.values_list("status", flat=True)) >= {
        UnitStatus.FROZEN,
        UnitStatus.STORED,
        UnitStatus.RELEASED,
        UnitStatus.THAWED,
        UnitStatus.ADMINISTERED,
    }
    # The demo went through the services: each aspirate has its collection event.
    assert CustodyEvent.objects.filter(action="collect").count() == Aspirate.objects.count()


def test_seeding_twice_changes_nothing(seeded: dict[str, int]) -> None:
    out = StringIO()
    call_command("seed", "--demo", "--demo-user", stdout=out)
    assert _snapshot() == seeded
    assert "0 rows changed" in out.getvalue()
    assert "0 participants and 0 aspirates added" in out.getvalue()


def test_seed_repairs_a_changed_definition(seeded: dict[str, int], tech: Any) -> None:
    site = Site.objects.get(code="UNN")
    site.city = "Wrong"
    site.save()
    call_command("seed", stdout=StringIO())
    site.refresh_from_db()
    assert site.city == "Tromsø"
    assert site.history.first().history_change_reason == "updated from seeds"


def test_demo_login_works(seeded: dict[str, int], client: Any) -> None:
    # Through the login form: django-axes needs the request to check for a lockout.
    response = client.post("/admin/login/", {"username": "demo", "password": "demo-biobank"})
    assert response.status_code == 302
    demo = get_user_model().objects.get(username="demo")
    assert client.session["_auth_user_id"] == str(demo.pk)
    assert client.get("/admin/").status_code == 200
