"""The API contract an integrator relies on: 409 for conflicts, documented errors, a client."""

from __future__ import annotations

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from biobank.errors import ServiceError
from biobank.services.roles import LAB, MONITOR
from biobank.services.storage import unit_move, unit_store

from .factories import PASSWORD, api_as, make_aspirate, make_box, make_units, make_user, run_at_once


def test_duplicate_aspirate_is_a_409_like_a_duplicate_dose(trial: Any, tech: Any) -> None:
    aspirate = make_aspirate(actor=tech)
    client = APIClient()
    client.force_authenticate(tech)
    response = client.post(
        "/api/aspirates/",
        {
            "participant": aspirate.participant.code,
            "visit": "BASELINE",
            "volume_ml": "50.0",
            "anticoagulant": "heparin",
            "collected_at": aspirate.collected_at.isoformat(),
            "collected_by": "Dr. A",
        },
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "duplicate"
    assert aspirate.participant.aspirates.count() == 1


def test_moving_a_unit_to_where_it_is_is_a_409(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    box = make_box(actor=tech)
    unit_store(unit=unit, container=box, position="A1", actor=tech)
    with pytest.raises(ServiceError) as caught:
        unit_move(unit=unit, container=box, position="A1", actor=tech)
    assert (caught.value.status_code, caught.value.code) == (409, "already_there")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_moves_of_one_unit_give_409s(postgres_only: None) -> None:
    from .factories import load_trial

    load_trial()
    tech = make_user("mover")
    unit = make_units(actor=tech, count=1)[0]
    box = make_box(actor=tech)
    unit_store(unit=unit, container=box, position="A1", actor=tech)
    move = partial(unit_move, unit=unit, container=box, position="B2", actor=tech)
    # One moves it; the other 19 find it already there once they get the row lock.
    assert run_at_once(*[move] * 20) == ["409 already_there"] * 19 + ["ok"]


def test_schema_documents_errors_and_takes_json_only(trial: Any, tech: Any) -> None:
    client = APIClient()
    client.force_authenticate(tech)
    schema = client.get("/api/schema/?format=json").json()
    error_ref = "#/components/schemas/Error"
    operations = 0
    for path, item in schema["paths"].items():
        for method, op in item.items():
            operations += 1
            responses = op["responses"]
            for code in ("404", "500"):
                ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("Error") or ref == error_ref, (path, method, code)
            if method in ("post", "put", "patch"):
                assert {"400", "409", "413"} <= set(responses), (path, method)
                body = op.get("requestBody")
                if body and path.endswith("/logger/"):  # the one file upload: a logger CSV
                    assert set(body["content"]) == {"multipart/form-data"}, (path, method)
                elif body:
                    assert set(body["content"]) == {"application/json"}, (path, method)
    assert operations > 40
    components = schema["components"]["schemas"]
    assert set(components["Error"]["properties"]) == {"code", "message", "fields"}
    location = components["Unit"]["properties"]["location"]
    assert location["allOf"][0]["$ref"] == "#/components/schemas/Location"
    assert components["UnblindingOutput"]["properties"]["schedule"]["items"]["$ref"].endswith(
        "ScheduleEntry"
    )


@pytest.mark.django_db(transaction=True)
def test_generated_python_client_imports_and_walks(live_server: Any, tmp_path: Path) -> None:
    """openapi-python-client, as an integrator would use it, against a live test server."""
    generator = shutil.which("openapi-python-client") or str(
        Path(sys.executable).with_name("openapi-python-client")
    )
    if not Path(generator).exists():
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    from .factories import load_trial

    load_trial()
    user = make_user("integrator")
    client = APIClient()
    client.force_authenticate(user)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(client.get("/api/schema/?format=json").json()))
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        [
            generator,
            "generate",
            "--path",
            str(schema),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "bbclient"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module("bbclient")
        modules = [m.name for m in pkgutil.walk_packages(package.__path__, "bbclient.")]
        for name in modules:
            importlib.import_module(name)
        assert len(modules) > 100

        from bbclient import AuthenticatedClient, Client  # type: ignore[import-not-found]
        from bbclient.api.auth import auth_token_create  # type: ignore[import-not-found]
        from bbclient.api.participants import (  # type: ignore[import-not-found]
            participants_create,
            participants_list,
        )
        from bbclient.api.units import units_move_create  # type: ignore[import-not-found]
        from bbclient.models import (  # type: ignore[import-not-found]
            AuthToken,
            Error,
            Participant,
            ParticipantEnrolInput,
            UnitMoveInput,
        )

        issued = auth_token_create.sync(
            client=Client(base_url=live_server.url),
            body=AuthToken(username=user.username, password=PASSWORD),
        )
        api = AuthenticatedClient(base_url=live_server.url, token=issued.token, prefix="Token")
        import datetime as dt

        body = ParticipantEnrolInput(pseudonym="GEN-1", site="UNN", enrolled_on=dt.date(2025, 5, 5))
        created = participants_create.sync(client=api, body=body)
        assert isinstance(created, Participant) and created.code.startswith("PT")
        again = participants_create.sync_detailed(client=api, body=body)
        assert again.status_code == 409 and isinstance(again.parsed, Error)
        assert again.parsed.code == "duplicate"
        listed = participants_list.sync(client=api)
        assert [p.code for p in listed.results] == [created.code]
        missing = units_move_create.sync_detailed(
            "UN-NOPE", client=api, body=UnitMoveInput(container="BX-NOPE")
        )
        assert missing.status_code == 404 and isinstance(missing.parsed, Error)
        assert missing.parsed.code == "not_found"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "bbclient" or m.startswith("bbclient.")]:
            del sys.modules[name]


def test_token_endpoint(roles: dict[str, Any]) -> None:
    response = APIClient().post(
        "/api/auth/token/",
        {"username": roles[LAB].username, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200 and response.json()["token"]
    bad = APIClient().post("/api/auth/token/", {"username": "x", "password": "y"}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"code", "message", "fields"}


def test_schema_and_docs(roles: dict[str, Any]) -> None:
    client = api_as(roles[MONITOR])
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in [
        "/api/units/{code}/store/",
        "/api/containers/{code}/store/",
        "/api/doses/{code}/dispatch/",
        "/api/scan/",
    ]:
        assert path in paths, path
    assert client.get("/api/docs/").status_code == 200
    for url in ("/api/schema/?format=json", "/api/docs/"):
        anonymous = APIClient().get(url)
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")


def test_a_step_named_like_an_http_method_is_not_its_handler(roles: dict[str, Any]) -> None:
    # The unit step "put" is POST /api/units/<code>/put/; PUT on the list is not allowed.
    client = api_as(roles[LAB])
    response = client.put("/api/units/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
