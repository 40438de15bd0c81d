"""Clinic state, causes, incidents and outage records on a simulated fleet with a scripted clock
(tests/state_sim.py): each scenario asserts the exact sequence of state changes and incidents."""

from __future__ import annotations

from collections import Counter

import wire

from collector.state.clinic import Transition
from collector.state.engine import ClinicInfo, Engine, Window
from collector.state.facts import EventSeen, Heard, Report, StatusSeen
from collector.state.incidents import Incident
from collector.state.outages import Outage
from tests.state_sim import MIN, S, T0, Link, Sim

LTE = ClinicInfo("Illes Balears", "Movistar", "lte")


def changes(transitions: list[Transition], clinic: str = "c1") -> list[tuple]:
    return [(t.old, t.new, t.cause or t.reason) for t in transitions if t.clinic == clinic]


def last_versions(items: list) -> list:
    """Records are handed out each time they change: keep each one's latest version, in first-seen order."""
    latest: dict[str, object] = {}
    for item in items:
        latest[item.id] = item
    return list(latest.values())


def incidents(sim: Sim) -> list[Incident]:
    return last_versions(sim.changes.incidents)  # type: ignore[return-value]


def outages(sim: Sim) -> list[Outage]:
    return last_versions(sim.changes.outages)  # type: ignore[return-value]


def test_one_clinics_wan_loss_and_return() -> None:
    sim = Sim({"c1": LTE})
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 20 * MIN)]), keepalive_s=60)
    sim.run_until(T0 + 40 * MIN)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "down", "wan"), ("down", "up", None)]
    down = sim.changes.transitions[1]
    # The broker's Last Will, 1.5 keepalives after the agent's last packet (at 9.5 min): within two
    # keepalives of the cut.
    assert down.detected_at - (T0 + 10 * MIN) <= 2 * 60 * S
    [incident] = incidents(sim)
    assert (incident.clinics(), incident.cause, incident.scope, incident.closed) == (
        ["c1"], "wan", "clinic=c1", T0 + 20 * MIN)
    [outage] = outages(sim)
    assert (outage.cause, outage.source, outage.end) == ("wan", "agent", T0 + 20 * MIN)


def test_the_agents_own_record_corrects_the_outage_after_the_link_returns() -> None:
    sim = Sim({"c1": LTE})
    agent = sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 20 * MIN)]), keepalive_s=60)
    first_failure = agent.next_probe
    while first_failure < T0 + 10 * MIN:
        first_failure += agent.probe_ms
    first_failure = T0 + -(-(first_failure - T0) // S) * S  # probes run on the simulation's 1 s ticks
    sim.run_until(T0 + 19 * MIN)
    [seen] = outages(sim)  # while it lasts: the collector's own view, from the last message before the Will
    assert (seen.source, seen.end, seen.opened_by) == ("collector", None, "will")
    collector_start = seen.start
    assert T0 + 9 * MIN <= collector_start < T0 + 10 * MIN
    sim.run_until(T0 + 30 * MIN)
    [outage] = outages(sim)
    # The agent's record: lost when its keepalive went unanswered, back when it reconnected; its probes,
    # sent once the link was back, date the cut's start to its first failed echo.
    assert (outage.start, outage.end, outage.source) == (first_failure, T0 + 20 * MIN, "agent")
    assert [(r["what"], r["from"]) for r in outage.revisions] == [
        ("interval", [collector_start, None]), ("start", outage.revisions[0]["to"][0])]
    assert outage.revisions[0]["to"][1] == T0 + 20 * MIN
    assert all(r["why"] for r in outage.revisions)


def test_a_power_cut_on_battery_then_silence_is_power() -> None:
    sim = Sim({"c1": LTE})
    agent = sim.add("c1")
    sim.at(T0 + 10 * MIN, lambda t: agent.power_cut(t, battery_min=15, off_min=20))
    sim.run_until(T0 + 70 * MIN)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "down", "power"),
                                                ("down", "up", None)]
    assert "UPS on battery since 2026-09-21T14:23:20Z" in sim.changes.transitions[1].evidence
    [outage] = outages(sim)
    assert outage.cause == "power" and outage.revisions == []  # right from the start: nothing to revise
    assert "box_restarted" in outage.marks  # and the box coming back as a fresh boot agrees
    assert outage.end == T0 + 25 * MIN + 20 * MIN + 30 * S  # mains back, box boots, agent connects 30 s later
    [incident] = incidents(sim)
    assert incident.cause == "power"


