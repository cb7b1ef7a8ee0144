"""Each scan page in headless Chromium, typed into like a keyboard-wedge scanner (code + Enter)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from biobank.models import Placement
from biobank.services.storage import unit_place

from .factories import load_trial, make_aspirate, make_box, make_units, make_user

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
        "chromium-driver); .ci/run installs them",
    ),
    pytest.mark.django_db(transaction=True),
]


def _chromium(language: str = "en-GB", size: str = "1400,1000") -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={size}",
        f"--lang={language}",
        f"--accept-lang={language}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def tech_in_browser(browser: Any, live_server: Any) -> Any:
    load_trial()
    user = make_user("benchtech")
    _login(browser, live_server, "benchtech")
    return user


def _login(browser: Any, live_server: Any, username: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(live_server.url + reverse("admin:login"))
    browser.find_element(By.NAME, "username").send_keys(username)
    password = browser.find_element(By.NAME, "password")
    password.send_keys("correct-horse-battery\n")
    _wait(browser, lambda d: "/admin/login" not in d.current_url)


def _wait(browser: Any, condition: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)


def _scan(browser: Any, text: str) -> str:
    """Type like a scanner into the focused field and return the feedback banner's text."""
    from selenium.webdriver.common.by import By

    old = browser.find_elements(By.ID, "scan-feedback")
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "scan-input", "scan field must have focus"
    focused.send_keys(text + "\n")
    if old:
        _wait(browser, lambda d: not _attached(old[0]))
    banner = _wait(browser, lambda d: d.find_element(By.ID, "scan-feedback"))
    return banner.text


def _attached(element: Any) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
        return True
    except StaleElementReferenceException:
        return False


def _open(browser: Any, live_server: Any, page: str) -> None:
    browser.get(live_server.url + reverse(f"admin:scan_{page}"))


def test_find_page(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    unit = make_units(actor=tech_in_browser, count=1)[0]
    _open(browser, live_server, "find")
    text = _scan(browser, f"]C0{unit.code.lower()}")
    # The answer shows in place, with a link to the item; the scan field keeps focus.
    assert unit.code in text and "✔" in text
    assert browser.current_url.endswith(reverse("admin:scan_find"))
    link = browser.find_element(By.ID, "scan-open").get_attribute("href")
    assert link.endswith(reverse("admin:biobank_productunit_change", args=[unit.pk]))
    assert browser.switch_to.active_element.get_attribute("id") == "scan-input"


def test_find_two_scans_back_to_back(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    first, second = make_units(actor=tech_in_browser, count=2)
    _open(browser, live_server, "find")
    # One burst of keystrokes, as a scanner types two labels with no pause between them.
    browser.switch_to.active_element.send_keys(f"{first.code}\n{second.code}\n")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scan-recent tr")) == 2)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#scan-recent tr")]
    assert second.code in rows[0] and first.code in rows[1]
    assert all("✔" in r for r in rows), rows
    assert second.code in browser.find_element(By.ID, "scan-feedback").text
    assert browser.switch_to.active_element.get_attribute("id") == "scan-input"
    assert browser.find_element(By.ID, "scan-input").get_attribute("value") == ""


def test_find_page_bad_check_character(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    unit = make_units(actor=tech_in_browser, count=1)[0]
    bad = unit.code[:-1] + ("0" if unit.code[-1] != "0" else "1")
    _open(browser, live_server, "find")
    text = _scan(browser, bad)
    assert "check character" in text and "✖" in text


def test_receive_page(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    aspirates = [make_aspirate(actor=tech_in_browser) for _ in range(2)]
    _open(browser, live_server, "receive")
    for aspirate in aspirates:
        assert "received and accepted" in _scan(browser, aspirate.code)
    for aspirate in aspirates:
        aspirate.refresh_from_db()
        assert aspirate.status == "accepted"


def test_store_page(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    box = make_box(actor=tech_in_browser)
    units = make_units(actor=tech_in_browser, count=2)
    _open(browser, live_server, "store")
    assert "Storing into" in _scan(browser, box.code)
    assert f"{box.code} A1" in _scan(browser, units[0].code)
    assert "Next unit goes to D4" in _scan(browser, "D4")
    assert f"{box.code} D4" in _scan(browser, units[1].code)
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "undo").click()
    _wait(browser, lambda d: "Undone" in d.find_element(By.ID, "scan-feedback").text)
    assert list(Placement.objects.filter(ended_at=None).values_list("position", flat=True)) == [
        "A1"
    ]


def test_checkout_page(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    box = make_box(actor=tech_in_browser)
    unit = make_units(actor=tech_in_browser, count=1)[0]
    unit_place(unit=unit, container=box, position="B2", actor=tech_in_browser)
    _open(browser, live_server, "checkout")
    assert "CHECKED OUT" in _scan(browser, unit.code)
    assert "CHECKED IN" in _scan(browser, unit.code)


def test_verify_page(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    box = make_box(actor=tech_in_browser)
    units = make_units(actor=tech_in_browser, count=2)
    for unit in units:
        unit_place(unit=unit, container=box, actor=tech_in_browser)
    _open(browser, live_server, "verify")
    _scan(browser, box.code)
    _scan(browser, units[0].code)
    from selenium.webdriver.common.by import By

    summary = browser.find_element(By.ID, "verdict-summary").text
    assert summary == "1 ok, 1 to scan, 0 missing, 0 extra, 0 in the wrong place"


def test_rack_import_page(
    browser: Any, live_server: Any, tech_in_browser: Any, tmp_path: Any
) -> None:
    from selenium.webdriver.common.by import By

    box = make_box(actor=tech_in_browser, rows=8, columns=12)
    units = make_units(actor=tech_in_browser, count=2)
    csv = tmp_path / "rack.csv"
    csv.write_text(f"Position,Tube\nA01,{units[0].code}\nA02,NO READ\nA03,{units[1].code}\n")
    _open(browser, live_server, "rack-import")
    assert "selected" in _scan(browser, box.code)
    browser.find_element(By.NAME, "file").send_keys(str(csv))
    browser.find_element(By.CSS_SELECTOR, "input[value='Upload and preview']").click()
    _wait(browser, lambda d: d.find_elements(By.ID, "rack-preview"))
    assert "2 new" in browser.find_element(By.ID, "rack-summary").text
    browser.find_element(By.ID, "apply").click()
    _wait(browser, lambda d: "Applied" in d.find_element(By.ID, "scan-feedback").text)
    assert Placement.objects.filter(container=box, ended_at=None).count() == 2
