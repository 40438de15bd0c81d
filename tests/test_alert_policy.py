"""The notification policy (collector.alerts.policy) over the state engine's scenarios on a scripted clock
(tests/state_sim.py): each test asserts the exact messages per recipient, no more, no less."""

from __future__ import annotations

from collector.alerts.policy import Intent, Recipient, Silence, Timing
from collector.state.engine import Changes, ClinicInfo, Engine, Window
from tests.state_sim import MIN, S, T0, Link, Sim

LTE = ClinicInfo("Illes Balears", "Movistar", "lte")
H = 60 * MIN


class Alerted(Engine):
    """The engine with its alert policy (it decides after each tick), keeping every decision."""

    def __init__(self, clinics: dict[str, ClinicInfo], recipients: list[Recipient], timing: Timing = Timing()) -> None:
        super().__init__(clinics)
        self.set_alerting(timing, recipients)
        self.intents: list[Intent] = []

    def tick(self, now: int, seeing: bool = True) -> Changes:
        changes = super().tick(now, seeing)
        self.intents += changes.intents
        return changes


def sent(engine: Alerted, recipient: str | None = None) -> list[tuple]:
    return [(i.recipient, i.kind, i.n, len(i.down), len(i.back), i.muted) for i in engine.intents
            if recipient is None or i.recipient == recipient]


CLINIC = Recipient("clinic-c1", clinics=frozenset({"c1"}))
REGION = Recipient("ib-admins", regions=frozenset({"Illes Balears"}))
OTHER_REGION = Recipient("ct-admins", regions=frozenset({"Catalunya"}))
EVERYONE = Recipient("noc", everything=True)
ESCALATION = Recipient("director", everything=True, escalation=True)


def test_one_clinics_wan_loss_and_recovery() -> None:
    engine = Alerted({"c1": LTE, "c2": LTE}, [CLINIC, REGION, OTHER_REGION, EVERYONE, ESCALATION])
    sim = Sim({"c1": LTE, "c2": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 20 * MIN)]))
    sim.add("c2")
    sim.run_until(T0 + 60 * MIN)
    assert sent(engine) == [("clinic-c1", "open", 1, 1, 0, False), ("ib-admins", "open", 1, 1, 0, False),
                            ("noc", "open", 1, 1, 0, False),
                            ("clinic-c1", "recovery", 1, 0, 1, False), ("ib-admins", "recovery", 1, 0, 1, False),
                            ("noc", "recovery", 1, 0, 1, False)]
    [down] = [t for t in sim.changes.transitions if t.new == "down"]
    opened = engine.intents[0]
    assert opened.at == down.detected_at + 30 * S  # the group wait, from when the engine found it down
    recovery = engine.intents[-1]
    assert (recovery.began, recovery.ended, recovery.cause) == (down.at, T0 + 20 * MIN, "wan")


def test_a_regional_failure_is_one_message_then_one_update_then_one_recovery() -> None:
    fleet = {f"ib-{i:02d}": LTE for i in range(30)}
    fleet["ct-0"] = ClinicInfo("Catalunya", "Movistar", "fibre")
    engine = Alerted(fleet, [REGION, OTHER_REGION, EVERYONE])
    sim = Sim(fleet, engine=engine)
    for clinic in fleet:
        start = T0 + 10 * MIN + int(clinic[3:]) * 4 * S if clinic.startswith("ib-") else None
        sim.add(clinic, Link(cuts=[(start, T0 + 40 * MIN)] if start else []))  # over two minutes
    sim.run_until(T0 + 60 * MIN)
    for who in ("ib-admins", "noc"):
        kinds = [(k, n, back, muted) for _, k, n, _, back, muted in sent(engine, who)]
        assert kinds == [("open", 1, 0, False), ("update", 1, 0, False), ("recovery", 1, 30, False)], who
        opened, update, _ = [i for i in engine.intents if i.recipient == who]
        assert 1 <= len(opened.down) < 30 and len(update.down) == 30
        assert update.at - opened.at == 5 * MIN  # the group interval
    assert sent(engine, "ct-admins") == []


def test_a_flapping_link_gives_one_incidents_messages() -> None:
    engine = Alerted({"c1": LTE}, [CLINIC])
    sim = Sim({"c1": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN + k * 3 * MIN, T0 + 10 * MIN + k * 3 * MIN + 20 * S) for k in range(20)]))
    sim.run_until(T0 + 120 * MIN)
    assert sent(engine) == [("clinic-c1", "open", 1, 1, 0, False), ("clinic-c1", "recovery", 1, 0, 1, False)]


def test_maintenance_gives_no_message() -> None:
    engine = Alerted({"c1": LTE}, [CLINIC, EVERYONE])
    sim = Sim({"c1": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 15 * MIN, T0 + 30 * MIN)]))
    engine.set_windows([Window(T0 + 10 * MIN, T0 + 40 * MIN, frozenset({"c1"}), reason="router swap")])
    sim.run_until(T0 + 60 * MIN)
    assert sent(engine) == []


