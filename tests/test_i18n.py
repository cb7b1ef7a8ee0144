"""Norwegian Bokmål: the committed catalogue is complete, compiled, and chosen by the browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.urls import reverse
from django.utils import translation

PO = Path(__file__).resolve().parent.parent / "biobank" / "locale" / "nb" / "LC_MESSAGES"
# Singular entries (quoted strings may continue on following lines); plurals are left out.
_ENTRY = re.compile(r'^msgid ((?:".*"\n)+)msgstr ((?:".*"(?:\n|$))+)', re.MULTILINE)


def _entries(text: str) -> list[tuple[str, str]]:
    def join(block: str) -> str:
        return "".join(re.findall(r'"(.*)"', block))

    return [(join(m), join(t)) for m, t in _ENTRY.findall(text) if join(m)]


def test_every_string_is_translated_and_compiled() -> None:
    text = (PO / "django.po").read_text(encoding="utf-8")
    entries = _entries(text)
    assert len(entries) > 150
    untranslated = [m for m, t in entries if not t]
    assert untranslated == []
    assert "#, fuzzy" not in text.split("\n\n", 1)[1]
    # The committed .mo says what the .po says (a stale .mo would answer in English).
    with translation.override("nb"):
        stale = [m for m, t in entries if translation.gettext(m.replace('\\"', '"')) != t]
    assert stale == []


def test_browser_language_picks_norwegian(client: Any, admin_user: Any) -> None:
    client.force_login(admin_user)
    html = client.get(reverse("admin:scan_find"), HTTP_ACCEPT_LANGUAGE="nb-NO,nb;q=0.9").content
    assert 'lang="nb"' in html.decode() and "Skann en hvilken som helst strekkode" in html.decode()
    html = client.get(reverse("admin:scan_find"), HTTP_ACCEPT_LANGUAGE="de-DE").content.decode()
    assert 'lang="en-gb"' in html and "Scan any barcode" in html  # English stays the default


def test_language_switch_overrides_the_browser(client: Any, admin_user: Any) -> None:
    client.force_login(admin_user)
    response = client.post(reverse("set_language"), {"language": "en-gb", "next": "/admin/"})
    assert response.status_code == 302
    html = client.get(reverse("admin:scan_find"), HTTP_ACCEPT_LANGUAGE="nb-NO").content.decode()
    assert "Scan any barcode" in html
