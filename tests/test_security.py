"""Production hardening: request limits, sign-in lockout and records, sessions, tokens, settings."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from biobank.models import Participant, Shipment

from .factories import PASSWORD, make_user

ROOT = Path(__file__).resolve().parent.parent
ERROR_KEYS = {"code", "message", "fields"}


# --- request limits ------------------------------------------------------------------------


def test_deeply_nested_json_is_a_clear_400_not_a_crash(api: APIClient) -> None:
    body = "[" * 3000 + "]" * 3000
    response = api.post("/api/participants/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "json_too_deep"
    assert "limit of 32 levels" in response.json()["message"]


def test_json_just_over_the_depth_limit_is_refused(api: APIClient, settings: Any) -> None:
    settings.REQUEST_MAX_JSON_DEPTH = 4
    nested = '{"pseudonym": {"a": {"b": {"c": {"d": 1}}}}}'
    response = api.post("/api/participants/", nested, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "json_too_deep")
    shallow = '{"pseudonym": {"a": 1}}'
    response = api.post("/api/participants/", shallow, content_type="application/json")
    assert response.json()["code"] != "json_too_deep"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"from_site": "UNN", "to_site": "HUS", "kind": "\\ud800"}', "kind"),
        (b'{"units": [{"container_type": "\\udfff"}]}', "units.0.container_type"),
        (b'{"\\ud800": 1}', "a key"),
    ],
)
def test_text_that_is_not_unicode_is_a_clear_400(api: APIClient, body: bytes, where: str) -> None:
    # JSON may spell a lone surrogate (half of a UTF-16 pair): no text can hold it, and an error
    # that echoed it could not be encoded (a 500).
    response = api.post("/api/shipments/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_text",
        "message": f"The text of {where} is not valid Unicode (half of a surrogate pair).",
        "fields": {},
    }
    assert not Shipment.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["/api/units/%00/", "/api/participants/PT%00/", "/api/units/?status=%00", "/api/scan/%00"],
)
def test_a_nul_character_in_the_address_is_a_clear_400(api: APIClient, url: str) -> None:
    # PostgreSQL text cannot hold NUL: the lookup would fail in the driver (a 500).
    response = api.get(url)
    assert response.status_code == 400
    assert response.json() == {
        "code": "bad_request",
        "message": "The address holds a NUL character (0x00), which no code or value contains.",
        "fields": {},
    }


def test_a_nul_character_in_an_admin_address_is_a_400(admin_client_tech: Any) -> None:
    response = admin_client_tech.get("/admin/biobank/productunit/?status=%00")
    assert response.status_code == 400
    assert b"NUL character" in response.content


def test_body_over_the_size_limit_is_413_naming_the_limit(api: APIClient, settings: Any) -> None:
    settings.REQUEST_MAX_BODY_BYTES = 1000
    body = '{"pseudonym": "' + "x" * 2000 + '"}'
    response = api.post("/api/participants/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert "limit (REQUEST_MAX_BODY_BYTES) is 1000 bytes" in response.json()["message"]


def test_form_bodies_are_refused_on_the_api(api: APIClient) -> None:
    response = api.post("/api/participants/", {"pseudonym": "P-1"}, format="multipart")
    assert response.status_code == 415
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["code"] == "unsupported_media_type"
    assert not Participant.objects.exists()


# --- every /api/ answer is JSON --------------------------------------------------------------


def test_unknown_api_route_is_json_404(api: APIClient) -> None:
    response = api.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_wrong_method_is_json_405(api: APIClient) -> None:
    response = api.delete("/api/participants/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_a_crash_is_json_500_without_internals(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from biobank.api import views

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views.ParticipantViewSet, "list", boom)
    api.raise_request_exception = False
    response = api.get("/api/participants/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert "secret" not in response.content.decode()


# --- sign-in protection -----------------------------------------------------------------------


def _token(username: str, password: str, ip: str = "10.0.0.1") -> Any:
    return APIClient(REMOTE_ADDR=ip).post(
        "/api/auth/token/", {"username": username, "password": password}, format="json"
    )


def test_token_endpoint_locks_the_account_after_repeated_failures(tech: Any) -> None:
    statuses = [_token(tech.username, "wrong").status_code for _ in range(5)]
    assert statuses == [400, 400, 400, 400, 429]  # the fifth failure locks
    locked = _token(tech.username, PASSWORD, ip="10.0.0.2")  # right password, other address
    assert locked.status_code == 429
    assert locked.json()["code"] == "locked_out"
    assert "after 5 failures" in locked.json()["message"]
    assert "token" not in locked.json()
    assert AccessFailureLog.objects.filter(username=tech.username, locked_out=True).exists()


def test_token_endpoint_locks_the_address_across_accounts(db: None) -> None:
    victim = make_user("victim")
    for i in range(5):
        _token(f"guess-{i}", "wrong", ip="10.9.9.9")
    locked = _token(victim.username, PASSWORD, ip="10.9.9.9")
    assert (locked.status_code, locked.json()["code"]) == (429, "locked_out")
    assert not Token.objects.filter(user=victim).exists()
    elsewhere = _token(victim.username, PASSWORD, ip="10.1.1.1")
    assert elsewhere.status_code == 200
    assert elsewhere.json()["token"] == Token.objects.get(user=victim).key


def test_admin_login_is_locked_and_recorded(client: Any, tech: Any) -> None:
    for _ in range(5):
        response = client.post(
            "/admin/login/",
            {"username": tech.username, "password": "wrong"},
            REMOTE_ADDR="10.2.2.2",
        )
    right = client.post(
        "/admin/login/", {"username": tech.username, "password": PASSWORD}, REMOTE_ADDR="10.2.2.2"
    )
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    attempt = AccessAttempt.objects.get(username=tech.username)
    assert attempt.failures_since_start >= 5 and attempt.ip_address == "10.2.2.2"
    assert response.status_code == 429  # the fifth failure locks


def test_successful_logins_are_recorded_and_visible_to_administrators(
    client: Any, tech: Any
) -> None:
    response = client.post("/admin/login/", {"username": tech.username, "password": PASSWORD})
    assert response.status_code == 302
    assert AccessLog.objects.filter(username=tech.username).count() == 1
    admin = make_user("root-admin", is_superuser=True)
    client.force_login(admin)
    for page in ("accesslog", "accessfailurelog", "accessattempt"):
        assert client.get(f"/admin/axes/{page}/").status_code == 200


def test_idle_session_expires_and_activity_extends_it(
    client: Any, tech: Any, settings: Any
) -> None:
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    client.force_login(tech)
    assert client.get("/admin/").status_code == 200
    left = Session.objects.get().expire_date - timezone.now()
    assert dt.timedelta(minutes=29) < left <= dt.timedelta(minutes=30)
    # Active a while ago, with five minutes left: the next request pushes the expiry on.
    session = client.session
    session["_biobank_seen"] = 0
    session.save()
    Session.objects.update(expire_date=timezone.now() + dt.timedelta(minutes=5))
    assert client.get("/admin/").status_code == 200
    left = Session.objects.get().expire_date - timezone.now()
    assert left > dt.timedelta(minutes=29)
    # Idle past the limit: logged off.
    Session.objects.update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_tokens_expire_and_can_be_revoked(tech: Any, settings: Any) -> None:
    issued = _token(tech.username, PASSWORD).json()
    assert issued["expires_at"] is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued['token']}")
    assert client.get("/api/participants/").status_code == 200
    Token.objects.filter(key=issued["token"]).update(
        created=timezone.now() - dt.timedelta(hours=settings.API_TOKEN_LIFETIME_HOURS + 1)
    )
    expired = client.get("/api/participants/")
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    fresh = _token(tech.username, PASSWORD).json()["token"]
    assert fresh != issued["token"]
    # Revoking = deleting the token in the admin.
    admin = make_user("token-admin", is_superuser=True)
    admin_client = APIClient()
    admin_client.force_login(admin)
    page = admin_client.post(
        f"/admin/authtoken/tokenproxy/{tech.pk}/delete/", {"post": "yes"}, follow=False
    )
    assert page.status_code == 302
    assert not Token.objects.filter(user=tech).exists()
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh}")
    revoked = client.get("/api/participants/")
    assert (revoked.status_code, revoked.json()["code"]) == (401, "authentication_failed")


# --- settings ------------------------------------------------------------------------------


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECURE_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, "SECRET_KEY": "k" * 20 + "-production-like-secret-key-0123456789", **env},
        capture_output=True,
        text=True,
    )


def test_check_deploy_is_clean_when_debug_is_off() -> None:
    result = _manage("check", "--deploy", DEBUG="false")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stderr + result.stdout


def test_https_protections_default_on_and_can_be_switched_off() -> None:
    show = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_PROXY_SSL_HEADER)"
    )
    on = _manage("shell", "--no-imports", "-c", show, DEBUG="false")
    assert on.stdout.split() == ["True", "True", "True", "31536000", "None"], on.stderr
    behind_proxy = _manage(
        "shell",
        "--no-imports",
        "-c",
        show,
        DEBUG="false",
        SECURE_SSL_REDIRECT="false",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
    )
    assert behind_proxy.stdout.split()[0] == "False"
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in behind_proxy.stdout
