from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.backends.signals import connection_created
from rest_framework.test import APIClient

from biobank.services.roles import ADMINISTRATOR, CLINICIAN, LAB, MONITOR, QA, roles_sync

from .factories import load_trial, make_user


def _allow_test_flush(sender: Any, connection: Any, **kwargs: Any) -> None:
    # The custody log refuses TRUNCATE (migration 0010) unless the session allows it; the
    # test runner empties tables with TRUNCATE between transactional tests.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET biobank.allow_truncate = 'on'")


connection_created.connect(_allow_test_flush, dispatch_uid="biobank-test-allow-truncate")


@pytest.fixture
def trial(db: None) -> Any:
    return load_trial()


@pytest.fixture
def tech(db: None) -> Any:
    return make_user("tech")


@pytest.fixture
def admin_client_tech(client: Any, tech: Any) -> Any:
    client.force_login(tech)
    return client


@pytest.fixture
def api(tech: Any) -> APIClient:
    """The REST API as the technician, signed in with a session (as the admin's pages are)."""
    client = APIClient()
    client.force_login(tech)
    return client


@pytest.fixture
def roles(trial: Any) -> dict[str, Any]:
    """One user per role with its group's permissions only, e.g. "lab_user", "blinded_user"."""
    roles_sync()
    users = {}
    for name in (LAB, QA, CLINICIAN, MONITOR, ADMINISTRATOR):
        user = make_user(name.split()[0].lower() + "_user")
        user.user_permissions.clear()
        user.groups.add(Group.objects.get(name=name))
        users[name] = type(user).objects.get(pk=user.pk)  # no stale permission cache
    return users


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises all writers, so no real race can happen")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs ~0.3 s per test user; tests don't need it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def box(trial: Any, tech: Any) -> Any:
    """An empty 9×9 box, "Box A", in an LN2 tank."""
    from .factories import make_box

    return make_box(actor=tech, name="Box A")
