"""Allocation concealment: an imported randomisation list, taken in order at enrolment."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

import pytest
import time_machine
from django.test import Client

from biobank.errors import ServiceError
from biobank.models import Participant, RandomisationEntry, Site, Study
from biobank.services.randomisation import randomisation_list_import
from biobank.services.trial import participant_enroll

LIST = "sequence,arm,stratum,block\n1,B,HUS,1\n2,A,HUS,1\n3,A,UNN,1\n4,B,UNN,1\n"


def enrol(study: Study, site: str, pseudonym: str, actor: Any, **extra: Any) -> Participant:
    return participant_enroll(
        study=study,
        site=Site.objects.get(code=site),
        pseudonym=pseudonym,
        enrolled_on=dt.date(2026, 1, 5),
        actor=actor,
        **extra,
    )


@pytest.mark.django_db
def test_enrolment_takes_the_next_entry_of_its_stratum(trial: Study, tech: Any) -> None:
    assert randomisation_list_import(study=trial, text=LIST, actor=tech) == 4
    first = enrol(trial, "HUS", "R-1", tech)
    second = enrol(trial, "UNN", "R-2", tech)
    third = enrol(trial, "HUS", "R-3", tech)
    assert [p.arm.code for p in (first, second, third)] == ["B", "A", "A"]
    used = RandomisationEntry.objects.filter(participant__isnull=False).order_by("sequence")
    assert [(e.sequence, e.participant.pseudonym) for e in used] == [
        (1, "R-1"),
        (2, "R-3"),
        (3, "R-2"),
    ]
    with pytest.raises(ServiceError) as refused:
        enrol(trial, "HUS", "R-4", tech)
    assert refused.value.code == "list_exhausted"
    assert "stratum HUS" in refused.value.message
    assert not Participant.objects.filter(pseudonym="R-4").exists()


@pytest.mark.django_db
def test_nobody_types_an_arm_once_a_list_exists(trial: Study, tech: Any) -> None:
    randomisation_list_import(study=trial, text=LIST, actor=tech)
    with pytest.raises(ServiceError) as refused:
        enrol(trial, "HUS", "R-1", tech, arm=trial.arms.get(code="A"))
    assert (refused.value.code, refused.value.field) == ("arm_from_list", "arm")
    assert Participant.objects.count() == 0
    assert RandomisationEntry.objects.filter(participant__isnull=False).count() == 0


@pytest.mark.django_db
def test_reimport_replaces_an_unused_list_and_is_refused_once_used(trial: Study, tech: Any) -> None:
    randomisation_list_import(study=trial, text=LIST, actor=tech)
    randomisation_list_import(study=trial, text="sequence,arm\n1,A\n2,B\n", actor=tech)
    assert RandomisationEntry.objects.count() == 6  # the first list is kept, superseded
    assert RandomisationEntry.objects.filter(superseded_at__isnull=True).count() == 2
    assert enrol(trial, "STO", "R-1", tech).arm.code == "A"  # unstratified now
    with pytest.raises(ServiceError) as refused:
        randomisation_list_import(study=trial, text=LIST, actor=tech)
    assert refused.value.code == "list_in_use"
    assert RandomisationEntry.objects.filter(superseded_at__isnull=True).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        ("", "empty", "empty"),
        ("seq,arm\n1,A\n", "bad_header", "sequence"),
        ("sequence,arm\n1,C\n", "unknown_arm", "Unknown arm(s) C"),
        ("sequence,arm\n1,A\n1,B\n", "duplicate", "Line 3: sequence 1 appears twice"),
        ("sequence,arm\nx,A\n", "invalid", "Line 2: sequence must be a whole number"),
        ("sequence,arm\n0,A\n", "invalid", "must be 1 or more"),
        ("sequence,arm\n1,\n", "required", "the arm is empty"),
        ("sequence,arm,stratum\n1,A,HUS\n2,B,\n", "mixed_strata", "every row names a stratum"),
        ("sequence,arm\n", "empty", "no rows"),
        (
            "sequence,arm\n" + "9" * 30 + ",A\n",
            "invalid",
            "Line 2: sequence must be at most 2147483647",
        ),
        ("sequence,arm,block\n1,A,99999999999\n", "invalid", "Line 2: block must be at most"),
        ("sequence,arm\n３,A\n", "invalid", "Line 2: sequence must be a whole number, not '３'"),
        ("sequence,arm,stratum\n1,A,H\x00S\n", "invalid", "Line 2: stratum holds a control char"),
        ("sequence,arm,stratum\n1,A," + "S" * 33 + "\n", "invalid", "stratum is longer than 32"),
    ],
)
def test_bad_list_files_are_refused_with_the_reason(
    trial: Study, tech: Any, text: str, code: str, words: str
) -> None:
    with pytest.raises(ServiceError) as refused:
        randomisation_list_import(study=trial, text=text, actor=tech)
    assert refused.value.code == code
    assert refused.value.field == "file"
    assert words in refused.value.message
    assert RandomisationEntry.objects.count() == 0


@pytest.mark.django_db
def test_list_files_tolerate_bom_semicolons_and_case(trial: Study, tech: Any) -> None:
    text = "\ufeffSequence;Arm;Stratum\r\n1;b;hus\r\n\r\n2;a;hus\r\n"
    assert randomisation_list_import(study=trial, text=text, actor=tech) == 2
    assert list(RandomisationEntry.objects.values_list("stratum", "arm__code")) == [
        ("HUS", "B"),
        ("HUS", "A"),
    ]


@pytest.mark.django_db
def test_admin_imports_a_list_and_hides_the_arm_field(
    trial: Study, tech: Any, client: Client
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(tech)
    assert 'name="arm"' in client.get("/admin/biobank/participant/add/").content.decode()
    page = client.post(
        "/admin/biobank/randomisationentry/import/",
        {"study": trial.pk, "file": SimpleUploadedFile("list.csv", LIST.encode())},
    )
    assert page.status_code == 302
    assert RandomisationEntry.objects.count() == 4
    assert 'name="arm"' not in client.get("/admin/biobank/participant/add/").content.decode()
    bad = client.post(
        "/admin/biobank/randomisationentry/import/",
        {"study": trial.pk, "file": SimpleUploadedFile("list.csv", b"sequence,arm\n1,Z\n")},
    )
    assert bad.status_code == 200
    assert "Unknown arm(s) Z" in bad.content.decode()
    assert RandomisationEntry.objects.filter(superseded_at__isnull=True).count() == 4


@pytest.mark.django_db
def test_api_enrolment_takes_the_arm_from_the_list(trial: Study, tech: Any) -> None:
    from rest_framework.test import APIClient

    randomisation_list_import(study=trial, text=LIST, actor=tech)
    api = APIClient()
    api.force_authenticate(tech)
    body = {"site": "UNN", "pseudonym": "R-9", "enrolled_on": "2026-01-05"}
    created = api.post("/api/participants/", body, format="json")
    assert created.status_code == 201
    assert created.json()["arm"] == "A"
    typed = api.post("/api/participants/", {**body, "pseudonym": "R-10", "arm": "B"}, format="json")
    assert typed.status_code == 400
    assert typed.json()["code"] == "arm_from_list"
    assert not Participant.objects.filter(pseudonym="R-10").exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_enrolments_never_take_the_same_entry(postgres_only: None) -> None:
    from .factories import load_trial, make_user, run_at_once

    trial = load_trial()
    tech = make_user("tech")
    text = "sequence,arm\n" + "".join(f"{i},{'AB'[i % 2]}\n" for i in range(1, 21))
    randomisation_list_import(study=trial, text=text, actor=tech)
    outcomes = run_at_once(*(partial(enrol, trial, "HUS", f"RACE-{n}", tech) for n in range(8)))
    assert outcomes == ["ok"] * 8
    used = list(
        RandomisationEntry.objects.filter(participant__isnull=False)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert used == list(range(1, 9))  # eight distinct entries, in order, none skipped


@pytest.mark.django_db
def test_only_an_unblinded_role_records_an_allocation(trial: Study, tech: Any) -> None:
    from django.contrib.auth.models import Group

    from biobank.services.roles import CLINICIAN, roles_sync

    from .factories import make_user

    roles_sync()
    clinician = make_user("enrolling_clinician")
    clinician.user_permissions.clear()
    clinician.groups.add(Group.objects.get(name=CLINICIAN))
    clinician = type(clinician).objects.get(pk=clinician.pk)
    with pytest.raises(ServiceError) as refused:
        enrol(trial, "HUS", "R-11", clinician, arm=trial.arms.get(code="B"))
    assert (refused.value.code, refused.value.field) == ("permission_denied", "arm")
    assert not Participant.objects.filter(pseudonym="R-11").exists()
    # Without an arm the same role enrols (the allocation is recorded by someone unblinded).
    assert enrol(trial, "HUS", "R-11", clinician).arm is None


@pytest.mark.parametrize(
    ("enrolled_on", "message"),
    [
        ("9999-12-31", "enrolled_on must be between the years 1900 and 2200."),
        ("0001-01-01", "enrolled_on must be between the years 1900 and 2200."),
        ("2199-12-31", "enrolled_on 2199-12-31 is in the future (today 2026-11-28)."),
    ],
)
def test_an_enrolment_date_no_one_enrols_on_is_refused(
    trial: Study, tech: Any, enrolled_on: str, message: str
) -> None:
    from .factories import api_as

    with time_machine.travel(dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)):
        response = api_as(tech).post(
            "/api/participants/",
            {"pseudonym": "FAR-1", "site": "HUS", "enrolled_on": enrolled_on},
        )
    assert response.status_code == 400
    assert response.json()["fields"] == {"enrolled_on": [message]}
    assert not Participant.objects.filter(pseudonym="FAR-1").exists()


@pytest.mark.parametrize("weight", ["0.1", "9999.9"])
def test_an_enrolment_weight_outside_the_trials_range_is_refused(
    trial: Study, tech: Any, weight: str
) -> None:
    # The same rule as the weight recorded at a treatment visit, where the dose comes from it.
    from .factories import api_as

    response = api_as(tech).post(
        "/api/participants/",
        {"pseudonym": "HEAVY-1", "site": "HUS", "enrolled_on": "2025-05-05", "weight_kg": weight},
    )
    assert (response.status_code, response.json()["code"]) == (400, "weight_out_of_range")
    assert response.json()["fields"] == {
        "weight_kg": [
            f"A body weight of {weight} kg is not plausible: the trial accepts 30.0–250.0 kg."
        ]
    }
    assert not Participant.objects.filter(pseudonym="HEAVY-1").exists()
