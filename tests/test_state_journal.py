"""The state engine's snapshot and journal: restored, it is the engine it was (collector.state.db and
collector.state.service.replay), so a SIGKILL neither loses nor repeats a state change."""

from __future__ import annotations

import json
import pickle

from collector.alerts.policy import Recipient, Silence, Timing
from collector.state import digest
from collector.state.db import SNAPSHOT_FACTS_PER_CLINIC, SNAPSHOT_LONGEST, StateDB, snapshot_due
from collector.state.engine import Changes, ClinicInfo, Engine
from collector.state.facts import Heard, StatusSeen
from collector.state.service import StepWatch, replay
from tests.state_sim import MIN, S, T0, Link, Sim

FLEET = {f"c{i}": ClinicInfo("Illes Balears", "Movistar" if i < 4 else "Orange", "lte") for i in range(6)}


class Journalled(Engine):
    """An engine that keeps the journal the service keeps."""

    def __init__(self, clinics: dict[str, ClinicInfo]) -> None:
        self.journal: list[tuple[str, bytes]] = []
        super().__init__(clinics)

    def apply(self, fact) -> None:  # type: ignore[no-untyped-def]
        super().apply(fact)
        self.journal.append(("digest", digest.encode([fact], "test")))

    def tick(self, now: int, seeing: bool = True) -> Changes:
        changes = super().tick(now, seeing)
        self.journal.append(("tick", json.dumps([now, seeing]).encode()))
        return changes

    def clock_stepped(self, now: int) -> None:
        super().clock_stepped(now)
        self.journal.append(("step", json.dumps(now).encode()))


def _fleet() -> Sim:
    engine = Journalled(FLEET)
    engine.set_alerting(Timing(group_wait_s=30, group_interval_s=120, repeat_interval_s=600),
                        [Recipient("ib-admins", regions=frozenset({"Illes Balears"})),
                         Recipient("director", everything=True, escalation=True)])
    sim = Sim(FLEET, engine=engine)
    for i, clinic in enumerate(FLEET):
        cuts = [(T0 + 10 * MIN + i * 20 * S, T0 + 30 * MIN)] if i < 4 else []
        if i == 5:  # and one that flaps
            cuts = [(T0 + 5 * MIN + k * 3 * MIN, T0 + 5 * MIN + k * 3 * MIN + 20 * S) for k in range(12)]
        sim.add(clinic, Link(cuts=cuts))
    return sim


def _same(a: Engine, b: Engine) -> None:
    for clinic in FLEET:
        assert vars(a.machines[clinic]) == vars(b.machines[clinic]), clinic
    assert {i: x.as_dict() for i, x in a.incidents.open.items()} == {i: x.as_dict() for i, x in b.incidents.open.items()}
    assert (a.due, a.due_at, a.touched) == (b.due, b.due_at, b.touched)
    assert a.policy is not None and b.policy is not None
    assert (a.policy.memory, a.policy.seen, a.silences) == (b.policy.memory, b.policy.seen, b.silences)


def test_snapshot_and_journal_restore_the_engine_exactly(tmp_path) -> None:
    sim = _fleet()
    engine: Journalled = sim.engine  # type: ignore[assignment]
    db = StateDB(tmp_path / "state.sqlite")
    sim.run_until(T0 + 8 * MIN)
    db.commit(engine.journal, [], [], [], [], [], sim.now)
    engine.journal = []
    db.snapshot(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL))
    silence = Silence("s1", T0 + 9 * MIN, T0 + 40 * MIN, clinics=frozenset({"c1"}))
    sim.at(T0 + 9 * MIN, lambda t: (engine.set_silences([silence]),
                                    engine.journal.append(("silences", json.dumps([[silence.id, silence.start,
                                                          silence.end, ["c1"], [], [], "", ""]]).encode()))))
    sim.run_until(T0 + 12 * MIN)  # mid-outage, mid-incident, mid-flapping: committed, then killed
    db.commit(engine.journal, [], [], [], [], [], sim.now)
    engine.journal = []
    blob, journal = db.load()
    assert blob is not None and len([k for k, _ in journal if k == "tick"]) == 240  # four minutes since it
    restored = pickle.loads(blob)
    for kind, body in journal:
        replay(restored, kind, body)
    _same(engine, restored)
    # And from here both decide the same: the live one goes on, the restored one is fed the same.
    live_changes = sim.run_until(T0 + 75 * MIN)
    assert engine.incidents.open == {}
    restored_changes = Changes()
    for kind, body in engine.journal:
        if kind == "tick":
            now, seeing = json.loads(body)
            got = restored.tick(now, seeing)
            restored_changes.transitions += got.transitions
            restored_changes.intents += got.intents
        else:
            replay(restored, kind, body)
    after = [t for t in live_changes.transitions if t.detected_at > T0 + 12 * MIN]
    assert [(t.clinic, t.new, t.at) for t in restored_changes.transitions] == [(t.clinic, t.new, t.at) for t in after]
    assert len(after) == 5  # four clinics back, and the flapping one settled
    told = [i for i in live_changes.intents if i.at > T0 + 12 * MIN]
    assert restored_changes.intents == told and {i.kind for i in told} >= {"update", "recovery"}
    _same(engine, restored)


