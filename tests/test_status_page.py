"""The status page (collector/web/statuspage.py) in a real headless browser (Debian's chromium, driven by
its chromedriver through Selenium), served by the real collector full of the simulated fleet
(tests/fleet_sim.py): what it shows, in which language, on a phone, with nothing fetched from elsewhere;
basic auth; the rule for public addresses; the catalogs.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from prometheus_client import CollectorRegistry

from collector.alerts.texts import LANGS, LOCALE_DIR
from collector.web.api import Api
from tests.collector_harness import REPO
from tests.conftest import skip_or_fail
from tests.fleet_sim import CLINICS, fleet_collector

PAGE = REPO / "collector" / "web" / "statuspage.py"
# CLINICWATCH_PICTURES=<dir>: also save the screenshots dashboards/README.md shows.
PICTURES = os.environ.get("CLINICWATCH_PICTURES")


@pytest.fixture(scope="module")
def site(influxdb_server, tmp_path_factory):
    with fleet_collector(influxdb_server, tmp_path_factory.mktemp("status"), "statuspage",
                         status_page={"title": "IB-Salut · centros", "tz": "Europe/Madrid"}) as (_, port, now):
        yield f"http://127.0.0.1:{port}", now


@pytest.fixture(scope="module")
def browser_factory():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        skip_or_fail("Debian's chromium and chromium-driver are not installed (scripts/setup.sh)",
                     "CLINICWATCH_REQUIRE_SERVERS")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    made = []

    def make(lang: str = "en", width: int = 1280, height: int = 900):
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={width},{height}", f"--lang={lang}",
                    # Anything but this machine is unreachable: a page that fetched from elsewhere fails.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {"intl.accept_languages": lang})
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.quit()


def _text(driver) -> str:
    return driver.find_element("tag name", "body").text


def test_the_fleet_in_spanish_with_counts_map_problems_and_incidents(site, browser_factory) -> None:
    url, _ = site
    driver = browser_factory("es-ES")
    driver.get(url + "/")
    assert driver.find_element("tag name", "html").get_attribute("lang") == "es"
    assert driver.find_element("tag name", "h1").text == "Centros ahora"
    assert driver.title == "Centros ahora · IB-Salut · centros"
    tiles = {t.find_element("tag name", "span").text: int(t.find_element("tag name", "b").text)
             for t in driver.find_elements("css selector", ".tile")}
    assert tiles["sin conexión"] == 2 and tiles["desconocido"] == 1 and tiles["mantenimiento"] == 1
    assert sum(tiles.values()) == len(CLINICS)
    # Every clinic has coordinates: seven dots, the two down ones red and larger.
    dots = driver.find_elements("css selector", "svg circle")
    assert len(dots) == len(CLINICS)
    assert len(driver.find_elements("css selector", "svg circle.d-down")) == 2
    rows = {r.find_elements("tag name", "td")[0].text: [c.text for c in r.find_elements("tag name", "td")]
            for r in driver.find_elements("xpath", "//h2[.='Centros con algún problema']/following::table[1]/tbody/tr")}
    assert rows["Clinic es-ct-0004"][1:3] == ["sin conexión", "corte de electricidad"]
    assert rows["Clinic es-ct-0006"][1] == "desconocido"
    assert "Clinic es-ib-0001" not in rows  # up
    assert rows["Clinic es-ct-0004"][4] == "Catalunya"
    incidents = driver.find_elements("css selector", "ul.incidents li a")
    assert incidents and all(re.search(r"/incidents/inc-", a.get_attribute("href")) for a in incidents)
    # The region table links to that region's list.
    driver.find_element("link text", "Catalunya").click()
    listed = [r.find_elements("tag name", "td")[0].text
              for r in driver.find_elements("xpath", "//h2[@id='region']/following::table[1]/tbody/tr")]
    assert listed == sorted(f"Clinic {c}" for c, v in CLINICS.items() if v[0] == "Catalunya")


def test_a_clinic_and_an_incident_from_the_links(site, browser_factory) -> None:
    url, _ = site
    driver = browser_factory("ca")
    driver.get(url + "/")
    driver.find_element("link text", "Clinic es-ct-0004").click()
    assert driver.current_url == url + "/clinics/es-ct-0004"
    assert driver.find_element("tag name", "h1").text == "Clinic es-ct-0004"
    facts = {r.find_element("tag name", "th").text: r.find_element("tag name", "td").text
             for r in driver.find_elements("css selector", "table.facts tr")}
    assert facts["Estat"] == "sense connexió" and facts["Causa"] == "tall de llum"
    assert facts["Regió"] == "Catalunya" and facts["Proveïdor d'internet"] == "Movistar"
    assert re.match(r"\d+ (de |d’)\w+\.? 20\d\d, \d\d:\d\d CES?T$", facts["Des de"]), facts["Des de"]
    bars = driver.find_elements("css selector", ".bars .bar")
    assert len(bars) == 30
    assert "Disponibilitat, darrers 30 dies" in _text(driver)
    outages = driver.find_elements("xpath", "//h2[starts-with(.,'Talls')]/following::table[1]/tbody/tr")
    assert outages and outages[0].find_elements("tag name", "td")[1].text == "encara sense connexió"
    driver.find_element("link text", facts["Incidència"]).click()
    assert "/incidents/inc-" in driver.current_url
    members = [r.find_elements("tag name", "td")[0].text
               for r in driver.find_elements("xpath", "//h2[.='Centres']/following::table[1]/tbody/tr")]
    assert "Clinic es-ct-0004" in members
    assert driver.find_element("tag name", "h1").text.startswith("Incidència: ")


def test_the_language_follows_the_browser_then_the_switch(site, browser_factory) -> None:
    url, _ = site
    expected = {"pt-BR": "Unidades agora", "it-IT": "Strutture adesso", "fr-FR": "Clinics now", "en-GB": "Clinics now"}
    for lang, heading in expected.items():
        driver = browser_factory(lang)
        driver.get(url + "/")
        assert driver.find_element("tag name", "h1").text == heading, lang
    driver.find_element("link text", "Català").click()  # the last browser asked for English
    assert driver.find_element("tag name", "h1").text == "Centres ara"
    driver.get(url + "/clinics/es-ib-0001")  # remembered
    assert driver.find_element("tag name", "html").get_attribute("lang") == "ca"
    assert "Disponibilitat, darrers 30 dies" in _text(driver)


def test_usable_on_a_phone_and_nothing_fetched_from_elsewhere(site, browser_factory) -> None:
    url, _ = site
    driver = browser_factory("es", 390, 844)
    for path in ("/", "/clinics/es-ct-0004"):
        driver.get(url + path)
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path}: the page is wider than the phone: {width}"
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(r.startswith(url) for r in resources), resources
        source = driver.page_source
        assert not re.search(r'(src|href)="(https?:)?//', source), "a link or asset elsewhere"
        assert "<script" not in source
        assert '<meta http-equiv="refresh" content="60">' in source  # a wall screen stays current
        if PICTURES:
            name = "status-phone.png" if path == "/" else "status-clinic-phone.png"
            driver.save_screenshot(str(Path(PICTURES) / name))
    with urllib.request.urlopen(url + "/") as response:
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    if PICTURES:
        wide = browser_factory("es", 1280, 1100)
        wide.get(url + "/")
        wide.save_screenshot(str(Path(PICTURES) / "status-fleet.png"))


def test_an_unknown_page_clinic_or_incident_is_404_in_the_language(site) -> None:
    url, _ = site
    for path, text in (("/clinics/x", "Este centro no existe."), ("/incidents/x", "Esta incidencia no existe."),
                       ("/nothing/here/at/all", "Esta página no existe.")):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + path + "?lang=es")
        assert missing.value.code == 404 and text in missing.value.read().decode(), path
        assert missing.value.headers["Set-Cookie"].startswith("cw_lang=es;")


def test_basic_auth_guards_the_page_and_the_api_not_the_metrics(tmp_path) -> None:
    api = Api("127.0.0.1", 0, CollectorRegistry(), None, None, ("ops", "s3cret ñ"))
    api.start()
    base = f"http://127.0.0.1:{api.port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/api/v1/clinics")
        assert refused.value.code == 401
        assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="ClinicWatch", charset="UTF-8"'
        wrong = urllib.request.Request(base + "/api/v1/clinics", headers={
            "Authorization": "Basic " + base64.b64encode(b"ops:nope").decode()})
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(wrong)
        assert denied.value.code == 401
        odd = urllib.request.Request(base + "/api/v1/clinics", headers={"Authorization": "Basic ñ"})
        with pytest.raises(urllib.error.HTTPError) as strange:
            urllib.request.urlopen(odd)
        assert strange.value.code == 401
        right = urllib.request.Request(base + "/api/v1/clinics", headers={
            "Authorization": "Basic " + base64.b64encode("ops:s3cret ñ".encode()).decode()})
        with pytest.raises(urllib.error.HTTPError) as passed:
            urllib.request.urlopen(right)
        assert passed.value.code == 404  # let in: this collector runs no state engine
        with urllib.request.urlopen(base + "/metrics") as response:
            assert response.status == 200
    finally:
        api.stop()


@pytest.mark.parametrize("host,ok", [("1.2.3.4", False), ("10.20.0.5", True), ("0.0.0.0", True),
                                     ("127.0.0.1", True), ("collector.internal", True)])
def test_a_public_address_needs_a_login(tmp_path, capsys, host: str, ok: bool) -> None:
    from collector.cli import main

    (tmp_path / "clinics.yaml").write_text("clinics: [{id: es-ib-0001, name: A}]\n")
    (tmp_path / "c.yaml").write_text(f"store: {{kind: influx_v1, url: 'http://127.0.0.1:8086', database: x}}\n"
                                     f"registry: clinics.yaml\nmetrics_host: '{host}'\n")
    code = main(["check-config", "--config", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    if ok:
        assert code == 0, err
    else:
        assert code != 0
        assert err == (f"{tmp_path / 'c.yaml'}: (top level): Value error, metrics_host {host} is a public address: "
                       "set status_page.basic_auth (user, password_file), bind a private address, or set "
                       "status_page.enabled: false\n")


SAME_WORD = {("ca", "Regions")}  # the same word in both languages


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_every_text_is_translated_and_marked(lang: str) -> None:
    marked = {m for _, m, _, _ in extract_from_file("python", str(PAGE), keywords={"_": None})}
    used = set(re.findall(r'\bt\("([^"]+)"\)', PAGE.read_text())) | set(re.findall(r"\bt\('([^']+)'\)", PAGE.read_text()))
    assert used and used <= marked, used - marked
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "statuspage.po").open("rb") as po:
        catalog = read_po(po)
    for msgid in marked:
        entry = catalog.get(msgid)
        assert entry is not None and entry.string, f"{lang}: {msgid!r}"
        assert entry.string != msgid or (lang, msgid) in SAME_WORD, f"{lang}: {msgid!r} left in English"
    assert {m.id for m in catalog if m.id} == marked, f"{lang}: stale entries"
