"""Each scan page in headless Chromium, typed into like a keyboard-wedge scanner (code + Enter)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from biobank.models import Placement
from biobank.services.storage import unit_store

from .factories import load_trial, make_aspirate, make_box, make_units, make_user, past

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
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A form post reloads the page: an element read mid-load is stale; ask again.
    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(browser, timeout, ignored_exceptions=ignored).until(condition)


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
    # Collected this morning: received now, within the study's transport time.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    aspirates = [make_aspirate(actor=tech_in_browser, collected_at=past(hours=3)) for _ in range(3)]
    _open(browser, live_server, "receive")
    # Without a transport temperature the receipt is not within the limits: quarantined.
    assert "QUARANTINED" in _scan(browser, aspirates[2].code)
    # The temperature is a setting of the page: typed once, kept for every scan after it.
    field = browser.find_element(By.NAME, "temperature_c")
    field.send_keys("20.0" + Keys.TAB)  # its change submits the settings and reloads the page
    _wait(browser, lambda d: not _attached(field))
    _wait(browser, lambda d: d.find_element(By.NAME, "temperature_c").get_attribute("value"))
    browser.find_element(By.ID, "scan-input").click()
    for aspirate in aspirates[:2]:
        assert "received and accepted" in _scan(browser, aspirate.code)
    for aspirate, status in zip(aspirates, ["accepted", "accepted", "quarantined"], strict=True):
        aspirate.refresh_from_db()
        assert aspirate.status == status


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
    unit_store(unit=unit, container=box, position="B2", actor=tech_in_browser)
    _open(browser, live_server, "checkout")
    assert "CHECKED OUT" in _scan(browser, unit.code)
    unit.refresh_from_db()
    assert unit.status == "checked_out"
    assert "CHECKED IN" in _scan(browser, unit.code)
    unit.refresh_from_db()
    assert unit.status == "stored"
    assert list(unit.events.values_list("action", flat=True))[-2:] == ["check_out", "check_in"]


def test_verify_page(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    box = make_box(actor=tech_in_browser)
    units = make_units(actor=tech_in_browser, count=2)
    for unit in units:
        unit_store(unit=unit, container=box, actor=tech_in_browser)
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


# --- the bench day: home, sound, commands, messages, doses, language ------------------------


def _role_user(username: str, role: str) -> Any:
    from django.contrib.auth.models import Group

    from biobank.services.roles import roles_sync

    roles_sync()
    user = make_user(username)
    user.user_permissions.clear()
    user.groups.add(Group.objects.get(name=role))
    return user


def test_home_at_1366x900_shows_every_scan_workflow(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(1366, 900)
    browser.get(live_server.url + reverse("admin:index"))
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#content-main caption")]
    assert captions == [
        "SCAN",
        "SAMPLES",
        "STORAGE",
        "DOSES",
        "TRIAL",
        "REPORTS",
        "AUDIT AND SETTINGS",
    ]
    links = browser.find_elements(By.CSS_SELECTOR, "#wf-scan th a")
    names = [a.text for a in links]
    for page in ("Find", "Receive aspirates", "Store units in a box", "Check out / check in",
                 "Verify a box", "Rack-scanner import", "Dose identity check"):  # fmt: skip
        assert page in names
    for link in links:
        # On one line and wide enough: never the one-letter-per-line column of before.
        assert link.is_displayed() and link.rect["height"] < 30, (link.text, link.rect)
        assert link.rect["width"] > 6 * len(link.text), (link.text, link.rect)
        assert link.rect["x"] + link.rect["width"] <= 1366
    # The scan pages are in the sidebar of every admin page too.
    browser.get(live_server.url + reverse("admin:biobank_productunit_changelist"))
    sidebar = browser.find_element(By.ID, "nav-sidebar")
    assert sidebar.find_element(By.CSS_SELECTOR, f"a[href='{reverse('admin:scan_find')}']")


def test_each_role_sees_only_its_groups(browser: Any, live_server: Any) -> None:
    from selenium.webdriver.common.by import By

    from biobank.services.roles import CLINICIAN

    load_trial()
    _role_user("nurse", CLINICIAN)
    _login(browser, live_server, "nurse")
    browser.get(live_server.url + reverse("admin:index"))
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#content-main caption")]
    # No storage; of audit and settings only the custody log (blinded-safe rows).
    assert "STORAGE" not in captions and "SAMPLES" in captions
    assert captions[0] == "SCAN" and "DOSES" in captions
    scan = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#wf-scan th a")]
    assert "Dose identity check" in scan and "Store units in a box" not in scan
    # The bedside stage is the default for a role that does not prepare doses.
    _open(browser, live_server, "dose")
    checked = browser.find_element(By.CSS_SELECTOR, "input[name=stage]:checked")
    assert checked.get_attribute("value") == "administration"
    # A forbidden page keeps the site's header and offers a way back.
    _open(browser, live_server, "store")
    assert browser.find_element(By.ID, "site-name").text == "SMART-MS biobank"
    assert "may not open this page" in browser.find_element(By.ID, "error-page").text
    browser.find_element(By.ID, "way-back").click()
    _wait(browser, lambda d: d.current_url.endswith(reverse("admin:index")))


def test_not_found_page_is_styled(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(live_server.url + "/admin/no-such-page/")
    assert browser.find_element(By.ID, "site-name").text == "SMART-MS biobank"
    assert "Nothing here" in browser.find_element(By.ID, "error-page").text
    assert browser.find_element(By.ID, "way-back").get_attribute("href").endswith("/admin/")


def test_sound_hook_fires_and_mute_is_remembered(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    unit = make_units(actor=tech_in_browser, count=1)[0]
    _open(browser, live_server, "find")
    _scan(browser, unit.code)
    _scan(browser, "UN0000000X")
    sounds = browser.execute_script("return window.biobankSounds")
    assert [s["level"] for s in sounds] == ["ok", "error"]
    assert not any(s["muted"] for s in sounds)
    browser.find_element(By.ID, "scan-mute").click()
    _open(browser, live_server, "checkout")  # another scan page: the switch is remembered
    mute = browser.find_element(By.ID, "scan-mute")
    assert mute.get_attribute("aria-pressed") == "true" and "Muted" in mute.text
    browser.switch_to.active_element.click()
    _scan(browser, unit.code)  # not stored: a refusal, asked for but silent
    assert browser.execute_script("return window.biobankSounds") == [
        {"level": "error", "muted": True}
    ]


def test_check_out_and_in_look_different(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    box = make_box(actor=tech_in_browser)
    unit = make_units(actor=tech_in_browser, count=1)[0]
    unit_store(unit=unit, container=box, position="B2", actor=tech_in_browser)
    _open(browser, live_server, "checkout")

    def look() -> tuple[str, str, str]:
        banner = browser.find_element(By.ID, "scan-feedback")
        icon = banner.find_element(By.CLASS_NAME, "scan-icon").text
        return banner.get_attribute("class"), icon, banner.value_of_css_property("border-color")

    _scan(browser, unit.code)
    out = look()
    _scan(browser, unit.code)
    back = look()
    assert "mode-out" in out[0] and out[1] == "⬆ OUT"
    assert "mode-in" in back[0] and back[1] == "⬇ IN"
    assert out[2] != back[2]


def test_command_barcodes(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    box = make_box(actor=tech_in_browser)
    units = make_units(actor=tech_in_browser, count=2)
    _open(browser, live_server, "store")
    _scan(browser, box.code)
    _scan(browser, units[0].code)
    assert "Undone" in _scan(browser, "CMD-UNDO")
    assert not Placement.objects.filter(ended_at=None).exists()
    assert "Box finished" in _scan(browser, "cmd-finish")
    _open(browser, live_server, "checkout")
    assert "Mode: Check in" in _scan(browser, "CMD-CHECKIN")
    checked = browser.find_element(By.CSS_SELECTOR, "input[name=mode]:checked")
    assert checked.get_attribute("value") == "in"
    _open(browser, live_server, "find")
    assert "does nothing on this page" in _scan(browser, "CMD-UNDO")
    # The printable sheet carries those very barcodes.
    fetch = """const done = arguments[arguments.length - 1];
      fetch(arguments[0])
        .then(r => r.text().then(t => done([r.headers.get('content-type'), t])));"""
    kind, pdf = browser.execute_async_script(fetch, reverse("admin:command_sheet", args=["pdf"]))
    assert kind == "application/pdf" and pdf.startswith("%PDF")
    kind, zpl = browser.execute_async_script(fetch, reverse("admin:command_sheet", args=["zpl"]))
    for code in ("CMD-UNDO", "CMD-FINISH", "CMD-CHECKOUT", "CMD-CHECKIN"):
        assert f"^FD{code}^FS" in zpl


def test_position_outside_the_box_names_its_geometry(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    box = make_box(actor=tech_in_browser, rows=2, columns=5)
    _open(browser, live_server, "store")
    _scan(browser, box.code)
    assert "outside this 2×5 box (A1…B5)" in _scan(browser, "C5")
    assert "outside this 2×5 box" in _scan(browser, "Z9")
    assert "Next unit goes to B5" in _scan(browser, "b5")


def test_verify_starts_neutral_sorted_by_position(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    box = make_box(actor=tech_in_browser)
    units = make_units(actor=tech_in_browser, count=3)
    for unit, position in zip(units, ["C1", "A2", "B9"], strict=True):
        unit_store(unit=unit, container=box, position=position, actor=tech_in_browser)
    _open(browser, live_server, "verify")
    _scan(browser, box.code)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#verdict tbody tr")]
    assert [r.split()[0] for r in rows] == [units[1].code, units[2].code, units[0].code]
    assert all("to scan" in r for r in rows) and not any("MISSING" in r for r in rows)
    browser.find_element(By.ID, "verify-finish").click()
    _wait(browser, lambda d: "3 missing" in d.find_element(By.ID, "verdict-summary").text)


def test_rack_import_words_and_apply_only_when_possible(
    browser: Any, live_server: Any, tech_in_browser: Any, tmp_path: Any
) -> None:
    from selenium.webdriver.common.by import By

    box = make_box(actor=tech_in_browser, rows=8, columns=12)
    other = make_box(actor=tech_in_browser)
    here, there = make_units(actor=tech_in_browser, count=2)
    unit_store(unit=here, container=box, position="A1", actor=tech_in_browser)
    unit_store(unit=there, container=other, position="C3", actor=tech_in_browser)
    good = tmp_path / "rack.csv"
    good.write_text(f"Position,Tube\nA01,{there.code}\nA02,NO READ\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("Position,Tube\nA01,UN9999999Z\n")
    _open(browser, live_server, "rack-import")
    _scan(browser, box.code)

    def upload(path: Any) -> str:
        browser.find_element(By.NAME, "file").send_keys(str(path))
        old = browser.find_element(By.ID, "upload")
        old.click()
        _wait(browser, lambda d: not _attached(old))  # the new page, not the last preview
        _wait(browser, lambda d: d.find_elements(By.ID, "rack-preview"))
        return browser.find_element(By.ID, "rack-preview").text

    table = upload(bad)
    assert "unknown tube" in table and not browser.find_elements(By.ID, "apply")
    table = upload(good)
    assert "different tube" in table and "tube not readable" in table and "no_read" not in table
    assert f"the system has {there.code} in {other.code} C3" in table
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rack-preview tbody tr")) == 2
    assert "94 empty positions (not listed)" in browser.find_element(By.ID, "rack-empty").text
    plan = browser.find_element(By.ID, "rack-plan").text
    assert "store 0, move 1, remove 1 from storage, leave 0 unchanged" in plan
    browser.find_element(By.ID, "remove-missing").click()
    browser.find_element(By.ID, "apply").click()
    _wait(browser, lambda d: "Applied" in d.find_element(By.ID, "scan-feedback").text)
    assert (
        "0 stored, 1 moved, 1 removed, 0 unchanged"
        in browser.find_element(By.ID, "scan-feedback").text
    )


def test_dose_page_label_preview_and_bedside_link(
    browser: Any, live_server: Any, tech_in_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    from .factories import make_dose

    dose = make_dose(actor=tech_in_browser)
    browser.get(live_server.url + reverse("admin:biobank_dose_change", args=[dose.pk]))
    image = browser.find_element(By.ID, "dose-label-preview")
    _wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 100)
    # Opened from the dose page's bedside link, the check is at the bedside.
    browser.find_element(By.ID, "dose-check-bedside").click()
    _wait(browser, lambda d: "/scan/dose/" in d.current_url)
    checked = browser.find_element(By.CSS_SELECTOR, "input[name=stage]:checked")
    assert checked.get_attribute("value") == "administration"
    _open(browser, live_server, "dose")  # the choice sticks for this technician's session
    browser.get(live_server.url + reverse("admin:scan_dose") + "?stage=dispatch")
    checked = browser.find_element(By.CSS_SELECTOR, "input[name=stage]:checked")
    assert checked.get_attribute("value") == "dispatch"


def test_due_list_marks_overdue_first(browser: Any, live_server: Any, tech_in_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    from .factories import make_participant

    make_participant(actor=tech_in_browser, arm="A")  # enrolled 2025: its visits are past
    browser.get(live_server.url + reverse("admin:due") + "?days=365")
    rows = browser.find_elements(By.CSS_SELECTOR, "#due tbody tr")
    assert rows and "overdue" in rows[0].get_attribute("class")
    assert "OVERDUE by" in rows[0].text


def test_norwegian_browser_gets_norwegian(live_server: Any) -> None:
    from selenium.webdriver.common.by import By

    load_trial()
    make_user("nbtech")
    driver = _chromium(language="nb-NO")
    try:
        driver.get(live_server.url + reverse("admin:login"))
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nb"
        assert "Brukernavn" in driver.page_source  # Django's own nb catalogue
        _login(driver, live_server, "nbtech")
        driver.get(live_server.url + reverse("admin:index"))
        captions = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#content-main caption")]
        assert captions[:3] == ["SKANN", "PRØVER", "LAGRING"]
        _open(driver, live_server, "find")
        assert "Skann en hvilken som helst strekkode" in driver.page_source
        text = _scan(driver, "UN0000000X")
        assert "✖" in text
        # The switch in the header overrides the browser's language.
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.ID, "language-select")).select_by_value("en-gb")
        _wait(driver, lambda d: "Scan any barcode" in d.page_source)
    finally:
        driver.quit()
