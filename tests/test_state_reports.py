"""The engine's short ways decide exactly as the long ones: a telemetry message is one fact (facts.Report),
and the short way with a working clinic's report must decide as applying the Heard and ProbeSeen facts it
stands for, one by one; the flap window's bad slots found in one pass are those of the definition."""

from __future__ import annotations

from collector.state.engine import ClinicInfo, Engine
from collector.state.facts import Fact, Report, expand
from tests.state_sim import MIN, S, T0, Link, Sim

FLEET = {f"c{i}": ClinicInfo("Illes Balears", "Movistar" if i < 4 else "Orange", "lte") for i in range(11)}


class OneByOne(Engine):
    """The engine as it was before reports: every fact applied and looked at on its own."""

    def apply(self, fact: Fact) -> None:
        for one in expand(fact) if isinstance(fact, Report) else [fact]:
            super().apply(one)


def _story(engine: Engine) -> Sim:
    sim = Sim(FLEET, seed=11, engine=engine)
    sim.add("c0", Link(cuts=[(T0 + 10 * MIN, T0 + 25 * MIN)]))  # a WAN cut
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN + 40 * S, T0 + 26 * MIN)]))  # the same ISP, joining
    sim.add("c2", Link(cuts=[(T0 + 5 * MIN + k * 3 * MIN, T0 + 5 * MIN + k * 3 * MIN + 20 * S) for k in range(15)]))
    sim.add("c3", Link(loss_pct=30, rtt_ms=130, jitter_ms=50))  # a dying link
    sim.add("c4", Link(rtt_ms=400))  # slow for LTE
    power = sim.add("c5")
    sim.at(T0 + 20 * MIN, lambda t: power.power_cut(t, battery_min=5, off_min=10))
    stopping = sim.add("c6")
    sim.at(T0 + 30 * MIN, stopping.clean_stop)
    sim.add("c7", Link(cuts=[(T0 + 40 * MIN, T0 + 40 * MIN + 90 * S)]))  # short, then an agent-recorded cut
    sim.add("c8", Link(jitter_ms=90))  # jitter alone over LTE's limit
    sim.add("c9", Link(loss_pct=7))  # loss alone over it, every probe still answered
    slow = Link(rtt_ms=400)
    sim.add("c10", slow)  # slow; better, though not enough to end `degraded` (hysteresis); then good
    sim.at(T0 + 30 * MIN, lambda t: setattr(slow, "rtt_ms", 220.0))
    sim.at(T0 + 60 * MIN, lambda t: setattr(slow, "rtt_ms", 20.0))
    return sim


def test_reports_decide_as_their_facts_one_by_one() -> None:
    short, long = _story(Engine(FLEET)), _story(OneByOne(FLEET))
    for minute in range(5, 95, 5):
        a, b = short.run_until(T0 + minute * MIN), long.run_until(T0 + minute * MIN)
        assert a.transitions == b.transitions, minute
        assert [o.as_dict() for o in a.outages] == [o.as_dict() for o in b.outages], minute
        assert [i.as_dict() for i in a.incidents] == [i.as_dict() for i in b.incidents], minute
    for clinic in FLEET:
        assert vars(short.engine.machines[clinic]) == vars(long.engine.machines[clinic]), clinic
    assert {(t.clinic, t.new, t.reason) for t in short.changes.transitions if t.clinic in ("c8", "c9")} == {
        ("c8", "up", None), ("c8", "degraded", "jitter"), ("c9", "up", None), ("c9", "degraded", "loss")}
    c10 = [t for t in short.changes.transitions if t.clinic == "c10"]
    assert [(t.new, t.reason) for t in c10] == [("up", None), ("degraded", "rtt"), ("up", None)]
    assert c10[-1].at > T0 + 60 * MIN  # not while its RTT was only a little under the threshold
    kinds = {t.new for t in short.changes.transitions}
    assert {"up", "down", "degraded"} <= kinds and len(short.changes.outages) >= 4  # the story did happen


