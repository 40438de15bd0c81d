"""`clinicwatch-collector report --month YYYY-MM`: availability per clinic, region and ISP for one month
(UTC), from the state engine's records (collector.state.db), as CSV or a readable HTML page. The method
is collector.state.sla's, written out in docs/collector.md (Availability)."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from dataclasses import dataclass

from collector.registry import Registry
from collector.state.db import StateDB
from collector.state.sla import Availability, clinic_availability, state_intervals

COLUMNS = ["level", "key", "name", "region", "isp", "period_h", "monitored_h", "down_h", "unknown_h",
           "maintenance_h", "outages", "availability_pct", "worst_case_pct"]


def month_bounds(month: str, now_ms: int) -> tuple[int, int]:
    """[first instant, end) of a month in UTC ms; a month still running ends now. ValueError if malformed."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"--month {month!r}: give the month as YYYY-MM, e.g. 2026-11")
    year, number = int(match.group(1)), int(match.group(2))
    start = dt.datetime(year, number, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=dt.UTC)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if start_ms >= now_ms:
        raise ValueError(f"--month {month}: has not begun")
    return start_ms, min(end_ms, now_ms)


@dataclass
class Row:
    level: str  # clinic | region | isp | all
    key: str
    name: str
    region: str
    isp: str
    figures: Availability

    def cells(self) -> list[str]:
        f = self.figures

        def hours(ms: int) -> str:
            return f"{ms / 3_600_000:.2f}"

        def pct(value: float | None) -> str:
            return "" if value is None else f"{value * 100:.3f}"

        return [self.level, self.key, self.name, self.region, self.isp, hours(f.period_ms), hours(f.monitored_ms),
                hours(f.down_ms), hours(f.unknown_ms), hours(f.maintenance_ms), str(f.outages), pct(f.availability),
                pct(f.worst_case)]


def availability_of(db: StateDB, clinic: str, start: int, end: int, blind: list[tuple[int, int]]) -> Availability:
    """One clinic's figures over [start, end) from its recorded changes and outages; `blind`: when the
    collector could not see (db.blind)."""
    return availability_per_period(db, clinic, [(start, end)], blind)[0]


def availability_per_period(db: StateDB, clinic: str, periods: list[tuple[int, int]],
                            blind: list[tuple[int, int]]) -> list[Availability]:
    """The figures of each [start, end) of `periods` (e.g. the days of a month), from one reading of the
    clinic's history: each period's intervals are the whole span's, clipped to it."""
    start, end = min(a for a, _ in periods), max(b for _, b in periods)
    history = db.transitions(clinic=clinic)
    before = [t for t in history if t["at"] < start]
    initial = before[-1]["new"] if before else "unknown"
    changes = [(t["at"], t["new"]) for t in history if t["at"] >= start]
    unknown = state_intervals(changes, "unknown", start, end, initial) + blind
    maintenance = state_intervals(changes, "maintenance", start, end, initial)
    outages = [(o["start"], o["end"] if o["end"] is not None else end)
               for o in db.outages(clinic=clinic, since=start, until=end)]
    return [clinic_availability(clinic, a, b, outages, unknown, maintenance) for a, b in periods]


def build(db: StateDB, registry: Registry, start: int, end: int, region: str | None = None) -> list[Row]:
    clinics = [c for c in registry.clinics if region is None or c.region == region]
    blind = [(a, b) for a, b in db.blind(start, end)]
    rows = [Row("clinic", clinic.id, clinic.name, clinic.region, clinic.isp,
                availability_of(db, clinic.id, start, end, blind)) for clinic in clinics]
    totals: list[Row] = []
    for level in ("region", "isp"):
        groups: dict[str, Availability] = {}
        for row in rows:
            key = getattr(row, level)
            groups[key] = groups[key] + row.figures if key in groups else _copy(row.figures, key)
        for key in sorted(groups):
            totals.append(Row(level, key, "", key if level == "region" else "", key if level == "isp" else "",
                              groups[key]))
    if rows:
        fleet = rows[0].figures
        for row in rows[1:]:
            fleet = fleet + row.figures
        totals.append(Row("all", region or "all", "", region or "", "", _copy(fleet, region or "all")))
    return rows + totals


def _copy(figures: Availability, key: str) -> Availability:
    return Availability(key, figures.period_ms, figures.monitored_ms, figures.down_ms, figures.unknown_ms,
                        figures.maintenance_ms, figures.outages)


def to_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row.cells())
    return out.getvalue()


def to_html(rows: list[Row], month: str, region: str | None) -> str:
    title = f"ClinicWatch availability, {month}" + (f", {region}" if region else "")
    heads = ["", "Clinic / group", "Name", "Region", "ISP", "Hours", "Monitored h", "Down h", "Unknown h",
             "Maintenance h", "Outages", "Availability %", "Worst case %"]
    body = []
    for row in rows:
        cells = row.cells()
        css = "" if row.level == "clinic" else ' class="group"'
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }}
td:nth-child(-n+5), th:nth-child(-n+5) {{ text-align: left; }}
tr.group {{ background: #eef; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Availability = (monitored &minus; down) / monitored. Maintenance is left out; unknown time (clinic not
yet heard from, or the collector unable to see) is shown apart and not counted as up; the worst case counts
it as down. Down time is the union of the clinic's outage records, as corrected by the agents' own records.
Times in UTC.</p>
<table><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in heads)}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
