"""The status page: which clinics are cut off, since when and why, for people who do not use Grafana.

    GET /                      the fleet: counts by state, a map, the clinics with a problem, open
                               incidents, a table per region (?region=R: that region's clinics)
    GET /clinics/<id>          one clinic: state, cause, last heard, 30 days of availability, outages
    GET /incidents/<id>        one incident: its clinics, cause, scope, duration (alert messages link here)

Plain HTML with its style inline and the map drawn as SVG from the registry's coordinates: no script,
no font, no tile server, nothing fetched from elsewhere (the Content-Security-Policy says so to the
browser); it reloads itself every minute (a wall screen stays current). Read-only. In the viewer's
language (en, es, ca, it, pt): `?lang=` (the switch at the top, remembered in a cookie), else the
browser's Accept-Language, else English; texts are gettext catalogs
(collector/locale/<lang>/LC_MESSAGES/statuspage.po) read with Babel, dates by Babel's CLDR data.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import time
import urllib.parse
from typing import Any
from zoneinfo import ZoneInfo

from babel.core import negotiate_locale
from babel.dates import format_datetime

from collector.alerts.texts import CAUSES, LANGS, LOCALES, duration, translations
from collector.state.report import availability_per_period

DAY_MS = 86_400_000
ORDER = ("down", "degraded", "unknown", "maintenance", "up")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'"


def _(text: str) -> str:
    """Marks a text for extraction; translated where it is used."""
    return text


STATES = {"up": _("up"), "degraded": _("degraded"), "down": _("down"), "unknown": _("unknown"),
          "maintenance": _("maintenance")}
# Every text the page shows, marked for extraction here: calls inside f-strings are hidden from
# extractors (tests/test_status_page.py checks that every text given to self.t is in this list).
TEXTS = (
    _("Not found"), _("There is no such page."), _("There is no such clinic."), _("There is no such incident."),
    _("Updated"), _("read-only view of ClinicWatch"), _("Clinics now"), _("Open incidents"),
    _("Clinics with a problem"), _("Regions"), _("Region"), _("Clinic"), _("State"), _("Cause"), _("For"),
    _("Since"), _("Last heard"), _("Internet provider"), _("Link"), _("Incident"), _("Every clinic is up."),
    _("The collector cannot see the clinics right now: states are as last known."), _("Map of the clinics"),
    _("Clinics not on the map (no coordinates in the registry)"), _("No open incident."), _("Down now"),
    _("Availability, last 30 days"), _("Availability per day"),
    _("Down time counts against availability; maintenance and time without data are left out."),
    _("Outages, last 30 days"), _("No outage in the last 30 days."), _("From"), _("To"), _("Duration"),
    _("Source"), _("still down"), _("recorded by the clinic"), _("seen by the collector"), _("Began"),
    _("Ended"), _("open"), _("Clinics"), _("Shared by the clinics"), _("Down from"), _("Back at"),
)
LANG_NAMES = {"en": "English", "es": "Español", "ca": "Català", "it": "Italiano", "pt": "Português"}


def choose_lang(query: dict[str, str], cookie: str | None, accept: str | None) -> str:
    if query.get("lang") in LANGS:
        return query["lang"]
    for part in (cookie or "").split(";"):
        key, _sep, value = part.strip().partition("=")
        if key == "cw_lang" and value in LANGS:
            return value
    wanted = []
    for item in (accept or "").split(","):
        tag, _sep, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            wanted.append((q, tag.replace("-", "_")))
    preferred = [tag for _q, tag in sorted(wanted, key=lambda w: -w[0])]
    # A region the page has no catalog for (es_MX, pt_BR) takes its language's.
    preferred += [tag.split("_")[0] for tag in preferred]
    found = negotiate_locale(preferred, list(LANGS))
    return found if found in LANGS else "en"


class StatusPage:
    def __init__(self, config: Any, state: Any) -> None:
        self.config, self.state = config, state
        self.tz = ZoneInfo(config.tz)

    # -- the request -------------------------------------------------------------------------------
    def respond(self, parts: list[str], query: dict[str, str], headers: Any) -> tuple[int, str, dict[str, str]]:
        lang = choose_lang(query, headers.get("Cookie"), headers.get("Accept-Language"))
        out_headers = {"Content-Security-Policy": CSP, "Content-Language": lang, "Cache-Control": "no-store",
                       "Vary": "Accept-Language, Cookie", "X-Content-Type-Options": "nosniff",
                       "Referrer-Policy": "same-origin"}
        if query.get("lang") in LANGS:
            out_headers["Set-Cookie"] = f"cw_lang={lang}; Path=/; Max-Age=31536000; SameSite=Lax"
        view = _View(self, lang, len(parts))
        if not parts:
            code, body = 200, view.fleet(query.get("region"))
        elif parts[0] == "clinics" and len(parts) == 2:
            code, body = view.clinic(parts[1])
        elif parts[0] == "incidents" and len(parts) == 2:
            code, body = view.incident(parts[1])
        else:
            code, body = 404, view.layout(view.t("Not found"), f"<p>{view.t('There is no such page.')}</p>")
        return code, body, out_headers


class _View:
    """One page in one language."""

    def __init__(self, page: StatusPage, lang: str, depth: int) -> None:
        self.page, self.lang, self.state = page, lang, page.state
        self.gettext = translations(lang, "statuspage").gettext
        self.root = "../" * (depth - 1) if depth > 1 else "./"
        self.now = time.time_ns() // 1_000_000
        self.names = {c.id: c for c in self.state.registry.clinics}

    def t(self, text: str) -> str:
        return html.escape(self.gettext(text))

    def when(self, ms: int | None) -> str:
        if ms is None:
            return "-"
        moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).astimezone(self.page.tz)
        return html.escape(format_datetime(moment, "d MMM y, HH:mm zzz", locale=LOCALES[self.lang]))

    def since(self, ms: int | None) -> str:
        return duration((self.now - ms) / 1000) if ms is not None else "-"

    def state_label(self, state: str) -> str:
        return (f'<span class="st st-{html.escape(state)}">{self.t(STATES.get(state, state))}</span>')

    def cause(self, cause: str | None) -> str:
        # The causes' names are the alert messages' (the clinicwatch catalog): one wording everywhere.
        return html.escape(translations(self.lang).gettext(CAUSES[cause])) if cause in CAUSES else "-"

    def name(self, clinic: str) -> str:
        known = self.names.get(clinic)
        return html.escape(known.name if known else clinic)

    def clinic_link(self, clinic: str) -> str:
        return f'<a href="{self.root}clinics/{urllib.parse.quote(clinic)}">{self.name(clinic)}</a>'

    # -- pages -------------------------------------------------------------------------------------
    def layout(self, title: str, body: str) -> str:
        switch = " · ".join(
            f'<a href="?lang={code}" hreflang="{code}" lang="{code}"'
            + (' aria-current="true"' if code == self.lang else "") + f">{LANG_NAMES[code]}</a>"
            for code in LANGS)
        heading = html.escape(self.page_title())
        return f"""<!doctype html>
