"""One clinic's state machine: facts in (collector.state.facts), state changes and outage records out.

Plain logic on a scripted clock (every time is a UTC ms the caller gives); no I/O. The rules:

- `down`: the agent's Last Will or a clean shutdown (status `offline`), silence longer than the link's
  `silence_s`, or every central target failing for `down_after_s` (and `down_after_probes` results)
  while the agent still reports. It ends when the agent is heard again (or a central probe succeeds).
- `degraded`: loss, RTT or jitter towards the central targets over the link type's thresholds, judged
  over `quality_window_s`, leaving only below `clear_ratio` of each (hysteresis); or flapping.
- flapping (collector.state.flap): while flapping, cuts shorter than `flap_down_hold_s` do not make
  the clinic `down`: it stays one `degraded` clinic (reason `flapping`).
- `maintenance` while a maintenance window covers the clinic; `unknown` before anything was heard.

Each down interval is an outage record. Its cause is worked out from every piece of evidence about
it, including what arrives after the link is back (the agent's own outage record, its outbox of
probe results taken during the cut, a new boot); a changed cause or interval is a recorded revision.
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field
from typing import Any

from collector.state.facts import EventSeen, Fact, Heard, ProbeSeen, Report, StatusSeen, expand
from collector.state.flap import WINDOW, percent_state_change
from collector.state.outages import Outage
from collector.state.rules import LinkRules, StateRules

UP, DEGRADED, DOWN, UNKNOWN, MAINTENANCE = "up", "degraded", "down", "unknown", "maintenance"
LAN_EVENTS = ("device_reboot", "interface_down")
QUALITY_EVERY_MS = 60_000
KEEP_FACTS_MS = 1_500_000  # probe results kept per clinic: the flap window (21 one-minute slots) and its settling
REVISE_WITHIN_MS = 6 * 3_600_000  # evidence arriving this long after an outage ended may still revise it
MATCH_SLACK_MS = 5_000
QUIET_MARGIN_S = 30  # beyond the agent's own longest quiet spell: delivery through the broker and ingest
# When two marks point at different causes, the first in this order wins.
CAUSE_ORDER = (
    ("shutdown", "agent"), ("on_battery", "power"), ("power_cycled", "power"), ("box_restarted", "power"),
    ("lan_down", "lan_or_device"), ("lan_event", "lan_or_device"), ("agent_running", "wan"),
    ("agent_restarted", "agent"), ("silent_after_probes", "wan"))


@dataclass
class Transition:
    clinic: str
    at: int  # when the new state began, as far as the evidence tells
    detected_at: int  # when the engine decided it
    old: str
    new: str
    cause: str | None = None  # down: power | wan | lan_or_device | agent | unknown
    reason: str | None = None  # degraded: loss | rtt | jitter | flapping
    evidence: list[str] = field(default_factory=list)


def _in_runs(facts: list[tuple[int, bool, float | None, float | None, float | None]], need: int) -> list[bool]:
    """For each probe result: is it part of a run of at least `need` failures in a row?"""
    marks = [False] * len(facts)
    run = 0
    for i, fact in enumerate(facts):
        run = run + 1 if not fact[1] else 0
        if run >= need:
            for k in range(i - run + 1, i + 1):
                marks[k] = True
    return marks


_SUCCESS = operator.itemgetter(1)


def _time(row: tuple[Any, ...]) -> Any:
    return row[0]


def _fmt(ms: int) -> str:
    import datetime as _dt
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClinicMachine:
    quiet_s: int | None = None  # the agent's own word on its longest quiet spell (its birth message)

    def __init__(self, clinic: str, link: LinkRules, rules: StateRules) -> None:
        self.clinic, self.link, self.rules = clinic, link, rules
        self.state, self.since = UNKNOWN, None
        self.cause: str | None = None
        self.reason: str | None = None
        self.first_heard: int | None = None
        self.last_heard: int | None = None
        self.online: bool | None = None
        self.status_at = -1
        self.boot: str | None = None  # of the agent run that last said it was online
        self.offline_at: int | None = None
        self.offline_reason: str | None = None
        self.offline_from = 0
        self.online_since = 0
        self.return_at: int | None = None  # first sign of life after the current down began
        self.on_battery_at: int | None = None
        self.lan_events: list[tuple[int, str]] = []
        self.central: list[tuple[int, bool, float | None, float | None, float | None]] = []
        self.lan: list[tuple[int, bool]] = []
        self.seen_events: dict[str, int] = {}  # boot -> highest event seq applied (events of a boot come in order)
        self.outage: Outage | None = None  # the open one
        self.outages: list[Outage] = []  # closed ones not yet handed out, and the latest closed (for revisions)
        self.latest_closed: Outage | None = None
        self.grace_until = 0  # after the collector was blind, silence counts from here
        self.quality_bad: str | None = None
        self.flapping = False
        self.flap_pct = 0.0
        self._flap_slot = -1
        self._quality_dirty = True  # a central probe result arrived, or a cut's interval changed
        self._quality_next = 0  # not judged again before this
        self._flap_dirty = True  # a failing probe result arrived, or a cut's interval changed
        self._bad_any = False  # some slot of the flap window was bad at the last look
        self.outage_seq = 0

    # -- facts ---------------------------------------------------------------------------------
    def apply(self, fact: Fact) -> None:
        if type(fact) is Report:
            if not self.routine(fact):
                for one in expand(fact):
                    self.apply(one)
            return
        if isinstance(fact, ProbeSeen):
            self._heard(fact.at)
            self._probe(fact)
        elif isinstance(fact, Heard):
            self._heard(fact.at)
            if fact.mono_now is not None:
                self._box_uptime(fact.boot, fact.at - fact.mono_now)
            if self.online is False and fact.at > (self.offline_at or 0) and fact.boot != self._offline_boot:
                pass  # a new agent run speaks before its birth message is applied: the birth will say so
            elif self.online is False and fact.at > (self.offline_at or 0):
                self.online = True
                self._returned(fact.at, fact.boot)
        elif isinstance(fact, StatusSeen):
            self._status(fact)
        elif isinstance(fact, EventSeen):
            self._heard(fact.at)
            self._event(fact)

    def routine(self, report: Report) -> bool:
        """Apply a working clinic's report of successful central probes, if it is one, as applying its facts
        one by one (facts.expand) would, for a fraction of the work; False (nothing applied) otherwise."""
        if self.online is not True or self.state not in (UP, DEGRADED) or self.outage is not None or self.outages:
            return False
        for p in report.probes:
            if not p[3]:
                return False
        at = report.at
        if self.first_heard is None:
            self.first_heard = at
        if self.last_heard is None or at > self.last_heard:
            self.last_heard = at
        if report.mono_now is not None:
            self._box_uptime(report.boot, at - report.mono_now)
        if report.probes:
            lan, lan_targets = self.lan, self.rules.lan_targets
            for p in report.probes:
                if p[2] in lan_targets:
                    bisect.insort(lan, (p[0], True))
                    continue
                self._central((p[0], True, p[5], p[6], p[7]))
            self._trim()
        return True

    _offline_boot: str | None = None
    # The newest central result over a threshold (or failed); restored from an older snapshot: unknown,
    # so the next result has the quality judged, which works it out again.
    _unclear_t: int = 1 << 62
    _agent_up: int | None = None  # the agent's record of the open outage: when its link came back

    def needs_look(self, fact: Fact) -> bool:
        """Could this fact, just applied, change the state or an outage record before the machine's next
        due look (next_due)? A working clinic's heartbeat or successful probe cannot: its silence
        deadline only moves later, and its quality is judged when due (quality_due)."""
        if self.state not in (UP, DEGRADED) or self.online is not True:
            return True
        if self.outage is not None or self.outages or (self.latest_closed is not None and self.latest_closed.changed):
            return True
        if type(fact) is ProbeSeen:
            return not fact.success
        if type(fact) is Report:
            return not all(p[3] for p in fact.probes)
        return type(fact) is not Heard

    def quality_pending(self) -> bool:
        return self._quality_dirty

    def quality_due(self) -> int:
        return self._quality_next

    def _heard(self, at: int) -> None:
        if self.first_heard is None:
            self.first_heard = at
        if self.last_heard is None or at > self.last_heard:
            self.last_heard = at

    def _status(self, fact: StatusSeen) -> None:
        before = self.last_heard
        self._heard(fact.at)
        if fact.at < self.status_at:
            return  # an older status delivered late
        if fact.state == "offline" and self.boot is not None and fact.boot != self.boot:
            return  # the Last Will of an agent run that a newer one already replaced
        self.status_at = fact.at
        if fact.state == "online":
            self.boot = fact.boot
            self.quiet_s = fact.quiet_s
            if self.online is not True:
                self.online = True
                self._returned(fact.at, fact.boot)
        else:
            self.online = False
            self.offline_at, self.offline_reason, self._offline_boot = fact.at, fact.reason, fact.boot
            # The link was last known good when the agent was last heard before its Will.
            self.offline_from = before if before is not None and before < fact.at else fact.at

    def _returned(self, at: int, boot: str) -> None:
        self.online_since = max(self.online_since, at)
        if self.state == DOWN and (self.return_at is None or at < self.return_at):
            self.return_at = at
        outage = self.outage or self._recent(at)
        if outage is not None and outage.boot is not None and boot != outage.boot:
            self._mark(outage, "new_boot", f"the agent came back as a new run (boot {boot})", at)

    def _box_uptime(self, boot: str, up_since: int) -> None:
        outage = self.outage or self._recent(up_since)
        if outage is None or outage.boot is None or boot == outage.boot or "new_boot" not in outage.marks:
            return
        if up_since > outage.start - MATCH_SLACK_MS:
            self._mark(outage, "box_restarted", f"the agent's box restarted during the outage (up since "
                       f"{_fmt(up_since)})", up_since)
        else:
            self._mark(outage, "agent_restarted", f"the agent restarted; its box kept running (up since "
                       f"{_fmt(up_since)})", up_since)

    def _probe(self, fact: ProbeSeen) -> None:
        if fact.target in self.rules.lan_targets:
            bisect.insort(self.lan, (fact.t, fact.success))
            if not fact.success:
                outage = self._covering(fact.t)
                if outage is not None:
                    self._mark(outage, "lan_down", f"{fact.m} to {fact.target} failed at {_fmt(fact.t)} "
                               f"({fact.reason or 'no reason given'})", fact.t)
        else:
            self._central((fact.t, fact.success, fact.loss_pct, fact.rtt_ms, fact.jitter_ms))
            if not fact.success:
                self._flap_dirty = True
                self._earlier_start(fact)
                outage = self._covering(fact.t)
                if outage is not None and fact.t > outage.start:
                    self._mark(outage, "agent_running", f"the agent was running: {fact.m} to {fact.target} "
                               f"failed at {_fmt(fact.t)} ({fact.reason or 'no reason given'})", fact.t)
        self._trim()

    def _central(self, row: tuple[int, bool, float | None, float | None, float | None]) -> None:
        """Keep a central probe result (in time order; by time only, since two results of one moment may
        hold a figure and a None, which do not compare), and have the link's quality judged again unless
        this result cannot change the verdict: the link judged good, this result and every other one in
        the quality window under each threshold (a mean or a median of figures all under a limit is under
        it). Judging every working clinic once a minute was most of the engine's work."""
        central = self.central
        if not central or row[0] >= central[-1][0]:
            central.append(row)
        else:
            bisect.insort(central, row, key=_time)
        if not self._clear(row):
            self._unclear_t = max(self._unclear_t, row[0])
            self._quality_dirty = True
        elif self.quality_bad is not None or self._unclear_t >= row[0] - self.rules.quality_window_s * 1000:
            self._quality_dirty = True

    def _clear(self, row: tuple[int, bool, float | None, float | None, float | None]) -> bool:
        link = self.link
        return (row[1] and (row[2] is None or row[2] < link.loss_pct) and (row[3] is None or row[3] < link.rtt_ms)
                and (row[4] is None or row[4] < link.jitter_ms))

    def _trim(self) -> None:
        horizon = max(self.central[-1][0] if self.central else 0, self.lan[-1][0] if self.lan else 0) - KEEP_FACTS_MS
        if self.central and self.central[0][0] < horizon:
            del self.central[:bisect.bisect_left(self.central, (horizon,))]
        if self.lan and self.lan[0][0] < horizon:
            del self.lan[:bisect.bisect_left(self.lan, (horizon,))]

    def quality_changed(self) -> None:
        """The link's thresholds changed: judge its quality again."""
        self._quality_dirty = True
        self._unclear_t = 1 << 62

    def _cuts_changed(self) -> None:
        self._quality_dirty = self._flap_dirty = True

    def _earlier_start(self, fact: ProbeSeen) -> None:
        for outage in self._records():
            if outage.source == "agent" and fact.t < outage.start <= fact.t + KEEP_FACTS_MS:
                self._refine_start(outage, fact.at)

    def _refine_start(self, outage: Outage, at: int) -> None:
        """The agent's record dates a cut from when it noticed (a keepalive later); its probes, sent after
        the link is back, show when the central targets stopped answering. The outage starts at the first
        failure of the run of failures that leads into it."""
        i = bisect.bisect_left(self.central, (outage.start,))
        first = None
        while i > 0 and not self.central[i - 1][1] and outage.start - self.central[i - 1][0] <= KEEP_FACTS_MS:
            i -= 1
            first = self.central[i][0]
        if first is not None and first < outage.start:
            self._cuts_changed()
            outage.revise(at, "start", outage.start, first, "the agent's probes of the central targets failed "
                          "from then")
            outage.start = first

    def _event(self, fact: EventSeen) -> None:
        if fact.seq <= self.seen_events.get(fact.boot, -1) and fact.kind != "outage":
            return  # delivered again
        self.seen_events[fact.boot] = max(fact.seq, self.seen_events.get(fact.boot, -1))
        if fact.kind == "on_battery":
            if self.on_battery_at is None or fact.t > self.on_battery_at:
                self.on_battery_at = fact.t
        elif fact.kind == "power_restored":
            if self.on_battery_at is not None and fact.t >= self.on_battery_at:
                self.on_battery_at = None
        elif fact.kind in LAN_EVENTS:
            what = ", ".join(f"{k}={v}" for k, v in sorted(fact.detail.items()) if k in ("device", "interface"))
            text = f"{fact.kind} at {_fmt(fact.t)}" + (f" ({what})" if what else "")
            self.lan_events = [e for e in self.lan_events if e[0] > fact.t - 86_400_000] + [(fact.t, text)]
            outage = self._covering(fact.t, before=int(self.rules.lan_event_window_s * 1000))
            if outage is not None:
                self._mark(outage, "lan_event", text, fact.t)
        elif fact.kind == "outage":
            self._agent_record(fact)

    def _agent_record(self, fact: EventSeen) -> None:
        if fact.up_ms is None:
            return
        cause_text = str(fact.detail.get("cause", ""))
        started = cause_text.startswith("agent started")  # the agent process was not running before
        down_ms = fact.down_ms
        candidates = [o for o in ([self.outage] if self.outage else []) + self.outages + (
            [self.latest_closed] if self.latest_closed else []) if o is not None]
        best, best_overlap = None, None
        lo = down_ms if down_ms is not None else fact.up_ms
        for outage in candidates:
            overlap = outage.overlap(lo - MATCH_SLACK_MS, fact.up_ms + MATCH_SLACK_MS, fact.at)
            if overlap >= 0 and (best_overlap is None or overlap > best_overlap):
                best, best_overlap = outage, overlap
        if best is None:
            if started or down_ms is None or fact.up_ms - down_ms < 1000:
                return  # an agent start, or a blink: nothing the clinic lived without
            self.outage_seq += 1
            outage = Outage(id=f"{self.clinic}:{down_ms}", clinic=self.clinic, start=down_ms, end=fact.up_ms,
                            cause="wan", source="agent", boot=fact.boot, opened_by="agent_record")
            self._mark(outage, "agent_running", f"the agent's own record: link lost at {_fmt(down_ms)}, back at "
                       f"{_fmt(fact.up_ms)} ({cause_text or 'no cause given'})", fact.at)
            if fact.detail.get("power_cycled") is True:
                self._mark(outage, "power_cycled", "the agent's box restarted during the cut", fact.at)
            outage.cause = self._cause_of(outage)[0]
            self.outages.append(outage)
            self._cuts_changed()
            return
        self._cuts_changed()
        if not started and down_ms is not None and (best.start, best.end) != (down_ms, fact.up_ms):
            best.revise(fact.at, "interval", [best.start, best.end], [down_ms, fact.up_ms],
                        "the agent's own record of the cut")
            best.start, best.end, best.source = down_ms, fact.up_ms if best.end is not None else None, "agent"
            if best is self.outage:
                best.end = None
                self._agent_up = fact.up_ms  # the end, when the engine sees the clinic back
        elif started and best.end is not None and best.end != fact.up_ms and fact.up_ms > best.start:
            best.revise(fact.at, "end", best.end, fact.up_ms, "the agent's record of when it connected again")
            best.end = fact.up_ms
        if not started and down_ms is not None:
            self._refine_start(best, fact.at)
        if fact.detail.get("power_cycled") is True:
            self._mark(best, "power_cycled", "the agent's box restarted during the outage", fact.at)
        elif not started:
            self._mark(best, "agent_running", f"the agent was running and lost its link at {_fmt(down_ms or 0)} "
                       f"({cause_text or 'no cause given'})", fact.at)

    # -- evidence about one outage -------------------------------------------------------------
    def _covering(self, t: int, before: int = 0) -> Outage | None:
        for outage in self._records():
            end = outage.end if outage.end is not None else t + 1
            if outage.start - before <= t <= end:
                return outage
        return None

    def _recent(self, at: int) -> Outage | None:
        last = self.latest_closed
        if last is not None and last.end is not None and 0 <= at - last.end <= REVISE_WITHIN_MS:
            return last
        return None

    def _mark(self, outage: Outage, mark: str, text: str, at: int) -> None:
        marks = outage.marks
        if mark in marks:
            return
        marks[mark] = text
        outage.evidence.append(text)
        outage.changed = True
        cause, why = self._cause_of(outage)
        if cause != outage.cause:
            outage.revise(at, "cause", outage.cause, cause, why)
            outage.cause = cause
            if outage is self.outage:
                self.cause = cause

    def _cause_of(self, outage: Outage) -> tuple[str, str]:
        marks = outage.marks
        for mark, cause in CAUSE_ORDER:
            if mark in marks:
                if mark == "shutdown" and "box_restarted" in marks:
                    continue
                return cause, marks[mark]
        return "unknown", "no evidence of power, LAN or link trouble"

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, now: int, maintenance: bool = False, blind: bool = False) -> Transition | None:
        """The state now; a Transition if it changed. While the collector is blind, silence proves nothing."""
        self._judge(now)
        new, cause, reason, began, evidence, opened_by = self._target(now, maintenance, blind)
        if new == self.state and reason == self.reason:
            return None
        old = self.state
        if old == DOWN and new != DOWN:
            self._close(began if new != MAINTENANCE else now)
        if new == DOWN and old != DOWN:
            self._open(began, opened_by, evidence)
            cause = self.cause
            evidence = list(self.outage.evidence) if self.outage else evidence
        self.state, self.since, self.reason = new, began, reason
        if new != DOWN:
            self.cause = None
        return Transition(self.clinic, began, now, old, new, cause, reason, evidence)

    def _target(self, now: int, maintenance: bool, blind: bool) -> tuple[str, str | None, str | None, int,
                                                                            list[str], str]:
        if maintenance:
            return MAINTENANCE, None, None, now, [], ""
        if self.last_heard is None:
            return UNKNOWN, None, None, now, [], ""
        down = self._down_reason(now, blind)
        if down is not None:
            began, opened_by, evidence = down
            if self.state == DOWN or not self.flapping or now - began >= self.rules.flap_down_hold_s * 1000:
                return DOWN, None, None, began, evidence, opened_by
        if self.state == DOWN and self.outage is not None and self.outage.opened_by == "probes":
            back = [t for t, ok, *_ in self.central[bisect.bisect_left(self.central, (self.outage.start,)):] if ok]
            began = back[0] if back else now  # the first central probe that answered again
        elif self.state == DOWN:
            began = self.return_at if self.return_at is not None else now
        else:
            began = now
        if self.flapping:
            return DEGRADED, None, "flapping", began, [f"percent state change {self.flap_pct:.0f} %"], ""
        if self.quality_bad:
            return DEGRADED, None, self.quality_bad, began, [], ""
        return UP, None, None, began, [], ""

    def silence_ms(self) -> int:
        """How long the clinic may be quiet before it is silent: the link's `silence_s`, or the agent's own
        longest quiet spell (`quiet_max_s` in its birth message) and QUIET_MARGIN_S for delivery when that
        is longer (an agent set to send every 5 minutes on a tight data plan)."""
        silence = int(self.link.silence_s * 1000)
        if self.quiet_s is not None:
            silence = max(silence, (self.quiet_s + QUIET_MARGIN_S) * 1000)
        return silence

    def _down_reason(self, now: int, blind: bool) -> tuple[int, str, list[str]] | None:
        if self.online is False and self.offline_at is not None:
            if self.offline_reason == "shutdown":
                return self.offline_at, "shutdown", ["the agent stopped cleanly"]
            return self.offline_from, "will", [
                f"the broker published the agent's Last Will at {_fmt(self.offline_at)}"]
        assert self.last_heard is not None
        quiet_from = max(self.last_heard, self.grace_until)
        if not blind and now - quiet_from > self.silence_ms():
            return self.last_heard, "silence", [f"nothing heard since {_fmt(self.last_heard)}"]
        run = self._failing_run()
        if run is not None:
            return run, "probes", [f"every central target failing since {_fmt(run)}"]
        return None

    def _failing_run(self) -> int | None:
        """Start of the trailing run of failing central probes, if it is long enough to be down."""
        count, start = 0, None
        for t, ok, *_ in reversed(self.central):
            if ok or t < self.online_since:
                break  # results from before the agent came back belong to the outage it came back from
            count, start = count + 1, t
        if start is None or count < self.rules.down_after_probes:
            return None
        if self.central[-1][0] - start < self.link.down_after_s * 1000:
            return None
        return start

    def _open(self, began: int, opened_by: str, evidence: list[str]) -> None:
        self.outage_seq += 1
        outage = Outage(id=f"{self.clinic}:{began}", clinic=self.clinic, start=began, end=None, cause="unknown",
                        source="collector", boot=self.boot, opened_by=opened_by)
        outage.evidence.extend(evidence)
        self.outage, self.return_at, self._agent_up = outage, None, None
        self._cuts_changed()
        marks = outage.marks
        if opened_by == "shutdown":
            marks["shutdown"] = "the agent stopped cleanly"
        if self.on_battery_at is not None:
            marks["on_battery"] = f"UPS on battery since {_fmt(self.on_battery_at)}"
        window = self.rules.lan_event_window_s * 1000
        for t, text in self.lan_events:
            if began - window <= t <= began + MATCH_SLACK_MS:
                marks.setdefault("lan_event", text)
        if opened_by == "probes":
            lan_fail = [t for t, ok in self.lan if t >= began and not ok]
            if lan_fail:
                marks["lan_down"] = f"the clinic's gateway unreachable too at {_fmt(lan_fail[0])}"
            else:
                marks["agent_running"] = "the agent reports, but every central target fails"
        elif opened_by in ("will", "silence") and self.central and not marks:
            marks["silent_after_probes"] = "silent after normal reports; no power or LAN trouble reported"
        for mark, text in marks.items():
            if text not in outage.evidence:
                outage.evidence.append(text)
        outage.cause = self._cause_of(outage)[0]
        self.cause = outage.cause

    def _close(self, end: int) -> None:
        outage = self.outage
        if outage is None:
            return
        if self._agent_up is not None and outage.source == "agent" and self._agent_up >= outage.start:
            # The agent's own record of this cut came before the engine saw the clinic back (a backlog
            # after a collector restart): the cut ended when the agent says, not at the first message
            # the collector dated afterwards (a broker's hold is counted in whole seconds).
            end = self._agent_up
        self._agent_up = None
        outage.end, outage.changed = max(end, outage.start), True
        self._cuts_changed()
        self.outages.append(outage)
        self.latest_closed, self.outage = outage, None

    # -- quality and flapping ------------------------------------------------------------------
    def _slot(self, t: float) -> int:
        return int(t // (self.rules.flap_slot_s * 1000))

    def next_due(self, now: int) -> int | None:
        """When this clinic must be looked at again if no fact comes first (None: only a fact can change it)."""
        due = []
        if self.last_heard is not None and self.online is not False and self.state != DOWN:
            due.append(self._silent_at())
        if self.flapping or self._bad_any:
            size = int(self.rules.flap_slot_s * 1000)
            settle = int(self.rules.flap_settle_s * 1000)
            due.append(((now - settle) // size + 1) * size + settle)
        if self.flapping and self.state != DOWN:
            due.append(now + int(self.rules.flap_down_hold_s * 1000) // 4 + 1)
        if self._quality_dirty:
            due.append(self._quality_next)
        return min(due) if due else None

    def _silent_at(self) -> int:
        """The first moment the clinic counts as silent if nothing more is heard."""
        assert self.last_heard is not None
        return max(self.last_heard, self.grace_until) + self.silence_ms() + 1

    def quiet_until(self, now: int) -> int | None:
        """When a look is next needed, if it is after `now` and nothing but the clinic's silence deadline (and
        its next quality judgement) can need one: a working clinic, online, with no outage, flap or
        unsettled bad slot. A look now would change nothing then. None otherwise."""
        if (self.state not in (UP, DEGRADED) or self.online is not True or self.last_heard is None
                or self.flapping or self._bad_any or self.outage is not None or self.outages
                or (self.latest_closed is not None and self.latest_closed.changed)):
            return None
        due = self._silent_at()
        if self._quality_dirty:
            due = min(due, self._quality_next)
        return due if due > now else None

    def _judge(self, now: int) -> None:
        rules = self.rules
        if self._quality_dirty and now >= self._quality_next:
            # Judged over 10 minutes, so once a minute is soon enough (bench.state_engine: it was the
            # engine's largest cost when judged at every report). A look that found no result to judge
            # (the birth message before the first report) does not hold the first results back a minute.
            judged = self._judge_quality(now)
            self._quality_dirty = False
            self._quality_next = now + QUALITY_EVERY_MS if judged else 0
        last_slot = self._slot(now - rules.flap_settle_s * 1000)
        if self._flap_dirty or (last_slot != self._flap_slot and (self._bad_any or self.flapping)):
            self._judge_flapping(now, last_slot)
            self._flap_dirty = False
        self._flap_slot = last_slot

    def _judge_quality(self, now: int) -> bool:
        """Judge the link's quality over the window; False if the window held no central result."""
        rules = self.rules
        window_start = now - rules.quality_window_s * 1000
        # Probe results taken during a cut belong to the outage, not to the link's quality.
        cuts = [(o.start, end) for o in self._records()
                if (end := o.end if o.end is not None else now) >= window_start]
        window = self.central[bisect.bisect_left(self.central, (window_start,)):]
        if cuts:
            window = [x for x in window if not any(a <= x[0] <= b for a, b in cuts)]
        # So do short cuts (central probes failing blip_min_probes times in a row): flap detection
        # judges those.
        if all(map(_SUCCESS, window)):
            recent = [x for x in window if x[2] is not None]
        else:
            recent = [x for x, in_cut in zip(window, _in_runs(window, rules.blip_min_probes))
                      if x[2] is not None and not in_cut]
        self.quality_bad = self._quality(recent)
        self._unclear_t = next((x[0] for x in reversed(self.central) if not self._clear(x)), 0)
        return bool(window)

    def _judge_flapping(self, now: int, last_slot: int) -> None:
        rules = self.rules
        slots = range(last_slot - WINDOW + 1, last_slot + 1)
        first = self._slot(self.first_heard) if self.first_heard is not None else last_slot
        bad = self._bad_slots(slots, first, now)
        # Keep looking while a bad slot is in the window, or one may still come (a cut open, or one
        # ending after the window: judged once its slot settles).
        later = int((last_slot + 1) * rules.flap_slot_s * 1000)
        self._bad_any = (any(bad) or any(o.end is None or o.end >= later for o in self._records())
                         or any(not ok for _, ok, *_ in self.central[bisect.bisect_left(self.central, (later,)):]))
        self.flap_pct = percent_state_change(bad)
        if not self.flapping and self.flap_pct >= rules.flap_high_pct:
            self.flapping = True
        elif self.flapping and self.flap_pct <= rules.flap_low_pct:
            self.flapping = False

    def _quality(self, recent: list[tuple[int, bool, float | None, float | None, float | None]]) -> str | None:
        if len(recent) < self.rules.quality_min_samples:
            return self.quality_bad if recent else None
        # Column by column (zip): judged for every clinic every minute, this was the engine's largest cost.
        _, _, losses, rtt_column, jitter_column = zip(*recent)
        loss = sum(losses) / len(recent)  # every row of `recent` has a loss figure
        rtts = sorted(rtt_column if None not in rtt_column else [x for x in rtt_column if x is not None])
        jitters = sorted(jitter_column if None not in jitter_column else [x for x in jitter_column if x is not None])
        figures = {"loss": (loss, self.link.loss_pct),
                   "rtt": (rtts[len(rtts) // 2] if rtts else None, self.link.rtt_ms),
                   "jitter": (jitters[len(jitters) // 2] if jitters else None, self.link.jitter_ms)}
        for name, (value, limit) in figures.items():
            if value is not None and value >= limit:
                return name
        if self.quality_bad:
            ratio = self.rules.clear_ratio
            for name, (value, limit) in figures.items():
                if value is not None and value >= limit * ratio:
                    return self.quality_bad  # not yet clearly better
        return None

    def _records(self) -> list[Outage]:
        if self.outage is None and not self.outages and self.latest_closed is None:
            return []
        records = ([self.outage] if self.outage else []) + self.outages
        if self.latest_closed is not None and self.latest_closed not in records:
            records.append(self.latest_closed)
        return records

    def _bad_slots(self, slots: range, first: int, now: int) -> list[bool]:
        """For each slot of `slots` (from `first` on; earlier ones are not bad): was the link cut in it? A slot
        is bad when an outage record overlaps it, or when a member of a run of `blip_min_probes` or more
        central failures in a row falls in it (the run may begin or end outside the slot). One pass over
        the window's results for all the slots: searching them slot by slot was most of the flap
        judgement's cost (bench.state_engine)."""
        size = self.rules.flap_slot_s * 1000
        lo_slot, hi_slot = slots[0], slots[-1]
        bad = [False] * len(slots)
        records = self._records()
        if records:
            for n, slot in enumerate(slots):
                lo, hi = int(slot * size), int((slot + 1) * size)
                if slot >= first and any(o.overlap(lo, hi, now) > 0 for o in records):
                    bad[n] = True
        central, need = self.central, self.rules.blip_min_probes
        i = bisect.bisect_left(central, (lo_slot * size,))
        j = bisect.bisect_left(central, ((hi_slot + 1) * size,))
        # A run holding a result of the slots has `need` members within need - 1 places of it.
        end = min(len(central), j + need - 1)
        k, run_start = max(0, i - need + 1), -1
        while k <= end:
            if k < end and not central[k][1]:
                if run_start < 0:
                    run_start = k
            else:
                if run_start >= 0 and k - run_start >= need:
                    for m in range(max(run_start, i), min(k, j)):
                        slot = self._slot(central[m][0])
                        if slot >= first and lo_slot <= slot <= hi_slot:
                            bad[slot - lo_slot] = True
                run_start = -1
            k += 1
        return bad

    # -- after the collector was blind ---------------------------------------------------------
    def sight_restored(self, at: int) -> None:
        self.grace_until = max(self.grace_until, at)

    def take_closed(self) -> list[Outage]:
        """Outage records changed since the last call (closed ones leave the machine's list)."""
        out = [o for o in self.outages if o.changed]
        if self.outage is not None and self.outage.changed:
            out.append(self.outage)
        if self.latest_closed is not None and self.latest_closed.changed and self.latest_closed not in out:
            out.append(self.latest_closed)
        for outage in out:
            outage.changed = False
        self.outages = []
        return out

    def view(self) -> dict[str, Any]:
        return {"clinic": self.clinic, "state": self.state, "since": self.since, "cause": self.cause,
                "reason": self.reason, "last_heard": self.last_heard, "flapping": self.flapping,
                "outage": self.outage.id if self.outage else None}
