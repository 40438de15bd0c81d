"""A telemetry message is one fact (facts.Report); the engine's short way with a working clinic's report
must decide exactly as applying the Heard and ProbeSeen facts it stands for, one by one."""

from __future__ import annotations

from collector.state.engine import ClinicInfo, Engine
from collector.state.facts import Fact, Report, expand
from tests.state_sim import MIN, S, T0, Link, Sim

FLEET = {f"c{i}": ClinicInfo("Illes Balears", "Movistar" if i < 4 else "Orange", "lte") for i in range(8)}


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
    kinds = {t.new for t in short.changes.transitions}
    assert {"up", "down", "degraded"} <= kinds and len(short.changes.outages) >= 4  # the story did happen


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