def test_a_moved_silence_deadline_passed_over_decides_as_a_look() -> None:
    """At a clinic's silence deadline the engine looks at it, unless its reports have since moved the deadline
    on and nothing else is due (ClinicMachine.quiet_until): then it only waits for the new deadline. The
    same story with every due look taken decides the same."""
    short, long = _story(Engine(FLEET)), _story(Engine(FLEET))
    passed = []
    for clinic, machine in short.engine.machines.items():
        def counted(now: int, machine=machine, clinic=clinic) -> int | None:  # type: ignore[no-untyped-def]
            later = type(machine).quiet_until(machine, now)
            if later is not None:
                passed.append(clinic)
            return later
        machine.quiet_until = counted  # type: ignore[method-assign]
    for machine in long.engine.machines.values():
        machine.quiet_until = lambda now: None  # type: ignore[method-assign]
    for minute in range(5, 95, 5):
        a, b = short.run_until(T0 + minute * MIN), long.run_until(T0 + minute * MIN)
        assert a.transitions == b.transitions, minute
        assert [o.as_dict() for o in a.outages] == [o.as_dict() for o in b.outages], minute
        assert [i.as_dict() for i in a.incidents] == [i.as_dict() for i in b.incidents], minute
        assert a.intents == b.intents, minute
    for clinic in FLEET:
        mine, theirs = vars(short.engine.machines[clinic]), vars(long.engine.machines[clinic])
        # _flap_slot: the slot last looked at, which only counts while a bad slot or flapping is in view
        skip = {"quiet_until", "_flap_slot"}
        assert {k: v for k, v in mine.items() if k not in skip} == {k: v for k, v in theirs.items() if k not in skip}
    # Passed over: the clinics' deadlines while they worked (c3, c4, c8 and c9, degraded, have their quality
    # judged each minute, which a look is needed for; c10 once it is up again).
    assert len(passed) == 57 and set(passed) == {"c0", "c1", "c2", "c5", "c6", "c7", "c10"}, set(passed)


def test_two_results_of_one_moment_with_and_without_a_figure() -> None:
    """A TCP result (no loss figure) and an ICMP one (0 % loss) at the same millisecond: both kept, in the
    order they came (they used to be sorted as whole tuples, and None does not compare with 0.0)."""
    for engine in (Engine(FLEET), OneByOne(FLEET)):
        engine.apply(Report("c0", T0, "b1", 5_000, [(T0 - 10, "icmp", "records", True, None, 0.0, 20.0, 1.0)]))
        engine.tick(T0 + S)
        engine.apply(Report("c0", T0 + 30 * S, "b1", 35_000, [
            (T0 + 20 * S, "icmp", "records", True, None, 0.0, 21.0, 1.0),
            (T0 + 20 * S, "tcp", "records", True, None, None, None, None),
            (T0 + 10 * S, "icmp", "dns", True, None, 0.0, 22.0, 1.0)]))
        assert [row[0] - T0 for row in engine.machines["c0"].central] == [-10, 10 * S, 20 * S, 20 * S]
        assert [row[2] for row in engine.machines["c0"].central] == [0.0, 0.0, 0.0, None]


def _slot_bad_by_definition(machine, slot: int, now: int) -> bool:  # type: ignore[no-untyped-def]
    """A slot is bad when an outage record overlaps it, or a member of a run of blip_min_probes central
    failures in a row falls in it: the definition, searched for one slot."""
    size = machine.rules.flap_slot_s * 1000
    lo, hi = slot * size, (slot + 1) * size
    if any(o.overlap(int(lo), int(hi), now) > 0 for o in machine._records()):
        return True
    runs, run = [], []
    for row in machine.central:
        if not row[1]:
            run.append(row[0])
            continue
        runs.append(run)
        run = []
    runs.append(run)
    return any(len(r) >= machine.rules.blip_min_probes and any(lo <= t < hi for t in r) for r in runs)


def test_the_flap_window_s_bad_slots_in_one_pass_are_the_definition_s() -> None:
    """ClinicMachine._bad_slots finds a window's bad slots in one pass; checked against the definition on
    random histories: results at random times (several in one slot, none in others, runs of failures
    across slot edges), with and without outage records, open and closed."""
    import random

    from collector.state.outages import Outage

    rng = random.Random(5)
    engine = Engine(FLEET)
    machine = engine.machines["c0"]
    size = int(machine.rules.flap_slot_s * 1000)
    found_bad = 0
    for case in range(400):
        t, rows = T0, []
        for _ in range(rng.randrange(0, 60)):
            t += rng.choice([1, 5 * S, 20 * S, 60 * S, 150 * S])
            rows.append((t, rng.random() > rng.choice([0.05, 0.3, 0.7]), 0.0, 20.0, 1.0))
        machine.central = rows
        machine.outage, machine.outages, machine.latest_closed = None, [], None
        now = t + rng.randrange(0, 5 * MIN)
        if case % 3 == 1:
            start = T0 + rng.randrange(0, 30 * MIN)
            machine.latest_closed = Outage("x", "c0", start, start + rng.randrange(1, 10 * MIN), "wan", "collector")
        elif case % 3 == 2:
            machine.outage = Outage("y", "c0", now - rng.randrange(1, 10 * MIN), None, "wan", "collector")
        last = now // size - rng.randrange(0, 3)
        slots = range(last - 20, last + 1)
        first = rng.choice([slots[0] - 5, slots[0] + 7, last])
        want = [_slot_bad_by_definition(machine, s, now) if s >= first else False for s in slots]
        assert machine._bad_slots(slots, first, now) == want, case
        found_bad += sum(want)
    assert found_bad > 400  # the histories did hold bad slots