def test_escalation_after_the_configured_time_and_a_reminder_while_it_lasts() -> None:
    timing = Timing(repeat_interval_s=3600, escalate_after_s=1800)
    engine = Alerted({"c1": LTE}, [CLINIC, ESCALATION], timing)
    sim = Sim({"c1": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 10 * MIN + 90 * MIN)]))
    sim.run_until(T0 + 130 * MIN)
    assert sent(engine) == [("clinic-c1", "open", 1, 1, 0, False), ("director", "open", 1, 1, 0, False),
                            ("clinic-c1", "reminder", 1, 1, 0, False), ("director", "reminder", 1, 1, 0, False),
                            ("clinic-c1", "recovery", 1, 0, 1, False), ("director", "recovery", 1, 0, 1, False)]
    incident_opened = min(i.began for i in engine.intents)
    director = [i for i in engine.intents if i.recipient == "director"]
    assert director[0].at == incident_opened + 30 * MIN
    assert director[1].at == director[0].at + H


def test_a_silence_mutes_without_losing_the_record() -> None:
    engine = Alerted({"c1": LTE}, [CLINIC])
    engine.silences = [Silence("s1", T0, T0 + 2 * H, clinics=frozenset({"c1"}), author="ops", comment="known")]
    sim = Sim({"c1": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 20 * MIN)]))
    sim.run_until(T0 + 60 * MIN)
    # Decided and recorded, muted: never told of it, so not told it is over either.
    assert sent(engine) == [("clinic-c1", "open", 1, 1, 0, True), ("clinic-c1", "recovery", 1, 0, 1, True)]


def test_a_recovery_after_a_silence_that_began_mid_incident_is_still_sent() -> None:
    engine = Alerted({"c1": LTE}, [CLINIC], Timing(repeat_interval_s=1200))
    sim = Sim({"c1": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 50 * MIN)]))
    sim.at(T0 + 20 * MIN, lambda t: setattr(engine, "silences", [Silence("s1", t, t + 2 * H, clinics=frozenset({"c1"}))]))
    sim.run_until(T0 + 70 * MIN)
    assert sent(engine) == [("clinic-c1", "open", 1, 1, 0, False), ("clinic-c1", "reminder", 1, 1, 0, True),
                            ("clinic-c1", "recovery", 1, 0, 1, False)]


def test_keys_name_each_message_once() -> None:
    engine = Alerted({"c1": LTE}, [CLINIC, EVERYONE], Timing(repeat_interval_s=600))
    sim = Sim({"c1": LTE}, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 10 * MIN, T0 + 50 * MIN)]))
    sim.run_until(T0 + 70 * MIN)
    keys = [i.key for i in engine.intents]
    assert len(keys) == len(set(keys)) == 2 * (1 + 3 + 1)  # open, three reminders, recovery


def test_a_recurring_maintenance_window_in_the_clinics_time_zone_gives_no_message(tmp_path) -> None:
    import datetime as dt

    import yaml

    from collector.registry import load_registry
    from collector.state.service import load_windows

    (tmp_path / "clinics.yaml").write_text(yaml.safe_dump({"clinics": [
        {"id": "c1", "name": "Sóller", "region": "Illes Balears", "tz": "Europe/Madrid"},
        {"id": "c2", "name": "La Oliva", "region": "Canarias", "tz": "Atlantic/Canary"}]}))
    (tmp_path / "maintenance.yaml").write_text(yaml.safe_dump({"windows": [
        {"clinics": ["c1", "c2"], "every": ["mon"], "from": "16:30", "to": "17:30", "reason": "router updates"}]}))
    registry = load_registry(tmp_path / "clinics.yaml")
    windows = load_windows(tmp_path / "maintenance.yaml", registry, T0)  # T0: Monday 2026-09-21, 14:13 UTC
    utc = sorted((dt.datetime.fromtimestamp(w.start / 1000, dt.UTC).strftime("%a %d %H:%M"),
                  (w.end - w.start) // MIN, sorted(w.clinics)) for w in windows)
    assert utc == [("Mon 21 14:30", 60, ["c1"]), ("Mon 21 15:30", 60, ["c2"]),
                   ("Mon 28 14:30", 60, ["c1"]), ("Mon 28 15:30", 60, ["c2"])]
    fleet = {"c1": LTE, "c2": ClinicInfo("Canarias", "Movistar", "lte")}
    engine = Alerted(fleet, [EVERYONE])
    engine.set_windows(windows)
    sim = Sim(fleet, engine=engine)
    sim.add("c1", Link(cuts=[(T0 + 20 * MIN, T0 + 60 * MIN)]))  # 14:33-15:13 UTC, inside Madrid's 16:30-17:30
    sim.add("c2", Link(cuts=[(T0 + 20 * MIN, T0 + 60 * MIN)]))  # the same moment is 15:33 in the Canaries: not
    sim.run_until(T0 + 100 * MIN)
    assert [(i.kind, i.down or i.back) for i in engine.intents] == [("open", ("c2",)), ("recovery", ("c2",))]


def test_recurring_windows_follow_daylight_saving_time(tmp_path) -> None:
    import yaml

    from collector.registry import load_registry
    from collector.state.service import load_windows

    (tmp_path / "clinics.yaml").write_text(yaml.safe_dump({"clinics": [{"id": "c1", "name": "A",
                                                                          "tz": "Europe/Madrid"}]}))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"windows": [{"clinics": ["c1"], "every": ["day"],
                                                                  "from": "01:00", "to": "04:00"}]}))
    # Around 2026-10-25, when Spain goes from UTC+2 to UTC+1.
    windows = load_windows(tmp_path / "m.yaml", load_registry(tmp_path / "clinics.yaml"), 1_792_800_000_000)
    hours = {w.start: (w.end - w.start) / 3_600_000 for w in windows}
    assert sorted(hours.values()).count(4.0) == 1 and set(hours.values()) == {3.0, 4.0}  # 03:00 comes twice
