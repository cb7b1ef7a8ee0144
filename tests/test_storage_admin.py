"""Storage in the admin: box maps, placing by scan, storage-unit pages, unit search."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from biobank.identifiers import Kind, format_id
from biobank.models import Container, Placement, ProductUnit
from biobank.services.containers import container_create, temperature_record
from biobank.services.storage import unit_move, unit_store

from .factories import make_box, make_box_type, make_storage_unit, make_units

# --- admin -----------------------------------------------------------------------------------

GOOD = format_id(Kind.UNIT, 1)
WRONG_CHECK = GOOD[:-1] + ("A" if GOOD[-1] != "A" else "B")


def _fill(box: Container, tech: Any, count: int) -> list[ProductUnit]:
    units = make_units(actor=tech, count=count)
    for unit in units:
        unit_store(unit=unit, container=box, actor=tech)
    return units


def _map_queries(client: Any, box: Container) -> int:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("admin:biobank_container_change", args=[box.pk]))
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_box_map_page_query_count_is_constant(
    trial: Any, tech: Any, admin_client_tech: Any
) -> None:
    small = make_box(actor=tech, rows=2, columns=2)
    big = make_box(actor=tech, rows=10, columns=10, name="Big box")
    _fill(small, tech, 1)
    _fill(big, tech, 12)
    _map_queries(admin_client_tech, small)  # warm per-process caches (content types)
    assert _map_queries(admin_client_tech, small) == _map_queries(admin_client_tech, big)
    assert _map_queries(admin_client_tech, big) <= 25


def test_box_map_links_units_and_free_positions(
    box: Container, tech: Any, admin_client_tech: Any
) -> None:
    unit = _fill(box, tech, 1)[0]
    html = admin_client_tech.get(
        reverse("admin:biobank_container_change", args=[box.pk])
    ).content.decode()
    assert reverse("admin:biobank_productunit_change", args=[unit.pk]) in html
    assert f"{reverse('admin:biobank_container_place', args=[box.pk])}?position=A2" in html
    assert "1 of 81 positions used" in html


def test_box_map_heads_rows_and_columns_by_the_box_types_labelling(trial: Any, tech: Any) -> None:
    from biobank.selectors.storage import box_map

    rack = container_create(
        name="Rack L", kind="rack", storage_unit=make_storage_unit(actor=tech), actor=tech
    )
    box_type = make_box_type(rows=3, columns=2, row_labelling="numbers", column_labelling="letters")
    box = container_create(name="Box L", kind="box", parent=rack, box_type=box_type, actor=tech)
    grid = box_map(box=box)
    assert grid.column_labels == ["A", "B"]
    assert [label for label, _cells in grid.rows] == ["1", "2", "3"]
    assert [cell.label for cell in grid.rows[2][1]] == ["3A", "3B"]


def test_place_from_map_by_scanning(box: Container, tech: Any, admin_client_tech: Any) -> None:
    unit = make_units(actor=tech, count=1)[0]
    url = reverse("admin:biobank_container_place", args=[box.pk])
    response = admin_client_tech.post(
        f"{url}?position=B3", {"unit": f"]C0{unit.code.lower()}\r\n", "position": "B3"}
    )
    assert response.status_code == 302
    assert Placement.objects.get(unit=unit).position == "B3"


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        (WRONG_CHECK, "check character"),
        ("ZZ0000001A", "unknown prefix"),
        ("BX0000001", "not an identifier"),
    ],
)
def test_place_form_explains_bad_scans(
    box: Container, admin_client_tech: Any, scan: str, message: str
) -> None:
    url = reverse("admin:biobank_container_place", args=[box.pk])
    response = admin_client_tech.post(url, {"unit": scan, "position": ""})
    assert response.status_code == 200
    assert message in response.content.decode()


def test_place_form_taken_slot_is_a_form_error(
    box: Container, tech: Any, admin_client_tech: Any
) -> None:
    first, second = make_units(actor=tech, count=2)
    unit_store(unit=first, container=box, position="A1", actor=tech)
    url = reverse("admin:biobank_container_place", args=[box.pk])
    response = admin_client_tech.post(url, {"unit": second.code, "position": "A1"})
    assert response.status_code == 200
    assert "already taken" in response.content.decode()


def test_storage_unit_page_shows_occupancy_and_temperatures(
    box: Container, tech: Any, admin_client_tech: Any
) -> None:
    _fill(box, tech, 3)
    temperature_record(storage_unit=box.storage_unit, temperature_c="-120", actor=tech)
    html = admin_client_tech.get(
        reverse("admin:biobank_storageunit_change", args=[box.storage_unit_id])
    ).content.decode()
    assert "3 of 81 positions used" in html
    assert "OUT OF RANGE" in html
    assert f'href="/admin/biobank/container/{box.pk}/change/">{box.code}</a>' in html
    assert "<td>3 / 81</td>" in html


def test_a_storage_unit_holding_units_keeps_its_range(
    box: Container, tech: Any, admin_client_tech: Any
) -> None:
    su = box.storage_unit
    url = reverse("admin:biobank_storageunit_change", args=[su.pk])
    assert 'name="max_temperature_c"' in admin_client_tech.get(url).content.decode()
    _fill(box, tech, 1)
    page = admin_client_tech.get(url).content.decode()
    assert 'name="max_temperature_c"' not in page and 'name="kind"' not in page
    data = {"name": su.name, "kind": "freezer_80", "min_temperature_c": "-90",
            "max_temperature_c": "-60", "active": "on"}  # fmt: skip
    admin_client_tech.post(url, data)
    su.refresh_from_db()
    assert (su.kind, su.max_temperature_c) != ("freezer_80", Decimal("-60"))
    assert su.keeps_frozen_product()


def test_unit_search_shows_location_path_and_history(
    box: Container, tech: Any, admin_client_tech: Any
) -> None:
    unit = _fill(box, tech, 1)[0]
    other = make_box(actor=tech, name="Box Z")
    unit_move(unit=unit, container=other, actor=tech)
    listing = admin_client_tech.get(
        reverse("admin:biobank_productunit_changelist"), {"q": unit.code}
    )
    assert "Box Z" in listing.content.decode()
    page = admin_client_tech.get(
        reverse("admin:biobank_productunit_change", args=[unit.pk])
    ).content.decode()
    assert "Box A" in page and "Box Z" in page and "moved" in page


def test_unit_list_query_count_is_constant(
    trial: Any, tech: Any, admin_client_tech: Any, django_assert_max_num_queries: Any
) -> None:
    box = make_box(actor=tech)
    _fill(box, tech, 10)
    with django_assert_max_num_queries(12):
        admin_client_tech.get(reverse("admin:biobank_productunit_changelist"))


def test_add_container_with_duplicate_name_is_form_error(
    box: Container, tech: Any, admin_client_tech: Any
) -> None:
    data = {
        "name": box.name,
        "kind": "box",
        "parent": box.parent_id,
        "box_type": box.box_type_id,
        "storage_unit": "",
    }
    response = admin_client_tech.post(reverse("admin:biobank_container_add"), data)
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
