"""Schema-driven fuzzing of every endpoint (schemathesis): no 5xx, responses match the schema.

The schema is generated in-process (the served one needs authentication) and requests go
straight to the WSGI application, as an administrator so that every endpoint is reached.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application

from .factories import load_trial, make_box, make_dose, make_units, make_user

RAW = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
schema = schemathesis.openapi.from_dict(RAW)
schema.app = application


@pytest.fixture
def wsgi_keeps_test_connection() -> Any:
    """Calling the WSGI app directly fires request_finished, whose close_old_connections
    would close the test's open transaction on PostgreSQL (Django's test client avoids it)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def auth_header(db: None, wsgi_keeps_test_connection: None) -> dict[str, str]:
    load_trial()
    user = make_user("fuzzer", is_superuser=True)
    # Some real data, so that generated IDs sometimes hit something.
    make_units(actor=user, count=2, stored=True)
    make_box(actor=user)
    make_dose(actor=user, ready=False)
    token = Token.objects.create(user=user)
    return {"Authorization": f"Token {token.key}"}


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(case: Any, auth_header: dict[str, str]) -> None:
    response = case.call(headers=auth_header)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
