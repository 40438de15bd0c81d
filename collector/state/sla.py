"""Availability over a period, per clinic and per region or ISP (plain arithmetic on UTC ms).

The method (docs/collector.md, Availability):
- maintenance: time the clinic was in `maintenance`; left out of everything.
- down: the union of the clinic's outage records (their corrected intervals) outside maintenance.
- unknown: time the clinic was `unknown` (before it was first heard from, or never) and time the
  collector could not see (it was stopped or heard from no ingest process), outside maintenance
  and outside outages; shown apart, never counted as up.
- monitored = period - maintenance - unknown; availability = (monitored - down) / monitored.
  `degraded` counts as available: the clinic could work, slowly.
- worst case: unknown counted as down, (monitored - down) / (monitored + unknown).
A region's or ISP's figures are sums over its clinics (time-weighted, not a mean of percentages).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Interval = tuple[int, int]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def clip(intervals: Iterable[Interval], start: int, end: int) -> list[Interval]:
    return [(max(a, start), min(b, end)) for a, b in intervals if b > start and a < end]


def minus(intervals: Iterable[Interval], cut: Iterable[Interval]) -> list[Interval]:
    out = []
    cuts = union(cut)
    for a, b in union(intervals):
        pieces = [(a, b)]
        for c, d in cuts:
            pieces = [p for x, y in pieces for p in ((x, min(y, c)), (max(x, d), y)) if p[1] > p[0]]
        out += pieces
    return out


def total(intervals: Iterable[Interval]) -> int:
    return sum(b - a for a, b in union(intervals))


def state_intervals(transitions: list[tuple[int, str]], state: str, start: int, end: int,
                    initial: str) -> list[Interval]:
    """When the clinic was in `state` within [start, end), from its (time, new state) changes in order,
    `initial` being its state at `start`."""
    out, current, since = [], initial, start
    for at, new in transitions:
        at = min(max(at, start), end)
        if current == state and at > since:
            out.append((since, at))
        current, since = new, max(since, at)
    if current == state and end > since:
        out.append((since, end))
    return out


@dataclass
class Availability:
    key: str
    period_ms: int
    monitored_ms: int
    down_ms: int
    unknown_ms: int
    maintenance_ms: int
    outages: int

    @property
    def availability(self) -> float | None:
        return (self.monitored_ms - self.down_ms) / self.monitored_ms if self.monitored_ms else None

    @property
    def worst_case(self) -> float | None:
        seen = self.monitored_ms + self.unknown_ms
        return (self.monitored_ms - self.down_ms) / seen if seen else None

    def __add__(self, other: "Availability") -> "Availability":
        return Availability(self.key, self.period_ms + other.period_ms, self.monitored_ms + other.monitored_ms,
                            self.down_ms + other.down_ms, self.unknown_ms + other.unknown_ms,
                            self.maintenance_ms + other.maintenance_ms, self.outages + other.outages)


def clinic_availability(key: str, start: int, end: int, outages: list[Interval], unknown: list[Interval],
                        maintenance: list[Interval]) -> Availability:
    maintenance = union(clip(maintenance, start, end))
    down = minus(clip(outages, start, end), maintenance)
    unknown = minus(minus(clip(unknown, start, end), maintenance), down)
    period = end - start
    monitored = period - total(maintenance) - total(unknown)
    counted = [o for o in clip(outages, start, end) if minus([o], maintenance)]
    return Availability(key, period, monitored, total(down), total(unknown), total(maintenance), len(counted))