def test_a_snapshot_of_another_format_is_not_loaded(tmp_path) -> None:
    db = StateDB(tmp_path / "state.sqlite")
    db.commit([("tick", b"[1, true]")], [], [], [], [], [], 1)
    db.snapshot(b"x")
    db.db.execute("UPDATE snapshot SET format = 'older'")
    assert db.load() == (None, [])


def test_a_snapshot_is_written_when_the_journal_since_the_last_is_worth_it() -> None:
    every = 300.0
    need = SNAPSHOT_FACTS_PER_CLINIC * 10_000
    # Not sooner than snapshot_s, however much was journalled.
    assert not snapshot_due(every - 1, 10 * need, 10_000, every)
    # Then once the facts since the last number SNAPSHOT_FACTS_PER_CLINIC a clinic: for 10,000 clinics, 100,000.
    assert (snapshot_due(every, need - 1, 10_000, every), snapshot_due(every, need, 10_000, every)) == (False, True)
    assert snapshot_due(every, SNAPSHOT_FACTS_PER_CLINIC * 6, 6, every)
    # A quiet fleet's journal (judgements, empty digests) is cut too, at the latest SNAPSHOT_LONGEST x snapshot_s.
    assert not snapshot_due(SNAPSHOT_LONGEST * every - 1, 0, 10_000, every)
    assert snapshot_due(SNAPSHOT_LONGEST * every, 0, 10_000, every)


def test_a_step_of_the_clock_is_journalled_and_replayed_as_it_was_lived() -> None:
    engine = Journalled(FLEET)
    for clinic in FLEET:
        engine.apply(StatusSeen(clinic, T0, "online", "b1", None))
        engine.apply(Heard(clinic, T0 + S, "b1", 1000))
    engine.tick(T0 + 2 * S)
    engine.clock_stepped(T0 + 10 * MIN)  # told: silence counts from here
    assert engine.tick(T0 + 10 * MIN).transitions == []
    restored = Engine(FLEET)
    for kind, body in engine.journal:
        replay(restored, kind, body)
    for clinic in FLEET:
        assert vars(restored.machines[clinic]) == vars(engine.machines[clinic]), clinic
    assert restored.machines["c0"].grace_until == T0 + 10 * MIN  # and the step was replayed: without it, 0
    # Both take the fleet down at the same moment, a silence period after the step.
    assert [(t.clinic, t.new) for t in restored.tick(T0 + 15 * MIN + S).transitions] == [
        (c, "down") for c in sorted(FLEET)]


def test_the_step_watch_tells_a_step_from_the_clocks_steady_run(caplog) -> None:
    watch = StepWatch()
    assert watch.step(T0, 5_000) == 0  # the first reading: nothing to compare with
    assert watch.step(T0 + 1_004, 6_003) == 0  # a second each, give or take a millisecond of slewing
    assert watch.step(T0 + 2_001 + 36_000, 7_000) == 36_000  # NTP set it 36 s forward
    assert watch.step(T0 + 39_000, 8_000) == 0
    assert watch.step(T0 + 40_000 - 600_000, 9_000) == -600_000  # and ten minutes back
    assert watch.step(T0 + 40_000 - 600_000 + 2_000, 11_000) == 0
    assert [(r.levelname, r.getMessage(), r.fields["seconds"], r.fields["effect"]) for r in caplog.records] == [
        ("WARNING", "the collector's clock was stepped", 36.0, "silence is counted afresh from now"),
        ("WARNING", "the collector's clock was stepped", -600.0, "a clinic's silence is judged late by as much")]
