"""From the policy's decisions to delivered messages: the notification log's rows for each decision
(one per channel of its recipient), and the dispatcher that sends them, retrying with backoff until
each message's deadline.
"""

from __future__ import annotations

import urllib.parse

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from collector.alerts.channels import DELIVERED, GIVE_UP, Channel, Delivery
from collector.alerts.log import EXPIRED, FAILED, RETRY, SENT, NotificationLog, Row
from collector.alerts.policy import Intent, Recipient
from collector.alerts.texts import Texts
from collector.registry import Contact, Registry
from collector.state.incidents import Incident

log = logging.getLogger("clinicwatch.collector")


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    lang: str
    tz: str
    channels: tuple[tuple[str, str], ...]


def recipients(registry: Registry) -> tuple[list[Recipient], dict[str, Person]]:
    """Everyone the registry names: its scoped contacts, and each clinic's own contacts (that clinic only,
    `<clinic>/<n>` by their place in its list)."""
    found: list[Recipient] = []
    people: dict[str, Person] = {}

    def person(pid: str, contact: Contact) -> None:
        people[pid] = Person(pid, contact.name, contact.lang, contact.tz, tuple(contact.channels()))

    for contact in registry.contacts:
        found.append(Recipient(contact.id, frozenset(contact.clinics), frozenset(contact.regions), contact.all,
                               contact.escalation))
        person(contact.id, contact)
    for clinic in registry.clinics:
        for n, contact in enumerate(clinic.contacts, 1):
            pid = f"{clinic.id}/{n}"
            found.append(Recipient(pid, clinics=frozenset({clinic.id})))
            person(pid, contact)
    return found, people


def rows_for(intents: list[Intent], incidents: dict[str, Incident], people: dict[str, Person],
             registry: Registry, evidence: dict[str, list[str]], status_url: str | None,
             deadline_s: float) -> tuple[list[Row], set[str]]:
    """The log rows for these decisions, and the keys of those muted by a silence."""
    clinics = registry.by_id()
    rows, muted = [], set()
    for intent in intents:
        person = people.get(intent.recipient)
        incident = incidents.get(intent.incident)
        if person is None or incident is None:
            continue  # left the registry since
        joined = {m.clinic: m.joined for m in incident.members}

        def clinic(cid: str) -> dict[str, Any]:
            known = clinics.get(cid)
            out = {"id": cid, "name": known.name if known else cid, "region": known.region if known else "",
                   "since": joined.get(cid, intent.began), "evidence": evidence.get(cid, [])}
            if status_url:  # its page on the status page (collector/web/statuspage.py)
                out["url"] = f"{status_url.rstrip('/')}/clinics/{urllib.parse.quote(cid)}"
            return out

        doc = {"kind": intent.kind, "incident": intent.incident, "cause": intent.cause,
               "down": [clinic(c) for c in intent.down], "back": [clinic(c) for c in intent.back],
               "others": len(incident.clinics()) - len(set(intent.down) | set(intent.back)),
               "began": intent.began, "ended": intent.ended, "decided": intent.at,
               "recipient": person.id, "contact": person.name, "lang": person.lang, "tz": person.tz}
        if status_url:
            doc["url"] = f"{status_url.rstrip('/')}/incidents/{intent.incident}"
        if intent.muted:
            muted.add(intent.key)
        for channel, address in person.channels:
            rows.append(Row(intent.key, channel, address, person.id, intent.incident, intent.kind, intent.at,
                            intent.at + int(deadline_s * 1000), 0, doc))
    return rows, muted


class Dispatcher:
    """Sends the log's due messages, one at a time, and records what became of each."""

    def __init__(self, notifications: NotificationLog, channels: dict[str, Channel], retry_min_s: float,
                 retry_max_s: float) -> None:
        self.log, self.channels = notifications, channels
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self.counts: Counter[tuple[str, str]] = Counter()  # (channel, outcome) -> attempts

    def run_once(self, now: int | None = None) -> int:
        """Send what is due; the number of rows handled."""
        handled = 0
        for row in self.log.due(now if now is not None else _now(), longest_wait_ms=int(self.retry_max_s * 1000)):
            self.handle(row)
            handled += 1
        return handled

    def handle(self, row: Row) -> None:
        now = _now()
        if now > row.deadline:
            self.log.mark(row, EXPIRED, now, "not delivered by its deadline")
            self.counts[(row.channel, "expired")] += 1
            log.error("alert not delivered by its deadline", extra={"fields": {
                "key": row.key, "channel": row.channel, "address": row.address, "attempts": row.attempts}})
            return
        channel = self.channels.get(row.channel)
        if channel is None:
            delivery = Delivery(GIVE_UP, f"no {row.channel} channel is configured (alerts.{row.channel})")
        else:
            try:
                message = Texts(row.doc["lang"], row.doc["tz"]).message(row.key, row.doc)
                delivery = channel.send(message, row.address)
            except Exception as exc:  # noqa: BLE001 - one message must not stop the others
                log.exception("alert channel failed")
                delivery = Delivery(RETRY, f"{type(exc).__name__}: {exc}")
        done = _now()
        self.counts[(row.channel, delivery.outcome)] += 1
        if delivery.outcome == DELIVERED:
            self.log.mark(row, SENT, done, delivery.detail)
            log.info("alert sent", extra={"fields": {"key": row.key, "channel": row.channel, "address": row.address}})
        elif delivery.outcome == GIVE_UP:
            self.log.mark(row, FAILED, done, delivery.detail)
            log.error("alert given up", extra={"fields": {"key": row.key, "channel": row.channel,
                                                          "address": row.address, "error": delivery.detail}})
        else:
            wait = min(self.retry_max_s, self.retry_min_s * 2 ** row.attempts)
            self.log.mark(row, RETRY, done, delivery.detail, next_try=done + int(wait * 1000))
            log.warning("alert to be retried", extra={"fields": {"key": row.key, "channel": row.channel,
                                                                 "error": delivery.detail, "in_s": wait}})


def _now() -> int:
    return time.time_ns() // 1_000_000


def test_channels(config: Any, person: Person) -> list[tuple[str, str, Delivery]]:
    """A test message through each of a person's channels, now, outside the log (`alerts test`)."""
    channels = make_channels(config)
    texts = Texts(person.lang, person.tz)
    out = []
    for channel, address in person.channels:
        message = texts.test_message(f"test/{person.id}/{_now()}", channel, person.name)
        sender = channels.get(channel)
        delivery = (sender.send(message, address) if sender is not None else
                    Delivery(GIVE_UP, f"no {channel} channel is configured (alerts.{channel})"))
        out.append((channel, address, delivery))
    return out


def make_channels(config: Any) -> dict[str, Channel]:
    """The channels an `alerts` configuration section provides."""
    from collector.alerts.channels.email import Email
    from collector.alerts.channels.slack import Slack
    from collector.alerts.channels.sms import Sms
    from collector.alerts.channels.teams import Teams
    from collector.alerts.channels.webhook import Webhook

    channels: dict[str, Channel] = {"webhook": Webhook(), "slack": Slack(), "teams": Teams()}
    if config.email is not None:
        channels["email"] = Email(config.email)
    if config.sms is not None:
        channels["sms"] = Sms(config.sms)
    return channels