def test_a_clean_agent_shutdown_is_agent() -> None:
    sim = Sim({"c1": LTE})
    agent = sim.add("c1")
    sim.at(T0 + 10 * MIN, agent.clean_stop)
    sim.at(T0 + 15 * MIN, agent.start_run)
    sim.run_until(T0 + 30 * MIN)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "down", "agent"),
                                                ("down", "up", None)]
    assert [t.at for t in sim.changes.transitions[1:]] == [T0 + 10 * MIN, T0 + 15 * MIN]
    [outage] = outages(sim)
    assert (outage.cause, outage.start, outage.end) == ("agent", T0 + 10 * MIN, T0 + 15 * MIN)
    assert "agent_restarted" in outage.marks  # its box kept running
    assert len(incidents(sim)) == 1


def test_a_regional_isp_failure_across_30_clinics_is_one_incident_of_30() -> None:
    fleet = {f"ib-{i:02d}": LTE for i in range(30)}
    fleet.update({f"ib-orange-{i}": ClinicInfo("Illes Balears", "Orange", "dsl") for i in range(3)})
    fleet.update({f"ct-{i}": ClinicInfo("Catalunya", "Movistar", "fibre") for i in range(3)})
    sim = Sim(fleet)
    for clinic in fleet:
        cuts = []
        if clinic.startswith("ib-") and "orange" not in clinic:
            # The ISP's failure spreads over two minutes.
            cuts = [(T0 + 10 * MIN + int(clinic[3:]) * 4 * S, T0 + 40 * MIN)]
        sim.add(clinic, Link(cuts=cuts))
    sim.run_until(T0 + 60 * MIN)
    counted = Counter((t.old, t.new, t.cause) for t in sim.changes.transitions)
    assert counted == Counter({("unknown", "up", None): 36, ("up", "down", "wan"): 30, ("down", "up", None): 30})
    detected = sorted(t.detected_at for t in sim.changes.transitions if t.new == "down")
    assert detected[-1] - detected[0] >= 110 * S  # they really joined over two minutes
    [incident] = incidents(sim)
    assert incident.clinics() == sorted(c for c in fleet if c.startswith("ib-") and "orange" not in c)
    assert [m.clinic for m in incident.members] == [f"ib-{i:02d}" for i in range(30)]  # as their links failed
    assert (incident.scope, incident.cause, incident.closed) == (
        "isp=Movistar region=Illes Balears", "wan", T0 + 40 * MIN)
    assert {o.clinic for o in outages(sim)} == set(incident.clinics())


def test_an_incident_lists_its_clinics_in_the_order_they_went_down_whatever_order_they_were_judged_in() -> None:
    from collector.state.incidents import Incidents, Place

    grouping = Incidents(group_window_s=180)
    grouping.set_places({c: Place("Lombardia", "FastNet") for c in ("lom-1", "lom-2", "lom-3")})
    grouping.down("lom-1", T0, "wan")
    grouping.down("lom-3", T0 + 11 * S, "wan")  # judged at the same look as lom-2, before it
    incident = grouping.down("lom-2", T0 + 5 * S, "wan")
    assert [(m.clinic, m.joined) for m in incident.members] == [("lom-1", T0), ("lom-2", T0 + 5 * S),
                                                                 ("lom-3", T0 + 11 * S)]
    assert (incident.id, incident.opened, incident.last_join) == (f"inc-{T0}-lom-1", T0, T0 + 11 * S)


def test_clinics_behind_one_upstream_hop_are_one_incident_whatever_their_region_and_isp() -> None:
    # A wholesale network resold under two brands in two regions: the traceroutes share the hop past
    # the clinics' routers. A third clinic fails at the same time behind another network.
    fleet = {"a": ClinicInfo("Illes Balears", "Movistar", "lte"), "b": ClinicInfo("Catalunya", "Digi", "lte"),
             "c": ClinicInfo("Lombardia", "Fastweb", "dsl")}
    sim = Sim(fleet)
    routes = {"a": "192.168.1.1>10.40.0.1>203.0.113.9", "b": "192.168.8.1>10.40.0.1>203.0.113.9",
              "c": "192.168.1.1>172.20.0.1>198.51.100.7"}
    for clinic in fleet:
        sim.add(clinic, Link(cuts=[(T0 + 20 * MIN, T0 + 40 * MIN)]), route=routes[clinic])
    sim.run_until(T0 + 60 * MIN)
    found = sorted((i.clinics(), i.scope) for i in incidents(sim))
    assert found == [(["a", "b"], "upstream=10.40.0.1"), (["c"], "clinic=c")]


