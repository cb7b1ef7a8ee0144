"""Screenshots for the README, made from the demo data so they stay current.

    .venv/bin/python docs/screenshots.py        # needs chromium + chromium-driver

Builds a throw-away SQLite database with `seed --demo --demo-user`, starts the development
server on a free port, drives headless Chromium through the scan pages, the freezer map and a
dose identity check, and writes docs/screenshots/*.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
PYTHON = sys.executable


ROWS = "#scan-recent tr"


def _rows_at_least(n: int) -> object:
    from selenium.webdriver.common.by import By

    return lambda d: len(d.find_elements(By.CSS_SELECTOR, ROWS)) >= n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(size: str) -> object:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={size}", "--lang=en-GB", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or ""), options=options)


def _codes(env: dict[str, str]) -> dict[str, str]:
    """A few identifiers from the demo data (asked through Django, not guessed)."""
    script = (
        "from biobank.models import Container, ProductUnit, Dose, Participant\n"
        "box = Container.objects.filter(box_type__isnull=False, placements__ended_at=None)"
        ".distinct().first()\n"
        "unit = ProductUnit.objects.filter(placements__ended_at=None).first()\n"
        "dose = Dose.objects.exclude(status='administered').first()\n"
        "other = Participant.objects.exclude(pk=dose.participant_id).first() if dose else None\n"
        "print(box.code, unit.code, box.pk, dose.code if dose else '-',\n"
        "      other.code if other else '-')\n"
    )
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()[-5:]  # fmt: skip
    return dict(zip(["box", "unit", "box_pk", "dose", "other"], out, strict=True))


def main() -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    OUT.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="biobank-shots-")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/demo.sqlite3", "DEBUG": "1"}
    for args in (["migrate", "--noinput", "-v0"], ["seed", "--demo", "--demo-user"]):
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)
    codes = _codes(env)
    port = _free_port()
    server = subprocess.Popen(
        [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        for _ in range(60):
            try:
                urllib.request.urlopen(base + "/admin/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        driver = _browser("1366,900")
        wait = WebDriverWait(driver, 15)
        driver.get(base + "/admin/login/")
        driver.find_element(By.NAME, "username").send_keys("demo")
        driver.find_element(By.NAME, "password").send_keys("demo-biobank\n")
        wait.until(lambda d: "/login" not in d.current_url)

        def shot(name: str) -> None:
            driver.save_screenshot(str(OUT / f"{name}.png"))
            print("wrote", OUT / f"{name}.png")

        def scan(page: str, *codes_: str) -> None:
            driver.get(f"{base}/admin/scan/{page}/")
            for code in codes_:
                before = len(driver.find_elements(By.CSS_SELECTOR, ROWS))
                driver.switch_to.active_element.send_keys(code + "\n")
                wait.until(_rows_at_least(min(before + 1, 15)))
                time.sleep(0.3)

        driver.get(base + "/admin/")
        shot("home")
        scan("find", codes["unit"], "UN0000000X")
        shot("find")
        scan("verify", codes["box"])
        shot("verify")
        driver.get(f"{base}/admin/biobank/container/{codes['box_pk']}/change/")
        driver.execute_script("document.getElementById('box-map').scrollIntoView()")
        shot("freezer-map")
        if codes["dose"] != "-" and codes["other"] != "-":
            scan("dose", codes["dose"], codes["other"])  # the wrong participant: refused
            shot("dose-check")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
