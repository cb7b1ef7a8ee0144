"""Print jobs: ZPL over raw TCP to a real loopback "printer", failures recorded (never a
500), the send outside any transaction, the admin action and label preview."""

from __future__ import annotations

import io
import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import zxingcpp
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from biobank.errors import ServiceError
from biobank.identifiers import Kind, format_id
from biobank.labels import get_template, render_zpl
from biobank.models import Printer, PrintJob, PrintJobStatus
from biobank.selectors.labels import label_subject_get
from biobank.services import printing
from biobank.services.printing import PRINT_PERMISSION, print_job_submit
from biobank.services.roles import ADMINISTRATOR, LAB, QA

from .factories import PASSWORD, api_as, load_trial, make_printer, make_units, make_user

# --- a printer on 127.0.0.1 ---------------------------------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def loopback() -> Iterator[SimpleNamespace]:
    """A raw-TCP "printer": each connection's bytes (read to EOF) are one received job."""
    received: list[bytes] = []
    arrived = threading.Semaphore(0)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            chunks = []
            while chunk := self.request.recv(65536):
                chunks.append(chunk)
            received.append(b"".join(chunks))
            arrived.release()

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def wait(count: int = 1) -> list[bytes]:
        for _ in range(count):
            assert arrived.acquire(timeout=5), "the printer received nothing"
        return received

    try:
        yield SimpleNamespace(port=server.server_address[1], wait=wait, received=received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _LabUser:
    """Renders the expected labels as an unblinded lab user sees them."""

    is_authenticated = True

    def has_perm(self, perm: str) -> bool:
        return True


_LAB = _LabUser()


def _expected_zpl(codes: list[str], template: str, dpi: int, copies: int = 1) -> bytes:
    """What the printer must receive: the library's ZPL for each item's content."""
    stock = get_template(template, dpi)
    return b"".join(
        render_zpl(label_subject_get(code=code, viewer=_LAB).content_for(stock), stock) * copies
        for code in codes
    )


@pytest.fixture
def units(trial: Any, tech: Any) -> list[Any]:
    return make_units(actor=tech, count=2, stored=True)


# --- the API against the loopback printer --------------------------------------------------


def test_print_job_sends_the_expected_zpl(
    api: APIClient, tech: Any, units: list[Any], loopback: Any
) -> None:
    printer = make_printer(port=loopback.port, dpi=203, label_template="cryobag")
    codes = [u.code for u in units]
    response = api.post(
        "/api/print-jobs/", {"printer": printer.name, "codes": codes, "copies": 2}, format="json"
    )
    assert response.status_code == 201, response.content[:500]
    [data] = loopback.wait()
    assert data == _expected_zpl(codes, "cryobag", 203, copies=2)
    zpl = data.decode("ascii")
    assert zpl.startswith("^XA") and zpl.rstrip().endswith("^XZ")
    assert zpl.count("^XA") == zpl.count("^XZ") == 4
    barcodes = re.findall(r"\^BC[^^]*\^FH\^FD([^^]*)\^FS", zpl)
    assert barcodes == [codes[0], codes[0], codes[1], codes[1]]  # copies together
    body = response.json()
    job = PrintJob.objects.get(pk=body["id"])
    assert job.status == PrintJobStatus.SENT and job.sent_at is not None and job.error == ""
    assert job.byte_count == len(data) and job.item_codes == codes
    assert (job.template, job.dpi, job.copies, job.format) == ("cryobag", 203, 2, "zpl")
    assert job.requested_by == tech and job.printer == printer
    assert body["status"] == "sent" and body["printer"] == printer.name
    assert body["requested_by"] == tech.username
    assert [h.status for h in job.history.order_by("history_id")] == ["queued", "sent"]


def test_printer_can_be_named_by_id(api: APIClient, units: list[Any], loopback: Any) -> None:
    printer = make_printer(port=loopback.port)
    response = api.post(
        "/api/print-jobs/", {"printer": printer.pk, "codes": [units[0].code]}, format="json"
    )
    assert response.status_code == 201, response.content[:500]
    assert loopback.wait()[0] == _expected_zpl([units[0].code], "cryobag", 300)


def test_stock_decides_the_template(trial: Any, tech: Any, units: list[Any], loopback: Any) -> None:
    """Default: the item's own template when the printer holds that size, else the
    printer's; an explicit template must have the size of the loaded stock."""
    printer = make_printer(port=loopback.port, label_template="aspirate")  # 50×25 mm
    unit = units[0]
    box = unit.placements.get().container
    job = print_job_submit(
        printer=printer, codes=[unit.participant.code, box.code, unit.aspirate.code], actor=tech
    )
    assert job.status == "sent"
    assert job.template == "participant,box,aspirate"  # all three are 50×25 mm
    expected = b"".join(
        _expected_zpl([code], name, 300)
        for code, name in (
            (unit.participant.code, "participant"),
            (box.code, "box"),
            (unit.aspirate.code, "aspirate"),
        )
    )
    assert loopback.wait()[0] == expected

    vial_printer = make_printer(port=loopback.port, label_template="cryovial")
    with pytest.raises(ServiceError) as refused:
        print_job_submit(printer=vial_printer, codes=[unit.code], actor=tech, template="cryobag")
    assert refused.value.code == "wrong_label_size"
    assert "38×13 mm" in refused.value.message
    job = print_job_submit(printer=vial_printer, codes=[unit.participant.code], actor=tech)
    assert job.template == "cryovial" and job.status == "sent"  # 50×25 does not fit: stock
    assert loopback.wait(1)[-1] == _expected_zpl([unit.participant.code], "cryovial", 300)


def test_unreachable_printer_records_a_failed_job_and_answers_503_json(
    api: APIClient, units: list[Any]
) -> None:
    printer = make_printer(port=_closed_port())
    response = api.post(
        "/api/print-jobs/", {"printer": printer.name, "codes": [units[0].code]}, format="json"
    )
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "printer_unavailable"
    job = PrintJob.objects.get(pk=body["print_job"])
    assert job.status == PrintJobStatus.FAILED and job.sent_at is None
    assert "refused" in job.error.lower() and str(printer.port) in job.error
    assert job.error in body["message"]
    detail = api.get(f"/api/print-jobs/{job.pk}/").json()
    assert detail["status"] == "failed" and detail["error"] == job.error


def test_timeout_is_a_failed_job(
    trial: Any, tech: Any, units: list[Any], monkeypatch: Any, settings: Any
) -> None:
    settings.LABEL_PRINTER_TIMEOUT_S = 0.2
    seen = {}

    def slow(address: tuple[str, int], timeout: float) -> Any:
        seen["timeout"] = timeout
        raise TimeoutError("timed out")

    monkeypatch.setattr(printing.socket, "create_connection", slow)
    job = print_job_submit(printer=make_printer(), codes=[units[0].code], actor=tech)
    assert seen["timeout"] == 0.2
    assert job.status == "failed" and "timed out" in job.error and "0.2 s" in job.error


def test_unknown_host_is_a_failed_job(trial: Any, tech: Any, units: list[Any]) -> None:
    printer = make_printer(host="no-such-printer.invalid")
    job = print_job_submit(printer=printer, codes=[units[0].code], actor=tech)
    assert job.status == "failed" and "no-such-printer.invalid" in job.error


@pytest.mark.parametrize("host", ["10.0..5", "a" * 64 + ".lab"])
def test_a_host_the_socket_library_refuses_fails_the_job_not_the_request(
    api: APIClient, admin_client_tech: Any, units: list[Any], host: str
) -> None:
    printer = make_printer(name="Bad host", host=host)  # saved before hosts were checked
    response = api.post(
        "/api/print-jobs/", {"printer": printer.name, "codes": [units[0].code]}, format="json"
    )
    body = response.json()
    assert (response.status_code, body["code"]) == (503, "printer_unavailable")
    assert body["fields"] == {"printer": [body["message"]]} and "Bad host" in body["message"]
    job = PrintJob.objects.get(pk=body["print_job"])
    assert job.status == PrintJobStatus.FAILED and "host name is not valid" in job.error
    page = admin_client_tech.post(
        reverse("admin:biobank_productunit_changelist"),
        {"action": "print_labels", ACTION_CHECKBOX_NAME: [units[0].pk], "apply_print": "1"}
        | {"printer": printer.pk, "copies": "1", "template": ""},
        follow=True,
    )
    assert page.status_code == 200
    assert [j.status for j in PrintJob.objects.order_by("pk")] == ["failed", "failed"]
    assert f"Print job {PrintJob.objects.first().pk} failed" in page.content.decode()


def test_bad_requests_record_no_job(api: APIClient, units: list[Any], loopback: Any) -> None:
    printer = make_printer(port=loopback.port)
    code = units[0].code

    def post(**data: Any) -> Any:
        return api.post("/api/print-jobs/", {"printer": printer.name, **data}, format="json")

    cases = [
        (post(codes=[code], copies=0), 400, "invalid", "copies"),
        (post(codes=[code], copies=21), 400, "invalid", "copies"),
        (post(codes=[]), 400, "invalid", "codes"),
        (post(codes=[code], template="poster"), 400, "invalid", "template"),
        (post(codes=[format_id(Kind.UNIT, 9_999_999)]), 404, "not_found", "codes.0"),
        (
            post(codes=[code, code[:-1] + ("0" if code[-1] != "0" else "1")]),
            400,
            "bad_check_character",
            "codes.1",
        ),
        # Not the size of the loaded stock.
        (post(codes=[code], template="cryovial"), 400, "wrong_label_size", "template"),
    ]
    got = [(r.status_code, r.json()["code"], list(r.json()["fields"])) for r, *_ in cases]
    assert got == [(status, error, [field]) for _, status, error, field in cases]
    assert all(r["Content-Type"].startswith("application/json") for r, *_ in cases)
    printer.active = False
    printer.save()
    inactive = post(codes=[code])
    assert inactive.status_code == 400 and inactive.json()["code"] == "printer_inactive"
    assert not PrintJob.objects.exists()
    assert loopback.received == []


@pytest.mark.parametrize("name", ["nope", "²", "１"])
def test_unknown_printer_is_404_not_found(api: APIClient, units: list[Any], name: str) -> None:
    response = api.post(
        "/api/print-jobs/", {"printer": name, "codes": [units[0].code]}, format="json"
    )
    assert response.status_code == 404 and response.json()["fields"] == {
        "printer": [f"No printer '{name}' is configured."]
    }
    assert response.json()["code"] == "not_found"
    assert not PrintJob.objects.exists()


def test_printing_needs_permission(trial: Any, units: list[Any], loopback: Any) -> None:
    user = make_user("viewer")
    user.user_permissions.remove(Permission.objects.get(codename="add_printjob"))
    client = APIClient()
    client.force_login(user)
    printer = make_printer(port=loopback.port)
    response = client.post(
        "/api/print-jobs/", {"printer": printer.name, "codes": [units[0].code]}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert client.get("/api/print-jobs/").status_code == 200
    # The service itself refuses too (a script or a new screen cannot skip the check).
    user = type(user).objects.get(pk=user.pk)  # no cached permissions
    with pytest.raises(ServiceError) as refused:
        print_job_submit(printer=printer, codes=[units[0].code], actor=user)
    assert refused.value.code == "permission_denied"
    assert not PrintJob.objects.exists()
    assert loopback.received == []


def test_print_job_list_has_bounded_queries(
    api: APIClient, tech: Any, units: list[Any], django_assert_max_num_queries: Any
) -> None:
    printers = [make_printer(), make_printer()]
    users = [tech, make_user()]
    for i in range(30):
        PrintJob.objects.create(
            printer=printers[i % 2],
            requested_by=users[i % 2],
            item_codes=[units[i % 2].code],
            template="cryobag",
            dpi=300,
            status="failed" if i % 3 == 0 else "queued",
            error="refused" if i % 3 == 0 else "",
        )
    with django_assert_max_num_queries(6):
        response = api.get("/api/print-jobs/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 30 and len(body["results"]) == 30
    newest = body["results"][0]
    assert set(newest) >= {"id", "printer", "requested_by", "item_codes", "status", "error"}
    failed = api.get("/api/print-jobs/", {"status": "failed", "limit": 5}).json()
    assert failed["count"] == 10 and len(failed["results"]) == 5
    missing = api.get("/api/print-jobs/999999/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_printer_list(api: APIClient, trial: Any) -> None:
    make_printer(name="Lab Zebra", label_template="cryovial", dpi=600)
    make_printer(name="Old", active=False)
    body = api.get("/api/printers/").json()
    assert [p["name"] for p in body["results"]] == ["Lab Zebra", "Old"]
    assert body["results"][0]["label_size"] == "38×13 mm"
    assert [p["name"] for p in api.get("/api/printers/?active=true").json()["results"]] == [
        "Lab Zebra"
    ]


def test_printer_list_needs_view_printer(roles: dict[str, Any]) -> None:
    make_printer(name="Lab Zebra", host="10.9.8.7")
    nobody = api_as(get_user_model().objects.create_user("nobody", password=PASSWORD))
    refused = nobody.get("/api/printers/")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert "10.9.8.7" not in refused.content.decode()
    # The roles that print still list the printers; the blinded ones do not print.
    printing = sorted(name for name, user in roles.items() if user.has_perm(PRINT_PERMISSION))
    assert printing == sorted([LAB, ADMINISTRATOR])
    for name in roles:
        answer = api_as(roles[name]).get("/api/printers/")
        assert answer.status_code == (200 if name in printing or name == QA else 403), name


# --- transactions ------------------------------------------------------------------------


def test_send_happens_outside_any_transaction(transactional_db: None, monkeypatch: Any) -> None:
    load_trial()
    tech = make_user("tx-tech")
    unit = make_units(actor=tech, count=1)[0]
    printer = make_printer()
    seen: dict[str, Any] = {}

    def send(*, host: str, port: int, data: bytes, timeout: float) -> str:
        seen["in_atomic_block"] = connection.in_atomic_block
        seen["status"] = PrintJob.objects.get().status  # already committed as queued
        return "Could not send: connection refused."

    monkeypatch.setattr(printing, "zpl_send", send)
    job = print_job_submit(printer=printer, codes=[unit.code], actor=tech)
    assert seen == {"in_atomic_block": False, "status": "queued"}
    job.refresh_from_db()
    assert job.status == "failed" and job.error == "Could not send: connection refused."


# --- model constraints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{"port": 0}, {"port": 70000}, {"dpi": 150}, {"host": ""}],
)
def test_printer_constraints(db: None, values: dict[str, Any]) -> None:
    base = {"name": "P", "host": "10.0.0.5", "port": 9100, "dpi": 300, "label_template": "box"}
    with pytest.raises(IntegrityError), transaction.atomic():
        Printer.objects.create(**{**base, **values})


@pytest.mark.parametrize(
    "values",
    [
        {"status": "printed"},
        {"status": "sent"},  # without sent_at
        {"status": "failed"},  # without an error
        {"copies": 0},
        {"format": "pdf"},
    ],
)
def test_print_job_constraints(trial: Any, tech: Any, values: dict[str, Any]) -> None:
    printer = make_printer()
    base = {"printer": printer, "requested_by": tech, "item_codes": [], "template": "x", "dpi": 300}
    with pytest.raises(IntegrityError), transaction.atomic():
        PrintJob.objects.create(**{**base, **values})


# --- admin -------------------------------------------------------------------------------


def _admin_items(units: list[Any]) -> dict[str, Any]:
    unit = units[0]
    box = unit.placements.get().container
    return {
        "participant": unit.participant,
        "aspirate": unit.aspirate,
        "productunit": unit,
        "container": box,
        "storageunit": box.storage_unit,
    }


STOCK = {
    "participant": "participant",
    "aspirate": "aspirate",
    "productunit": "cryobag",
    "container": "box",
    "storageunit": "storage_unit",
}


@pytest.mark.parametrize("model", list(STOCK))
def test_admin_print_action_creates_a_job(
    admin_client_tech: Any, units: list[Any], loopback: Any, model: str
) -> None:
    item = _admin_items(units)[model]
    printer = make_printer(port=loopback.port, label_template=STOCK[model])
    url = reverse(f"admin:biobank_{model}_changelist")
    form = admin_client_tech.post(url, {"action": "print_labels", ACTION_CHECKBOX_NAME: [item.pk]})
    assert form.status_code == 200
    html = form.content.decode()
    assert "Print labels: 1 selected" in html and printer.name in html
    done = admin_client_tech.post(
        url,
        {
            "action": "print_labels",
            ACTION_CHECKBOX_NAME: [item.pk],
            "apply_print": "1",
            "printer": printer.pk,
            "copies": "3",
            "template": "",
        },
        follow=True,
    )
    job = PrintJob.objects.get()
    assert job.status == "sent" and job.item_codes == [item.code] and job.copies == 3
    assert f"Print job {job.pk}" in done.content.decode()
    assert loopback.wait()[0] == _expected_zpl([item.code], STOCK[model], 300, copies=3)


def test_admin_print_failure_is_a_message_not_an_error_page(
    admin_client_tech: Any, units: list[Any]
) -> None:
    printer = make_printer(port=_closed_port())
    response = admin_client_tech.post(
        reverse("admin:biobank_productunit_changelist"),
        {
            "action": "print_labels",
            ACTION_CHECKBOX_NAME: [u.pk for u in units],
            "apply_print": "1",
            "printer": printer.pk,
            "copies": "1",
            "template": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    job = PrintJob.objects.get()
    assert job.status == "failed" and job.item_codes == sorted(u.code for u in units)
    assert f"Print job {job.pk} failed" in response.content.decode()


def test_admin_print_action_without_permission(client: Any, units: list[Any]) -> None:
    user = make_user("no-print")
    user.user_permissions.remove(Permission.objects.get(codename="add_printjob"))
    client.force_login(user)
    listing = client.get(reverse("admin:biobank_productunit_changelist")).content.decode()
    assert 'value="print_labels"' not in listing  # the action is not even offered
    response = client.post(
        reverse("admin:biobank_productunit_changelist"),
        {"action": "print_labels", ACTION_CHECKBOX_NAME: [units[0].pk]},
        follow=True,
    )
    assert "No action selected" in response.content.decode()
    assert not PrintJob.objects.exists()


@pytest.mark.parametrize("model", list(STOCK))
def test_admin_change_page_shows_label_preview(
    admin_client_tech: Any, units: list[Any], model: str, django_assert_max_num_queries: Any
) -> None:
    item = _admin_items(units)[model]
    url = reverse(f"admin:biobank_{model}_change", args=[item.pk])
    with django_assert_max_num_queries(40):
        page = admin_client_tech.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    src = f"/api/labels/{item.code}.png"
    assert f'<img src="{src}"' in html
    # The browser loads it with the same admin session.
    image = admin_client_tech.get(src)
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(image.content)).convert("L"))
    assert [r.text for r in decoded] == [item.code]


def test_print_admin_pages(admin_client_tech: Any, tech: Any, units: list[Any]) -> None:
    printer = make_printer(name="Bench Zebra")
    PrintJob.objects.create(
        printer=printer, requested_by=tech, item_codes=[units[0].code], template="cryobag", dpi=300
    )
    job = PrintJob.objects.get()
    for name in ("printer_changelist", "printjob_changelist"):
        response = admin_client_tech.get(reverse(f"admin:biobank_{name}"))
        assert response.status_code == 200
        assert "Bench Zebra" in response.content.decode()
    search = admin_client_tech.get(
        reverse("admin:biobank_printjob_changelist"), {"q": units[0].code}
    )
    assert units[0].code in search.content.decode()
    assert admin_client_tech.get(reverse("admin:biobank_printjob_add")).status_code == 403
    assert (
        admin_client_tech.get(reverse("admin:biobank_printjob_delete", args=[job.pk])).status_code
        == 403
    )
    assert (
        admin_client_tech.get(
            reverse("admin:biobank_printer_delete", args=[printer.pk])
        ).status_code
        == 403
    )
    page = admin_client_tech.get(reverse("admin:biobank_printjob_change", args=[job.pk]))
    assert page.status_code == 200 and units[0].code in page.content.decode()
    assert b'name="_save"' not in page.content
    history = admin_client_tech.get(reverse("admin:biobank_printer_history", args=[printer.pk]))
    assert history.status_code == 200


def test_admin_edits_printer_with_history(admin_client_tech: Any, trial: Any) -> None:
    response = admin_client_tech.post(
        reverse("admin:biobank_printer_add"),
        {
            "name": "Cryo lab",
            "host": "10.1.2.3",
            "port": "9100",
            "dpi": "600",
            "label_template": "cryovial",
            "location": "Cell lab",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    printer = Printer.objects.get(name="Cryo lab")
    assert printer.history.get().history_change_reason == "added in admin"


@pytest.mark.parametrize(
    "host",
    ["10.0..5", "a" * 64 + ".lab", "http://10.1.2.3", "10.1.2.3:9100", "zeb ra", "10.0.0.256"],
)
def test_a_bad_printer_host_is_a_field_error(admin_client_tech: Any, trial: Any, host: str) -> None:
    data = {"name": "Bad", "host": host, "port": "9100", "dpi": "300", "label_template": "box"}
    response = admin_client_tech.post(reverse("admin:biobank_printer_add"), data)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["host"]
    with pytest.raises(ValidationError) as refused:
        Printer(**{**data, "port": 9100, "dpi": 300}).full_clean()
    assert list(refused.value.message_dict) == ["host"]
    assert not Printer.objects.exists()
    for good in ("10.1.2.3", "fe80::1", "zebra-2.lab.example", "localhost"):
        Printer(**{**data, "host": good, "port": 9100, "dpi": 300}).full_clean()


def test_admin_refuses_a_bad_port_as_a_form_error(admin_client_tech: Any, trial: Any) -> None:
    response = admin_client_tech.post(
        reverse("admin:biobank_printer_add"),
        {"name": "Bad", "host": "10.1.2.3", "port": "70000", "dpi": "300", "label_template": "box"},
    )
    assert response.status_code == 200
    assert "port" in response.context["adminform"].form.errors
    assert not Printer.objects.exists()
