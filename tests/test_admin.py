from __future__ import annotations

import datetime as dt
import re
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from biobank.models import (
    Aspirate,
    CustodyEvent,
    Dose,
    Participant,
    ProductUnit,
    Visit,
)
from biobank.services.roles import ADMINISTRATOR, LAB

from .factories import make_aspirate, make_dose, make_participant, make_units, make_user, past

CHANGELISTS = [
    "study",
    "site",
    "visittype",
    "arm",
    "armschedule",
    "participant",
    "visit",
    "aspirate",
    "processing",
    "freezingrun",
    "productunit",
    "custodyevent",
    "idsequence",
    "passage",
    "qcresult",
    "storageunit",
    "container",
    "placement",
    "temperaturereading",
    "dose",
    "identitycheck",
    "signature",
]


@pytest.fixture
def demo(db: None) -> None:
    call_command("seed", "--demo", stdout=StringIO())


@pytest.mark.parametrize("model", CHANGELISTS)
def test_changelists_load_with_bounded_queries(
    demo: None, admin_client_tech: Any, django_assert_max_num_queries: Any, model: str
) -> None:
    url = reverse(f"admin:biobank_{model}_changelist")
    with django_assert_max_num_queries(15):
        response = admin_client_tech.get(url)
    assert response.status_code == 200


@pytest.mark.parametrize("model", ["aspirate", "productunit", "custodyevent", "participant"])
def test_changelist_search_by_id(demo: None, admin_client_tech: Any, model: str) -> None:
    unit = ProductUnit.objects.select_related("aspirate", "participant").first()
    code = {
        "aspirate": unit.aspirate.code,
        "productunit": unit.code,
        "custodyevent": unit.code,
        "participant": unit.participant.code,
    }[model]
    response = admin_client_tech.get(reverse(f"admin:biobank_{model}_changelist"), {"q": code})
    assert response.status_code == 200
    assert code in response.content.decode()


def test_participant_page_shows_whole_chain(
    demo: None, admin_client_tech: Any, django_assert_max_num_queries: Any
) -> None:
    unit = ProductUnit.objects.filter(status="administered").select_related("participant").first()
    participant = unit.participant
    with django_assert_max_num_queries(30):
        response = admin_client_tech.get(
            reverse("admin:biobank_participant_change", args=[participant.pk])
        )
    html = response.content.decode()
    assert "Chain of identity" in html
    for aspirate in participant.aspirates.all():
        assert aspirate.code in html
    for u in participant.units.all():
        assert u.code in html
    assert "administer" in html  # the custody log
    # The same custody-log table as every item page: steps in words, not identifiers.
    log = html[html.index('<table class="custody-log">') :]
    log = log[: log.index("</table>")]
    assert "start processing" in log and "complete processing" in log
    assert "start_processing" not in log


def test_item_pages_show_custody_log_and_history(demo: None, admin_client_tech: Any) -> None:
    unit = ProductUnit.objects.filter(status="stored").first()
    page = admin_client_tech.get(reverse("admin:biobank_productunit_change", args=[unit.pk]))
    assert "Chain of custody" in page.content.decode()
    assert "freeze" in page.content.decode()
    history = admin_client_tech.get(reverse("admin:biobank_productunit_history", args=[unit.pk]))
    assert history.status_code == 200
    assert "stored" in history.content.decode()


