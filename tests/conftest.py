from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from .factories import load_trial, make_user


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
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises all writers, so no real race can happen")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs ~0.3 s per test user; tests don't need it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
