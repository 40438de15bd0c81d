"""No measurement lost: the real agent through link cuts, SIGKILL and broker restarts.

The probes are four TCP checks a second, so the 40 s outage below holds about as
many samples as an hour at the default schedule (two ICMP targets a minute, four
5-minute probes and self-metrics: ~180 an hour).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.servers import Mosquitto
from tests.agent_harness import Watcher, agent_config, check_complete_and_ordered, outbox_rows, start_agent, stop_agent

HALF_OUTAGE_S = 20  # before the kill, and again after the restart


def _tcp_probes(host: str, port: int) -> list[dict]:
    return [{"kind": "tcp", "name": f"svc{i}", "host": host, "port": port, "interval_s": 1, "timeout_s": 0.8}
            for i in range(4)]


@dataclass(frozen=True)
class Outage:
    """When the outage began and ended, on the monotonic clock (the one the agent keeps as `mono`, and
    times its outages by) and as the wall clock's offset from it at each end. Durations are read on the
    monotonic clock: the wall clock may be stepped meanwhile (a fresh machine's clock being set), and an
    outage of 40 s would then look like one of 76."""
    began_mono: float
    ended_mono: float
    offsets_ms: tuple[int, int]  # wall clock minus monotonic, in ms, at the beginning and at the end

    @property
    def seconds(self) -> float:
        return self.ended_mono - self.began_mono


def _offset_ms() -> int:
    return time.time_ns() // 1_000_000 - time.monotonic_ns() // 1_000_000


def _outage_with_kill(watcher: Watcher, config: Path, netns: str | None, begin: Callable[[], None],
                      end: Callable[[], None]) -> Outage:
    """Samples flow; the outage begins; the agent is SIGKILLed mid-outage and restarted; the outage ends;
    the backlog drains; the agent stops cleanly."""
    agent = start_agent(config, netns=netns)
    try:
        watcher.wait_for(lambda: len(watcher.records()) >= 20, what="the first samples")
        began, began_offset = time.monotonic(), _offset_ms()
        begin()
        time.sleep(HALF_OUTAGE_S)
        stop_agent(agent, kill=True)
        agent = start_agent(config, netns=netns)
        time.sleep(HALF_OUTAGE_S)
        ended, ended_offset = time.monotonic(), _offset_ms()
        end()
        watcher.wait_for(lambda: any(r.mono / 1000 > ended + 3 for _, r, _ in watcher.records()), timeout=120,
                         what="samples taken after the outage")
        stop_agent(agent)
    finally:
        stop_agent(agent, kill=True)
        watcher.close()
    return Outage(began, ended, (began_offset, ended_offset))


def _verify(watcher: Watcher, state_dir: Path, outage: Outage) -> dict:
    samples, events = watcher.records("telemetry"), watcher.records("event")
    boots = list(dict.fromkeys(boot for boot, _, _ in samples))
    assert len(boots) == 2, f"expected the killed run and its successor, got {boots}"
    duplicates = check_complete_and_ordered(samples, boots)
    for boot in boots:  # samples and events share one sequence per boot: together, no gap
        seqs = {r.seq for b, r, _ in samples + events if b == boot}
        assert seqs == set(range(max(seqs) + 1)), f"boot {boot}: missing {sorted(set(range(max(seqs) + 1)) - seqs)}"
    # Every committed record was acknowledged (and only then deleted): nothing is left behind.
    assert outbox_rows(state_dir)[0] == 0
    # The agent probed through the outage (both its runs), and each sample kept the time it was taken:
    # the outage is filled, not stamped at send time.
    during = [r for _, r, _ in samples
              if outage.began_mono + 1 < r.mono / 1000 < outage.ended_mono - 1 and r.m == "tcp"]
    assert len(during) >= 4 * (outage.seconds - 8), len(during)
    spread = sorted(r.mono for r in during)
    assert (spread[-1] - spread[0]) / 1000 > outage.seconds - 6
    # A sample's wall time is its monotonic time plus the wall clock's offset when it was taken, which
    # was the offset at one end of the outage or the other (the same unless the clock was stepped);
    # a sample stamped when sent, after the outage, would be at least seconds later.
    low, high = min(outage.offsets_ms) - 50, max(outage.offsets_ms) + 50
    assert [r for r in during if not low <= r.t - r.mono <= high] == []
    outages = [r for b, r, _ in events if r.kind == "outage" and b == boots[1]]
    assert len(outages) == 1, "the restarted agent reports the outage its predecessor began"
    assert outages[0].detail["duration_s"] == pytest.approx(outage.seconds, abs=15)
    statuses = watcher.statuses()
    assert statuses[-1].state == "offline" and statuses[-1].reason == "shutdown"
    assert any(s.state == "online" and s.boot == boots[1] for s in statuses)
    depths = [r.f["outbox_samples"] for _, r, _ in samples if r.m == "agent"]
    assert max(depths) >= 40, "the agent reported its outbox growing during the outage"
    return {"duplicates": sum(duplicates.values()), "during": during}


@pytest.mark.privileged
def test_cut_kill_restart_restore_delivers_every_sample_in_order(emulated_link, start_server, tmp_path) -> None:
    link = emulated_link("dsl")
    broker = start_server(Mosquitto(host=link.central_ip))
    watcher = Watcher(broker.host, broker.port)
    config = agent_config(tmp_path, link.central_ip, broker.port, _tcp_probes(link.central_ip, broker.port))
    outage = _outage_with_kill(watcher, config, link.netns, link.cut, link.restore)
    result = _verify(watcher, tmp_path / "state", outage)
    assert all(r.f["success"] is False for r in result["during"]), "while cut off, the checks themselves fail"
    # A batch in flight at the very moment of the cut may reach the broker without its PUBACK
    # coming back; it is then sent again (at-least-once; the store's points are idempotent).
    assert result["duplicates"] <= 4 * 500


def test_broker_restart_and_agent_kill_lose_nothing(start_server, tmp_path) -> None:
    broker = start_server(Mosquitto())
    watcher = Watcher(broker.host, broker.port)
    config = agent_config(tmp_path, broker.host, broker.port, _tcp_probes(broker.host, 9))  # port 9: refused
    outage = _outage_with_kill(watcher, config, None, broker.stop, broker.start)
    result = _verify(watcher, tmp_path / "state", outage)
    # QoS 1 is at-least-once: a batch the broker passed on just before it stopped, its PUBACK never
    # sent, is sent again once it is back (the store's points are idempotent). Only such batches: every
    # record seen twice was first delivered by the broker that stopped, and at most what was in flight.
    twice = watcher.repeated()
    assert len(twice) <= 4 * 500
    assert all(at < outage.ended_mono for at in twice), "a record delivered twice by the restarted broker"


def _batches(watcher: Watcher, clinic: str = "es-ib-0042") -> list[tuple[int, list]]:
    """(when it arrived, its samples) for every telemetry message of a clinic, in arrival order."""
    with watcher.lock:
        messages = [m for kind, m in watcher.messages if kind == "telemetry" and m.clinic == clinic]
        return [(watcher.received_ms[id(m)], list(m.samples)) for m in messages]


def test_samples_wait_their_flush_interval_together(start_server, tmp_path) -> None:
    broker = start_server(Mosquitto())
    watcher = Watcher(broker.host, broker.port)
    probes = [{"kind": "tcp", "name": "records", "host": broker.host, "port": broker.port, "interval_s": 1}]
    config = agent_config(tmp_path, broker.host, broker.port, probes, mqtt={"flush_interval_s": 8, "keepalive_s": 60},
                          self_metrics_interval_s=3600)
    agent = start_agent(config)
    try:
        watcher.wait_for(lambda: len(_batches(watcher)) >= 3, timeout=90, what="three batches")
    finally:
        stop_agent(agent)
        watcher.close()
    for received, samples in _batches(watcher)[:3]:
        waited_ms = received - min(s.t for s in samples)
        # A batch goes when its oldest sample has waited 8 s: not before, and not a whole interval late.
        assert 8000 - 100 <= waited_ms <= 8000 + 3000, (waited_ms, len(samples))
        assert all(s.f["success"] for s in samples if s.m == "tcp")


def test_a_failed_check_sends_the_waiting_samples_at_once(start_server, tmp_path) -> None:
    broker = start_server(Mosquitto())
    watcher = Watcher(broker.host, broker.port)
    probes = [{"kind": "tcp", "name": "records", "host": broker.host, "port": broker.port, "interval_s": 1},
              {"kind": "tcp", "name": "closed", "host": broker.host, "port": 9, "interval_s": 4}]  # refused
    config = agent_config(tmp_path, broker.host, broker.port, probes, mqtt={"flush_interval_s": 60},
                          self_metrics_interval_s=3600)
    agent = start_agent(config)
    try:
        watcher.wait_for(lambda: sum(1 for _, batch in _batches(watcher) for s in batch
                                     if s.tags.get("target") == "closed") >= 4, timeout=60, what="four failed checks")
    finally:
        stop_agent(agent)
        watcher.close()
    batches = _batches(watcher)
    failed = [(received, s, batch) for received, batch in batches for s in batch if s.tags.get("target") == "closed"]
    healthy = [(received, s) for received, batch in batches for s in batch if s.tags.get("target") == "records"]
    assert healthy and all(s.f["success"] for _, s in healthy)
    for n, (received, sample, batch) in enumerate(failed[:4]):
        assert sample.f["success"] is False and sample.f["reason"] == "refused"
        # Sent when the failure was stored, not 60 s later; with it, the healthy samples that waited: every
        # one that had ended before this check began arrived no later. (The first failure may come before
        # any healthy sample: each probe's first run is at a random moment within its first interval.)
        assert received - (sample.t + sample.f["duration_ms"]) < 5000
        assert all(at <= received for at, s in healthy if s.t + s.f["duration_ms"] < sample.t)
        if n:  # four 1-s checks ran since the previous failure, and went with this one
            assert sum(1 for s in batch if s.tags.get("target") == "records") >= 3


def test_a_record_the_contract_refuses_is_kept_aside_and_the_rest_flows(start_server, tmp_path) -> None:
    from agent.outbox import NewRecord, Outbox

    broker = start_server(Mosquitto())
    watcher = Watcher(broker.host, broker.port)
    # An earlier run left a record the contract refuses (a field name with a space and a "!") between good ones.
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3", boot="0123456789abcdef", kboot="earlier",
                    synchronous="normal")
    now = int(time.time() * 1000)
    good = {"m": "snmp_if", "tags": {"device": "router", "if": "wan"}, "f": {"in_bps": 5.0}}
    bad = {"m": "snmp_if", "tags": {"device": "router", "if": "wan"}, "f": {"in bps!": 5.0}}
    outbox.put([NewRecord("sample", now - 4000 + i * 500, i, "ntp", bad if i == 3 else good) for i in range(7)])
    outbox.close()
    probes = [{"kind": "tcp", "name": "records", "host": broker.host, "port": broker.port, "interval_s": 1}]
    config = agent_config(tmp_path, broker.host, broker.port, probes)
    agent = start_agent(config)
    try:
        watcher.wait_for(lambda: len([r for b, r, _ in watcher.records() if b != "0123456789abcdef"]) >= 5,
                         what="the new run's samples")
    finally:
        stop_agent(agent)
        watcher.close()
    earlier = [r for b, r, _ in watcher.records() if b == "0123456789abcdef"]
    assert sorted(r.seq for r in earlier) == [0, 1, 2, 4, 5, 6]
    refusals = [r for _, r, _ in watcher.records("event") if r.kind == "record_unsendable"]
    assert len(refusals) == 1
    assert refusals[0].detail == {"records": 1, "reason": "bad_value", "measurement": "snmp_if",
                                  "detail": "samples[0].f: key expected `str` matching regex '^[a-z][a-z0-9_]{0,63}$'"}
    assert outbox_rows(tmp_path / "state")[0] == 1  # kept, not lost: a fixed agent can still read it


def test_a_batch_due_just_after_a_keepalive_ping_goes_instead_of_the_ping(start_server, tmp_path) -> None:
    """The oldest waiting sample is younger than the last publish, so with the flush interval equal to the
    keepalive a batch would be due just after paho's PINGREQ, every time: a ping's round trip for nothing.
    The batch goes a little early instead, and its PUBACK keeps the connection alive. A clinic with nothing
    to send still pings (which is how the log is known to show them)."""
    broker = start_server(Mosquitto(extra_config="log_type debug\n"))
    watcher = Watcher(broker.host, broker.port)
    mqtt = {"keepalive_s": 10, "flush_interval_s": 10}
    probes = [{"kind": "tcp", "name": "records", "host": broker.host, "port": broker.port, "interval_s": 1}]
    (tmp_path / "busy").mkdir()
    (tmp_path / "idle").mkdir()
    busy = start_agent(agent_config(tmp_path / "busy", broker.host, broker.port, probes, mqtt=mqtt,
                                    self_metrics_interval_s=3600))
    idle = start_agent(agent_config(tmp_path / "idle", broker.host, broker.port, [], clinic_id="es-ib-0043",
                                    mqtt=mqtt, self_metrics_interval_s=3600))
    try:
        watcher.wait_for(lambda: len(_batches(watcher)) >= 6, timeout=90, what="six batches")
    finally:
        stop_agent(busy)
        stop_agent(idle)
        watcher.close()
    log = broker.log_path.read_text()
    assert log.count("Received PINGREQ from clinicwatch-es-ib-0043") >= 2
    assert log.count("Received PINGREQ from clinicwatch-es-ib-0042") == 0
    batches = _batches(watcher)
    for (before, _), (received, samples) in zip(batches[1:5], batches[2:6]):
        # Before the ping would be due (10 s after the previous batch was handed over), and not much more than
        # the keepalive's margin (1 s and 5 % of it) before.
        assert 8000 <= received - before <= 9500, (received - before, len(samples))
        assert len(samples) >= 7


@pytest.mark.parametrize(("hold_s", "until_ping_s", "keepalive_s", "flush_s", "wait_s"), [
    (190, 180, 180, 180, 170),  # due 10 s after the ping: goes 10 s before it (1 s + 5 % of 180)
    (165, 180, 180, 180, 165),  # due before the ping: its own time
    (250, 180, 180, 180, 250),  # due 80 s after the ping (more than 0.4 of 180): the ping is cheaper
    (5, 2, 180, 180, 0),        # the margin has passed: at once
    (124, 60, 60, 180, 124),    # keepalive 60, flush 180: not moved a whole ping earlier (at most 30 s)
    (62, 60, 60, 180, 56),      # ... but the last ping before it is saved
    (100, None, 180, 180, 100),  # paho's times unknown: its own time
])
def test_how_long_a_batch_waits_around_a_keepalive_ping(hold_s, until_ping_s, keepalive_s, flush_s, wait_s) -> None:
    from agent.runtime import batch_wait_s

    assert batch_wait_s(hold_s, flush_s, until_ping_s, keepalive_s) == pytest.approx(wait_s)


def test_the_publish_times_kept_for_their_pubacks_stay_bounded() -> None:
    """Not connected: every publish is queued and none is acknowledged, as if each PUBACK had been handled
    before its id was stored."""
    from agent.config import MqttConfig
    from agent.structs import convert
    from agent.transport import PUBLISHED_AT_KEPT, Session

    config = convert({"host": "127.0.0.1", "port": 1883, "password": "unused"}, MqttConfig, "test", "mqtt")
    session = Session("es-ib-0042", "0123456789abcdef", config, lambda *_: None, lambda *_: None, lambda *_: None)
    mids = [session.publish("clinicwatch/v1/es-ib-0042/telemetry", b"{}") for _ in range(PUBLISHED_AT_KEPT + 1)]
    assert len(set(mids)) == PUBLISHED_AT_KEPT + 1
    assert list(session._published_at) == mids[PUBLISHED_AT_KEPT // 2:]
