"""Emergency unblinding: who may, with what reason and signature, and where it is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from biobank.errors import ServiceError
from biobank.models import Signature, Unblinding
from biobank.services.roles import ADMINISTRATOR, CLINICIAN, LAB, MONITOR
from biobank.services.unblinding import participant_unblind

from .factories import PASSWORD, api_as, make_participant


def test_emergency_unblinding(roles: dict[str, Any], client: Any) -> None:
    participant = make_participant(actor=roles[LAB], arm="B")
    with pytest.raises(ServiceError) as info:
        participant_unblind(
            participant=participant, actor=roles[MONITOR], password=PASSWORD, reason="x" * 20
        )
    assert (info.value.status_code, info.value.code) == (403, "permission_denied")
    with pytest.raises(ServiceError) as info:
        participant_unblind(
            participant=participant, actor=roles[CLINICIAN], password=PASSWORD, reason=""
        )
    assert (info.value.code, info.value.field) == ("reason_required", "reason")
    assert not Unblinding.objects.exists() and not Signature.objects.exists()
    # Too short a reason through the API: the same code, 400, the field named.
    response = api_as(roles[CLINICIAN]).post(
        f"/api/participants/{participant.code}/unblind/",
        {"password": PASSWORD, "reason": "   urgent "},
        format="json",
    )
    assert (response.status_code, response.json()["code"]) == (400, "reason_required")
    assert list(response.json()["fields"]) == ["reason"]
    assert not Unblinding.objects.exists() and not Signature.objects.exists()
    result = participant_unblind(
        participant=participant,
        actor=roles[CLINICIAN],
        password=PASSWORD,
        reason="Severe adverse event: meningitis suspected",
    )
    assert "Arm B" in result.arm and ("Month 6", "Autologous BM-MSC") in result.schedule
    assert result.record.signature.meaning == "unblinding"
    # Recorded in the custody log and visible to the trial's administrators only.
    assert participant.events.filter(action="emergency_unblinding").exists()
    client.force_login(roles[ADMINISTRATOR])
    listing = client.get(reverse("admin:biobank_unblinding_changelist")).content.decode()
    assert participant.pseudonym in listing and "meningitis" in listing
    client.force_login(roles[MONITOR])
    assert client.get(reverse("admin:biobank_unblinding_changelist")).status_code == 403
    assert Unblinding.objects.count() == 1


def test_unblinding_through_admin_action(roles: dict[str, Any], client: Any) -> None:
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    participant = make_participant(actor=roles[LAB], arm="A")
    client.force_login(roles[CLINICIAN])
    response = client.post(
        reverse("admin:biobank_participant_changelist"),
        {
            "action": "step_unblind",
            ACTION_CHECKBOX_NAME: [participant.pk],
            "apply_step": "1",
            "reason": "Emergency surgery, treating team needs to know",
            "password": PASSWORD,
        },
        follow=True,
    )
    assert "UNBLINDED" in response.content.decode() and "Arm A" in response.content.decode()


def test_an_unblinding_rolled_back_shows_no_arm(roles: dict[str, Any], client: Any) -> None:
    # Two selected, the second refused: nothing is recorded, so nothing may be shown either
    # (an arm seen without its signed record would be an unblinding no one can audit).
    import datetime as dt

    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    from biobank.models import CustodyEvent, Site, Study
    from biobank.services.trial import participant_enroll

    allocated = make_participant(actor=roles[LAB], arm="B")
    not_yet = participant_enroll(
        study=Study.objects.get(),
        site=Site.objects.get(code="HUS"),
        pseudonym="NOARM-1",
        enrolled_on=dt.date(2025, 3, 1),
        actor=roles[LAB],
    )
    client.force_login(roles[CLINICIAN])
    response = client.post(
        reverse("admin:biobank_participant_changelist"),
        {
            "action": "step_unblind",
            ACTION_CHECKBOX_NAME: [allocated.pk, not_yet.pk],
            "apply_step": "1",
            "reason": "Emergency surgery, treating team needs to know",
            "password": PASSWORD,
        },
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith("Emergency unblinding: nothing was changed.")
    assert "Arm" not in response.content.decode()
    assert not Unblinding.objects.exists() and not Signature.objects.exists()
    assert not CustodyEvent.objects.filter(action="emergency_unblinding").exists()
