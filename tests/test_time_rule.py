"""The time of samples from an unsynchronised clock, whatever the broker's queueing (scripted clocks).

An agent whose clock is years off sends samples placed by its monotonic clock. The
broker may hold a message (a collector restarting, a backlog draining); it forwards
it with the Message Expiry Interval less the whole seconds it held it, as Mosquitto
computes it (`expiry_time = now_s + interval` on arrival, `expiry_time − now_s` on
delivery, both in whole seconds of its clock). The collector must place every
sample within a second of when it was taken, and the same sample the same way when
it comes again.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pytest

import wire
from collector.ingest.agentclock import AgentClocks
from collector.ingest.lineproto import stamp
from collector.ingest.pipeline import Pipeline
from collector.registry import Clinic, Registry
from collector.ingest.spool import Spool
from collector.ingest.store import StoreError
from collector.ingest.validate import DeadLetters, Validator

CLINIC = "es-ib-0001"
BOOT_UTC_MS = 1_790_000_000_000  # when the agent's box booted (its monotonic clock's zero), true UTC
WRONG_BY_MS = -3 * 365 * 86_400_000  # the agent's wall clock, three years behind
TRANSIT_MS = 3


class Fleet:
    """One agent and the broker between it and the collector, on scripted clocks (true UTC ms)."""

    def __init__(self, tmp: Path, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.seq = 0
        self.tmp = tmp
        self.validator = self.new_collector()

    def new_collector(self) -> Validator:
        """A collector process as it starts: its agent-clock state read from its data dir."""
        registry = Registry(clinics=[Clinic(id=CLINIC, name="Centre de Salut")])
        return Validator(registry, DeadLetters(self.tmp / "dead-letters.jsonl"),
                         AgentClocks(self.tmp / "agent-clocks.log"))

    def message(self, sent_ms: int, taken_ms: list[int]) -> bytes:
        """A batch the agent builds and sends at `sent_ms` with samples taken at `taken_ms`."""
        samples = []
        for taken in taken_ms:
            self.seq += 1
            samples.append(wire.Sample(seq=self.seq, t=taken + WRONG_BY_MS, mono=taken - BOOT_UTC_MS, sync="none",
                                       m="icmp", tags={"target": "gw"}, f={"rtt_avg_ms": 1.0}))
        return wire.encode(wire.Telemetry(v=1, clinic=CLINIC, boot="abcdef12", mono_now=sent_ms - BOOT_UTC_MS,
                                          samples=samples))

    def deliver(self, payload: bytes, sent_ms: int, hold_ms: float) -> list[str]:
        """The broker receives at sent + transit, holds `hold_ms`, forwards; the collector validates."""
        at_broker = sent_ms + TRANSIT_MS + self.rng.random()  # any phase against the broker's seconds
        forwarded = at_broker + hold_ms
        held_s = math.floor(forwarded / 1000) - math.floor(at_broker / 1000)
        received = int(forwarded + TRANSIT_MS)
        lines = self.validator.lines(wire.topic(CLINIC, "telemetry"), payload, received,
                                     wire.held_seconds(wire.HOLD_CLOCK_S - held_s))
        assert lines is not None
        return lines


def placed(lines: list[str]) -> list[tuple[int, int]]:
    """(stored time in ms, time_bound_ms) of each line."""
    out = []
    for line in lines:
        fields, stamp_ns = line.rsplit(" ", 2)[1:]
        bound = dict(f.split("=") for f in fields.split(","))["time_bound_ms"]
        out.append((int(stamp_ns) // 1_000_000, int(bound.rstrip("i"))))
    return out


def check(lines: list[str], taken_ms: list[int], within_ms: int) -> None:
    for (stored, bound), taken in zip(placed(lines), taken_ms):
        assert abs(stored - taken) < within_ms, (stored - taken, bound)
        assert abs(stored - taken) <= bound + TRANSIT_MS * 2, "the true time lies within the stored bound"


START = BOOT_UTC_MS + 3_600_000


@pytest.mark.parametrize("hold_ms", [0, 10_000, 3_600_000])
def test_a_held_message_is_placed_by_the_live_ones_before_it(tmp_path: Path, hold_ms: int) -> None:
    fleet = Fleet(tmp_path)
    for n in range(30):  # the agent reports every 30 s, delivered at once
        sent = START + n * 30_000
        taken = [sent - 20_000, sent - 5_000]
        check(fleet.deliver(fleet.message(sent, taken), sent, 0), taken, within_ms=TRANSIT_MS * 2 + 2)
    sent = START + 30 * 30_000
    taken = [sent - 20_000, sent - 5_000]
    check(fleet.deliver(fleet.message(sent, taken), sent, hold_ms), taken,
          # since the last live message (30 s, plus the hold) the monotonic clock may have drifted 100 ppm
          within_ms=TRANSIT_MS * 2 + 2 + int(1e-4 * (30_000 + hold_ms)))


@pytest.mark.parametrize("hold_ms", [10_000, 600_000, 3_600_000])
@pytest.mark.parametrize("seed", range(5))
def test_a_collector_that_meets_an_agent_through_a_backlog_places_it_within_a_second(tmp_path: Path, hold_ms: int,
                                                                                   seed: int) -> None:
    fleet = Fleet(tmp_path, seed)
    # The collector was down while the agent reported every 30 s: all of it arrives at once.
    drained_at = START + hold_ms
    for n in range(hold_ms // 30_000):
        sent = START + n * 30_000
        taken = [sent - 20_000, sent - 5_000]
        check(fleet.deliver(fleet.message(sent, taken), sent, drained_at - sent), taken, within_ms=1000)


def test_the_old_rule_would_date_a_held_message_by_its_arrival(tmp_path: Path) -> None:
    """The defect this replaces: placed relative to the moment of receipt, a message held 10 s was 10 s late."""
    sent, taken = START, [START - 5_000]
    message = wire.decode(wire.topic(CLINIC, "telemetry"), Fleet(tmp_path).message(sent, taken), sent + 10_000)
    assert wire.effective_time(message.samples[0], message.mono_now, sent + 10_000) - taken[0] == 10_000


def test_a_message_delivered_again_after_a_collector_restart_lands_on_the_same_points(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for n in range(5):
        sent = START + n * 30_000
        fleet.deliver(fleet.message(sent, [sent - 1_000]), sent, 0)
    sent = START + 5 * 30_000
    payload = fleet.message(sent, [sent - 20_000, sent - 5_000])
    first = fleet.deliver(payload, sent, 0)
    fleet.validator = fleet.new_collector()  # SIGKILL before the acknowledgement: the broker sends it again,
    again = fleet.deliver(payload, sent, 40_000)  # 40 s later, to the restarted collector
    assert [line.rsplit(" ", 1)[1] for line in again] == [line.rsplit(" ", 1)[1] for line in first]


def test_records_of_one_series_on_the_same_millisecond_are_distinct_points(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    sent = START
    lines = fleet.deliver(fleet.message(sent, [sent - 1_000, sent - 1_000, sent - 1_000]), sent, 0)
    stamps = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert len(set(stamps)) == 3 and len({s // 1_000_000 for s in stamps}) == 1
    assert stamps[0] == stamp(stamps[0] // 1_000_000, "abcdef12", 1)


def test_a_batch_replayed_from_the_spool_keeps_its_placement(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    sent = START
    lines = fleet.deliver(fleet.message(sent, [sent - 20_000, sent - 5_000]), sent, 0)
    stored: list[str] = []
    database_up = False

    def writer(batch: list[str]) -> None:
        if not database_up:
            raise StoreError("InfluxDB unreachable", retryable=True)
        stored.extend(batch)

    acked: list[int] = []
    pipeline = Pipeline(writer, Spool(tmp_path / "spool", 1_000_000), acked.extend, tmp_path / "refused.jsonl",
                        flush_interval_s=0.01)
    pipeline.start()
    pipeline.submit(7, lines)
    for _ in range(500):  # spooled and acknowledged, with the database still down
        if acked:
            break
        time.sleep(0.01)
    assert acked == [7] and pipeline.stats.points_spooled == 2
    database_up = True  # an hour later, say: the spool keeps the lines as they were placed
    for _ in range(500):
        if stored:
            break
        time.sleep(0.01)
    pipeline.stop()
    assert stored == lines


def test_a_commit_log_cut_short_by_a_crash_keeps_the_commits_before_it(tmp_path: Path) -> None:
    clocks = AgentClocks(tmp_path / "agent-clocks.log")
    placed_first = clocks.place(CLINIC, "abcdef12", 1000, START, 0)
    clocks.close()
    with open(tmp_path / "agent-clocks.log", "a") as log:
        log.write('["es-ib-0001", "abcdef13", 12')  # the process died mid-line
    again = AgentClocks(tmp_path / "agent-clocks.log")
    assert again.committed.keys() == {(CLINIC, "abcdef12")}
    assert again.place(CLINIC, "abcdef12", 1000, START + 5_000, 5).sent_ms == placed_first.sent_ms


@pytest.mark.parametrize("live_first", [True, False])
def test_the_commit_moves_only_for_a_better_estimate_or_drift(tmp_path: Path, live_first: bool) -> None:
    clocks = AgentClocks()
    offset = START - 1000  # the agent's mono_now 1000 was sent at START (true)
    first = clocks.place(CLINIC, "abcdef12", 1000, START + 3 + (0 if live_first else 7_400), 0 if live_first else 7)
    later = clocks.place(CLINIC, "abcdef12", 31_000, START + 30_000 + 2, 0)  # live, 1 ms quicker
    # (Each bound is widened by 1 ms for rounding, and by 100 ppm of the distance from where it was seen.)
    if live_first:
        assert first.sent_ms - 1000 == offset + 4 and later.sent_ms - 31_000 == offset + 4  # not moved for 1 ms
    else:
        assert abs(first.sent_ms - 1000 - offset) < 1000 and later.sent_ms - 31_000 == offset + 3  # a live one wins
    drifted = clocks.place(CLINIC, "abcdef12", 3_031_000, START + 3_030_000 + 2 + 300, 0)  # 100 ppm: +300 ms
    assert drifted.sent_ms - 3_031_000 == offset + 3 + 300


def test_events_are_placed_like_samples(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    for n in range(3):
        sent = START + n * 30_000
        fleet.deliver(fleet.message(sent, [sent - 1_000]), sent, 0)
    sent = START + 3 * 30_000
    taken = sent - 7_000
    events = wire.Events(v=1, clinic=CLINIC, boot="abcdef12", mono_now=sent - BOOT_UTC_MS, events=[
        wire.Event(seq=99, t=taken + WRONG_BY_MS, mono=taken - BOOT_UTC_MS, sync="none", kind="on_battery",
                   detail={"charge_pct": 80})])
    received = sent + 10_000 + TRANSIT_MS  # held 10 s by the broker
    (line,) = fleet.validator.lines(wire.topic(CLINIC, "event"), wire.encode(events), received,
                                    wire.held_seconds(wire.HOLD_CLOCK_S - 10))
    stored_ns = int(line.rsplit(" ", 1)[1])
    assert abs(stored_ns // 1_000_000 - taken) <= TRANSIT_MS * 2 + 2 + 4  # drift allowance: 40 s at 100 ppm
    assert stored_ns == stamp(stored_ns // 1_000_000, "abcdef12", 99)
    assert line.startswith("agent_event,clinic=es-ib-0001,kind=on_battery,link=other charge_pct=80i,seq=99i,"
                           "time_bound_ms=")
