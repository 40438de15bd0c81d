"""`clinicwatch-collector silence` and `alerts test/list`, as an operator types them."""

from __future__ import annotations

import datetime as dt

import yaml

from collector.alerts.silences import load_silences
from collector.cli import main
from lab.hooks import HookServer
from lab.mailserver import MailServer


def _config(tmp_path, alerts: dict | None = None) -> str:
    registry = {"clinics": [{"id": "es-ib-0042", "name": "Centro de Salud de Sóller", "region": "Illes Balears",
                             "contacts": [{"name": "Guàrdia", "phone": "+34 600 000 000", "lang": "ca"}]}],
                "contacts": [{"id": "ib-admins", "name": "Coordinación TIC", "lang": "es", "tz": "Europe/Madrid",
                              "email": "tic@example.org", "webhook": "http://127.0.0.1:9/none",
                              "regions": ["Illes Balears"]}]}
    (tmp_path / "clinics.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True))
    config = {"store": {"kind": "influx_v1", "url": "http://127.0.0.1:8086", "database": "x"},
              "registry": "clinics.yaml", "data_dir": str(tmp_path / "data"), "alerts": alerts or {}}
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_silence_add_list_expire(tmp_path, capsys) -> None:
    config = _config(tmp_path)
    assert main(["silence", "add", "--config", config, "--region", "Illes Balears", "--clinic", "es-ib-0042",
                 "--for", "90m", "--author", "maria", "--comment", "obras de Movistar"]) == 0
    silence_id = capsys.readouterr().out.strip()
    [silence] = load_silences(tmp_path / "data" / "silences.yaml")
    assert (silence.id, silence.regions, silence.clinics, silence.author) == (
        silence_id, frozenset({"Illes Balears"}), frozenset({"es-ib-0042"}), "maria")
    assert silence.end - silence.start == 90 * 60_000
    assert main(["silence", "list", "--config", config]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith(f"{silence_id}  active ") and "clinic=es-ib-0042 region=Illes Balears  by maria: " \
                                                            "obras de Movistar" in listed
    assert main(["silence", "expire", "--config", config, silence_id]) == 0
    capsys.readouterr()
    [expired] = load_silences(tmp_path / "data" / "silences.yaml")
    assert expired.end <= dt.datetime.now(dt.UTC).timestamp() * 1000
    assert main(["silence", "list", "--config", config]) == 0
    assert capsys.readouterr().out == "no silences in force or to come\n"
    assert main(["silence", "list", "--config", config, "--all"]) == 0
    assert f"{silence_id}  expired" in capsys.readouterr().out


def test_silence_errors_say_what_to_give(tmp_path, capsys) -> None:
    config = _config(tmp_path)
    assert main(["silence", "add", "--config", config, "--author", "a", "--comment", "c"]) == 2
    assert "name what to silence: --clinic, --region or --incident" in capsys.readouterr().err
    assert main(["silence", "add", "--config", config, "--clinic", "x", "--for", "2 hours", "--author", "a",
                 "--comment", "c"]) == 2
    assert "--for '2 hours': give a number and a unit, such as 30m, 2h or 1d" in capsys.readouterr().err
    assert main(["silence", "add", "--config", config, "--clinic", "x", "--until", "2026-12-01T08:00", "--author",
                 "a", "--comment", "c"]) == 2
    assert "give its UTC offset" in capsys.readouterr().err
    assert main(["silence", "expire", "--config", config, "nope"]) == 2
    assert "no silence 'nope'" in capsys.readouterr().err


def test_alerts_test_sends_through_each_channel_of_a_contact(tmp_path, capsys) -> None:
    with MailServer() as mail, HookServer() as hooks:
        config = _config(tmp_path, {"email": {"host": "127.0.0.1", "port": mail.port, "security": "none",
                                              "sender": "alerts@example.org"},
                                    "sms": {"url": hooks.url + "/sms", "fields": {"to": "{to}", "msg": "{text}"}}})
        registry = tmp_path / "clinics.yaml"
        registry.write_text(registry.read_text().replace("http://127.0.0.1:9/none", hooks.url + "/hook"))
        assert main(["alerts", "test", "--config", config, "--contact", "ib-admins"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == ["email    tic@example.org: delivered (accepted by the SMTP server)",
                       f"webhook  {hooks.url}/hook: delivered (HTTP 200)"]
        [message] = mail.received()
        assert message["Subject"] == "Mensaje de prueba de ClinicWatch"
        assert main(["alerts", "test", "--config", config, "--contact", "es-ib-0042/1"]) == 0
        assert capsys.readouterr().out == "sms      +34600000000: delivered (HTTP 200)\n"
        [sms] = hooks.received("/sms")
        assert sms.form() == {"to": "+34600000000", "msg": "ClinicWatch: Prova d'aquest canal d'alertes (sms) per a "
                                                           "Guàrdia. Cap centre no està afectat."}
    assert main(["alerts", "test", "--config", config, "--contact", "nobody"]) == 2
    assert "no contact 'nobody'" in capsys.readouterr().err


def test_alerts_list_shows_what_became_of_each_message(tmp_path, capsys) -> None:
    from collector.alerts.log import EXPIRED, Row
    from collector.state.db import StateDB

    config = _config(tmp_path)
    db = StateDB(tmp_path / "data" / "state.sqlite")
    t = 1_790_000_000_000
    rows = [Row("inc-1/open/1/ib-admins", "email", "tic@example.org", "ib-admins", "inc-1", "open", t, t + 1, 0, {}),
            Row("inc-1/open/1/ib-admins", "webhook", "http://h/x", "ib-admins", "inc-1", "open", t, t + 1, 0, {})]
    db.commit([], [], [], [], [], [], t, rows, set())
    from collector.alerts.log import NotificationLog
    NotificationLog(db.db, db.lock).mark(rows[1], EXPIRED, t + 2, "not delivered by its deadline")
    db.close()
    assert main(["alerts", "list", "--config", config]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-09-21T14:13:20Z  pending  email   tic@example.org  inc-1/open/1/ib-admins  attempts=0",
        "2026-09-21T14:13:20Z  expired  webhook http://h/x  inc-1/open/1/ib-admins  attempts=0  not delivered by its "
        "deadline"]
    assert main(["alerts", "list", "--config", config, "--problems"]) == 0
    assert capsys.readouterr().out.count("\n") == 1
