"""Alert texts in the five languages (collector.alerts.texts): every string translated, every template
rendered, every SMS one GSM-7 segment."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from collector.alerts.texts import LANGS, LOCALE_DIR, SMS_LIMIT, Texts, duration, septets, to_gsm
from collector.registry import load_registry

TEXTS = Path(__file__).resolve().parent.parent / "collector" / "alerts" / "texts.py"
T0 = 1_790_000_000_000  # 2026-09-21 14:13:20 UTC
SAMPLE = Path(__file__).resolve().parent.parent / "collector" / "clinics.sample.yaml"


def _msgids() -> list[tuple[str, ...]]:
    found = []
    for _, message, _, _ in extract_from_file("python", str(TEXTS), keywords={"_": None, "gt": None, "ngt": (1, 2)}):
        found.append(message if isinstance(message, tuple) else (message,))
    return found


def _placeholders(text: str) -> set[str]:
    import re
    return set(re.findall(r"%\(\w+\)[sd]", text))


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_every_string_is_translated_with_its_placeholders(lang: str) -> None:
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "clinicwatch.po").open("rb") as po:
        catalog = read_po(po)
    ids = _msgids()
    assert len(ids) >= 25
    for msgid in ids:
        entry = catalog.get(msgid[0])
        assert entry is not None, f"{lang}: {msgid[0]!r} has no entry"
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        assert all(strings) and len(strings) == len(msgid), f"{lang}: {msgid[0]!r} is untranslated"
        for original, translated in zip(msgid, strings):
            assert _placeholders(translated) == _placeholders(original), f"{lang}: {msgid[0]!r} -> {translated!r}"
        assert strings[0] != msgid[0], f"{lang}: {msgid[0]!r} left in English"
    stale = {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id} - {m[0] for m in ids}
    assert not stale, f"{lang}: entries no longer used: {stale}"


def _clinic(name: str, region: str = "Illes Balears", since: int = T0) -> dict:
    return {"id": name.lower()[:10], "name": name, "region": region, "since": since,
            "evidence": ["nothing heard since 2026-09-21T14:10:00Z"]}


DOCS = {
    "open-one": {"kind": "open", "down": [_clinic("Centro de Salud de Sóller")], "back": [], "cause": "wan",
                 "began": T0, "ended": None, "others": 3, "url": "https://status.example.org/incidents/inc-1"},
    "update-many": {"kind": "update", "down": [_clinic(f"Centre {i}") for i in range(12)], "back": [],
                    "cause": "wan", "began": T0, "ended": None, "others": 0},
    "reminder-one": {"kind": "reminder", "down": [_clinic("Unitat Bàsica de Deià")], "back": [], "cause": "power",
                     "began": T0, "ended": None},
    "recovery-one": {"kind": "recovery", "down": [], "back": [_clinic("Unitat Bàsica de Deià")], "cause": "power",
                     "began": T0, "ended": T0 + 95 * 60_000},
    "recovery-many": {"kind": "recovery", "down": [], "back": [_clinic("A"), _clinic("B")], "cause": "lan_or_device",
                      "began": T0, "ended": T0 + 26 * 3_600_000},
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_template_renders_in_every_language(lang: str, name: str) -> None:
    english = Texts("en", "Europe/Madrid").message("k", DOCS[name])
    message = Texts(lang, "Europe/Madrid").message("k", DOCS[name])
    assert message.lang == lang and message.subject and message.text and message.sms
    assert f'<html lang="{lang}">' in message.html and message.subject in message.html
    if lang != "en":
        # No English sentence left: each line of the English text is absent from the translation.
        for line in english.text.split("\n"):
            if not line.startswith("- "):
                assert line not in message.text, (lang, line)
    # Times in the recipient's zone: 14:13 UTC is 16:13 in Madrid in September.
    assert "16:13" in message.text or name.startswith("update") or name.startswith("recovery")


def test_times_follow_the_recipients_zone_and_language() -> None:
    doc = DOCS["open-one"]
    assert "21 Sept 16:13" in Texts("en", "Europe/Madrid").message("k", doc).text
    assert "21 sept 15:13" in Texts("es", "Atlantic/Canary").message("k", doc).text
    assert "21 set. 15:13" in Texts("pt", "Europe/Lisbon").message("k", doc).text
    recovery = Texts("it", "Europe/Rome").message("k", DOCS["recovery-one"])
    assert recovery.subject == "RIPRISTINATO: Unitat Bàsica de Deià, dopo 1 h 35 min"


def test_durations_are_written_out_not_rounded() -> None:
    assert [duration(s) for s in (20.4, 59.7, 95 * 60, 26 * 3600 + 59, 3 * 86400 + 7200)] == [
        "20 s", "1 min", "1 h 35 min", "1 d 2 h", "3 d 2 h"]


@pytest.mark.parametrize("lang", LANGS)
def test_every_sms_is_one_gsm7_segment_with_the_longest_clinic_name(lang: str) -> None:
    longest = max((c.name for c in load_registry(SAMPLE).clinics), key=len)
    very_long = "Centro de Atención Primaria Integral de la Comarca de Sóller, Fornalutx, Deià y Valldemossa"
    for name in (longest, very_long):
        for kind, doc in DOCS.items():
            doc = dict(doc, down=[_clinic(name)] if doc["down"] else [], back=[_clinic(name)] if doc["back"] else [])
            sms = Texts(lang, "Europe/Madrid").message("k", doc).sms
            assert septets(sms) <= SMS_LIMIT, (lang, kind, sms)
            assert sms == to_gsm(sms)  # GSM-7 only: no switch to UCS-2
            if name == longest:
                assert longest.split()[0] in sms


def test_gsm_transliteration_keeps_what_gsm7_has() -> None:
    assert to_gsm("Sóller, Deià, Lleida·Pallars, Ñandú, Çà, «È», ‘x’ – …") == "Soller, Deià, Lleida.Pallars, Ñandu, Çà, ?E?, 'x' - ..."


@pytest.mark.parametrize("lang", LANGS)
def test_the_email_links_each_clinic_and_the_incident_to_the_status_page(lang: str) -> None:
    base = "https://status.example.org"
    many = {**DOCS["update-many"], "url": f"{base}/incidents/inc-2",
            "down": [{**c, "url": f"{base}/clinics/c{i}"} for i, c in enumerate(DOCS["update-many"]["down"])]}
    page = Texts(lang, "Europe/Madrid").message("k", many).html
    for i, clinic in enumerate(many["down"]):
        assert f'<li><a href="{base}/clinics/c{i}">{clinic["name"]}</a>' in page
    assert f'<a href="{base}/incidents/inc-2">{base}/incidents/inc-2</a>' in page
    one = {**DOCS["open-one"], "down": [{**DOCS["open-one"]["down"][0], "url": f"{base}/clinics/soller"}]}
    page = Texts(lang, "Europe/Madrid").message("k", one).html
    assert f'<a href="{base}/clinics/soller">Centro de Salud de Sóller (Illes Balears)</a>' in page
    assert page.count("<a href=") == 2  # the clinic and the incident's details
