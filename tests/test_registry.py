"""The clinic registry from YAML or from a spreadsheet's CSV export, and its error messages."""

from __future__ import annotations

import pytest

from collector.registry import RegistryError, load_registry


def test_a_spreadsheet_export_reads_like_the_yaml_registry(tmp_path) -> None:
    # As Excel exports in a Spanish locale: BOM, ';' between cells, decimal commas, a blank row.
    path = tmp_path / "clinics.csv"
    path.write_bytes("\ufeffid;name;region;isp;link;lat;lon;contact_name;contact_email;contact_lang;"
                     "contact2_name;contact2_phone\n"
                     "es-ib-0042;Centro de Salud de Sóller;Illes Balears;Movistar;lte;39,766;2,715;"
                     "Coordinación TIC;tic@example.org;es;Guardia;+34 600 000 000\n"
                     ";;;;;;;;;;;\n"
                     "es-ib-0043;\"Consultori de Deià; annex\";Illes Balears;;;;;;;;;\n".encode())
    registry = load_registry(path)
    first, second = registry.clinics
    assert (first.id, first.name, first.region, first.isp, first.link) == (
        "es-ib-0042", "Centro de Salud de Sóller", "Illes Balears", "Movistar", "lte")
    assert (first.lat, first.lon) == (39.766, 2.715)
    assert [(c.name, c.email, c.phone, c.lang) for c in first.contacts] == [
        ("Coordinación TIC", "tic@example.org", None, "es"), ("Guardia", None, "+34600000000", "en")]  # spaces dropped
    assert (second.name, second.isp, second.link, second.lat, second.contacts) == (
        "Consultori de Deià; annex", "", "other", None, [])


@pytest.mark.parametrize("text,message", [
    ("id,name,phone\nes-ib-1,A,1\n", "line 1: unknown column(s) ['phone']"),
    ("name,region\nA,B\n", "line 1: the header must name at least 'id' and 'name'"),
    ("id,name,lat\nes-ib-1,A,1\nes-ib-2,B,95\n", "line 3, column 'lat': Input should be less than or equal to 90"),
    ("id,name,link\nes-ib-1,A,cable\n", "line 2, column 'link': Input should be 'fibre'"),
    ("id,name,contact_name,contact3_lang\nes-ib-1,A,,es\n", "line 2, column 'contact3_name': Field required"),
    ("id,name\nes-ib-1,A,extra\n", "line 2: more cells than the header has columns"),
    ("id,name\nes-ib-1,A\n,B\n,C\n", "line 3, column 'id': Field required"),
    ("id,name\nes-ib-1,A\nes-ib-2,B\nes-ib-1,C\n", "line 4: clinic id 'es-ib-1' is listed twice (first on line 2)"),
    ("id,name,isp\nes-ib-1,A,Telco\\\n", r"line 2, column 'isp': 'Telco\\' has a backslash at its end or before "
                                       r"'\', ',', ' ' or '=', which line protocol cannot carry in a tag; "
                                       "remove it from the name"),
])
def test_a_bad_csv_registry_names_the_file_line_and_column(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "clinics.csv"
    path.write_text(text)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)


def test_a_csv_registry_that_is_not_utf8_says_how_to_export_it(tmp_path) -> None:
    path = tmp_path / "clinics.csv"
    path.write_bytes("id,name\nes-ib-1,Sóller\n".encode("latin-1"))
    with pytest.raises(RegistryError, match="not UTF-8 .* export the spreadsheet as 'CSV UTF-8'"):
        load_registry(path)
    path.with_suffix(".yaml").write_bytes("clinics:\n- {id: es-ib-1, name: Sóller}\n".encode("latin-1"))
    with pytest.raises(RegistryError, match=r"clinics.yaml: the clinic registry is not UTF-8 \(byte 32\); "
                                            r"save it as UTF-8"):
        load_registry(path.with_suffix(".yaml"))


def test_contacts_with_a_scope_in_yaml_and_beside_a_csv_registry(tmp_path) -> None:
    path = tmp_path / "clinics.yaml"
    path.write_text("clinics:\n- {id: es-ib-1, name: A, region: Illes Balears, contacts: [{name: Guardia, "
                    "phone: '+34 600 000 000', lang: ca, tz: Europe/Madrid}]}\n"
                    "contacts:\n- {id: ib-admins, name: TIC, email: tic@example.org, lang: es, regions: [Illes Balears]}\n"
                    "- {id: director, name: Dir, slack: 'https://hooks.example/x', all: true, escalation: true}\n")
    registry = load_registry(path)
    admins, director = registry.contacts
    assert (admins.regions, admins.channels(), director.all, director.escalation) == (
        ["Illes Balears"], [("email", "tic@example.org")], True, True)
    assert registry.clinics[0].contacts[0].channels() == [("sms", "+34600000000")]
    csv_path = tmp_path / "clinics.csv"
    csv_path.write_text("id,name,region,contact_name,contact_email,contact_tz\n"
                        "es-ib-1,A,Illes Balears,Guardia,g@example.org,Atlantic/Canary\n")
    (tmp_path / "clinics.contacts.csv").write_text(
        "id;name;lang;email;regions;clinics;escalation\n"
        "ib-admins;TIC;ca;tic@example.org;Illes Balears|Catalunya;;no\n"
        "dir;Dir;es;dir@example.org;;es-ib-1;sí\n")
    registry = load_registry(csv_path)
    assert registry.clinics[0].contacts[0].tz == "Atlantic/Canary"
    assert [(c.id, c.regions, c.clinics, c.escalation) for c in registry.contacts] == [
        ("ib-admins", ["Illes Balears", "Catalunya"], [], False), ("dir", [], ["es-ib-1"], True)]


@pytest.mark.parametrize("contact,message", [
    ("{id: a, name: A}", "contacts.0: contact 'a' has no scope: give clinics, regions or all: true"),
    ("{id: a, name: A, clinics: [es-ib-9]}", "contact 'a' names clinics not in the registry: es-ib-9"),
    ("{id: a, name: A, all: true, lang: fr}", "contacts.0.lang: lang 'fr' is not one of en, es, ca, it, pt"),
    ("{id: a, name: A, all: true, tz: Madrid}", "contacts.0.tz: tz 'Madrid' is not a time zone name such as "
                                                "Europe/Madrid"),
    ("{id: a, name: A, all: true, email: tic}", "contacts.0.email: email 'tic' is not an address"),
    ("{id: a, name: A, all: true, phone: call me}", "contacts.0.phone: phone 'call me' is not a number"),
])
def test_a_bad_contact_is_named_with_its_fix(tmp_path, contact: str, message: str) -> None:
    path = tmp_path / "clinics.yaml"
    path.write_text(f"clinics:\n- {{id: es-ib-1, name: A}}\ncontacts:\n- {contact}\n")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    assert message in str(caught.value), str(caught.value)
