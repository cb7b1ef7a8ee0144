"""The label API: every kind of item, every format decodes back to its identifier; errors
are JSON; hostile text cannot become printer commands; no label shows allocation."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from biobank.identifiers import Kind, format_id
from biobank.labels import get_template
from biobank.models import Site, Study
from biobank.selectors.labels import label_subject_get
from biobank.services import printing
from biobank.services.aspirates import aspirate_collect
from biobank.services.doses import dose_administer, dose_cancel, dose_dispatch
from biobank.services.printing import MAX_BATCH_CODES
from biobank.services.roles import CLINICIAN
from biobank.services.trial import participant_enroll
from biobank.services.units import UnitSpec, units_create

from .barcodes import decode, pdf_codes, png_codes, svg_codes
from .factories import (
    PASSWORD,
    api_as,
    make_aspirate,
    make_dose,
    make_participant,
    make_printer,
    make_processing,
    make_units,
    make_user,
    past,
)

# --- helpers -----------------------------------------------------------------------------


def _fields(zpl: str) -> list[str]:
    """Unescaped ^FD data of a ZPL label (^FH: _XX is one UTF-8 byte)."""
    out = []
    for raw in re.findall(r"\^FD([^\^~]*)\^FS", zpl):
        data = re.sub(rb"_([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), raw.encode())
        out.append(data.decode("utf-8"))
    return out


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The JSON error body, after checking its status and code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"code", "message", "fields"}
    assert body["code"] == code, body
    return body


def _cryovial(actor: Any) -> Any:
    processing = make_processing(actor=actor, harvested=True)
    return units_create(
        processing=processing,
        specs=[UnitSpec(container_type="cryovial", cell_number=5_000_000, volume_ml=Decimal("1"))],
        actor=actor,
        created_at=past(days=8),
    )[0]


@pytest.fixture
def items(trial: Any, tech: Any) -> SimpleNamespace:
    units = make_units(actor=tech, count=3, stored=True)
    unit = units[0]
    box = unit.placements.get().container
    return SimpleNamespace(
        unit=unit,
        units=units,
        cryovial=_cryovial(tech),
        aspirate=unit.aspirate,
        participant=unit.participant,
        processing=unit.processing,
        freezing_run=unit.freezing_run,
        box=box,
        rack=box.parent,
        storage_unit=box.storage_unit,
    )


KINDS = [
    "unit",
    "cryovial",
    "aspirate",
    "participant",
    "processing",
    "freezing_run",
    "box",
    "rack",
    "storage_unit",
]


# --- one label ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_png_from_api_decodes_to_the_id(api: APIClient, items: Any, kind: str) -> None:
    code = getattr(items, kind).code
    response = api.get(f"/api/labels/{code}.png")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"
    assert png_codes(response.content) == [code]


@pytest.mark.parametrize("kind", ["unit", "cryovial", "box", "storage_unit", "participant"])
@pytest.mark.parametrize("dpi", [203, 600])
def test_png_at_every_dpi_decodes(api: APIClient, items: Any, kind: str, dpi: int) -> None:
    code = getattr(items, kind).code
    response = api.get(f"/api/labels/{code}.png", {"dpi": dpi})
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    assert round(image.info["dpi"][0]) == dpi
    assert decode(image) == [code]


def test_default_template_follows_the_item(api: APIClient, items: Any) -> None:
    expected = {
        "unit": "cryobag",
        "cryovial": "cryovial",
        "aspirate": "aspirate",
        "participant": "participant",
        "box": "box",
        "rack": "box",
        "storage_unit": "storage_unit",
    }
    for kind, template in expected.items():
        code = getattr(items, kind).code
        response = api.get(f"/api/labels/{code}.png")
        assert f'filename="{code}-{template}-300dpi.png"' in response["Content-Disposition"]
        size = Image.open(io.BytesIO(response.content)).size
        t = get_template(template)
        assert size == (t.width_dots, t.height_dots)


@pytest.mark.parametrize("kind", ["unit", "cryovial", "aspirate", "box", "storage_unit"])
def test_svg_and_pdfdecode(api: APIClient, items: Any, kind: str) -> None:
    code = getattr(items, kind).code
    svg = api.get(f"/api/labels/{code}.svg")
    assert svg.status_code == 200
    assert svg["Content-Type"] == "image/svg+xml"
    assert "default-src 'none'" in svg["Content-Security-Policy"]
    assert svg_codes(svg.content) == [code]
    pdf = api.get(f"/api/labels/{code}.pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf_codes(pdf.content) == [[code]]


def test_zpl_is_text_with_one_label(api: APIClient, items: Any) -> None:
    code = items.unit.code
    response = api.get(f"/api/labels/{code}.zpl", {"dpi": "203"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "private, no-store"
    zpl = response.content.decode("ascii")
    assert zpl.startswith("^XA") and zpl.rstrip().endswith("^XZ")
    assert zpl.count("^XA") == 1 and zpl.count("^XZ") == 1
    assert code in _fields(zpl)
    assert "^PW559" in zpl  # 70 mm at 203 dpi


def test_template_query_parameter(api: APIClient, items: Any) -> None:
    code = items.participant.code
    response = api.get(f"/api/labels/{code}.png", {"template": "cryovial", "dpi": 600})
    assert response.status_code == 200
    assert f"{code}-cryovial-600dpi.png" in response["Content-Disposition"]
    assert png_codes(response.content) == [code]


@pytest.mark.parametrize("kind", ["unit", "aspirate", "box", "storage_unit"])
def test_any_item_fits_a_vial_label(api: APIClient, items: Any, kind: str) -> None:
    """On small stock the text is the short form, so a bag's unit or an aspirate tube can
    still get a vial-sized label."""
    code = getattr(items, kind).code
    response = api.get(f"/api/labels/{code}.png", {"template": "cryovial", "dpi": 203})
    assert response.status_code == 200, response.content[:300]
    assert png_codes(response.content) == [code]


def test_lowercase_id_in_path_is_accepted(api: APIClient, items: Any) -> None:
    response = api.get(f"/api/labels/{items.unit.code.lower()}.png")
    assert response.status_code == 200
    assert png_codes(response.content) == [items.unit.code]


def test_token_authentication(items: Any, tech: Any) -> None:
    from rest_framework.authtoken.models import Token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=tech).key}")
    assert client.get(f"/api/labels/{items.unit.code}.zpl").status_code == 200


# --- errors ------------------------------------------------------------------------------


def test_unknown_id_is_404_json(api: APIClient, trial: Any) -> None:
    code = format_id(Kind.UNIT, 9_999_999)
    body = _error(api.get(f"/api/labels/{code}.png"), 404, "not_found")
    assert code in body["message"]


def test_dose_id_has_no_label_yet(api: APIClient, trial: Any) -> None:
    body = _error(api.get(f"/api/labels/{format_id(Kind.DOSE, 1)}.png"), 404, "not_found")
    assert "dose" in body["message"]


def test_wrong_check_character_is_400_naming_it(api: APIClient, items: Any) -> None:
    code = items.unit.code
    wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
    body = _error(api.get(f"/api/labels/{wrong}.png"), 400, "bad_check_character")
    assert "check character" in body["message"] and wrong in body["message"]
    assert "code" in body["fields"]


def test_not_an_identifier_is_400(api: APIClient, trial: Any) -> None:
    _error(api.get("/api/labels/HELLO.png"), 400, "bad_format")
    _error(api.get("/api/labels/ZZ0000001A.png"), 400, "unknown_prefix")
    body = _error(api.get(f"/api/labels/{'A' * 200}.png"), 400, "too_long")
    assert len(body["message"]) < 200  # a long input is not echoed


def test_unknown_or_missing_format_is_json(api: APIClient, items: Any) -> None:
    for suffix in (".gif", "", ".tar.gz"):
        body = _error(api.get(f"/api/labels/{items.unit.code}{suffix}"), 400, "unknown_format")
        assert "format" in body["fields"] and "zpl" in body["message"], suffix


@pytest.mark.parametrize("dpi", ["150", "abc", "300.0", "9" * 50, "²", "３００"])
def test_bad_dpi_is_400(api: APIClient, items: Any, dpi: str) -> None:
    body = _error(api.get(f"/api/labels/{items.unit.code}.png", {"dpi": dpi}), 400, "invalid_dpi")
    assert "dpi" in body["fields"]
    assert "203, 300, 600" in body["message"]


def test_unknown_template_is_400(api: APIClient, items: Any) -> None:
    response = api.get(f"/api/labels/{items.unit.code}.png", {"template": "poster"})
    assert "template" in _error(response, 400, "unknown_template")["fields"]


def test_text_that_does_not_fit_is_422(api: APIClient, trial: Any, tech: Any) -> None:
    study = Study.objects.get()
    participant = participant_enroll(
        study=study,
        site=Site.objects.get(code="HUS"),
        pseudonym="W" * 32,
        enrolled_on=dt.date(2025, 1, 1),
        actor=tech,
    )
    response = api.get(f"/api/labels/{participant.code}.png?template=cryovial")
    assert _error(response, 422, "label_does_not_fit")["fields"] == {
        "template": [response.json()["message"]]
    }


def test_errors_are_json_even_when_the_client_asks_for_an_image(api: APIClient, trial: Any) -> None:
    code = format_id(Kind.UNIT, 9_999_999)
    response = api.get(f"/api/labels/{code}.png", HTTP_ACCEPT="image/png")
    _error(response, 404, "not_found")


def test_unauthenticated_is_refused(items: Any) -> None:
    client = APIClient()
    for response in (
        client.get(f"/api/labels/{items.unit.code}.png"),
        client.post(
            "/api/labels/batch/", {"codes": [items.unit.code], "format": "zpl"}, format="json"
        ),
        client.get("/api/print-jobs/"),
        client.get("/api/printers/"),
    ):
        _error(response, 401, "not_authenticated")


# --- batches -----------------------------------------------------------------------------


def test_batch_pdf_sheet_decodes_every_id(api: APIClient, items: Any) -> None:
    codes = [u.code for u in items.units]
    response = api.post("/api/labels/batch/", {"codes": codes, "format": "pdf"}, format="json")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/pdf"
    pages = pdf_codes(response.content)
    assert len(pages) == 1  # one A4 sheet
    assert pages[0] == sorted(codes)


def test_batch_pdf_mixed_items_need_one_template(api: APIClient, items: Any) -> None:
    codes = [items.unit.code, items.aspirate.code, items.participant.code]
    mixed = api.post("/api/labels/batch/", {"codes": codes, "format": "pdf"}, format="json")
    assert "template" in _error(mixed, 400, "mixed_templates")["fields"]
    response = api.post(
        "/api/labels/batch/",
        {"codes": codes, "format": "pdf", "template": "aspirate", "dpi": 600},
        format="json",
    )
    assert response.status_code == 200, response.content[:300]
    assert pdf_codes(response.content, dpi=600) == [sorted(codes)]


def test_batch_zpl_is_one_stream_in_order(api: APIClient, items: Any) -> None:
    codes = [
        items.unit.code,
        items.cryovial.code,
        items.aspirate.code,
        items.participant.code,
        items.box.code,
        items.storage_unit.code,
        items.unit.code,  # repeats are printed again
    ]
    response = api.post("/api/labels/batch/", {"codes": codes, "format": "zpl"}, format="json")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    zpl = response.content.decode("ascii")
    labels = [part for part in zpl.split("^XZ") if part.strip()]
    assert len(labels) == len(codes) and zpl.count("^XA") == len(codes)
    for label, code in zip(labels, codes, strict=True):
        assert code in _fields(label)  # the barcode's field data, unescaped


def test_batch_errors_name_the_code_and_position(api: APIClient, items: Any) -> None:
    good = items.unit.code
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    body = _error(
        api.post("/api/labels/batch/", {"codes": [good, bad], "format": "zpl"}, format="json"),
        400,
        "bad_check_character",
    )
    assert "Code 2 of 2" in body["message"] and bad in body["message"]
    assert "codes.1" in body["fields"]
    missing = format_id(Kind.ASPIRATE, 9_999_999)
    body = _error(
        api.post(
            "/api/labels/batch/", {"codes": [good, good, missing], "format": "pdf"}, format="json"
        ),
        404,
        "not_found",
    )
    assert "Code 3 of 3" in body["message"] and missing in body["message"]


def test_batch_request_validation(api: APIClient, items: Any) -> None:
    code = items.unit.code
    cases = [
        ({"codes": [code], "format": "png"}, "format"),
        ({"codes": [], "format": "zpl"}, "codes"),
        ({"codes": code, "format": "zpl"}, "codes"),
        ({"codes": [code] * (MAX_BATCH_CODES + 1), "format": "zpl"}, "codes"),
        ({"codes": [code], "format": "zpl", "dpi": 72}, "dpi"),
    ]
    for body, field in cases:
        response = api.post("/api/labels/batch/", body, format="json")
        assert list(_error(response, 400, "invalid")["fields"]) == [field], body
    assert api.get("/api/labels/batch/").status_code == 405


# --- blinding and hostile text -----------------------------------------------------------


def test_hostile_text_is_escaped_in_zpl_from_the_api(api: APIClient, trial: Any, tech: Any) -> None:
    hostile = "^XZ~JR^XA~JA"
    participant = participant_enroll(
        study=Study.objects.get(),
        site=Site.objects.get(code="HUS"),
        pseudonym=f"X{hostile}",
        enrolled_on=dt.date(2025, 1, 1),
        actor=tech,
    )
    aspirate = aspirate_collect(
        visit=participant.visits.get(visit_type__code="BASELINE"),
        volume_ml=Decimal("50"),
        anticoagulant="heparin",
        collected_at=past(days=1),
        collected_by=f"Dr. {hostile}^FS\\",
        actor=tech,
    )
    single = [
        api.get(f"/api/labels/{item.code}.zpl").content.decode("ascii")
        for item in (participant, aspirate)
    ]
    batch = api.post(
        "/api/labels/batch/",
        {"codes": [participant.code, aspirate.code], "format": "zpl"},
        format="json",
    ).content.decode("ascii")
    for zpl, labels in ((single[0], 1), (single[1], 1), (batch, 2)):
        assert zpl.count("^XA") == labels and zpl.count("^XZ") == labels
        assert "~" not in zpl  # no control command at all, escaped or not
        assert "_5EXZ_7EJR" in zpl
    assert f"X{hostile}" in _fields(single[0])
    assert any(hostile in field for field in _fields(single[1]))


def _label_text(code: str, viewer: Any) -> str:
    content = label_subject_get(code=code, viewer=viewer).content
    return " ".join([content.title, *content.lines])


def test_no_label_shows_allocation(api: APIClient, trial: Any, tech: Any) -> None:
    texts = []
    for arm in ("A", "B"):
        participant = make_participant(actor=tech, arm=arm)
        unit = make_units(actor=tech, count=1, stored=True, participant=participant)[0]
        box = unit.placements.get().container
        for item in (unit, unit.aspirate, unit.participant, unit.processing, box):
            texts.append(_label_text(item.code, tech))
    for text in texts:
        for word in ("arm", "msc", "placebo", "saline", "nacl"):
            assert not re.search(rf"\b{word}\b", text, re.IGNORECASE), (word, text)


def test_a_units_printed_label_carries_its_expiry(trial: Any, tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    expires = timezone.localtime(unit.created_at + dt.timedelta(days=730))
    assert f"Expires {expires:%Y-%m-%d %H:%M %Z}" in _label_text(unit.code, tech)


def test_label_times_are_local(trial: Any, tech: Any) -> None:
    participant = make_participant(actor=tech)
    at = dt.datetime(2025, 6, 1, 22, 30, tzinfo=dt.UTC)  # 00:30 next day in Oslo (CEST)
    aspirate = make_aspirate(actor=tech, participant=participant, collected_at=at)
    assert timezone.get_current_timezone_name() == "Europe/Oslo"
    assert "2025-06-02 00:30" in _label_text(aspirate.code, tech)


# --- schema ------------------------------------------------------------------------------


def test_schema_describes_binary_label_responses(api: APIClient) -> None:
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    label = paths["/api/labels/{code}.{fmt}"]["get"]
    content = label["responses"]["200"]["content"]
    assert content["image/png"]["schema"] == {"type": "string", "format": "binary"}
    assert content["application/pdf"]["schema"]["format"] == "binary"
    assert set(content) == {"image/png", "application/pdf", "image/svg+xml", "text/plain"}
    for code in ("400", "404", "422"):
        assert code in label["responses"]
    batch = paths["/api/labels/batch/"]["post"]
    assert set(batch["responses"]["200"]["content"]) == {"application/pdf", "text/plain"}
    assert "503" in paths["/api/print-jobs/"]["post"]["responses"]
    assert "/api/print-jobs/{id}/" in paths and "/api/printers/" in paths


def test_unblinded_and_blinded_users_get_the_same_label(items: Any) -> None:
    blinded, unblinded = APIClient(), APIClient()
    blinded.force_login(make_user("blinded", unblinded=False))
    unblinded.force_login(make_user("unblinded"))
    url = f"/api/labels/{items.participant.code}.zpl"
    assert blinded.get(url).content == unblinded.get(url).content
    # Labels of lab records are not a blinded user's (the visibility policy): refused alike.
    for item in (items.unit, items.aspirate):
        refused = blinded.get(f"/api/labels/{item.code}.zpl")
        assert refused.status_code == 403
        assert refused.json()["code"] == "not_visible"
        assert unblinded.get(f"/api/labels/{item.code}.zpl").status_code == 200


# --- who may have a label, from what scan, of which dose ----------------------------------


def _user_with(*codenames: str) -> APIClient:
    user = get_user_model().objects.create_user(f"user-{len(codenames)}", password=PASSWORD)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return api_as(get_user_model().objects.get(pk=user.pk))


def test_labels_need_the_items_view_permission(
    items: Any, tech: Any, roles: dict[str, Any]
) -> None:
    dose, pt = make_dose(actor=tech), items.participant.code
    unknown_pt, unknown_ds = format_id(Kind.PARTICIPANT, 9_999_999), format_id(Kind.DOSE, 9_999_999)
    nobody = _user_with()
    assert nobody.get(f"/api/participants/{pt}/").status_code == 403
    # No label permission at all: one answer for every code, before any lookup.
    answers = [
        nobody.get(f"/api/labels/{code}.zpl")
        for code in (pt, unknown_pt, dose.code, unknown_ds, items.unit.code, "HELLO")
    ]
    answers.append(nobody.post("/api/labels/batch/", {"codes": [pt], "format": "zpl"}))
    assert {(r.status_code, r.content) for r in answers} == {(403, answers[0].content)}
    assert answers[0].json()["code"] == "permission_denied"
    # Participants but not doses: every dose code is refused alike, naming the field.
    some = _user_with("view_participant")
    assert some.get(f"/api/labels/{pt}.zpl").status_code == 200
    refused = [some.get(f"/api/labels/{code}.zpl") for code in (dose.code, unknown_ds)]
    assert refused[0].content == refused[1].content and refused[0].status_code == 403
    body = refused[0].json()
    assert (body["code"], body["fields"]) == ("permission_denied", {"code": [body["message"]]})
    # Every role keeps the labels it prints today.
    for name, user in roles.items():
        for code in (pt, dose.code):
            assert api_as(user).get(f"/api/labels/{code}.zpl").status_code == 200, (name, code)


def test_label_codes_are_read_as_the_scan_endpoint_reads_them(
    api: APIClient, items: Any, monkeypatch: Any
) -> None:
    code = items.participant.code
    scanned = [
        f"]C0{code}",
        f"¨C0{code}",
        f"*{code}*",
        f"https://bb.example/s/{code}",
        code.lower(),
    ]
    response = api.post("/api/labels/batch/", {"codes": scanned, "format": "zpl"}, format="json")
    assert response.status_code == 200, response.content[:300]
    labels = [part for part in response.content.decode("ascii").split("^XZ") if part.strip()]
    assert [code in _fields(label) for label in labels] == [True] * 5
    assert api.get(f"/api/labels/]C0{code}.zpl").status_code == 200
    for raw in ("]C0", code + code, "PT000¨0001"):  # explained as the scan endpoint does
        scan = api.post("/api/scan/", {"code": raw}, format="json").json()
        label = api.post("/api/labels/batch/", {"codes": [raw], "format": "zpl"}, format="json")
        assert label.json() == {
            "code": scan["code"],
            "message": f"Code 1 of 1: {scan['message']}",
            "fields": {"codes.0": [f"Code 1 of 1: {scan['message']}"]},
        }
    sent: list[bytes] = []
    monkeypatch.setattr(printing, "zpl_send", lambda **kw: sent.append(kw["data"]) or "")
    printer = make_printer().name
    job = api.post("/api/print-jobs/", {"printer": printer, "codes": scanned[:2]}, format="json")
    assert (job.json()["status"], job.json()["item_codes"], len(sent)) == ("sent", [code] * 2, 1)


@pytest.mark.parametrize("state", ["cancelled", "administered", "expired"])
def test_a_dose_label_is_refused_once_the_dose_is_done_with(
    roles: dict[str, Any], tech: Any, state: str
) -> None:
    clinician, answers = api_as(roles[CLINICIAN]), []
    for arm in ("B", "A"):  # MSC, then placebo
        dose = make_dose(actor=tech, arm=arm)
        if state == "cancelled":
            dose_cancel(dose=dose, actor=tech, reason="Syringe dropped on the floor")
        elif state == "administered":
            scans = {"dose_scan": dose.code, "participant_scan": dose.participant.code}
            dose_dispatch(**scans, actor=tech)
            dose_administer(**scans, actor=tech)
        at = dose.expires_at if state == "expired" else timezone.now()
        with time_machine.travel(at, tick=False):
            lab = api_as(tech).get(f"/api/labels/{dose.code}.zpl")
            blinded = clinician.get(f"/api/labels/{dose.code}.pdf")
            batch = clinician.post("/api/labels/batch/", {"codes": [dose.code], "format": "zpl"})
        body = _error(blinded, 422, "dose_not_printable")
        assert lab.json() == body and body["fields"] == {"code": [body["message"]]}
        assert state.replace("cancelled", "is cancelled") in body["message"]
        assert list(_error(batch, 422, "dose_not_printable")["fields"]) == ["codes.0"]
        answers.append(re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "<t>", body["message"]))
        answers[-1] = answers[-1].replace(dose.code, "<code>")
    assert answers[0] == answers[1]  # the same answer for MSC and placebo
