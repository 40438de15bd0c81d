"""Alert channels against real servers: email to an aiosmtpd SMTP server (STARTTLS and login), webhook,
Slack, Teams and an SMS gateway to a local HTTP server, checked field by field; the dispatcher's
retries through the notification log."""

from __future__ import annotations

import sqlite3
import threading

from collector.alerts import log as alerts_log
from collector.alerts.channels import DELIVERED, GIVE_UP, RETRY
from collector.alerts.channels.email import Email, SmtpServer
from collector.alerts.channels.slack import Slack
from collector.alerts.channels.sms import Sms, SmsGateway
from collector.alerts.channels.teams import Teams
from collector.alerts.channels.webhook import Webhook
from collector.alerts.dispatch import Dispatcher, _now
from collector.alerts.log import NotificationLog, Row
from collector.alerts.texts import Texts, septets
from lab.certs import CertificateAuthority
from lab.hooks import HookServer
from lab.mailserver import MailServer

T0 = 1_790_000_000_000
DOC = {"kind": "open", "incident": "inc-1", "cause": "wan", "began": T0, "ended": None, "others": 2,
       "down": [{"id": "es-ib-0042", "name": "Centro de Salud de Sóller", "region": "Illes Balears", "since": T0,
                 "evidence": ["nothing heard since 2026-09-21T14:10:00Z"]}], "back": [],
       "url": "https://status.example.org/incidents/inc-1", "lang": "es", "tz": "Europe/Madrid"}


def message(lang: str = "es"):  # noqa: ANN201
    return Texts(lang, "Europe/Madrid").message("inc-1/open/1/ib-admins", DOC)


def test_email_over_starttls_with_login_is_multipart_utf8_in_the_recipients_language(tmp_path) -> None:
    ca = CertificateAuthority(tmp_path)
    password = tmp_path / "smtp-password"
    password.write_text("s3cret\n")
    with MailServer(cert=ca.issue("mail", ["127.0.0.1"], 30), login=("alerts", "s3cret")) as server:
        channel = Email(SmtpServer(host="127.0.0.1", port=server.port, security="starttls", username="alerts",
                                   password_file=password, sender="ClinicWatch <alerts@example.org>",
                                   ca_file=ca.ca_file))
        delivery = channel.send(message(), "tic@example.org")
        assert delivery.outcome == DELIVERED, delivery.detail
        [mail] = server.received()
    assert server.envelopes == [("alerts@example.org", ["tic@example.org"])]
    assert mail["Subject"] == "SIN CONEXIÓN: Centro de Salud de Sóller"
    assert (mail["From"], mail["To"], mail["Content-Language"]) == (
        "ClinicWatch <alerts@example.org>", "tic@example.org", "es")
    assert mail["X-ClinicWatch-Key"] == "inc-1/open/1/ib-admins" and mail["Message-ID"].endswith("@clinicwatch>")
    assert mail.get_content_type() == "multipart/alternative"
    text, page = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text.get_content_charset() == "utf-8" and page.get_content_charset() == "utf-8"
    assert "Centro de Salud de Sóller (Illes Balears) no tiene conexión desde el 21 sept 16:13." in text.get_content()
    assert "Causa probable: enlace a internet." in text.get_content()
    assert "Detalles: https://status.example.org/incidents/inc-1" in text.get_content()
    assert '<html lang="es">' in page.get_content() and "Sóller" in page.get_content()


def test_email_refused_is_given_up_a_wrong_password_or_no_server_is_retried(tmp_path) -> None:
    with MailServer(refuse={"nobody@example.org"}) as server:
        plain = Email(SmtpServer(host="127.0.0.1", port=server.port, security="none", sender="a@example.org"))
        assert plain.send(message(), "nobody@example.org").outcome == GIVE_UP
        assert plain.send(message(), "tic@example.org").outcome == DELIVERED
    down = Email(SmtpServer(host="127.0.0.1", port=server.port, security="none", sender="a@example.org",
                            timeout_s=2))
    assert down.send(message(), "tic@example.org").outcome == RETRY


def test_webhook_slack_and_teams_payloads(tmp_path) -> None:
    with HookServer() as hooks:
        for channel, path in ((Webhook(), "/hook"), (Slack(), "/slack"), (Teams(), "/teams")):
            assert channel.send(message("ca"), hooks.url + path).outcome == DELIVERED
        [hook], [slack], [teams] = hooks.received("/hook"), hooks.received("/slack"), hooks.received("/teams")
    body = hook.json()
    assert hook.headers["Idempotency-Key"] == body["key"] == "inc-1/open/1/ib-admins"
    assert (body["lang"], body["kind"], body["incident"], body["cause"], body["others"]) == ("ca", "open", "inc-1",
                                                                                            "wan", 2)
    assert body["subject"] == "SENSE CONNEXIÓ: Centro de Salud de Sóller"
    assert body["down"][0]["name"] == "Centro de Salud de Sóller" and body["down"][0]["since"] == T0
    assert slack.json() == {"text": "*SENSE CONNEXIÓ: Centro de Salud de Sóller*\n" + message("ca").text}
    card = teams.json()["attachments"][0]
    assert teams.json()["type"] == "message" and card["contentType"] == "application/vnd.microsoft.card.adaptive"
    blocks = card["content"]["body"]
    assert card["content"]["type"] == "AdaptiveCard" and blocks[0]["text"] == "SENSE CONNEXIÓ: Centro de Salud de Sóller"
    assert [b["text"] for b in blocks[1:]] == message("ca").text.split("\n")


