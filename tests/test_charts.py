"""Charts (matplotlib, Agg): empty, one-point and many-point data, alt text, blinded wording."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from biobank.reports import charts
from biobank.services.containers import temperature_record

from .factories import make_box, make_dose, make_storage_unit, make_units, make_user, past

T0 = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _series(n: int, bad: set[int] = frozenset()) -> list[tuple[dt.datetime, float, bool]]:
    return [
        (T0 + dt.timedelta(hours=6 * i), -120.0 if i in bad else -180.0 + (i % 5), i in bad)
        for i in range(n)
    ]


@pytest.mark.parametrize("fmt", ["svg", "png"])
@pytest.mark.parametrize("n", [0, 1, 500])
def test_temperature_chart_renders_for_empty_one_and_many_points(n: int, fmt: str) -> None:
    points = _series(n, bad={n // 2} if n else set())
    chart = charts.temperature_chart(title="Tank 1", points=points, low=-196, high=-150, fmt=fmt)
    assert chart.content_type == {"svg": "image/svg+xml", "png": "image/png"}[fmt]
    if fmt == "png":
        assert chart.content.startswith(PNG_MAGIC) and len(chart.content) > 2000
    else:
        assert b"<svg" in chart.content and b"</svg>" in chart.content
        assert b'role="img"' in chart.content and b"<title>Tank 1:" in chart.content
    if n == 0:
        assert chart.alt == "Tank 1: no temperature readings yet; allowed range -196 to -150 °C."
    elif n == 1:
        assert chart.alt == (
            "Tank 1: 1 reading from 2026-01-01 08:00 to 2026-01-01 08:00 UTC, between -120 and "
            "-120 °C; allowed range -196 to -150 °C; 1 excursion (first 2026-01-01 08:00 UTC, "
            "-120 °C)."
        )
    else:
        assert chart.alt.startswith(
            "Tank 1: 500 readings from 2026-01-01 08:00 to 2026-05-06 02:00"
        )
        assert "1 excursion (first 2026-03-04 20:00 UTC, -120 °C)." in chart.alt


def test_excursions_are_drawn_in_their_own_colour() -> None:
    calm = charts.temperature_chart(title="T", points=_series(10), low=-196, high=-150)
    hot = charts.temperature_chart(title="T", points=_series(10, bad={3}), low=-196, high=-150)
    assert b"#c0392b" not in calm.content.lower()
    assert b"#c0392b" in hot.content.lower()
    assert "0 excursions." in calm.alt


def test_same_data_gives_the_same_svg() -> None:
    one = charts.temperature_chart(title="T", points=_series(20), low=-196, high=-150)
    two = charts.temperature_chart(title="T", points=_series(20), low=-196, high=-150)
    assert one.content == two.content


@pytest.mark.parametrize("n", [0, 1, 30])
def test_occupancy_heat_map_renders(n: int) -> None:
    boxes = [(f"Rack {i // 10}", f"Box {i}", i % 82, 81) for i in range(n)]
    chart = charts.occupancy_chart(title="Tank 1", boxes=boxes, fmt="png")
    assert chart.content.startswith(PNG_MAGIC)
    if n == 0:
        assert chart.alt == "Tank 1: no boxes yet."
    elif n == 1:
        assert chart.alt == "Tank 1: 1 box in 1 rack, 0 of 81 positions used (0 %); no box is full."
    else:
        used = sum(range(30))
        assert chart.alt == (
            f"Tank 1: 30 boxes in 3 racks, {used} of 2430 positions used (18 %); no box is full."
        )
    svg = charts.occupancy_chart(title="Tank 1", boxes=boxes)
    assert b"<svg" in svg.content


def test_occupancy_names_full_boxes() -> None:
    chart = charts.occupancy_chart(
        title="F", boxes=[("R1", "Box A", 81, 81), ("R1", "Box B", 3, 81)]
    )
    assert chart.alt == "F: 2 boxes in 1 rack, 84 of 162 positions used (52 %); full: Box A."


@pytest.mark.parametrize("n", [0, 1, 40])
def test_timeline_renders(n: int) -> None:
    rows = charts.TIMELINE_ROWS
    points = [
        (rows[i % 3], dt.date(2025, 1, 1) + dt.timedelta(days=30 * i), f"V{i}", i % 2 == 0)
        for i in range(n)
    ]
    chart = charts.timeline_chart(title="P", points=points)
    assert b"<svg" in chart.content
    if n == 0:
        assert chart.alt == "P: nothing scheduled yet."
    elif n == 1:
        assert chart.alt == "P: visits V0 on 2025-01-01."
    else:
        assert chart.alt.count(";") == n - 1


# --- charts over HTTP and on the pages -----------------------------------------------------


@pytest.mark.django_db
def test_storage_unit_charts_over_the_api_and_on_its_page(client: Any, trial: Any) -> None:
    lab = make_user("lab-charts")
    tank = make_storage_unit(actor=lab, name="Chart tank")
    client.force_login(lab)
    empty = client.get(f"/api/charts/temperature/{tank.code}.svg")
    assert empty.status_code == 200 and empty["Content-Type"] == "image/svg+xml"
    assert empty["X-Alt-Text"].endswith(
        "no temperature readings yet; allowed range -196 to -150 deg C."
    )
    temperature_record(storage_unit=tank, temperature_c=Decimal("-185"), actor=lab, at=past(days=2))
    temperature_record(storage_unit=tank, temperature_c=Decimal("-140"), actor=lab, at=past(days=1))
    png = client.get(f"/api/charts/temperature/{tank.code.lower()}.png?days=7")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    assert "2 readings" in png["X-Alt-Text"] and "1 excursion" in png["X-Alt-Text"]
    make_units(actor=lab, count=2, stored=True)
    box = make_box(actor=lab, storage_unit=tank)
    heat = client.get(f"/api/charts/occupancy/{tank.code}.svg")
    assert heat.status_code == 200
    assert "1 box in 1 rack, 0 of 81 positions used" in heat["X-Alt-Text"]
    assert box.name in heat.content.decode()
    page = client.get(f"/admin/biobank/storageunit/{tank.pk}/change/").content.decode()
    assert f'src="/api/charts/temperature/{tank.code}.svg"' in page
    assert f'src="/api/charts/occupancy/{tank.code}.svg"' in page
    assert 'alt="Temperature log — Chart tank' in page and "1 excursion" in page
    assert f"/api/inventory.xlsx?storage_unit={tank.code}" in page
    bad = client.get(f"/api/charts/temperature/{tank.code}.gif")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_format"
    missing = client.get("/api/charts/occupancy/SU0000000X.svg")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    bad_days = client.get(f"/api/charts/temperature/{tank.code}.svg?days=x")
    assert bad_days.status_code == 400
    assert bad_days.json()["fields"] == {"days": ["days must be a whole number."]}


@pytest.mark.django_db
def test_crossover_timeline_uses_blinded_wording_for_blinded_roles(client: Any, trial: Any) -> None:
    lab = make_user("lab-timeline")
    dose = make_dose(actor=lab, arm="A", visit="M6", ready=True)  # arm A at M6: saline
    code = dose.participant.code
    client.force_login(lab)
    unblinded = client.get(f"/api/charts/crossover/{code}.svg")
    assert "dose M6: Placebo planned" in unblinded["X-Alt-Text"]
    assert b"Placebo" in unblinded.content
    clinician = make_user("clin-timeline", unblinded=False)
    client.force_login(clinician)
    blinded = client.get(f"/api/charts/crossover/{code}.svg")
    assert blinded.status_code == 200
    assert "dose M6: blinded dose planned" in blinded["X-Alt-Text"]
    assert b"Placebo" not in blinded.content and b"MSC" not in blinded.content
    page = client.get(f"/admin/biobank/participant/{dose.participant.pk}/change/")
    assert "M6: blinded dose planned" in page.content.decode()
    assert "Placebo" not in page.content.decode() and "MSC" not in page.content.decode()


def test_logger_trace_alt_text_reads_the_plotted_readings_in_the_lab_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from biobank.labels.shipping import Trace, trace_alt_text

    times = [T0, T0 + dt.timedelta(hours=30)]  # 08:00 UTC is 09:00 in Oslo in January
    temps = [Decimal("-80.5"), Decimal("-71.0")]
    trace = Trace(times, temps, Decimal("-90"), Decimal("-60"), tz=ZoneInfo("Europe/Oslo"))
    assert trace_alt_text(trace, excursion="") == (
        "Temperature logger trace, 2 readings from 2026-01-01 09:00 to 2026-01-02 15:00; "
        "lowest -80.5 °C, highest -71.0 °C; allowed range -90 … -60 °C. No excursion."
    )
    empty = Trace([], [], Decimal("2"), Decimal("8"))
    assert trace_alt_text(empty, excursion="") == (
        "Temperature logger trace: no readings; allowed range 2 … 8 °C."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("chart", ["occupancy", "temperature"])
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_alt_text_header_is_safe_and_readable_whatever_the_name(
    client: Any, trial: Any, chart: str, fmt: str
) -> None:
    lab = make_user("lab-header")
    tank = make_storage_unit(actor=lab, name="Tank\nB\x0bTromsø")
    client.force_login(lab)
    response = client.get(f"/api/charts/{chart}/{tank.code}.{fmt}")
    assert response.status_code == 200
    assert (
        response["X-Alt-Text"]
        == {
            "occupancy": f"Occupancy - Tank B Tromso ({tank.code}): no boxes yet.",
            "temperature": (
                f"Temperature log - Tank B Tromso ({tank.code}): no temperature readings yet; "
                "allowed range -196 to -150 deg C."
            ),
        }[chart]
    )