def test_custody_log_times_are_local_like_the_rest_of_the_page(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    at = dt.datetime(2025, 6, 1, 22, 30, tzinfo=dt.UTC)  # 00:30 next day in Oslo (CEST)
    aspirate = make_aspirate(actor=tech, participant=make_participant(actor=tech), collected_at=at)
    page = admin_client_tech.get(reverse("admin:biobank_aspirate_change", args=[aspirate.pk]))
    log = page.content.decode()
    log = log[log.index('<table class="custody-log">') :]
    log = log[: log.index("</table>")]
    assert "<td>2025-06-02 00:30</td>" in log and "2025-06-01 22:30" not in log


def test_blinded_user_never_sees_arm(demo: None, client: Any) -> None:
    client.force_login(make_user("blinded", unblinded=False))
    participant = Participant.objects.first()
    listing = client.get(reverse("admin:biobank_participant_changelist")).content.decode()
    page = client.get(reverse("admin:biobank_participant_change", args=[participant.pk]))
    for html in (listing, page.content.decode()):
        assert "Arm A" not in html and "Arm B" not in html
        assert "arm__id__exact" not in html
    assert client.get(reverse("admin:biobank_arm_changelist")).status_code == 403
    assert client.get(reverse("admin:biobank_armschedule_changelist")).status_code == 403
    # Filtering by allocation through a crafted URL is refused, not silently applied.
    for params in ({"arm__id__exact": 1}, {"arm": 1}, {"arm__code": "A"}):
        filtered = client.get(reverse("admin:biobank_participant_changelist"), params)
        assert filtered.status_code == 400, params
        assert "Arm A" not in filtered.content.decode()


def test_no_delete_anywhere(demo: None, admin_client_tech: Any) -> None:
    unit = ProductUnit.objects.first()
    url = reverse("admin:biobank_productunit_delete", args=[unit.pk])
    assert admin_client_tech.get(url).status_code == 403
    assert admin_client_tech.post(url, {"post": "yes"}).status_code == 403
    assert ProductUnit.objects.filter(pk=unit.pk, status=unit.status).exists()
    listing = admin_client_tech.get(reverse("admin:biobank_productunit_changelist"))
    assert "delete_selected" not in listing.content.decode()


def _action(client: Any, model: str, action: str, pks: list[int], **data: Any) -> Any:
    url = reverse(f"admin:biobank_{model}_changelist")
    payload = {"action": action, ACTION_CHECKBOX_NAME: pks, **data}
    return client.post(url, payload, follow=True)


def test_receive_action_through_intermediate_form(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    # Collected this morning: received now, within the study's transport time.
    aspirate = make_aspirate(actor=tech, collected_at=past(hours=3))
    form = _action(admin_client_tech, "aspirate", "step_receive", [aspirate.pk])
    assert "Transport temperature" in form.content.decode()
    done = _action(
        admin_client_tech,
        "aspirate",
        "step_receive",
        [aspirate.pk],
        apply_step="1",
        decision="accept",
        temperature_c="21.5",
        condition="intact",
        reason="",
        at="",
    )
    assert "done for" in done.content.decode()
    aspirate.refresh_from_db()
    assert aspirate.status == "accepted" and aspirate.received_by == tech


def test_reject_without_reason_is_a_form_error(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    aspirate = make_aspirate(actor=tech)
    response = _action(
        admin_client_tech,
        "aspirate",
        "step_reject",
        [aspirate.pk],
        apply_step="1",
        reason="",
        at="",
    )
    assert "This field is required" in response.content.decode()
    aspirate.refresh_from_db()
    assert aspirate.status == "collected"


def test_action_is_all_or_nothing(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    stored = make_units(actor=tech, count=1, stored=True)[0]
    frozen = make_units(actor=tech, count=1)[0]  # later pk: fails after the first succeeded
    events = CustodyEvent.objects.count()
    response = _action(
        admin_client_tech,
        "productunit",
        "step_check_out",
        [stored.pk, frozen.pk],
        apply_step="1",
        reason="",
        at="",
    )
    html = response.content.decode()
    assert "nothing was changed" in html and frozen.code in html
    stored.refresh_from_db()
    assert stored.status == "stored"
    assert CustodyEvent.objects.count() == events


def test_add_participant_goes_through_enrolment(trial: Any, admin_client_tech: Any) -> None:
    from biobank.models import Site, Study

    study = Study.objects.get()
    response = admin_client_tech.post(
        reverse("admin:biobank_participant_add"),
        {
            "pseudonym": "smart-hus-99",
            "study": study.pk,
            "site": Site.objects.get(code="HUS").pk,
            "arm": study.arms.get(code="B").pk,
            "enrolled_on": "2025-05-01",
            "weight_kg": "80.5",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    participant = Participant.objects.get(pseudonym="SMART-HUS-99")
    assert participant.code.startswith("PT")
    assert Visit.objects.filter(participant=participant).count() == 4


def test_add_participant_duplicate_is_form_error(trial: Any, admin_client_tech: Any) -> None:
    from biobank.models import Site, Study

    study = Study.objects.get()
    data = {
        "pseudonym": "SMART-X-1",
        "study": study.pk,
        "site": Site.objects.get(code="HUS").pk,
        "enrolled_on": "2025-05-01",
    }
    admin_client_tech.post(reverse("admin:biobank_participant_add"), data)
    again = admin_client_tech.post(reverse("admin:biobank_participant_add"), data)
    assert again.status_code == 200
    assert "already exists" in again.content.decode()
    assert Participant.objects.filter(pseudonym="SMART-X-1").count() == 1


def _collect_in_admin(client: Any, visit: Any) -> Any:
    form = {"visit": visit.pk, "volume_ml": "48.5", "anticoagulant": "heparin"}
    form |= {"collected_at_0": "2025-09-01", "collected_at_1": "08:30", "collected_by": "Dr. B"}
    return client.post(reverse("admin:biobank_aspirate_add"), form)


def test_collect_aspirate_in_admin_writes_event(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    from .factories import make_participant

    participant = make_participant(actor=tech)
    visit = participant.visits.get(visit_type__code="M6")
    response = _collect_in_admin(admin_client_tech, visit)
    assert response.status_code == 302, response.context["adminform"].form.errors
    aspirate = Aspirate.objects.get(visit=visit)
    assert aspirate.code.startswith("AS")
    assert aspirate.events.get().action == "collect"


@pytest.mark.parametrize(
    ("visit_code", "message"),
    [
        ("M12", "Month 12 follow-up has no bone-marrow aspiration."),
        ("BASELINE", "already has an aspirate."),
    ],
)
def test_collect_form_shows_the_services_refusal(
    trial: Any, tech: Any, admin_client_tech: Any, visit_code: str, message: str
) -> None:
    from .factories import make_participant

    participant = make_participant(actor=tech)
    make_aspirate(actor=tech, participant=participant)  # the baseline aspirate
    visit = participant.visits.get(visit_type__code=visit_code)
    before = Aspirate.objects.count()
    response = _collect_in_admin(admin_client_tech, visit)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["visit"][0].endswith(message)
    assert Aspirate.objects.count() == before


def test_processing_walk_in_admin(trial: Any, tech: Any, admin_client_tech: Any) -> None:
    from .factories import make_processing

    processing = make_processing(actor=tech)
    pk = [processing.pk]

    def step(name: str, at: str = "", **data: Any) -> str:
        html = _action(
            admin_client_tech, "processing", f"step_{name}", pk, apply_step="1", at=at, **data
        )
        return html.content.decode()

    # Filled now: the freezing run starts after the fill (a run dated before it is refused).
    soon = timezone.localtime() + dt.timedelta(minutes=1)

    assert "done for" in step("passage", number="0", cell_count="2000000", viability_pct="96.0")
    for test in ("sterility", "mycoplasma", "endotoxin", "immunophenotype", "viability"):
        value = "92" if test == "viability" else ""
        assert "done for" in step("qc_result", test=test, result="ok", value=value, passed="on")
    assert "done for" in step("harvest", cell_count="100000000", viability_pct="92.0", passage="2")
    html = step(
        "fill_units",
        container_type="cryobag",
        count="3",
        cell_number="200000000",
        volume_ml="10",
        cryoprotectant="10 % DMSO",
    )
    assert "nothing was changed" in html and "more than" in html
    assert not processing.units.exists()
    html = step(
        "fill_units",
        container_type="cryobag",
        count="3",
        cell_number="30000000",
        volume_ml="10",
        cryoprotectant="10 % DMSO",
    )
    assert "done for" in html
    html = step(
        "freezing_run",
        started_at=f"{soon:%Y-%m-%d %H:%M}",
        finished_at=f"{soon + dt.timedelta(minutes=1):%Y-%m-%d %H:%M}",
        rate_c_per_min="-1",
        program="p",
    )
    assert "done for" in html, html[:3000]
    processing.refresh_from_db()
    assert processing.status == "cryopreserved"
    assert set(processing.units.values_list("status", flat=True)) == {"frozen"}


def test_unit_list_shows_each_place_in_a_fixed_number_of_queries(
    trial: Any, tech: Any, admin_client_tech: Any, django_assert_max_num_queries: Any
) -> None:
    from biobank.services.storage import unit_store

    from .factories import make_box

    low, high = make_box(actor=tech, name="Alpha box"), make_box(actor=tech, name="Omega box")
    units = make_units(actor=tech, count=4)
    unit_store(unit=units[0], container=high, position="C3", actor=tech)
    unit_store(unit=units[1], container=low, position="A1", actor=tech)
    unit_store(unit=units[2], container=low, position="A2", actor=tech)
    url = reverse("admin:biobank_productunit_changelist")
    # A short list (one page) and the whole list: the places come in one query either way.
    for query in ({"q": low.code}, {}):
        # 11 if each row read its own place; one is the menus' trial-definition lock.
        with django_assert_max_num_queries(9):
            html = admin_client_tech.get(url, query).content.decode()
        assert f"({low.code}) A1" in html and f"({low.code}) A2" in html
    assert f"({high.code}) C3" in html
    # Sorted by place (column 8 after the selection checkbox): Alpha's units before Omega's.
    html = admin_client_tech.get(url, {"o": "8"}).content.decode()
    order = [html.index(u.code) for u in units[:3]]
    assert order[1] < order[0] and order[2] < order[0]


def test_a_step_time_out_of_the_plausible_years_is_a_form_error(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    unit = make_units(actor=tech, count=1, stored=True)[0]
    events = CustodyEvent.objects.count()
    for at in ("0001-01-01 00:00", "9999-12-31T23:59:59-12:00"):
        response = _action(
            admin_client_tech,
            "productunit",
            "step_discard",
            [unit.pk],
            apply_step="1",
            reason="dropped",
            at=at,
        )
        assert response.status_code == 200
        form = response.context["form"]
        assert form.errors == {"at": ["Enter a date between the years 1900 and 2200."]}
    unit.refresh_from_db()
    assert unit.status == "stored"
    assert CustodyEvent.objects.count() == events


@pytest.mark.parametrize(
    ("model", "query"),
    [
        ("custodyevent", "at__gte=0001-01-01"),
        ("custodyevent", "at__lt=9999-12-31T23:59:59-12:00"),
        ("aspirate", "collected_at__gte=0001-01-01"),
        ("placement", "placed_at__gte=0001-01-01"),
        ("temperaturereading", "at__year=1"),
        ("temperaturereading", "at__year=9999"),
        ("printjob", "created_at__year=9999&created_at__month=12&created_at__day=31"),
        ("exportlog", "requested_at__year=1"),
        # Not a list filter, only the date hierarchy's field; and years no one types.
        ("temperaturereading", "at__gte=0001-01-01"),
        ("printjob", "created_at__lt=0001-01-02"),
        ("temperaturereading", "at__year=²"),
        ("exportlog", "requested_at__year=１９９９"),
        ("visit", "scheduled_on__year=99999999999999999999"),
        ("visit", "scheduled_on__gte=0001-01-01"),
        ("custodyevent", "at__iso_year=99999"),
        ("custodyevent", "at__year__gte=99999"),
        ("custodyevent", "at__year__gt=９"),
    ],
)
def test_a_list_filter_date_out_of_the_plausible_years_is_an_invalid_lookup(
    trial: Any, tech: Any, admin_client_tech: Any, model: str, query: str
) -> None:
    make_units(actor=tech, count=1, stored=True)
    url = reverse(f"admin:biobank_{model}_changelist")
    response = admin_client_tech.get(f"{url}?{query}")
    assert (response.status_code, response["Location"]) == (302, f"{url}?e=1")
    # Inside the years the same filter still works.
    lookup = query.split("=")[0]
    inside = "2000" if "year" in lookup else "2000-01-01T00:00:00%2B00:00"
    if model == "visit" and "year" not in lookup:
        inside = "2000-01-01"  # a date field
    assert admin_client_tech.get(f"{url}?{lookup}={inside}").status_code == 200


def _expiry_column(html: str) -> dict[str, str]:
    """Dose code → the text of its Expiry cell, from the admin's dose list."""
    cells = re.findall(
        r'<th class="field-code"><a [^>]*>(DS[^<]+)</a></th>.*?'
        r'<td class="field-expiry_state">(.*?)</td>',
        html,
        re.S,
    )
    return {code: re.sub(r"<[^>]+>", "", cell) for code, cell in cells}


def test_dose_list_expiry_column_follows_the_doses_expiry_rule(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    from biobank.services.doses import dose_administer, dose_cancel, dose_dispatch

    planned = make_dose(actor=tech, arm="A", ready=False)
    valid = make_dose(actor=tech, arm="A")
    with time_machine.travel(past(days=1), tick=True):
        expired = make_dose(actor=tech, arm="A")  # thawed a day ago: 6 h shelf life
    cancelled = dose_cancel(dose=make_dose(actor=tech, arm="A"), actor=tech, reason="Spilled")
    given = make_dose(actor=tech, arm="A")
    dose_dispatch(dose_scan=given.code, participant_scan=given.participant.code, actor=tech)
    dose_administer(dose_scan=given.code, participant_scan=given.participant.code, actor=tech)
    now = timezone.now()
    doses = {d.code: d for d in Dose.objects.all()}
    assert [
        doses[d.code].expiry_state(now) for d in (planned, valid, expired, cancelled, given)
    ] == [
        "",
        "valid",
        "expired",
        "",
        "",
    ]
    html = admin_client_tech.get(reverse("admin:biobank_dose_changelist")).content.decode()
    assert _expiry_column(html) == {
        planned.code: "–",
        valid.code: "valid",
        expired.code: "EXPIRED",
        cancelled.code: "–",
        given.code: "–",
    }


def test_the_trial_definition_is_read_only_once_participants_are_enrolled(
    roles: dict[str, Any], client: Any
) -> None:
    from biobank.models import ArmSchedule, Study

    study = Study.objects.get()
    client.force_login(roles[ADMINISTRATOR])
    url = reverse("admin:biobank_study_change", args=[study.pk])
    # Before any enrolment the administrator may still edit it.
    assert client.get(url).status_code == 200
    assert 'name="stored_shelf_life_days"' in client.get(url).content.decode()
    make_participant(actor=roles[LAB])
    page = client.get(url).content.decode()
    assert "read-only: participants are enrolled" in page
    assert 'name="stored_shelf_life_days"' not in page
    data = {"code": study.code, "stored_shelf_life_days": "9999", "dose_max_cells": "900000000"}
    assert client.post(url, data).status_code == 403
    study.refresh_from_db()
    assert (study.stored_shelf_life_days, study.dose_max_cells) != (9999, 900_000_000)
    schedule = ArmSchedule.objects.order_by("pk").first()
    change = reverse("admin:biobank_armschedule_change", args=[schedule.pk])
    treatment = "msc" if schedule.treatment != "msc" else "placebo"
    assert client.post(change, {"arm": schedule.arm_id, "treatment": treatment}).status_code == 403
    schedule.refresh_from_db()
    assert schedule.treatment != treatment
    assert client.get(reverse("admin:biobank_visittype_add")).status_code == 403


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_a_model_forms_date_outside_the_plausible_years_is_a_form_error(
    trial: Any, tech: Any, admin_client: Any, day: str
) -> None:
    participant = make_participant(actor=tech)
    visit = participant.visits.get(visit_type__code="M6")
    before = visit.scheduled_on
    url = reverse("admin:biobank_visit_change", args=[visit.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data = {k: (v.pk if hasattr(v, "pk") else v) for k, v in data.items()}
    response = admin_client.post(url, {**data, "scheduled_on": day})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["scheduled_on"] == ["Enter a date between the years 1900 and 2200."]
    visit.refresh_from_db()
    assert visit.scheduled_on == before
