"""What the state engine learns from a message: small facts, built by ingest from each valid message.

Ingest decodes every message anyway; it hands the state engine only what clinic state needs (a few
dozen bytes per message), so the engine never decodes telemetry again. Facts travel as lists
(`to_row` / `from_row`) in digests (collector/state/digest.py).

Times are UTC ms. `at` is when the broker received the message (the intake's receipt less the
broker's hold, so a backlog drained after a collector restart keeps its real times); `t` is a
record's effective time (wire contract, Time).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import wire

PROBE_KINDS = frozenset({"icmp", "tcp", "dns", "http"})
_NUMBERS = (int, float)  # exact types: a bool is not a number here


class Heard(NamedTuple):
    """A valid message of any kind arrived from the clinic's agent."""
    clinic: str
    at: int
    boot: str
    # The agent's box has been up since (at - mono_now): its monotonic clock counts from the box's boot.
    mono_now: int | None = None


class Report(NamedTuple):
    """A telemetry message: the clinic was heard, with the message's probe results, one fact for the
    message (a fact per probe result cost the engine more than the judging, bench.state_engine).
    `probes`: (t, m, target, success, reason, loss_pct, rtt_ms, jitter_ms) each, as in ProbeSeen;
    `expand` gives the Heard and ProbeSeen facts it stands for."""
    clinic: str
    at: int
    boot: str
    mono_now: int | None
    probes: list[Any]


class StatusSeen(NamedTuple):
    clinic: str
    at: int
    state: str  # online | offline
    boot: str
    reason: str | None  # offline: "lost" (the Last Will), "shutdown" (clean stop), ...
    quiet_s: int | None = None  # online: the agent's longest quiet spell, its `quiet_max_s`


class ProbeSeen(NamedTuple):
    clinic: str
    t: int
    at: int
    m: str
    target: str
    success: bool
    reason: str | None = None
    loss_pct: float | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None


class EventSeen(NamedTuple):
    clinic: str
    t: int
    at: int
    kind: str
    boot: str
    seq: int
    detail: dict[str, Any] = {}  # read only, never changed in place
    # For `outage`: the agent's own times for the cut it lived through (UTC ms).
    down_ms: int | None = None
    up_ms: int | None = None


class RouteSeen(NamedTuple):
    """A traceroute towards a central target: hop addresses joined by >, * for a silent hop."""
    clinic: str
    t: int
    at: int
    target: str
    path: str


Fact = Heard | Report | StatusSeen | ProbeSeen | EventSeen | RouteSeen
_KINDS: dict[str, Any] = {"h": Heard, "m": Report, "s": StatusSeen, "p": ProbeSeen, "e": EventSeen, "r": RouteSeen}
_CODES = {cls: code for code, cls in _KINDS.items()}


def to_row(fact: Fact) -> list[Any]:
    return [_CODES[type(fact)], *fact]


def from_row(row: list[Any]) -> Fact:
    return _KINDS[row[0]](*row[1:])  # type: ignore[no-any-return]


def expand(report: Report) -> list[Fact]:
    """The facts a report stands for, in the order they are applied one by one."""
    clinic, at = report.clinic, report.at
    return [Heard(clinic, at, report.boot, report.mono_now),
            *(ProbeSeen(clinic, p[0], at, *p[1:]) for p in report.probes)]


def facts_of(message: wire.Message, at_ms: int, sent_ms: int) -> list[Fact]:
    """The facts in one valid message. `sent_ms` places unsynchronised records (collector.ingest.agentclock)."""
    if isinstance(message, wire.Status):
        return [StatusSeen(message.clinic, at_ms, message.state, message.boot, message.reason, message.quiet_max_s)]
    if isinstance(message, wire.Telemetry):
        probes: list[Any] = []
        routes: list[Fact] = []
        mono_now = message.mono_now
        for sample in message.samples:
            m, tags = sample.m, sample.tags
            if m not in PROBE_KINDS or "target" not in tags:
                if m == "traceroute" and isinstance(sample.f.get("path"), str) and "target" in tags:
                    routes.append(RouteSeen(message.clinic, wire.effective_time(sample, mono_now, sent_ms),
                                            at_ms, tags["target"], sample.f["path"]))  # type: ignore[arg-type]
                continue
            f = sample.f
            success = f.get("success")
            if success is not True and success is not False:
                continue
            # Exact types inline: this runs for every probe result of the fleet.
            t = wire.effective_time(sample, mono_now, sent_ms)
            reason, loss, rtt, jitter = f.get("reason"), f.get("loss_pct"), f.get("rtt_avg_ms"), f.get("jitter_ms")
            probes.append((t, m, tags["target"], success, reason if type(reason) is str else None,
                           float(loss) if type(loss) in _NUMBERS else None,
                           float(rtt) if type(rtt) in _NUMBERS else None,
                           float(jitter) if type(jitter) in _NUMBERS else None))
        return [Report(message.clinic, at_ms, message.boot, mono_now, probes), *routes]
    if isinstance(message, wire.Events):
        facts = [Heard(message.clinic, at_ms, message.boot, message.mono_now)]
        for event in message.events:
            when = wire.effective_time(event, message.mono_now, sent_ms)
            down_ms = up_ms = None
            if event.kind == "outage":
                down_ms, up_ms = _outage_times(event, when)
            facts.append(EventSeen(message.clinic, when, at_ms, event.kind, message.boot, event.seq,
                                   dict(event.detail), down_ms, up_ms))
        return facts
    return []


def _outage_times(event: wire.schema.Event, when: int) -> tuple[int | None, int | None]:
    """The agent's outage record (agent/runtime.py): monotonic times of the cut when the box did not
    restart during it, else the wall time it began."""
    d = event.detail
    up_mono, down_mono = d.get("up_mono"), d.get("down_mono")
    if not isinstance(up_mono, int) or isinstance(up_mono, bool):
        return None, None
    up_ms = when - (event.mono - up_mono)
    if isinstance(down_mono, int) and not isinstance(down_mono, bool) and down_mono >= 0:
        return when - (event.mono - down_mono), up_ms
    down_t = d.get("down_t")
    if isinstance(down_t, int) and not isinstance(down_t, bool) and down_t <= up_ms:
        return down_t, up_ms
    return None, up_ms
