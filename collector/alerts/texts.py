"""Alert messages in the recipient's language (en, es, ca, it, pt), times in the recipient's time zone.

Translations are gettext catalogs (`collector/locale/<lang>/LC_MESSAGES/clinicwatch.po`), read with
Babel at start (its .po reader and .mo writer, so no compiled file is kept in the repository); dates
and times are formatted by Babel's CLDR data for the language (Portuguese as in Portugal, `pt_PT`).
Durations are written here ("1 h 35 min"): Babel's format_timedelta rounds 95 minutes to "2 hours".

An SMS must fit one segment: 160 characters of the GSM 03.38 alphabet. A single character outside it
(Spanish á í ó ú, Catalan à í ï ó ú ç ·, Italian ì ò ù with their accents, Portuguese ã õ â ê ô ç...)
makes the whole text UCS-2, 70 characters. So SMS texts are transliterated to the GSM alphabet
(é ñ ü à è ò ù ì Ç É stay: they are in it) and the clinic's name is shortened if it still does not fit.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import html
import io
import unicodedata
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from collector.alerts.channels import Message

LANGS = ("en", "es", "ca", "it", "pt")
LOCALES = {"en": "en_GB", "es": "es_ES", "ca": "ca_ES", "it": "it_IT", "pt": "pt_PT"}
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
SMS_LIMIT = 160


def _(text: str) -> str:
    """Marks a text for extraction; translated where it is used."""
    return text


CAUSES = {"power": _("power cut"), "wan": _("internet link"), "lan_or_device": _("clinic network or router"),
          "agent": _("monitoring agent stopped"), "unknown": _("unknown")}


@functools.cache
def translations(lang: str, domain: str = "clinicwatch") -> gettext.NullTranslations:
    """The catalog of `domain` (clinicwatch: alert messages; statuspage: the status page) in `lang`."""
    if lang == "en":
        return gettext.NullTranslations()
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=LOCALES[lang])
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def _linked(line: str, text: str, url: str | None) -> str:
    """The line as HTML, its first `text` a link to `url` (when there is one)."""
    escaped = html.escape(line)
    if not url or not text:
        return escaped
    return escaped.replace(html.escape(text), f'<a href="{html.escape(url, quote=True)}">{html.escape(text)}</a>', 1)


def duration(seconds: float) -> str:
    if seconds < 59.5:
        return f"{max(0, round(seconds))} s"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"


def to_gsm(text: str) -> str:
    """The text in the GSM 03.38 alphabet: characters outside it lose their accent (í -> i), typography
    becomes its plain form, anything else a '?'."""
    out = []
    for ch in text.translate(_TYPOGRAPHY):
        try:
            ch.encode("gsm03.38")
            out.append(ch)
            continue
        except UnicodeEncodeError:
            pass
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        try:
            base.encode("gsm03.38")
            out.append(base)
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


_TYPOGRAPHY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "·": ".",
                             "º": "o", "ª": "a", "°": "o", "\u00a0": " ", "\u202f": " "})


def septets(text: str) -> int:
    """GSM-7 septets the text takes (an extension character such as € or [ takes two)."""
    return len(text.encode("gsm03.38"))


class Texts:
    """What one recipient reads about one decision of the policy."""

    def __init__(self, lang: str, tz: str) -> None:
        self.lang = lang if lang in LANGS else "en"
        self.tz = ZoneInfo(tz)
        self.t = translations(self.lang)

    def when(self, ms: int, fmt: str = "d MMM HH:mm") -> str:
        moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).astimezone(self.tz)
        return format_datetime(moment, fmt, tzinfo=self.tz, locale=LOCALES[self.lang])

    def message(self, key: str, doc: dict[str, Any]) -> Message:
        gt, ngt = self.t.gettext, self.t.ngettext
        kind, down, back = doc["kind"], doc["down"], doc["back"]
        cause = gt(CAUSES.get(doc["cause"], CAUSES["unknown"]))
        lost = (len(back) if kind == "recovery" else len(down))
        first = (back if kind == "recovery" else down)[0]
        one = lost == 1
        label = (f"{first['name']} ({first['region']})" if first["region"] else first["name"]) if one else ""
        if kind == "recovery":
            took = duration((doc["ended"] - doc["began"]) / 1000)
            subject = (gt("BACK: %(clinic)s, after %(duration)s") % {"clinic": first["name"], "duration": took} if one
                       else ngt("BACK: %(count)d clinic, after %(duration)s", "BACK: %(count)d clinics, after "
                                "%(duration)s", lost) % {"count": lost, "duration": took})
        else:
            head = {"open": gt("DOWN"), "update": gt("UPDATE"), "reminder": gt("STILL DOWN")}[kind]
            subject = (f"{head}: {first['name']}" if one else
                       f"{head}: " + ngt("%(count)d clinic cut off", "%(count)d clinics cut off", lost)
                       % {"count": lost})
        lines = []
        if kind == "recovery":
            if one:
                lines.append(gt("%(clinic)s is connected again since %(until)s.") % {
                    "clinic": label, "until": self.when(doc["ended"])})
            else:
                lines.append(ngt("%(count)d clinic is connected again since %(until)s:",
                                 "%(count)d clinics are connected again since %(until)s:", lost)
                             % {"count": lost, "until": self.when(doc["ended"])})
            lines.append(gt("Cut off from %(since)s to %(until)s (%(duration)s).") % {
                "since": self.when(doc["began"]), "until": self.when(doc["ended"]),
                "duration": duration((doc["ended"] - doc["began"]) / 1000)})
        else:
            if one:
                lines.append(gt("%(clinic)s cannot reach the network since %(since)s.") % {
                    "clinic": label, "since": self.when(first["since"])})
            else:
                lines.append(ngt("%(count)d clinic cannot reach the network:",
                                 "%(count)d clinics cannot reach the network:", lost) % {"count": lost})
        lines.append(gt("Affected: the clinic's internet connection (shared records, telemedicine, email)."))
        lines.append(gt("Likely cause: %(cause)s.") % {"cause": cause})
        listed = [] if one else (back if kind == "recovery" else down)[:30]
        for clinic in listed:
            where = f" ({clinic['region']})" if clinic["region"] else ""
            lines.append(f"- {clinic['name']}{where}: " + gt("since %(since)s") % {
                "since": self.when(clinic["since"])})
        evidence = [e for clinic in down[:3] for e in clinic.get("evidence", [])[:2]]
        if evidence and kind != "recovery":
            lines.append(gt("Evidence:"))
            lines += [f"- {e}" for e in evidence]
        if doc.get("others"):
            lines.append(ngt("The same incident affects %(count)d other clinic.",
                             "The same incident affects %(count)d other clinics.", doc["others"])
                         % {"count": doc["others"]})
        if doc.get("url"):
            lines.append(gt("Details: %(url)s") % {"url": doc["url"]})
        text = "\n".join(lines)
        # HTML: the same lines in order (runs of "- " lines as lists), each clinic's name a link to its
        # page on the status page, the details a link. The first "- " lines are `listed`'s clinics.
        parts, run, dash = [], [], 0
        for line in [*lines, ""]:
            if line.startswith("- "):
                clinic = listed[dash] if dash < len(listed) else None
                dash += 1
                run.append(_linked(line[2:], clinic["name"], clinic.get("url")) if clinic else html.escape(line[2:]))
                continue
            if run:
                parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in run) + "</ul>")
                run = []
            if not line:
                continue
            if doc.get("url") and doc["url"] in line:
                parts.append(f"<p>{_linked(line, doc['url'], doc['url'])}</p>")
            elif one:
                parts.append(f"<p>{_linked(line, label, first.get('url'))}</p>")
            else:
                parts.append(f"<p>{html.escape(line)}</p>")
        body = "".join(parts)
        page = (f'<!DOCTYPE html><html lang="{self.lang}"><head><meta charset="utf-8"><title>{html.escape(subject)}'
                f"</title></head><body><h2>{html.escape(subject)}</h2>{body}</body></html>")
        return Message(key=key, subject=subject, text=text, html=page, sms=self.sms(doc, cause), lang=self.lang,
                       doc=doc)

    def sms(self, doc: dict[str, Any], cause: str) -> str:
        gt, ngt = self.t.gettext, self.t.ngettext
        kind, down, back = doc["kind"], doc["down"], doc["back"]
        clinics = back if kind == "recovery" else down
        count = len(clinics)
        if kind == "recovery":
            took = duration((doc["ended"] - doc["began"]) / 1000)
            what = gt("BACK after %(duration)s") % {"duration": took}
        else:
            what = {"open": gt("DOWN"), "update": gt("UPDATE"), "reminder": gt("STILL DOWN")}[kind]
            what += " " + gt("since %(since)s") % {"since": self.when(doc["began"], "HH:mm")}
        tail = "" if kind == "recovery" else " " + gt("Cause: %(cause)s.") % {"cause": cause}
        tail += f" {doc['url']}" if doc.get("url") else ""

        def text(name: str) -> str:
            who = name if count == 1 else ngt("%(count)d clinic", "%(count)d clinics", count) % {"count": count} + (
                f" ({name})" if name else "")
            return to_gsm(f"ClinicWatch: {who}: {what}.{tail}")

        name = clinics[0]["name"] if count == 1 else (doc.get("scope_name") or "")
        full = text(name)
        if septets(full) <= SMS_LIMIT:
            return full
        keep = max(0, len(name) - (septets(full) - SMS_LIMIT) - 1)
        shortened = text(name[:keep].rstrip() + "…" if keep else "")
        return shortened if septets(shortened) <= SMS_LIMIT else shortened[:SMS_LIMIT]

    def test_message(self, key: str, channel: str, contact: str) -> Message:
        """What `clinicwatch-collector alerts test` sends through one channel."""
        gt = self.t.gettext
        subject = gt("ClinicWatch test message")
        text = gt("A test of this alert channel (%(channel)s) for %(contact)s. No clinic is affected.") % {
            "channel": channel, "contact": contact}
        page = (f'<!DOCTYPE html><html lang="{self.lang}"><head><meta charset="utf-8"><title>{html.escape(subject)}'
                f"</title></head><body><h2>{html.escape(subject)}</h2><p>{html.escape(text)}</p></body></html>")
        sms = to_gsm(f"ClinicWatch: {text}")[:SMS_LIMIT]
        return Message(key=key, subject=subject, text=text, html=page, sms=sms, lang=self.lang,
                       doc={"kind": "test", "contact": contact})