def test_a_flapping_link_is_one_incident_and_never_down() -> None:
    sim = Sim({"c1": LTE})
    cuts = [(T0 + 10 * MIN + k * 3 * MIN, T0 + 10 * MIN + k * 3 * MIN + 20 * S) for k in range(20)]  # an hour
    sim.add("c1", Link(cuts=cuts))
    sim.run_until(T0 + 120 * MIN)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "degraded", "flapping"),
                                                ("degraded", "up", None)]
    flapping_from, flapping_to = (t.at for t in sim.changes.transitions[1:])
    assert T0 + 13 * MIN <= flapping_from <= T0 + 20 * MIN  # seen by the second or third cut
    assert cuts[-1][1] < flapping_to <= cuts[-1][1] + 25 * MIN  # over once 21 quiet minutes have passed
    [incident] = incidents(sim)
    assert (incident.opened, incident.closed, incident.cause) == (flapping_from, flapping_to, "wan")


def test_a_dying_link_over_a_day_is_degraded_never_down() -> None:
    sim = Sim({"c1": LTE}, seed=11)
    sim.add("c1", Link(loss_pct=30, rtt_ms=130, jitter_ms=25))
    sim.run_until(T0 + 24 * 60 * MIN, tick_s=5)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "degraded", "loss")]
    assert incidents(sim) == [] and outages(sim) == []


def test_maintenance_gives_no_incident() -> None:
    sim = Sim({"c1": LTE, "c2": LTE})
    sim.add("c1", Link(cuts=[(T0 + 15 * MIN, T0 + 30 * MIN)]))
    sim.add("c2")
    sim.engine.set_windows([Window(T0 + 10 * MIN, T0 + 40 * MIN, frozenset({"c1"}), reason="router swap")])
    sim.run_until(T0 + 60 * MIN)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "maintenance", None),
                                                ("maintenance", "up", None)]
    assert [t.at for t in sim.changes.transitions if t.clinic == "c1"][1:] == [T0 + 10 * MIN, T0 + 40 * MIN]
    assert changes(sim.changes.transitions, "c2") == [("unknown", "up", None)]
    assert incidents(sim) == []
    # The agent's own record of the cut is kept (the report leaves maintenance time out).
    [outage] = outages(sim)
    assert (outage.source, outage.end) == ("agent", T0 + 30 * MIN)


def test_central_targets_failing_while_the_agent_reports_is_down_wan_from_the_first_failure() -> None:
    # The records service's network is cut off, the path to the broker is not: the agent keeps reporting.
    sim = Sim({"c1": LTE})
    agent = sim.add("c1")
    broken = (T0 + 10 * MIN, T0 + 20 * MIN)
    agent.probe = _probe_with(agent, lambda t, target: target == "gateway" or not broken[0] <= t < broken[1])
    sim.run_until(T0 + 30 * MIN)
    assert changes(sim.changes.transitions) == [("unknown", "up", None), ("up", "down", "wan"), ("down", "up", None)]
    down, back = sim.changes.transitions[1:]
    [outage] = outages(sim)
    assert broken[0] <= outage.start < broken[0] + 10 * S and broken[1] <= outage.end < broken[1] + 10 * S
    assert (down.at, back.at) == (outage.start, outage.end)
    assert outage.opened_by == "probes" and "agent_running" in outage.marks


def _probe_with(agent, answers):
    """The agent's ICMP rounds, with `answers(t, target)` deciding which targets answer."""
    def probe(t: int) -> None:
        for target in ("records", "hub", "gateway"):
            ok = answers(t, target)
            fields: dict = {"success": ok, "loss_pct": 0.0 if ok else 100.0, "sent": 5}
            if ok:
                fields.update(rtt_avg_ms=20.0, jitter_ms=2.0)
            else:
                fields["reason"] = "timeout"
            agent.seq += 1
            agent.outbox_samples.append(wire.Sample(seq=agent.seq, t=t, mono=agent.mono(t), sync="ntp", m="icmp",
                                                    tags={"target": target}, f=fields))
    return probe


def test_an_agent_record_applied_before_the_return_is_judged_still_ends_the_outage_at_the_agents_time() -> None:
    # After a collector restart the backlog arrives at once: the agent's birth and its record of the cut
    # are both applied before the engine's next look. The outage ends when the agent says, not at the
    # birth's broker time (a broker counts a message's hold in whole seconds: up to 1 s early).
    engine = Engine({"c1": LTE})
    engine.apply(StatusSeen("c1", T0, "online", "b1", None))
    for k in range(1, 10):
        engine.apply(Heard("c1", T0 + k * 10 * S, "b1", k * 10_000))
    engine.tick(T0 + 100 * S)
    engine.apply(StatusSeen("c1", T0 + 130 * S, "offline", "b1", "lost"))
    assert [(t.old, t.new) for t in engine.tick(T0 + 131 * S).transitions] == [("up", "down")]
    engine.apply(StatusSeen("c1", T0 + 199_300, "online", "b1", None))
    engine.apply(EventSeen("c1", T0 + 200 * S, T0 + 199_300, "outage", "b1", 50, {"cause": "keepalive unanswered"},
                           T0 + 95 * S, T0 + 200 * S))
    changes = engine.tick(T0 + 205 * S)
    assert [(t.old, t.new) for t in changes.transitions] == [("down", "up")]
    [outage] = last_versions(changes.outages)
    assert (outage.start, outage.end, outage.source, outage.cause) == (T0 + 95 * S, T0 + 200 * S, "agent", "wan")