def test_sms_gateway_templates_form_json_and_query(tmp_path) -> None:
    token = tmp_path / "sms-token"
    token.write_text("Bearer abc123\n")
    with HookServer() as hooks:
        form = Sms(SmsGateway(url=hooks.url + "/form", fields={"to": "{to}", "message": "{text}", "ref": "{key}"},
                              auth_header="Authorization", auth_file=token))
        as_json = Sms(SmsGateway(url=hooks.url + "/json", body="json", fields={"number": "{to}", "text": "{text}"}))
        query = Sms(SmsGateway(method="GET", url=hooks.url + "/send", body="query",
                               fields={"phone": "{to}", "msg": "{text}"}))
        for channel in (form, as_json, query):
            assert channel.send(message("pt"), "+351912345678").outcome == DELIVERED
        [f], [j], [q] = hooks.received("/form"), hooks.received("/json"), hooks.received("/send")
    sms = message("pt").sms
    assert f.headers["Authorization"] == "Bearer abc123"
    assert f.form() == {"to": "+351912345678", "message": sms, "ref": "inc-1/open/1/ib-admins"}
    assert j.json() == {"number": "+351912345678", "text": sms}
    assert q.method == "GET" and q.query() == {"phone": "+351912345678", "msg": sms}
    assert sms.startswith("ClinicWatch: Centro de Salud de Soller: SEM LIGAÇAO desde 16:13.") and septets(sms) <= 160


def _log() -> tuple[NotificationLog, sqlite3.Connection]:
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    alerts_log.create(db)
    return NotificationLog(db, threading.Lock()), db


def test_a_gateway_answering_500_three_times_then_200_gets_exactly_one_message() -> None:
    notifications, db = _log()
    now = _now()
    with HookServer(answers=[500, 500, 500]) as gateway:
        row = Row("inc-1/open/1/ib-admins", "sms", "+34600000000", "ib-admins", "inc-1", "open", now,
                  now + 60_000, 0, DOC)
        alerts_log.insert(db, [row], set())
        dispatcher = Dispatcher(notifications, {"sms": Sms(SmsGateway(url=gateway.url + "/send"))},
                                retry_min_s=0.05, retry_max_s=0.2)
        for _ in range(200):
            dispatcher.run_once()
            if notifications.rows()[0]["status"] == "sent":
                break
            threading.Event().wait(0.05)
        statuses = [r.status for r in gateway.received()]
    assert statuses == [500, 500, 500, 200]  # one message delivered, after three failures
    [record] = notifications.rows()
    assert (record["status"], record["attempts"]) == ("sent", 4)
    assert dispatcher.counts[("sms", "retry")] == 3 and dispatcher.counts[("sms", "delivered")] == 1
    dispatcher.run_once()
    assert len(gateway.received()) == 4  # nothing sent again


def test_a_clock_set_back_delays_a_retry_by_at_most_the_longest_backoff() -> None:
    """Retries are kept as wall times (they survive a restart). A clock set back an hour after a failed send
    would hold the retry an hour: a retry set further ahead than the longest backoff is due now."""
    notifications, db = _log()
    now = _now()
    with HookServer(answers=[500]) as gateway:
        row = Row("inc-1/open/1/ib-admins", "sms", "+34600000000", "ib-admins", "inc-1", "open", now,
                  now + 7_200_000, 0, DOC)
        alerts_log.insert(db, [row], set())
        dispatcher = Dispatcher(notifications, {"sms": Sms(SmsGateway(url=gateway.url + "/send"))},
                                retry_min_s=5, retry_max_s=300)
        assert dispatcher.run_once() == 1 and notifications.rows()[0]["status"] == "retry"  # again in 5 s
        # The clock set back 200 s: the retry waits 205 s, within the longest backoff (300 s).
        assert dispatcher.run_once(_now() - 200_000) == 0
        # Set back an hour: the retry 3,605 s ahead cannot be a backoff; it is tried now.
        assert dispatcher.run_once(_now() - 3_600_000) == 1
        statuses = [r.status for r in gateway.received()]
    assert statuses == [500, 200]
    assert notifications.rows()[0]["status"] == "sent"


def test_a_message_past_its_deadline_is_reported_expired_not_dropped() -> None:
    notifications, db = _log()
    now = _now()
    alerts_log.insert(db, [Row("k1", "webhook", "http://127.0.0.1:9/x", "r", "inc-1", "open", now - 10_000,
                               now - 1, 0, DOC), Row("k2", "webhook", "http://127.0.0.1:9/x", "r", "inc-1", "open",
                                                     now, now + 60_000, 0, DOC)], {"k2"})
    dispatcher = Dispatcher(notifications, {"webhook": Webhook()}, 1, 1)
    assert dispatcher.run_once() == 1  # k2 is muted: recorded, never sent
    assert [(r["key"], r["status"]) for r in notifications.rows()] == [("k1", "expired"), ("k2", "muted")]
    assert dispatcher.counts[("webhook", "expired")] == 1
