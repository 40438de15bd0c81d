"""The state engine as a running service, inside one collector process (`state.engine: true`).

  ingest processes --digests (MQTT, QoS 1)--> this service: engine.apply -> every second engine.tick
                                              -> commit (collector.state.db) -> acknowledge the digests
                                              -> lines to the time-series store (clinic_state, outage, incident)

Why one engine fed by digests: in a shared-subscription group one clinic's messages land on any
ingest process, so no process alone sees a clinic whole. Each ingest process extracts the few facts
state needs from every valid message (collector.state.facts) and publishes them; this service
subscribes on its own persistent session (not shared), so it sees every fact whichever process got
the message, and facts wait in the broker while it restarts. The engine judges the fleet `lag_s`
behind the clock so facts in flight from every process are in. See docs/collector.md, Clinic state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collector.alerts.dispatch import Dispatcher, Person, make_channels, recipients, rows_for
from collector.alerts.log import NotificationLog
from collector.alerts.policy import Recipient, Silence, Timing
from collector.alerts.silences import SilenceError, load_silences
from collector.config import CollectorConfig, ConfigError
from collector.errors import explain
from collector.ingest.intake import session_client, start_session
from collector.ingest.lineproto import record_line
from collector.ingest.store import StoreError, make_writer
from collector.ingest.validate import DeadLetters
from collector.registry import Registry, check_zone, load_registry
from collector.state import digest
from collector.state.clinic import DEGRADED, DOWN, MAINTENANCE, UNKNOWN, UP, Transition
from collector.state.db import StateDB, snapshot_due
from collector.state.engine import ClinicInfo, Engine, Window
from collector.state.incidents import Incident
from collector.state.outages import Outage
from wire import yamlio

log = logging.getLogger("clinicwatch.collector")
STATE_CODES = {UP: 0, DEGRADED: 1, DOWN: 2, UNKNOWN: 3, MAINTENANCE: 4}
TICK_S = 1.0
# The wall clock moved this much more (or less) than the monotonic clock between two judgements: it was
# stepped, not slewed (NTP slews at most 0.5 ms a second).
CLOCK_STEP_MS = 2000
RELOAD_S = 10.0
EXPORT_BATCH = 5000


# -- maintenance windows -----------------------------------------------------------------------------
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EXPAND_DAYS = 8  # recurring windows are laid out this many days ahead (again every hour)


class _WindowModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    clinics: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    # Recurring: on these days (or `day` for every day), from one time of day to another, in each
    # clinic's time zone (the registry's `tz`) unless `tz` is given here.
    every: list[str] = Field(default_factory=list)
    from_: dt.time | None = Field(default=None, alias="from")
    to: dt.time | None = None
    tz: str | None = None
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> "_WindowModel":
        if not self.clinics and not self.regions:
            raise ValueError("name the clinics or the regions it covers")
        if self.every or self.from_ is not None or self.to is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("give start and end (once) or every, from and to (recurring), not both")
            if not self.every or self.from_ is None or self.to is None:
                raise ValueError("a recurring window needs every (mon..sun or day), from and to, e.g. "
                                 "every: [sun], from: '02:00', to: '04:00'")
            unknown = [d for d in self.every if d not in (*DAYS, "day")]
            if unknown:
                raise ValueError(f"every: {unknown} are not days; use {', '.join(DAYS)} or day")
            if self.from_ == self.to:
                raise ValueError("from and to are the same time")
            if self.tz is not None:
                check_zone(self.tz)
            return self
        if self.start is None or self.end is None:
            raise ValueError("give start and end (once) or every, from and to (recurring)")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset, e.g. 2026-11-25T08:00:00+01:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def occurrences(self, registry: Registry, now_ms: int) -> list[Window]:
        """A recurring window laid out as one-off windows from a day ago to EXPAND_DAYS ahead, per time zone."""
        covered = [c for c in registry.clinics if c.id in self.clinics or c.region in self.regions]
        by_zone: dict[str, set[str]] = {}
        for clinic in covered:
            by_zone.setdefault(self.tz or clinic.tz, set()).add(clinic.id)
        days = set(DAYS) if "day" in self.every else set(self.every)
        out = []
        assert self.from_ is not None and self.to is not None
        for zone, clinics in sorted(by_zone.items()):
            tz = ZoneInfo(zone)
            today = dt.datetime.fromtimestamp(now_ms / 1000, tz).date()
            for offset in range(-1, EXPAND_DAYS + 1):
                day = today + dt.timedelta(days=offset)
                if DAYS[day.weekday()] not in days:
                    continue
                start = dt.datetime.combine(day, self.from_, tzinfo=tz)
                end = dt.datetime.combine(day + dt.timedelta(days=1 if self.to < self.from_ else 0), self.to,
                                          tzinfo=tz)
                out.append(Window(int(start.timestamp() * 1000), int(end.timestamp() * 1000), frozenset(clinics),
                                  frozenset(), self.reason))
        return out


class _WindowsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    windows: list[_WindowModel] = Field(default_factory=list)


def load_windows(path: Path, registry: Registry | None = None, now_ms: int | None = None) -> list[Window]:
    """The windows in the file: one-off ones as they are, recurring ones laid out around `now_ms` for the
    registry's clinics (without a registry, the file is only checked)."""
    document = yamlio.load_file(path, "maintenance windows", ConfigError)
    try:
        model = _WindowsModel.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(explain(path, exc)) from None
    out = []
    for w in model.windows:
        if w.every:
            if registry is not None:
                out += w.occurrences(registry, now_ms if now_ms is not None else time.time_ns() // 1_000_000)
        else:
            assert w.start is not None and w.end is not None
            out.append(Window(int(w.start.timestamp() * 1000), int(w.end.timestamp() * 1000), frozenset(w.clinics),
                              frozenset(w.regions), w.reason))
    return out


def clinic_infos(registry: Registry) -> dict[str, ClinicInfo]:
    return {c.id: ClinicInfo(c.region, c.isp, c.link) for c in registry.clinics}


# -- lines for the time-series store ---------------------------------------------------------------------
def _tags(info: ClinicInfo) -> dict[str, str]:
    return {k: v for k, v in (("region", info.region), ("isp", info.isp), ("link", info.link)) if v}


def transition_line(t: Transition, info: ClinicInfo) -> str:
    fields: dict[str, object] = {"state": t.new, "code": STATE_CODES[t.new], "previous": t.old,
                                 "detected_ms": t.detected_at}
    if t.cause:
        fields["cause"] = t.cause
    if t.reason:
        fields["reason"] = t.reason
    return record_line("clinic_state", t.clinic, t.at * 1_000_000, _tags(info), fields)


def outage_line(o: Outage, info: ClinicInfo) -> str:
    # The point's time is the outage's first estimated start (in its id), so that a revised start
    # rewrites the same point; the corrected interval is in start_ms / end_ms.
    first = int(o.id.rsplit(":", 1)[1])
    fields: dict[str, object] = {"start_ms": o.start, "cause": o.cause, "source": o.source,
                                 "revisions": len(o.revisions)}
    if o.end is not None:
        fields["end_ms"] = o.end
        fields["duration_s"] = round((o.end - o.start) / 1000, 3)
    return record_line("outage", o.clinic, first * 1_000_000, _tags(info), fields)


def incident_line(i: Incident) -> str:
    fields: dict[str, object] = {"clinics": len(i.clinics()), "open_clinics": len(i.open_members()),
                                 "members": ",".join(i.clinics())[:1000], "scope": i.scope, "cause": i.cause,
                                 "opened_ms": i.opened}
    if i.closed is not None:
        fields["closed_ms"] = i.closed
        fields["duration_s"] = round((i.closed - i.opened) / 1000, 3)
    # No clinic tag (an empty value is left out); the incident's id is its tag and its opening its time.
    return record_line("incident", "", int(i.id.split("-")[1]) * 1_000_000, {"incident": i.id}, fields)


def replay(engine: Engine, kind: str, body: bytes) -> int:
    """One journal entry, as the engine lived it (what it produced then is already recorded); the facts
    it held."""
    if kind == "digest":
        facts = digest.decode(body).facts
        for fact in facts:
            engine.apply(fact)
        return len(facts)
    if kind == "tick":
        now, seeing = json.loads(body)
        engine.tick(now, seeing)
    elif kind == "step":
        engine.clock_stepped(json.loads(body))
    elif kind == "clinics":
        engine.set_clinics({c: ClinicInfo(*v) for c, v in json.loads(body).items()})
    elif kind == "windows":
        engine.set_windows([Window(a, b, frozenset(c), frozenset(r), why) for a, b, c, r, why in json.loads(body)])
    elif kind == "alerting":
        timing, found = json.loads(body)
        engine.set_alerting(Timing(*timing), [Recipient(i, frozenset(c), frozenset(r), e, x)
                                              for i, c, r, e, x in found])
    elif kind == "silences":
        engine.set_silences([Silence(i, a, b, frozenset(c), frozenset(r), frozenset(n), who, why)
                             for i, a, b, c, r, n, who, why in json.loads(body)])
    else:
        raise ValueError(f"unknown journal entry {kind!r}")
    return 0


class StepWatch:
    """Tells a step of the wall clock from its steady run: between two readings it should move as the
    monotonic clock does. A step is logged, forward or back; forward, the engine is told (clock_stepped)."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None  # (wall, monotonic) in ms at the previous reading

    def step(self, wall_ms: int, mono_ms: int) -> int:
        """How far the wall clock was stepped since the previous reading, in ms (0 if it ran steadily)."""
        last, self.last = self.last, (wall_ms, mono_ms)
        if last is None:
            return 0
        step = (wall_ms - last[0]) - (mono_ms - last[1])
        if abs(step) <= CLOCK_STEP_MS:
            return 0
        log.warning("the collector's clock was stepped", extra={"fields": {
            "seconds": round(step / 1000, 3),
            "effect": "silence is counted afresh from now" if step > 0 else
                      "a clinic's silence is judged late by as much"}})
        return step


class StateService:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        state = config.state
        self.registry_mtime = config.registry.stat().st_mtime
        self.windows_mtime: tuple | None = None
        self.db = StateDB(config.data_dir / "state.sqlite")
        self.dead_letters = DeadLetters(config.data_dir / "dead-letters.jsonl")
        self.lock = threading.Lock()
        self.journal: list[tuple[str, bytes]] = []  # since the last commit, in the order it happened
        self.engine = self._restore()
        registry = load_registry(config.registry)
        self.set_clinics(clinic_infos(registry))
        self.registry = registry
        self.people: dict[str, Person] = {}
        self._set_alerting(registry)
        self.silences_mtime: float | None = None
        self._reload_silences()
        self._reload_windows()
        self.pending_mids: list[int] = []
        self.last_digest = 0.0  # monotonic time of the last digest from any ingest process
        self.step_watch = StepWatch()
        self.last_snapshot = time.monotonic()
        self.counters = {"facts": 0, "digests": 0, "bad_digests": 0, "transitions": 0, "export_errors": 0,
                         "lines_written": 0}
        self.transition_counts: dict[str, int] = {}
        self.thread_cpu: dict[str, float] = {}  # CPU seconds of each of the engine's threads (its own cost)
        self.stopping = threading.Event()
        self.rows_added = threading.Event()
        self.writer = make_writer(config.store)
        client = session_client(config.intake, state.client_id or f"{config.intake.client_id}-state")
        client.on_connect = self._connected
        client.on_message = self._message
        self.client = client
        self.subscribed = threading.Event()
        self.notifications = NotificationLog(self.db.db, self.db.lock)
        self.dispatcher = Dispatcher(self.notifications, make_channels(config.alerts), config.alerts.retry_min_s,
                                     config.alerts.retry_max_s)
        self._threads = [threading.Thread(target=self._tick_loop, name="state-tick", daemon=True),
                         threading.Thread(target=self._export_loop, name="state-export", daemon=True),
                         threading.Thread(target=self._send_loop, name="alerts-send", daemon=True)]

    # -- lifecycle ------------------------------------------------------------------------------------
    def _restore(self) -> Engine:
        """The engine as it was at its last commit: the snapshot, then the journal replayed in order."""
        rules = self.config.state.rules
        blob, journal = self.db.load()
        engine = pickle.loads(blob) if blob is not None else Engine({}, rules)
        engine.rules = rules  # the rules of this configuration apply from now on
        engine.incidents.window_ms = int(rules.group_window_s * 1000)
        for machine in engine.machines.values():
            machine.rules = rules
        # Facts journalled since the last snapshot, these included (snapshot_due).
        self.facts_since_snapshot = sum(replay(engine, kind, body) for kind, body in journal)
        for clinic, machine in engine.machines.items():
            link = rules.link(engine.clinics[clinic].link if clinic in engine.clinics else "other")
            if link != machine.link:  # the configuration's thresholds changed
                machine.link = link
                machine.quality_changed()
        last_tick = self.db.meta("last_tick")
        if last_tick is not None:
            # The engine was not watching from its last judgement until the first digest comes.
            engine.blind_since = engine.blind_since if engine.blind_since is not None else int(last_tick)
            log.info("state restored", extra={"fields": {"clinics": len(engine.machines), "journal": len(journal),
                                                         "since": int(last_tick)}})
        return engine

    def set_clinics(self, clinics: dict[str, ClinicInfo]) -> None:
        with self.lock:
            self.engine.set_clinics(clinics)
            self.journal.append(("clinics", json.dumps({c: [i.region, i.isp, i.link] for c, i in clinics.items()})
                                 .encode()))

    def _set_alerting(self, registry: Registry) -> None:
        a = self.config.alerts
        timing = Timing(a.group_wait_s, a.group_interval_s, a.repeat_interval_s, a.escalate_after_s)
        found, people = recipients(registry)
        with self.lock:
            self.engine.set_alerting(timing, found)
            self.people = people
            self.journal.append(("alerting", json.dumps([
                [timing.group_wait_s, timing.group_interval_s, timing.repeat_interval_s, timing.escalate_after_s],
                [[r.id, sorted(r.clinics), sorted(r.regions), r.everything, r.escalation] for r in found]]).encode()))

    def set_silences(self, silences: list[Silence]) -> None:
        with self.lock:
            self.engine.set_silences(silences)
            self.journal.append(("silences", json.dumps([
                [x.id, x.start, x.end, sorted(x.clinics), sorted(x.regions), sorted(x.incidents), x.author, x.comment]
                for x in silences]).encode()))

    def _reload_silences(self) -> None:
        path = self.config.silences_path()
        try:
            mtime = path.stat().st_mtime if path.exists() else None
            if mtime == self.silences_mtime:
                return
            silences = load_silences(path) if mtime is not None else []
        except (OSError, SilenceError) as exc:
            log.error("silences not loaded; keeping the previous ones", extra={"fields": {"error": str(exc)}})
            return
        self.set_silences(silences)
        self.silences_mtime = mtime
        log.info("silences loaded", extra={"fields": {"silences": len(silences)}})

    def set_windows(self, windows: list[Window]) -> None:
        with self.lock:
            self.engine.set_windows(windows)
            self.journal.append(("windows", json.dumps([[w.start, w.end, sorted(w.clinics), sorted(w.regions),
                                                         w.reason] for w in windows]).encode()))

    def start(self) -> None:
        start_session(self.client, self.config.intake)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.rows_added.set()
        for thread in self._threads:
            thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()

    def _connected(self, client: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        if reason.is_failure:
            log.error("broker refused the state engine", extra={"fields": {"reason": str(reason)}})
            return
        client.subscribe(digest.TOPIC, qos=1)
        self.subscribed.set()

    # -- facts in -------------------------------------------------------------------------------------
    def _message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            got = digest.decode(message.payload)
        except ValueError as exc:
            # Only collector processes may publish here (the broker's ACL); kept for inspection all the same.
            log.error("a digest the state engine cannot read; kept in the dead letters",
                      extra={"fields": {"error": str(exc)}})
            self.dead_letters.keep(message.topic, message.payload, "bad_digest", str(exc), time.time_ns() // 1_000_000)
            with self.lock:
                self.counters["bad_digests"] += 1
                self.pending_mids.append(message.mid)
            return
        with self.lock:
            for fact in got.facts:
                self.engine.apply(fact)
            self.journal.append(("digest", message.payload))
            self.counters["facts"] += len(got.facts)
            self.facts_since_snapshot += len(got.facts)
            self.counters["digests"] += 1
            self.last_digest = time.monotonic()
            self.pending_mids.append(message.mid)
            self.thread_cpu["mqtt"] = time.thread_time()  # this client's network thread: reading and applying

    # -- judging --------------------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        next_reload = time.monotonic() + RELOAD_S
        while not self.stopping.wait(TICK_S):
            try:
                self.tick()
                if time.monotonic() >= next_reload:
                    self._reload()
                    next_reload = time.monotonic() + RELOAD_S
            except Exception:  # noqa: BLE001 - the engine must keep judging; the error is logged
                log.exception("state engine tick failed")
            self.thread_cpu["tick"] = time.thread_time()

    def tick(self) -> None:
        wall_ms, mono_ms = time.time_ns() // 1_000_000, time.monotonic_ns() // 1_000_000
        now = wall_ms - int(self.config.state.lag_s * 1000)
        step_ms = self.step_watch.step(wall_ms, mono_ms)
        with self.lock:
            if step_ms > 0:  # forward (StepWatch returns 0 unless the clock was stepped)
                self.engine.clock_stepped(now)
                self.journal.append(("step", json.dumps(now).encode()))
            seeing = time.monotonic() - self.last_digest < self.config.state.rules.blind_after_s
            changes = self.engine.tick(now, seeing)
            self.journal.append(("tick", json.dumps([now, seeing]).encode()))
            infos = self.engine.clinics
            lines = [transition_line(t, infos[t.clinic]) for t in changes.transitions]
            lines += [outage_line(o, infos[o.clinic]) for o in changes.outages if o.clinic in infos]
            lines += [incident_line(i) for i in changes.incidents]
            rows, muted = [], set()
            if changes.intents:
                incidents = {i.id: i for i in changes.incidents} | self.engine.incidents.open
                machines = self.engine.machines
                named = {c for intent in changes.intents for c in (*intent.down, *intent.back)}
                evidence = {c: list(outage.evidence) for c in named
                            if c in machines and (outage := machines[c].outage) is not None}
                rows, muted = rows_for(changes.intents, incidents, self.people, self.registry, evidence,
                                       self.config.alerts.status_url, self.config.alerts.deadline_s)
            self.db.commit(self.journal, changes.transitions, changes.incidents, changes.outages, changes.blind,
                           lines, now, rows, muted)
            if rows:
                self.rows_added.set()
            self.journal = []
            mids, self.pending_mids = self.pending_mids, []
            if snapshot_due(time.monotonic() - self.last_snapshot, self.facts_since_snapshot,
                            len(self.engine.machines), self.config.state.snapshot_s):
                self.db.snapshot(pickle.dumps(self.engine, protocol=pickle.HIGHEST_PROTOCOL))
                self.last_snapshot, self.facts_since_snapshot = time.monotonic(), 0
            self.counters["transitions"] += len(changes.transitions)
            for t in changes.transitions:
                self.transition_counts[t.new] = self.transition_counts.get(t.new, 0) + 1
        first_up = 0
        for t in changes.transitions:
            if t.old == UNKNOWN and t.new == UP:
                first_up += 1  # a new clinic, or every clinic of a new collector: one line says it
                continue
            log.info("clinic state", extra={"fields": {"clinic": t.clinic, "from": t.old, "to": t.new,
                                                       "cause": t.cause, "reason": t.reason}})
        if first_up:
            log.info("clinics up when first heard from", extra={"fields": {"clinics": first_up}})
        for mid in mids:
            self.client.ack(mid, 1)

    def _reload(self) -> None:
        try:
            mtime = self.config.registry.stat().st_mtime
            if mtime != self.registry_mtime:
                registry = load_registry(self.config.registry)
                self.set_clinics(clinic_infos(registry))
                self.registry = registry
                self._set_alerting(registry)
                self.registry_mtime = mtime
        except Exception as exc:  # noqa: BLE001 - ingest reports a bad registry; keep the one we have
            log.warning("state engine kept its registry", extra={"fields": {"error": str(exc)}})
        self._reload_windows()
        self._reload_silences()

    def _reload_windows(self) -> None:
        path = self.config.state.maintenance_file
        if path is None:
            return
        now = time.time_ns() // 1_000_000
        try:
            mtime = path.stat().st_mtime if path.exists() else None
            # Again when the file or the registry changed, and every hour (recurring windows roll on).
            key = (mtime, self.registry_mtime, now // 3_600_000)
            if key == self.windows_mtime:
                return
            windows = load_windows(path, self.registry, now) if mtime is not None else []
        except (OSError, ConfigError) as exc:
            log.error("maintenance windows not loaded; keeping the previous ones",
                      extra={"fields": {"error": str(exc)}})
            return
        changed = key[:2] != (self.windows_mtime or (None, None, None))[:2]
        if windows != self.engine.windows:
            self.set_windows(windows)
        self.windows_mtime = key
        if changed:
            log.info("maintenance windows loaded", extra={"fields": {"windows": len(windows)}})

    # -- alerts out -----------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self.stopping.is_set():
            self.rows_added.wait(TICK_S)  # woken as soon as a commit holds new messages, else each second
            self.rows_added.clear()
            if self.stopping.is_set():
                break
            try:
                self.dispatcher.run_once()
            except Exception:  # noqa: BLE001 - keep sending; the error is logged
                log.exception("alert dispatch failed")
            self.thread_cpu["alerts"] = time.thread_time()

    # -- lines out ------------------------------------------------------------------------------------
    def status_lines(self, now: int) -> list[str]:
        """Every registered clinic's state now, one `clinic_status` point each (docs/collector.md): what
        Grafana's fleet map, counts and availability read, whatever the range (transitions alone would
        leave a clinic that has not changed for a month out of a one-hour range)."""
        places = {c.id: c for c in self.registry.clinics}
        out = []
        with self.lock:
            infos, machines = self.engine.clinics, self.engine.machines
            for clinic, info in infos.items():
                machine = machines[clinic]
                fields: dict[str, object] = {"state": machine.state, "code": STATE_CODES[machine.state]}
                if machine.state in (UP, DEGRADED, DOWN):  # unknown and maintenance count neither way
                    fields["avail"] = 0 if machine.state == DOWN else 1
                for name, value in (("cause", machine.cause), ("reason", machine.reason),
                                    ("since_ms", machine.since), ("last_heard_ms", machine.last_heard)):
                    if value is not None:
                        fields[name] = value
                place = places.get(clinic)
                if place is not None:
                    fields["name"] = place.name
                    if place.lat is not None and place.lon is not None:
                        fields["lat"], fields["lon"] = place.lat, place.lon
                out.append(record_line("clinic_status", clinic, now * 1_000_000, _tags(info), fields))
        return out

    def _export_loop(self) -> None:
        backoff = 1.0
        every_ms = int(self.config.state.status_interval_s * 1000)
        next_status = 0
        while not self.stopping.wait(backoff if backoff > 1 else TICK_S):
            now = time.time_ns() // 1_000_000
            if every_ms and now >= next_status and self.engine.blind_since is None:
                # Not kept in the queue: a status point lost to a database outage is replaced by the next.
                # Stamped with the moment the engine judged (it judges lag_s in the past), so that the
                # points' states line up with the transitions and outages.
                try:
                    lines = self.status_lines(self.engine.now or now)
                    self.writer(lines)
                    self.counters["lines_written"] += len(lines)
                except StoreError:
                    self.counters["export_errors"] += 1
                next_status = now - now % every_ms + every_ms
            rows = self.db.pending_lines(EXPORT_BATCH)
            if not rows:
                backoff = 1.0
                continue
            try:
                self.writer([line for _, line in rows])
            except StoreError as exc:
                self.counters["export_errors"] += 1
                if exc.retryable:
                    backoff = min(backoff * 2, 30.0)
                    continue
                log.error("the store refused state lines; dropped", extra={"fields": {"error": str(exc)}})
            self.db.lines_done(rows[-1][0])
            self.counters["lines_written"] += len(rows)
            backoff = 1.0
            self.thread_cpu["export"] = time.thread_time()

    # -- reading --------------------------------------------------------------------------------------
    def clinics(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self._view(clinic) for clinic in self.engine.clinics]

    def clinic(self, clinic: str) -> dict[str, Any] | None:
        """One clinic's current state, as in clinics(); None when the registry does not have it."""
        with self.lock:
            return self._view(clinic) if clinic in self.engine.clinics else None

    def _view(self, clinic: str) -> dict[str, Any]:
        info = self.engine.clinics[clinic]
        view = self.engine.machines[clinic].view()
        view.update(region=info.region, isp=info.isp, link=info.link,
                    incident=self.engine.incidents.by_clinic.get(clinic), blind=self.engine.blind_since is not None)
        return view

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            states = {c: m.state for c, m in self.engine.machines.items()}
            return {"states": states, "open_incidents": len(self.engine.incidents.open),
                    "blind": self.engine.blind_since is not None, "counters": dict(self.counters),
                    "cpu_s": sum(self.thread_cpu.values()),
                    "transitions": dict(self.transition_counts), "pending_lines": None,
                    "notifications": self.notifications.counts(), "attempts": dict(self.dispatcher.counts)}
