"""Paging of every list over the API: limit and offset are bounded whole numbers, or a 400
naming the parameter (a huge one reached SQLite and came back as a 409 "conflict")."""

from __future__ import annotations

from typing import Any

import pytest

from biobank.api.urls import RESOURCES
from biobank.models import CustodyEvent

from .factories import make_dose, make_user

pytestmark = pytest.mark.django_db

LISTS = [*(f"/api/{prefix}/" for prefix in RESOURCES), "/api/printers/", "/api/print-jobs/"]


@pytest.fixture
def small(trial: Any) -> Any:
    """A participant with a ready dose: custody events, doses and participants to list."""
    user = make_user("pager")
    make_dose(actor=user, arm="B", visit="M6", ready=True)
    return user


BAD = [
    ("limit=99999999999999999999999", "limit", "from 1 to 1000"),
    ("limit=1001", "limit", "from 1 to 1000"),
    ("limit=0", "limit", "from 1 to 1000"),
    ("limit=-5", "limit", "from 1 to 1000"),
    ("limit=ten", "limit", "from 1 to 1000"),
    ("limit=" + "9" * 5000, "limit", "from 1 to 1000"),  # beyond Python's int() limit
    ("limit=٣", "limit", "from 1 to 1000"),
    ("offset=99999999999999999999999", "offset", "from 0 to 1000000000"),
    ("offset=-1", "offset", "from 0 to 1000000000"),
    ("offset=1.5", "offset", "from 0 to 1000000000"),
]


def test_limit_and_offset_are_bounded_whole_numbers_on_every_list(client: Any, small: Any) -> None:
    client.force_login(small)
    for query, field, bounds in BAD:
        message = f"{field} must be a whole number {bounds}."
        for path in LISTS:
            response = client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert response.json() == {
                "code": "invalid",
                "message": message,
                "fields": {field: [message]},
            }
    # Within the bounds they page as before.
    ids = list(CustodyEvent.objects.order_by("at", "id").values_list("id", flat=True))
    page = client.get("/api/events/?limit=3&offset=2").json()
    assert page["count"] == len(ids)
    assert [e["id"] for e in page["results"]] == ids[2:5]
    assert client.get("/api/events/?limit=1000&offset=1000000000").json()["results"] == []