<html lang="{self.lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="60">
<title>{title} · {heading}</title>
<style>{STYLE}</style>
</head>
<body>
<header><a class="home" href="{self.root}">{heading}</a><nav class="langs">{switch}</nav></header>
<main>
<h1>{title}</h1>
{body}
</main>
<footer>{self.t("Updated")} {self.when(self.now)} · {self.t("read-only view of ClinicWatch")}</footer>
</body>
</html>
"""

    @staticmethod
    def table(heads: list[str], rows: str) -> str:
        """A table under its (translated) column heads, in a box that scrolls sideways on a narrow screen."""
        head = "".join(f"<th>{h}</th>" for h in heads)
        return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'

    @staticmethod
    def facts(pairs: list[tuple[str, str]]) -> str:
        """A two-column table of (translated) names and values."""
        rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in pairs)
        return f'<div class="scroll"><table class="facts">{rows}</table></div>'

    def page_title(self) -> str:
        return str(self.page.config.title)

    def fleet(self, region: str | None) -> str:
        clinics = self.state.clinics()
        counts = {s: 0 for s in ORDER}
        for c in clinics:
            counts[c["state"]] = counts.get(c["state"], 0) + 1
        tiles = "".join(f'<div class="tile t-{s}"><b>{counts[s]}</b><span>{self.t(STATES[s])}</span></div>'
                        for s in ORDER)
        blind = any(c.get("blind") for c in clinics)
        blind_text = self.t("The collector cannot see the clinics right now: states are as last known.")
        warning = f'<p class="warn">{blind_text}</p>' if blind else ""
        problems = sorted((c for c in clinics if c["state"] != "up"),
                          key=lambda c: (ORDER.index(c["state"]) if c["state"] in ORDER else 9, c["since"] or 0))
        rows = "".join(
            f"<tr><td>{self.clinic_link(c['clinic'])}</td><td>{self.state_label(c['state'])}</td>"
            f"<td>{self.cause(c['cause']) if c['state'] == 'down' else self.t(STATES.get(c['state'], ''))}</td>"
            f"<td>{self.since(c['since'])}</td><td>{html.escape(c['region'])}</td></tr>"
            for c in problems)
        problem_table = (self.table([self.t("Clinic"), self.t("State"), self.t("Cause"), self.t("For"),
                                     self.t("Region")], rows) if problems
                         else f'<p>{self.t("Every clinic is up.")}</p>')
        body = [f'<section class="tiles">{tiles}</section>', warning, self.map(clinics),
                f'<h2>{self.t("Open incidents")}</h2>', self.incident_list(),
                f'<h2>{self.t("Clinics with a problem")}</h2>', problem_table,
                f'<h2>{self.t("Regions")}</h2>', self.regions(clinics)]
        if region is not None:
            mine = sorted((c for c in clinics if c["region"] == region), key=lambda c: self.name(c["clinic"]))
            listing = "".join(f"<tr><td>{self.clinic_link(c['clinic'])}</td><td>{self.state_label(c['state'])}</td>"
                              f"<td>{self.since(c['since'])}</td></tr>" for c in mine)
            body += [f'<h2 id="region">{html.escape(region)}</h2>',
                     self.table([self.t("Clinic"), self.t("State"), self.t("For")], listing)]
        return self.layout(self.t("Clinics now"), "\n".join(body))

    def regions(self, clinics: list[dict[str, Any]]) -> str:
        groups: dict[str, dict[str, int]] = {}
        for c in clinics:
            group = groups.setdefault(c["region"], {s: 0 for s in ORDER})
            group[c["state"]] = group.get(c["state"], 0) + 1
        rows = "".join(
            f'<tr><td><a href="?region={urllib.parse.quote(r)}#region">{html.escape(r or "-")}</a></td>'
            + "".join(f"<td>{g[s]}</td>" for s in ORDER) + "</tr>" for r, g in sorted(groups.items()))
        return self.table([self.t("Region"), *(self.t(STATES[s]) for s in ORDER)], rows)

    def map(self, clinics: list[dict[str, Any]]) -> str:
        """The clinics as dots on their coordinates (equirectangular, scaled for the latitude): no tiles."""
        placed = [(c, self.names[c["clinic"]]) for c in clinics
                  if c["clinic"] in self.names and self.names[c["clinic"]].lat is not None
                  and self.names[c["clinic"]].lon is not None]
        missing = len(clinics) - len(placed)
        note = (f'<p class="note">{self.t("Clinics not on the map (no coordinates in the registry)")}: {missing}</p>'
                if missing else "")
        if not placed:
            return note
        lats = [p.lat for _, p in placed]
        lons = [p.lon for _, p in placed]
        squeeze = math.cos(math.radians((max(lats) + min(lats)) / 2))
        span_x = max((max(lons) - min(lons)) * squeeze, 0.05)
        span_y = max(max(lats) - min(lats), 0.05)
        width = 1000.0
        height = max(200.0, min(1000.0, width * span_y / span_x))
        scale = min((width - 40) / span_x, (height - 40) / span_y)
        west, north = min(lons), max(lats)

        def xy(lat: float, lon: float) -> tuple[float, float]:
            return 20 + (lon - west) * squeeze * scale, 20 + (north - lat) * scale

        # A degree grid with its figures, for a sense of place without any tile or outline.
        grid = []
        step = 1 if span_y <= 12 else 5
        for lat in range(math.ceil(min(lats) / step) * step, math.floor(max(lats)) + 1, step):
            _x, y = xy(lat, min(lons))
            grid.append(f'<line x1="0" x2="{width:.0f}" y1="{y:.1f}" y2="{y:.1f}"/>'
                        f'<text x="4" y="{y - 4:.1f}">{abs(lat)}°{"N" if lat >= 0 else "S"}</text>')
        for lon in range(math.ceil(min(lons) / step) * step, math.floor(max(lons)) + 1, step):
            x, _y = xy(max(lats), lon)
            grid.append(f'<line y1="0" y2="{height:.0f}" x1="{x:.1f}" x2="{x:.1f}"/>'
                        f'<text x="{x + 4:.1f}" y="{height - 6:.0f}">{abs(lon)}°{"E" if lon >= 0 else "W"}</text>')
        problems = sum(1 for c, _p in placed if c["state"] != "up")
        dots = []
        # Up first, problems last: a red dot is never hidden under a green one.
        for c, place in sorted(placed, key=lambda cp: -ORDER.index(cp[0]["state"]) if cp[0]["state"] in ORDER else 0):
            x, y = xy(place.lat, place.lon)
            label = f"{place.name}: {self.gettext(STATES.get(c['state'], c['state']))}"
            named = (f'<text class="name" x="{x + 14:.1f}" y="{y + 5:.1f}">{html.escape(place.name)}</text>'
                     if c["state"] != "up" and problems <= 25 else "")
            dots.append(f'<a href="{self.root}clinics/{urllib.parse.quote(c["clinic"])}"><circle cx="{x:.1f}" '
                        f'cy="{y:.1f}" r="{11 if c["state"] != "up" else 8}" class="dot d-{c["state"]}">'
                        f'<title>{html.escape(label)}</title></circle>{named}</a>')
        legend = "".join(f'<span><i class="d-{s}"></i>{self.t(STATES[s])}</span>' for s in ORDER)
        return (f'<figure class="map"><svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
                f'aria-label="{self.t("Map of the clinics")}"><g class="grid">{"".join(grid)}</g>{"".join(dots)}</svg>'
                f'<figcaption>{legend}</figcaption></figure>{note}')

    def incident_list(self) -> str:
        incidents = self.state.db.incidents(open_only=True)
        if not incidents:
            return f'<p>{self.t("No open incident.")}</p>'
        items = []
        for inc in sorted(incidents, key=lambda i: -i["opened"]):
            now_down = [m["clinic"] for m in inc["members"] if m["left"] is None]
            items.append(
                f'<li><a href="{self.root}incidents/{urllib.parse.quote(inc["id"])}">'
                f'<b>{self.cause(inc["cause"])}</b></a>'
                f' · {self.t("Down now")}: {len(now_down)} · {self.t("For")}: {self.since(inc["opened"])}'
                f'<br><small>{", ".join(self.name(c) for c in now_down[:8])}{" …" if len(now_down) > 8 else ""}'
                f'</small></li>')
        return f'<ul class="incidents">{"".join(items)}</ul>'

    def clinic(self, clinic: str) -> tuple[int, str]:
        c = self.state.clinic(clinic)
        if c is None:
            return 404, self.layout(self.t("Not found"), f"<p>{self.t('There is no such clinic.')}</p>")
        known = self.names.get(clinic)
        facts = [(self.t("State"), self.state_label(c["state"])), (self.t("For"), self.since(c["since"])),
                 (self.t("Since"), self.when(c["since"])), (self.t("Last heard"), self.when(c["last_heard"])),
                 (self.t("Region"), html.escape(c["region"] or "-")), (self.t("Internet provider"),
                                                                         html.escape(c["isp"] or "-")),
                 (self.t("Link"), html.escape(c["link"]))]
        if c["state"] == "down":
            facts.insert(1, (self.t("Cause"), self.cause(c["cause"])))
        if c.get("incident"):
            facts.append((self.t("Incident"), f'<a href="{self.root}incidents/{urllib.parse.quote(c["incident"])}">'
                                              f'{html.escape(c["incident"])}</a>'))
        db = self.state.db
        blind = db.blind(self.now - 30 * DAY_MS, self.now)
        today = self.now - self.now % DAY_MS
        periods = [(start, min(start + DAY_MS, self.now)) for start in range(today - 29 * DAY_MS, today + 1, DAY_MS)]
        *daily, whole = availability_per_period(db, clinic, [*periods, (today - 29 * DAY_MS, self.now)], blind)
        month = whole.availability
        bars = "".join(self.day_bar(start, figures.availability) for (start, _), figures in zip(periods, daily))
        outages = db.outages(clinic=clinic, since=self.now - 30 * DAY_MS)
        outage_rows = "".join(
            f"<tr><td>{self.when(o['start'])}</td><td>{self.when(o['end']) if o['end'] else self.t('still down')}</td>"
            f"<td>{duration(((o['end'] or self.now) - o['start']) / 1000)}</td><td>{self.cause(o['cause'])}</td>"
            f"<td>{self.t('recorded by the clinic' if o['source'] == 'agent' else 'seen by the collector')}</td></tr>"
            for o in reversed(outages))
        outage_table = (self.table([self.t("From"), self.t("To"), self.t("Duration"), self.t("Cause"),
                                    self.t("Source")], outage_rows) if outages
                        else f'<p>{self.t("No outage in the last 30 days.")}</p>')
        figure = self.percent(month)
        method = self.t("Down time counts against availability; maintenance and time without data are left out.")
        body = (self.facts(facts) +
                f'<h2>{self.t("Availability, last 30 days")}: {figure}</h2>'
                f'<div class="bars" role="img" aria-label="{self.t("Availability per day")}">{bars}</div>'
                f'<p class="note">{method}</p>'
                f'<h2>{self.t("Outages, last 30 days")}</h2>{outage_table}')
        return 200, self.layout(html.escape(known.name if known else clinic), body)

    def percent(self, share: float | None) -> str:
        return "-" if share is None else f"{share * 100:.2f} %"

    def day_bar(self, start: int, share: float | None) -> str:
        if share is None:
            cls = "none"
        elif share >= 0.999:
            cls = "full"
        elif share >= 0.95:
            cls = "some"
        else:
            cls = "bad"
        day = dt.datetime.fromtimestamp(start / 1000, dt.UTC).date().isoformat()
        return f'<span class="bar b-{cls}" title="{day}: {self.percent(share)}"></span>'

    def incident(self, incident: str) -> tuple[int, str]:
        inc = self.state.db.incident(incident)
        if inc is None:
            return 404, self.layout(self.t("Not found"), f"<p>{self.t('There is no such incident.')}</p>")
        facts = [(self.t("Cause"), self.cause(inc["cause"])), (self.t("Began"), self.when(inc["opened"])),
                 (self.t("Ended") if inc["closed"] else self.t("State"),
                  self.when(inc["closed"]) if inc["closed"] else self.t("open")),
                 (self.t("Duration"), duration(((inc["closed"] or self.now) - inc["opened"]) / 1000)),
                 (self.t("Clinics"), str(len({m["clinic"] for m in inc["members"]}))),
                 (self.t("Shared by the clinics"), html.escape(inc["scope"] or "-"))]
        rows = "".join(
            f"<tr><td>{self.clinic_link(m['clinic'])}</td><td>{self.when(m['joined'])}</td>"
            f"<td>{self.when(m['left']) if m['left'] else self.t('still down')}</td></tr>"
            for m in inc["members"])
        title = f'{self.t("Incident")}: {self.cause(inc["cause"])}'
        body = (self.facts(facts) + f'<h2>{self.t("Clinics")}</h2>'
                + self.table([self.t("Clinic"), self.t("Down from"), self.t("Back at")], rows))
        return 200, self.layout(title, body)


STYLE = """
*{box-sizing:border-box}body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1b1b1b;background:#f6f7f9}header{display:flex;flex-wrap:wrap;gap:.5rem;justify-content:space-between;
align-items:center;padding:.6rem 1rem;background:#263238;color:#fff}header a{color:#fff}.home{font-weight:600;
text-decoration:none}.langs{font-size:.9rem}.langs a[aria-current]{font-weight:700;text-decoration:none}
main{max-width:72rem;margin:0 auto;padding:1rem}h1{font-size:1.5rem;margin:.3rem 0 1rem}h2{font-size:1.15rem;
margin:1.6rem 0 .6rem}.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(8rem,1fr));gap:.5rem}
.tile{padding:.6rem .8rem;border-radius:.4rem;color:#fff}.tile b{display:block;font-size:1.8rem}
.t-up{background:#2e7d32}.t-degraded{background:#ef6c00}.t-down{background:#c62828}
.t-unknown{background:#6a1b9a}.t-maintenance{background:#1565c0}
.scroll{overflow-x:auto}table{width:100%;border-collapse:collapse;background:#fff;font-size:.95rem}th,td{text-align:left;
padding:.4rem .5rem;border-bottom:1px solid #e2e5e9;vertical-align:top}thead th{background:#eceff1}
table.facts th{width:12rem;font-weight:600}.st{font-weight:600}.st-up{color:#2e7d32}.st-degraded{color:#ef6c00}
.st-down{color:#c62828}.st-unknown{color:#6a1b9a}.st-maintenance{color:#1565c0}
.map{margin:1rem 0;background:#fff;border:1px solid #e2e5e9;border-radius:.4rem;padding:.5rem}
.map svg{width:100%;height:auto;max-height:65vh;display:block}.dot{stroke:#fff;stroke-width:2}
.grid line{stroke:#e3e7eb;stroke-width:1}.grid text,.name{font-size:20px;fill:#78909c}.name{fill:#263238}
.d-up{fill:#2e7d32;background:#2e7d32}.d-degraded{fill:#ef6c00;background:#ef6c00}.d-down{fill:#c62828;
background:#c62828}.d-unknown{fill:#6a1b9a;background:#6a1b9a}.d-maintenance{fill:#1565c0;background:#1565c0}
figcaption{display:flex;flex-wrap:wrap;gap:.8rem;font-size:.85rem}figcaption i{display:inline-block;width:.8rem;
height:.8rem;border-radius:50%;margin-right:.3rem;vertical-align:-.1rem}
.incidents{padding-left:1.2rem}.incidents li{margin-bottom:.5rem}.warn{background:#fff3e0;border-left:4px solid
#ef6c00;padding:.5rem .8rem}.note{color:#555;font-size:.9rem}
.bars{display:flex;gap:2px;height:2.5rem;align-items:stretch}.bar{flex:1;border-radius:2px}.b-full{background:#2e7d32}
.b-some{background:#9ccc65}.b-bad{background:#c62828}.b-none{background:#cfd8dc}
footer{max-width:72rem;margin:0 auto;padding:1rem;color:#666;font-size:.85rem}
@media (max-width:40rem){table{font-size:.85rem}th,td{padding:.3rem}table.facts th{width:auto}
h1{font-size:1.25rem}}
"""
