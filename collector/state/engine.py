"""The state engine: every clinic's machine, incidents, maintenance and the collector's own blindness,
on a scripted clock. `apply` takes facts; `tick(now)` evaluates and returns what changed. No I/O: the
service around it (collector.state.service) feeds it, keeps it on disk and writes its outputs.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from collector.alerts.policy import Intent, Policy, Recipient, Silence, Timing
from collector.state.clinic import DEGRADED, DOWN, MAINTENANCE, ClinicMachine, Transition
from collector.state.facts import Fact, Report, RouteSeen, expand
from collector.state.incidents import Incident, Incidents, Place
from collector.state.outages import Outage
from collector.state.rules import StateRules


@dataclass(frozen=True)
class ClinicInfo:
    region: str = ""
    isp: str = ""
    link: str = "other"


@dataclass(frozen=True)
class Window:
    """A maintenance window: clinics (by id) or whole regions, from start to end (UTC ms)."""
    start: int
    end: int
    clinics: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    reason: str = ""

    def covers(self, clinic: str, info: ClinicInfo, now: int) -> bool:
        return self.start <= now < self.end and (clinic in self.clinics or info.region in self.regions)


@dataclass
class Changes:
    transitions: list[Transition] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    blind: list[tuple[int, int]] = field(default_factory=list)  # intervals the collector could not see
    intents: list[Intent] = field(default_factory=list)  # messages the alert policy decided


def in_incident(state: str, reason: str | None) -> bool:
    return state == DOWN or (state == DEGRADED and reason == "flapping")


class Engine:
    # Alerting (collector.alerts.policy), part of the engine so that its memory is kept, snapshotted and
    # replayed with the incidents it follows. None: no one is told (and snapshots from before it).
    policy: Policy | None = None
    silences: list[Silence] = []
    forgot_hour = 0

    def __init__(self, clinics: dict[str, ClinicInfo], rules: StateRules | None = None) -> None:
        self.rules = rules or StateRules()
        self.incidents = Incidents(self.rules.group_window_s)
        self.machines: dict[str, ClinicMachine] = {}
        self.windows: list[Window] = []
        self.blind_since: int | None = None
        self.now = 0
        self.now_before = 0
        # Clinics are looked at when a fact about them came, or when they are due (a silence deadline,
        # a flap slot settling): not every clinic every second (bench.state_engine).
        self.touched: set[str] = set()
        self.due: list[tuple[int, str]] = []
        self.due_at: dict[str, int] = {}  # the one look each clinic is due for
        self.route_t: dict[str, int] = {}  # when each clinic's upstream was last learnt
        self.set_clinics(clinics)

    def set_clinics(self, clinics: dict[str, ClinicInfo]) -> None:
        self.clinics = dict(clinics)
        for clinic, info in clinics.items():
            if clinic not in self.machines:
                self.machines[clinic] = ClinicMachine(clinic, self.rules.link(info.link), self.rules)
            elif self.machines[clinic].link != (link := self.rules.link(info.link)):
                self.machines[clinic].link = link
                self.machines[clinic].quality_changed()
        known = self.incidents.places
        self.incidents.set_places({c: Place(i.region, i.isp, known[c].upstream if c in known else "")
                                   for c, i in clinics.items()})
        if self.policy is not None:
            self.policy.regions = {c: i.region for c, i in clinics.items()}
        self.touched |= set(clinics)

    def set_alerting(self, timing: Timing, recipients: list[Recipient]) -> None:
        regions = {c: i.region for c, i in self.clinics.items()}
        if self.policy is None:
            self.policy = Policy(timing, recipients, regions)
        else:
            self.policy.timing, self.policy.recipients, self.policy.regions = timing, list(recipients), regions

    def set_silences(self, silences: list[Silence]) -> None:
        self.silences = list(silences)

    def set_windows(self, windows: list[Window]) -> None:
        self.windows = list(windows)
        self.touched |= set(self.machines)

    def apply(self, fact: Fact) -> None:
        self._apply(fact)

    def _apply(self, fact: Fact) -> None:
        machine = self.machines.get(fact.clinic)
        if machine is None:  # ingest only passes registered clinics; a registry reload may race
            return
        if isinstance(fact, RouteSeen):
            self._route(fact)
            return
        if type(fact) is Report:
            if not machine.routine(fact):
                for one in expand(fact):  # an unusual report: fact by fact, each looked at as it comes
                    self._apply(one)
                return
        else:
            machine.apply(fact)
        if machine.needs_look(fact):
            self.touched.add(fact.clinic)
        elif machine.quality_pending():
            # A healthy clinic's routine report changes nothing now: its quality is judged when due
            # (at most once a minute), its silence deadline is checked when it falls. Looking at every
            # report was most of the engine's CPU (bench.state_engine).
            self._look_at(fact.clinic, machine.quality_due())

    def _look_at(self, clinic: str, when: int) -> None:
        current = self.due_at.get(clinic)
        if current is None or when < current:
            self.due_at[clinic] = when
            heapq.heappush(self.due, (when, clinic))

    def _route(self, fact: RouteSeen) -> None:
        """A clinic's upstream: the second hop of its latest traceroute to a central target, the first past
        the clinic's own router. Clinics behind the same one fail together when it does."""
        if fact.target in self.rules.lan_targets or fact.t < self.route_t.get(fact.clinic, 0):
            return
        hops = fact.path.split(">")
        upstream = hops[1] if len(hops) > 2 and hops[1] != "*" else ""
        self.route_t[fact.clinic] = fact.t
        info = self.clinics.get(fact.clinic)
        if info is not None:
            self.incidents.places[fact.clinic] = Place(info.region, info.isp, upstream)

    def _edges(self, now: int) -> int | None:
        """The next start or end of a maintenance window."""
        edges = [e for w in self.windows for e in (w.start, w.end) if e > now]
        return min(edges) if edges else None

    def clock_stepped(self, now: int) -> None:
        """The collector's wall clock was stepped forward (an NTP step, a virtual machine resumed, a hand
        setting it): everything heard before was heard at times now further back than they were, and
        silence measured from them would take clinics down that are fine. Silence counts afresh from
        `now`, as after the collector was blind; a clinic really silent is then judged one silence
        period after the step."""
        for machine in self.machines.values():
            machine.sight_restored(now)
        self.touched |= set(self.machines)

    def tick(self, now: int, seeing: bool = True) -> Changes:
        """Evaluate every clinic at `now`. `seeing` is False while no ingest process is heard from."""
        self.now = now
        changes = Changes()
        if not seeing:
            if self.blind_since is None:
                self.blind_since = now
        elif self.blind_since is not None:
            changes.blind.append((self.blind_since, now))
            for machine in self.machines.values():
                machine.sight_restored(now)
            self.blind_since = None
            self.touched |= set(self.machines)
        blind = self.blind_since is not None
        while self.due and self.due[0][0] <= now:
            when, clinic = heapq.heappop(self.due)
            if self.due_at.get(clinic) == when:  # else a later look replaced this one
                del self.due_at[clinic]
                machine = self.machines.get(clinic)
                later = machine.quiet_until(now) if machine is not None and not blind else None
                if later is not None and clinic not in self.touched:
                    # A silence deadline that the clinic's reports have since moved on: half the engine's
                    # looks at a fleet that is fine, each changing nothing (bench.state_engine).
                    self.due_at[clinic] = later
                    heapq.heappush(self.due, (later, clinic))
                    continue
                self.touched.add(clinic)
        edge = self._edges(self.now_before) if self.windows else None
        if edge is not None and edge <= now:
            self.touched |= set(self.machines)
        self.now_before = now
        touched, self.touched = self.touched, set()
        for clinic in touched:
            machine, info = self.machines.get(clinic), self.clinics.get(clinic)
            if machine is None or info is None:
                continue  # left the registry: its records stay, it is no longer judged
            maintenance = any(w.covers(clinic, info, now) for w in self.windows)
            before = (machine.state, machine.reason, machine.cause)
            transition = machine.evaluate(now, maintenance, blind)
            if transition is not None:
                changes.transitions.append(transition)
            after = (machine.state, machine.reason, machine.cause)
            if after != before:
                if in_incident(machine.state, machine.reason):
                    self.incidents.down(clinic, transition.at if transition else now, machine.cause
                                        or ("wan" if machine.reason == "flapping" else None))
                elif in_incident(*before[:2]):
                    self.incidents.up(clinic, transition.at if transition else now)
            changes.outages.extend(machine.take_closed())
            due = machine.next_due(now)
            if due is None or blind:
                self.due_at.pop(clinic, None)
            elif self.due_at.get(clinic) != due:
                self.due_at[clinic] = due
                heapq.heappush(self.due, (due, clinic))
        changes.transitions.sort(key=lambda t: (t.detected_at, t.clinic))
        changes.incidents = self.incidents.take_changed()
        if self.policy is not None and not blind:
            closed = [i for i in changes.incidents if i.closed is not None]
            changes.intents = self.policy.decide(list(self.incidents.open.values()) + closed, self.silences, now)
            if now // 3_600_000 != self.forgot_hour:
                self.forgot_hour = now // 3_600_000
                self.policy.forget(now - 86_400_000)  # incidents over for a day
        return changes

    def state_of(self, clinic: str) -> str:
        return self.machines[clinic].state

    def open_incidents(self) -> list[Incident]:
        return list(self.incidents.open.values())

    def in_maintenance(self, clinic: str, now: int) -> bool:
        return MAINTENANCE == self.machines[clinic].state