def test_a_clinic_is_silent_only_past_its_agents_own_longest_quiet_spell() -> None:
    # c1's agent sends every 5 minutes on a tight data plan and says so in its birth message (quiet_max_s
    # 376: a 300 s flush interval, probes every 60 s); c2's says nothing. The link's silence_s is 300 s.
    engine = Engine({"c1": LTE, "c2": LTE})
    for clinic, quiet in (("c1", 376), ("c2", None)):
        engine.apply(StatusSeen(clinic, T0, "online", "b1", None, quiet))
        engine.apply(Heard(clinic, T0 + S, "b1", 1000))
    assert [(t.clinic, t.new) for t in engine.tick(T0 + 2 * S).transitions] == [("c1", "up"), ("c2", "up")]

    def downs(at: int) -> list[tuple[str, str, str | None]]:
        return [(t.clinic, t.new, t.cause) for t in engine.tick(at).transitions]

    assert downs(T0 + S + 301 * S) == [("c2", "down", "unknown")]  # past the link's 300 s (no probe says why)
    assert downs(T0 + S + 406 * S) == []  # c1: its word, 376 s, and 30 s for delivery
    assert downs(T0 + S + 407 * S) == [("c1", "down", "unknown")]


def _stepped_fleet(told: bool) -> list[tuple[int, str, str, str | None]]:
    """Three clinics heard every minute; 10 minutes in, the collector's wall clock is stepped 10 minutes
    forward (its ingest's times with it); c3 is heard once more, then falls silent. (detected, clinic,
    state, cause) of every change after the first `up`s."""
    engine = Engine({c: LTE for c in ("c1", "c2", "c3")})
    for clinic in ("c1", "c2", "c3"):
        engine.apply(StatusSeen(clinic, T0, "online", "b1", None))
    offset, out = 0, []
    for k in range(1, 20 * 6 + 1):  # 20 minutes of ticks, 10 s apart, on the agents' (true) time
        t = T0 + k * 10 * S
        if t == T0 + 10 * MIN + 10 * S:
            offset = 10 * MIN
            if told:
                engine.clock_stepped(t + offset)
        if t % MIN == T0 % MIN:
            for clinic in ("c1", "c2", "c3"):
                if clinic != "c3" or t <= T0 + 11 * MIN:
                    engine.apply(Heard(clinic, t + offset, "b1", k * 10_000))
        out += [(tr.detected_at, tr.clinic, tr.new, tr.cause) for tr in engine.tick(t + offset).transitions
                if tr.old != "unknown"]
    return out


def test_a_step_of_the_collectors_clock_takes_no_clinic_down_and_misses_no_silence() -> None:
    # Not told, the engine takes the step for ten minutes of silence from every clinic at once.
    stepped_at = T0 + 20 * MIN + 10 * S  # on the collector's clock after the step
    assert _stepped_fleet(told=False)[:3] == [(stepped_at, c, "down", "unknown") for c in ("c1", "c2", "c3")]
    # Told (collector.state.service.StepWatch does), it counts silence from the step: c3, last heard at
    # 21 minutes on the collector's clock, is down past the link's 300 s of silence, and no one else is.
    assert _stepped_fleet(told=True) == [(T0 + 26 * MIN + 10 * S, "c3", "down", "unknown")]


def test_a_link_first_heard_bad_is_degraded_at_the_first_look_at_its_results() -> None:
    # The agent's birth message comes a few seconds before its first report: half an hour of 30 %
    # loss at 130 ms. Looking at the clinic before that report found nothing to judge; it must not
    # wait its minute before judging what then came (the link is judged once a minute after that).
    engine = Engine({"c1": LTE})
    engine.apply(StatusSeen("c1", T0, "online", "b1", None))
    assert [(t.old, t.new) for t in engine.tick(T0 + S).transitions] == [("unknown", "up")]
    engine.apply(Report("c1", T0 + 3 * S, "b1", 3_000, [
        (T0 + 3 * S - k * 30 * S, "icmp", target, True, None, 30.0, 130.0, 6.5)
        for k in range(60, 0, -1) for target in ("records", "hub")]))
    assert [(t.old, t.new, t.reason) for t in engine.tick(T0 + 4 * S).transitions] == [("up", "degraded", "loss")]
