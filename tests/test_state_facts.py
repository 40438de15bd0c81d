"""What ingest hands the state engine from each message (collector.state.facts)."""

from __future__ import annotations

import wire
from collector.state.facts import EventSeen, Heard, ProbeSeen, Report, RouteSeen, StatusSeen, expand, facts_of

BOOT = "0123456789abcdef"


def _event(kind: str, detail: dict, mono: int, t: int = 1_000_000, sync: str = "ntp") -> wire.Event:
    return wire.Event(seq=4, t=t, mono=mono, sync=sync, kind=kind, detail=detail)


def test_the_agents_outage_record_becomes_utc_times_on_its_monotonic_clock() -> None:
    # Same box boot: down and up on the monotonic clock, counted back from the event's own time.
    events = wire.Events(v=1, clinic="c1", boot=BOOT, mono_now=50_000, events=[
        _event("outage", {"down_t": 1, "down_mono": 10_000, "up_mono": 40_000, "duration_s": 30.0,
                          "cause": "keepalive timeout or link lost", "power_cycled": False}, mono=40_500)])
    heard, outage = facts_of(events, at_ms=2_000_000, sent_ms=2_000_000)
    assert heard == Heard("c1", 2_000_000, BOOT, 50_000)
    assert isinstance(outage, EventSeen) and outage.t == 1_000_000  # ntp: its own wall time
    assert (outage.down_ms, outage.up_ms) == (1_000_000 - 30_500, 1_000_000 - 500)


def test_an_outage_across_a_reboot_keeps_the_wall_time_it_began() -> None:
    events = wire.Events(v=1, clinic="c1", boot=BOOT, events=[
        _event("outage", {"down_t": 900_000, "down_mono": -1, "up_mono": 2_000, "cause": "x", "power_cycled": True},
               mono=2_000)])
    _, outage = facts_of(events, at_ms=1_000_100, sent_ms=1_000_100)
    assert (outage.down_ms, outage.up_ms, outage.detail["power_cycled"]) == (900_000, 1_000_000, True)


def test_probe_results_and_routes_become_facts_other_samples_only_say_heard() -> None:
    telemetry = wire.Telemetry(v=1, clinic="c1", boot=BOOT, mono_now=9_000, samples=[
        wire.Sample(seq=1, t=5_000, mono=8_000, sync="none", m="icmp", tags={"target": "records"},
                    f={"success": False, "reason": "timeout", "loss_pct": 100.0}),
        wire.Sample(seq=2, t=5_000, mono=8_500, sync="ntp", m="tcp", tags={"target": "records"},
                    f={"success": True, "reason": "", "duration_ms": 42.0}),
        wire.Sample(seq=3, t=6_000, mono=8_600, sync="ntp", m="traceroute", tags={"target": "records"},
                    f={"success": True, "path": "192.168.1.1>10.0.0.1>203.0.113.9"}),
        wire.Sample(seq=4, t=6_000, mono=8_600, sync="ntp", m="snmp_if", tags={"device": "router"},
                    f={"in_bps": 1.0}),
        wire.Sample(seq=5, t=6_000, mono=8_600, sync="ntp", m="icmp", tags={"target": "x"}, f={"rtt_avg_ms": 1.0})])
    facts = facts_of(telemetry, at_ms=7_000, sent_ms=10_000)
    assert facts == [Report("c1", 7_000, BOOT, 9_000, [
                         # sync none: placed by the monotonic clock from when it was sent
                         (9_000, "icmp", "records", False, "timeout", 100.0, None, None),
                         (5_000, "tcp", "records", True, "", None, None, None)]),
                     RouteSeen("c1", 6_000, 7_000, "records", "192.168.1.1>10.0.0.1>203.0.113.9")]
    assert expand(facts[0]) == [  # type: ignore[arg-type]
        Heard("c1", 7_000, BOOT, 9_000),
        ProbeSeen("c1", 9_000, 7_000, "icmp", "records", False, "timeout", 100.0, None, None),
        ProbeSeen("c1", 5_000, 7_000, "tcp", "records", True, "", None, None, None)]
    # A sample without `success` says nothing about reachability: no fact, never a default.


def test_status_messages() -> None:
    will = wire.Status(v=1, clinic="c1", state="offline", boot=BOOT, agent="0.1", reason="lost")
    assert facts_of(will, 5, 5) == [StatusSeen("c1", 5, "offline", BOOT, "lost")]
    birth = wire.decode("clinicwatch/v1/c1/status", wire.encode(wire.Status(
        v=1, clinic="c1", state="online", boot=BOOT, agent="0.1", quiet_max_s=256)), 5)
    assert facts_of(birth, 6, 6) == [StatusSeen("c1", 6, "online", BOOT, None, 256)]
