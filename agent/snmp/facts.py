"""SNMP facts sent on change: the fields that describe a device rather than measure it (an interface's
speed, its administrative and operational status, a disk's size, the number of CPUs, a UPS's power
source and battery status, the poll's status...) go into the outbox when they change, and all of them
again every `refresh_s` (an hour), not at every poll.

Lossless: a reader has every fact's value as of its last point, at most an hour old, and every change
at the poll that saw it (an interface going down is also an `interface_down` event). A sample left
with no field is not sent. A fact the device stops giving, or a row (an interface, a disk) or section
missing from a poll, is sent again when it is back. `snmp-once` shows every field; only the running agent sends on change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

FACTS = {
    "snmp_device": frozenset({"status", "reachable", "requests", "detail"}),
    "snmp_system": frozenset({"name"}),
    "snmp_if": frozenset({"speed_bps", "admin_up", "oper_up", "oper_status", "counter_bits"}),
    "snmp_host": frozenset({"cpus", "mem_total_bytes"}),
    "snmp_storage": frozenset({"size_bytes"}),
    "snmp_ups": frozenset({"on_battery", "output_source", "battery_status", "alarms"}),
}
REFRESH_S = 3600.0

Sample = tuple[str, dict[str, str], dict[str, Any]]


class FactsOnChange:
    """One device's facts as last sent; `__call__` drops from a poll's samples the facts that did not change."""

    def __init__(self, refresh_s: float = REFRESH_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s, self.clock = refresh_s, clock
        self.sent: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
        self.refreshed_at: float | None = None

    def __call__(self, samples: Iterable[Sample]) -> list[Sample]:
        now = self.clock()
        if self.refreshed_at is None or now - self.refreshed_at >= self.refresh_s:
            self.sent.clear()  # everything goes out again
            self.refreshed_at = now
        out, seen = [], set()
        for measurement, tags, fields in samples:
            facts = FACTS.get(measurement)
            if facts:
                key = (measurement, tuple(sorted(tags.items())))
                seen.add(key)
                last = self.sent.setdefault(key, {})
                for gone in [k for k in last if k not in fields]:  # no longer given: sent again when it returns
                    del last[gone]
                kept = {}
                for key, value in fields.items():
                    if key in facts:
                        if key in last and last[key] == value and type(last[key]) is type(value):
                            continue
                        last[key] = value
                    kept[key] = value
                fields = kept
                if not fields:
                    continue
            out.append((measurement, tags, fields))
        for key in [k for k in self.sent if k not in seen]:  # a row or section not in this poll: sent anew when back
            del self.sent[key]
        return out


def facts_only(samples: Iterable[Sample]) -> list[Sample]:
    """A poll's facts without its measurements (a poll between two reports: agent/snmp/config.py,
    `report_interval_s`); a sample with no fact left is dropped."""
    out = []
    for measurement, tags, fields in samples:
        facts = FACTS.get(measurement, frozenset())
        kept = {k: v for k, v in fields.items() if k in facts}
        if kept:
            out.append((measurement, tags, kept))
    return out
