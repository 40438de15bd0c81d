"""The running agent: scheduler -> probes -> outbox -> MQTT, plus outages, clock and remote config.

Everything here runs on one asyncio loop (the outbox is used from it alone); the
MQTT session's callbacks arrive from paho's thread and are handed over with
call_soon_threadsafe. Order on the wire after a reconnect: birth message (sent by
the session on connect), then pending events (the outage just lived through
among them), then the sample backlog, oldest first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import resource
import time
import uuid
from pathlib import Path
from typing import Any

import wire
from agent import __version__
from agent.clock import Clock, ClockWatch, SystemClock, kernel_boot_id
from agent.config import AgentConfig, ConfigError, RemoteSettings, parse_remote
from agent.datause import DataUse, LanGuess
from agent.jsonfile import write_json
from agent.outbox import NewRecord, Outbox, Stored
from agent.probes import ProbeContext, ProbeSpec, Traffic, run_one
from agent.schedule import Scheduler
from agent.structs import to_builtins
from agent.transport import Session
from wire.codec import peek

log = logging.getLogger("clinicwatch.agent")
FLUSH_TIMEOUT_S = 10
RUN_SLACK_S = 10.0  # a job's run, from its start to its result stored (quiet_max_s)
STOP_TASKS_S = 5.0  # jobs still running at stop get this long to end once cancelled
# A batch sent instead of a keepalive ping goes this long before the ping is due: paho checks its keepalive
# about every second, and the PUBACK must be back by then (5 % of the keepalive: 9 s at 180 s).
PING_MARGIN_S, PING_MARGIN_SHARE = 1.0, 0.05


class Agent:
    clock_check_s = 10.0  # how often to look whether the clock became trustworthy

    def __init__(self, config: AgentConfig, clock: Clock | None = None, rng: random.Random | None = None) -> None:
        if config.mqtt is None:
            raise ConfigError("the configuration has no `mqtt` section: `run` needs to know where to report")
        self.config = config
        self.clock = clock or SystemClock(config.clock.sync_check, config.clock.sync_marker)
        self.clock_watch = ClockWatch(self.clock)
        self.rng = rng or random.Random()
        self.boot = uuid.uuid4().hex[:16]
        self.kboot = kernel_boot_id()
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(config.state_dir / "outbox.sqlite3", self.boot, self.kboot,
                             max_bytes=int(config.outbox.max_mb * 1024 * 1024),
                             synchronous=config.outbox.synchronous)
        self.probe_ctx = ProbeContext(state_dir=config.state_dir)
        self.data_use = DataUse(config.state_dir / "data-use.json")
        self.is_lan = LanGuess()  # is a probe's target on the clinic's own network (its bytes are not WAN bytes)
        self.reported_bytes = 0  # the MQTT session's bytes already charged to `reporting`
        self.profiles = config.profiles() if config.devices else None
        self.snmp_engines: Any = None  # agent.snmp.Engines, made when the first device is polled
        self.pollers: dict[str, Any] = {}
        self.snmp_facts: dict[str, Any] = {}  # per device: its facts as last sent (agent/snmp/facts.py)
        self.snmp_reported: dict[str, float] = {}  # per device: when its measurements last went out (monotonic)
        self.remote_rev = 0
        self._load_remote()
        self.inflight: dict[int, list[int]] = {}  # mid -> outbox ids awaiting PUBACK
        self.refused: set[int] = set()  # outbox ids the broker refused; retried at reconnect and self-metrics time
        self.unsendable: set[int] = set()  # outbox ids the wire contract refuses: kept, set aside, said once
        self.counters = {"published_records": 0, "publish_refused": 0, "last_ack_ms": 0}
        self.outbox_depth_at_close: dict[str, int] = {}
        self.stopping = False
        self.stopping_flush = False  # at shutdown nothing waits for its batch to fill
        self.hurry = False  # something is wrong (a check failed, an event): the waiting samples go out now
        self.started_mono = self.clock.mono_ms()
        self.wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.scheduler: Scheduler | None = None
        self.session = Session(config.clinic_id, self.boot, config.mqtt, self._threadsafe(self._acked),
                               self._threadsafe(self._connection), self._threadsafe(self._config_message), self.rng)

    # -- lifecycle ---------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self.scheduler = Scheduler(self.rng)
        self._schedule()
        self.scheduler.add("clock", self._check_clock, self.clock_check_s, first_in_s=self.clock_check_s)
        self.scheduler.start()
        if not self.outbox.meta("outage"):
            self._outage_began("agent started, not yet connected")
        self.session.start()
        log.info("agent running", extra={"fields": {"clinic": self.config.clinic_id, "boot": self.boot,
                                                    "probes": len(self.config.probes), "version": __version__}})
        pump = asyncio.create_task(self._pump())
        await stop.wait()
        log.info("agent stopping: flushing the outbox")
        self.scheduler.shutdown()
        await self._flush(FLUSH_TIMEOUT_S)
        pump.cancel()
        # Jobs still running (a probe mid-burst, a poll) end here, so that what they sent is charged
        # before the data account is saved below, not in the loop's teardown after it.
        running = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in running:
            task.cancel()
        # Bounded: a task that does not end when cancelled must not keep the agent from stopping (systemd
        # would kill it, unsaved); it is named so the next log says which.
        _, stuck = await asyncio.wait(running, timeout=STOP_TASKS_S) if running else (set(), set())
        if stuck:
            log.warning("tasks still running at stop", extra={"fields": {
                "tasks": [repr(task.get_coro())[:120] for task in stuck]}})
        self.stopping = True  # a deliberate disconnect is not an outage; the outbox is about to close
        began = time.monotonic()
        self.session.stop()
        if time.monotonic() - began > 3:
            log.warning("the MQTT session took long to stop", extra={"fields": {
                "seconds": round(time.monotonic() - began, 1)}})
        self._charge_reporting()
        self.data_use.save()
        if self.snmp_engines is not None:
            self.snmp_engines.close()
        self.outbox.close()
        log.info("agent stopped", extra={"fields": {"unsent": self.outbox_depth_at_close}})

    async def _flush(self, timeout_s: float) -> None:
        self.stopping_flush = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.session.connected:
            depth = self.outbox.depth()
            if depth["samples"] + depth["events"] <= len(self.refused | self.unsendable):
                break  # all sent, or all that is left is refused by the broker: it stays for the next run
            self.wake.set()
            await asyncio.sleep(0.05)
        self.outbox_depth_at_close = self.outbox.depth()

    def _threadsafe(self, handler: Any) -> Any:
        def forward(*args: Any) -> None:
            if self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(handler, *args)
        return forward

    # -- scheduling ---------------------------------------------------------------
    def _schedule(self) -> None:
        assert self.scheduler is not None
        for job_id in self.scheduler.ids():
            if job_id.startswith(("probe:", "self", "snmp:")):
                self.scheduler.remove(job_id)
        for spec in self.config.probes:
            self._add_job(f"probe:{spec.kind}:{spec.name}", self._probe_job, spec.interval_s, [spec])
        for device in self.config.devices:
            self._add_job(f"snmp:{device.name}", self._snmp_job, device.interval_s, [device])
        self._add_job("self", self._self_metrics_job, self.config.self_metrics_interval_s, [])
        quiet = self.quiet_max_s()
        if quiet != self.session.quiet_max_s:
            self.session.quiet_max_s = quiet
            if self.session.connected:  # a new schedule (remote configuration): said again
                self.session.announce()

    def quiet_max_s(self) -> int:
        """The longest the agent stays quiet while its link is up, said in its birth message so the collector
        does not call it silent before: a batch leaves `flush_interval_s` after its oldest result, and the
        next result comes within the shortest job's interval (a device's report interval: the polls between
        may send nothing), plus its jitter (10 %, at most 30 s) and some seconds for the run itself."""
        shortest = min([p.interval_s for p in self.config.probes]
                       + [d.reports_every_s() for d in self.config.devices] + [self.config.self_metrics_interval_s])
        return math.ceil(self.config.mqtt.flush_interval_s + shortest + min(shortest * 0.1, 30.0) + RUN_SLACK_S)

    def _add_job(self, job_id: str, func: Any, interval_s: float, args: list[Any]) -> None:
        assert self.scheduler is not None
        self.scheduler.add(job_id, func, interval_s, args, jitter_s=min(interval_s * 0.1, 30.0),
                           first_in_s=self.rng.uniform(0, min(interval_s, 10.0)))  # spread the first runs

    async def _probe_job(self, spec: ProbeSpec) -> None:
        t, mono, sync = self.clock.wall_ms(), self.clock.mono_ms(), self.clock_watch.sync_label()
        traffic = Traffic()
        try:
            result = await run_one(spec, self.probe_ctx, traffic)
        finally:  # charged even when the agent stops mid-probe: the packets went out all the same
            if spec.kind != "throughput":
                lan = spec.network == "lan" or (spec.network == "auto" and traffic.address is not None
                                                 and self.is_lan(traffic.address))
                self.data_use.add("lan" if lan else "probes", traffic.bytes)
        if spec.kind == "throughput":
            self.data_use.add("throughput", int(result.fields.get("test_bytes", 0)))
        # A failed check hurries (a partial loss does not: a lossy link would lose its batching).
        self._store([NewRecord("sample", t, mono, sync, {"m": spec.kind, "tags": {"target": spec.name,
                                                                                    **result.tags},
                                                         "f": _wire_fields(result.as_fields())})],
                    hurry=not result.success)
        if result.reason == "route_changed":
            self._event("route_change", {"target": spec.name, "detail": result.detail[:256]})

    async def _snmp_job(self, device: Any) -> None:
        from agent.snmp import DevicePoller, Engines
        from agent.snmp.facts import FactsOnChange, facts_only

        if self.snmp_engines is None:
            self.snmp_engines = Engines()
        poller = self.pollers.get(device.name)
        if poller is None or poller.spec != device:
            poller = self.pollers[device.name] = DevicePoller(device, self.snmp_engines, self.profiles,
                                                              self.probe_ctx)
            self.snmp_facts.pop(device.name, None)  # a device configured anew: its facts go out again
            self.snmp_reported.pop(device.name, None)
        t, mono, sync = self.clock.wall_ms(), self.clock.mono_ms(), self.clock_watch.sync_label()
        # Measurements go out every report interval (a poll within half an interval of it counts, so a
        # jittered schedule does not skip one); the polls between give events and changed facts only.
        now = time.monotonic()
        last = self.snmp_reported.get(device.name)
        report = last is None or now - last >= device.reports_every_s() - device.interval_s / 2
        try:
            result = await asyncio.wait_for(poller.poll(report), timeout=device.budget_s())
        except TimeoutError:
            result = None
        if result is None:  # every request's retries ran out the budget: the device is as good as unreachable
            fields = {"status": "unreachable", "reachable": False, "detail": f"poll exceeded {device.budget_s():g} s"}
            self._store([NewRecord("sample", t, mono, sync, {"m": "snmp_device", "tags": {"device": device.name},
                                                             "f": fields})], hurry=True)
            return
        facts = self.snmp_facts.get(device.name)
        if facts is None:
            facts = self.snmp_facts[device.name] = FactsOnChange()
        if report:
            self.snmp_reported[device.name] = now
        self._store([NewRecord("sample", t, mono, sync, {"m": m, "tags": tags, "f": _wire_fields(f)})
                     for m, tags, f in facts(result.samples if report else facts_only(result.samples))])
        for kind, detail in result.events:
            self._event(kind, detail)

    async def _self_metrics_job(self) -> None:
        if self.refused:  # the broker's ACL may have been fixed since: try the refused records again
            self.refused.clear()
            self.wake.set()
        depth = self.outbox.depth()
        now = self.clock.wall_ms()
        oldest = self.outbox.oldest_t()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._charge_reporting()
        budget = int(self.config.data_budget_mb * 1_000_000) if self.config.data_budget_mb else None
        use = self.data_use
        projected = use.projected()
        for kind, detail in use.warnings(budget):
            log.warning("the agent's own data use: %s", kind, extra={"fields": detail})
            self._event(kind, detail)
        use.save()
        fields: dict[str, Any] = {
            "outbox_samples": depth["samples"], "outbox_events": depth["events"], "outbox_bytes": depth["bytes"],
            "oldest_unsent_age_s": round((now - oldest) / 1000, 1) if oldest is not None else 0.0,
            "thinned_total": int(self.outbox.meta("thinned_total", "0") or 0),
            "published_records": self.counters["published_records"],
            "publish_refused": self.counters["publish_refused"],
            "last_publish_age_s": round((now - self.counters["last_ack_ms"]) / 1000, 1)
            if self.counters["last_ack_ms"] else -1.0,
            "connected": self.session.connected, "version": __version__,
            "uptime_s": round((self.clock.mono_ms() - self.started_mono) / 1000, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "rss_kib": _rss_kib(),
            "wan_month_bytes": use.wan(), **{f"wan_{c}_month_bytes": use.bytes[c] for c in ("probes", "reporting",
                                                                                        "throughput")},
            "lan_month_bytes": use.bytes["lan"],
        }
        if projected is not None:
            fields["wan_projected_month_bytes"] = projected
        if budget is not None:
            fields["data_budget_month_bytes"] = budget
        self._store([NewRecord("sample", now, self.clock.mono_ms(), self.clock_watch.sync_label(),
                               {"m": "agent", "tags": {}, "f": fields})])

    def _charge_reporting(self) -> None:
        moved = self.session.wire_bytes()
        self.data_use.add("reporting", moved - self.reported_bytes)
        self.reported_bytes = moved

    def _check_clock(self) -> None:
        if self.clock_watch.became_synced():
            fixed = self.outbox.fix_clock(self.clock.wall_ms(), self.clock.mono_ms())
            log.info("clock synchronised: re-timed unsent records", extra={"fields": {"records": fixed}})
            self._event("clock_synced", {"retimed_records": fixed})

    # -- records ------------------------------------------------------------------
    def _store(self, records: list[NewRecord], hurry: bool = False) -> None:
        """Into the outbox. `hurry`: what is stored says something is wrong, and the collector should hear
        it now rather than at the end of the flush interval: the samples waiting go out with it."""
        self.outbox.put(records)
        self.hurry = self.hurry or hurry
        self.wake.set()

    def _event(self, kind: str, detail: dict[str, Any]) -> None:
        self._store([NewRecord("event", self.clock.wall_ms(), self.clock.mono_ms(), self.clock_watch.sync_label(),
                               {"kind": kind, "detail": _wire_fields(detail)})], hurry=True)

    def _outage_began(self, cause: str) -> None:
        record = {"t": self.clock.wall_ms(), "mono": self.clock.mono_ms(), "kboot": self.kboot, "cause": cause,
                  "sync": self.clock_watch.sync_label()}
        self.outbox.set_meta("outage", json.dumps(record))

    def _outage_ended(self) -> None:
        began = json.loads(self.outbox.meta("outage") or "null")
        self.outbox.set_meta("outage", None)
        if began is None:
            return
        now_mono = self.clock.mono_ms()
        same_boot = began["kboot"] == self.kboot
        duration = (now_mono - began["mono"]) / 1000 if same_boot else (self.clock.wall_ms() - began["t"]) / 1000
        self._event("outage", {"down_t": began["t"], "down_mono": began["mono"] if same_boot else -1,
                               "up_mono": now_mono, "duration_s": round(duration, 3), "cause": began["cause"][:256],
                               "power_cycled": not same_boot, "down_sync": began["sync"]})

    # -- sending ------------------------------------------------------------------
    async def _pump(self) -> None:
        flush_s = self.config.mqtt.flush_interval_s  # type: ignore[union-attr]
        while True:
            # Woken by a new record, a PUBACK or a connection, or when the waiting batch is due.
            wait_s = self._send_some(flush_s) if self.session.connected else flush_s
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=max(wait_s, 0.05))
            except TimeoutError:
                pass
            self.wake.clear()

    def _send_some(self, flush_s: float = 0.0) -> float:
        """Publish what is due; return how long until a batch now held back is due (else `flush_s`)."""
        busy = {i for ids in self.inflight.values() for i in ids} | self.refused | self.unsendable
        limit = self.config.mqtt.batch_max_records  # type: ignore[union-attr]
        while len(self.inflight) < self.config.mqtt.inflight_batches:  # type: ignore[union-attr]
            batch = self.outbox.next_batch(busy, limit)
            if not batch:
                self.hurry = False
                return flush_s
            # Samples wait to go out together unless the batch is full, its oldest has waited long enough,
            # or something is wrong.
            waited_s = (self.clock.mono_ms() - batch[0].mono) / 1000 if batch[0].kboot == self.kboot else flush_s
            if (batch[0].kind == "sample" and len(batch) < limit and waited_s < flush_s and not self.hurry
                    and not self.stopping_flush):
                wait_s = batch_wait_s(flush_s - waited_s, flush_s, self.session.until_ping_s(),
                                      self.config.mqtt.keepalive_s)  # type: ignore[union-attr]
                if wait_s > 0:
                    return wait_s
            try:
                message = self._message(batch)
            except wire.Rejected as exc:
                busy.update(self._set_aside(batch, exc))
                continue
            mid = self.session.publish(*message)
            if mid is None:
                return flush_s
            ids = [r.id for r in batch]
            self.inflight[mid] = ids
            busy.update(ids)
        return flush_s

    def _message(self, batch: list[Stored]) -> tuple[str, bytes]:
        first = batch[0]
        mono_now = self.clock.mono_ms() if first.kboot == self.kboot else None
        records = [r.as_wire() for r in batch]
        if first.kind == "event":
            message: wire.Message = wire.build(wire.Events, {
                "v": 1, "clinic": self.config.clinic_id, "boot": first.boot, "mono_now": mono_now, "events": records})
            return wire.topic(self.config.clinic_id, "event"), wire.encode(message)
        message = wire.build(wire.Telemetry, {"v": 1, "clinic": self.config.clinic_id, "boot": first.boot,
                                              "mono_now": mono_now, "samples": records})
        return wire.topic(self.config.clinic_id, "telemetry"), wire.encode(message)

    def _set_aside(self, batch: list[Stored], exc: wire.Rejected) -> set[int]:
        """The records of `batch` that the wire contract refuses (each tried alone; the whole batch if none
        is refused alone): kept in the outbox but no longer sent, so that one bad record does not hold back
        every one after it. Said in the log and in an event, which a reader of the collector sees."""
        bad = []
        for record in batch:
            try:
                self._message([record])
            except wire.Rejected as alone:
                bad.append((record, alone))
        if not bad:
            bad = [(record, exc) for record in batch]
        ids = {record.id for record, _ in bad}
        self.unsendable.update(ids)
        first, why = bad[0]
        detail = {"records": len(bad), "reason": str(why.reason), "detail": why.detail[:256],
                  "measurement": str(first.body.get("m") or first.body.get("kind") or "")[:64]}
        log.error("records the wire contract refuses are kept in the outbox and not sent",
                  extra={"fields": detail})
        self._event("record_unsendable", detail)
        return ids

    def _acked(self, mid: int, ok: bool, reason: str) -> None:
        if self.stopping:
            return
        ids = self.inflight.pop(mid, None)
        if ids is None:
            return  # the birth message or a status
        if ok:
            self.outbox.delete(ids)
            self.counters["published_records"] += len(ids)
            self.counters["last_ack_ms"] = self.clock.wall_ms()
        else:
            self.refused.update(ids)
            self.counters["publish_refused"] += len(ids)
            log.error("broker refused a publish; records kept in the outbox",
                      extra={"fields": {"reason": reason, "records": len(ids)}})
        self.wake.set()

    def _connection(self, up: bool, cause: str) -> None:
        if self.stopping:
            return
        if up:
            log.info("connected to the broker", extra={"fields": {"host": self.config.mqtt.host}})  # type: ignore
            self.refused.clear()
            self._outage_ended()
            self.wake.set()
        else:
            log.warning("not connected", extra={"fields": {"cause": cause}})
            if not self.outbox.meta("outage"):
                self._outage_began(cause)

    # -- remote configuration -----------------------------------------------------------
    def _config_message(self, topic: str, payload: bytes) -> None:
        try:
            message = wire.decode(topic, payload, self.clock.wall_ms())
            if not isinstance(message, wire.Config):
                raise ConfigError(f"a {type(message).__name__} message on the config topic")
            if message.rev <= self.remote_rev:
                return  # the retained copy of what is already applied
            settings = parse_remote(message.config, f"remote config rev {message.rev}")
        except (wire.Rejected, ConfigError) as exc:
            rev = _peek_rev(payload)
            log.error("remote configuration rejected; keeping the current one", extra={"fields": {
                "rev": rev, "error": str(exc)}})
            self._event("config_rejected", {"rev": rev, "error": str(exc)[:256]})
            return
        self._apply_remote(message.rev, settings)

    def _apply_remote(self, rev: int, settings: RemoteSettings) -> None:
        self.config = self.config.with_remote(settings)
        self.remote_rev = rev
        path = self.config.state_dir / "remote-config.json"
        write_json(path, {"rev": rev, "settings": to_builtins(settings)})
        if self.scheduler is not None:
            self._schedule()
        log.info("remote configuration applied", extra={"fields": {"rev": rev, "probes": len(settings.probes)}})
        self._event("config_applied", {"rev": rev, "probes": len(settings.probes)})

    def _load_remote(self) -> None:
        path = self.config.state_dir / "remote-config.json"
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            settings = parse_remote(saved["settings"], str(path))
        except (OSError, ValueError, KeyError, ConfigError) as exc:
            log.warning("ignoring the saved remote configuration", extra={"fields": {"error": str(exc)}})
            return
        self.config = self.config.with_remote(settings)
        self.remote_rev = int(saved["rev"])


def _peek_rev(payload: bytes) -> int:
    rev = (peek(payload) or {}).get("rev", 0)
    return rev if isinstance(rev, int) and not isinstance(rev, bool) else 0


def _wire_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Values the wire accepts: strings cut to its limit, anything else as text."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            value = value[:256]
        elif not isinstance(value, (bool, int, float)):
            value = str(value)[:256]
        out[key] = value
    return out


def _rss_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def batch_wait_s(hold_s: float, flush_s: float, until_ping_s: float | None, keepalive_s: float) -> float:
    """How long a batch of samples still waits, when it is due in `hold_s` and paho's keepalive would send
    a PINGREQ in `until_ping_s` (None: unknown).

    A batch leaves `flush_s` after its oldest sample, which is younger than the previous publish: with
    the flush interval at the keepalive (the default) every batch would be due just after a ping, whose
    round trip over TLS costs about 200 bytes (some 3 MB a month). Such a batch goes before the ping
    instead; its PUBACK keeps the connection alive. It moves at most 0.4 flush intervals and half a
    keepalive earlier, so that a keepalive shorter than the flush interval does not turn each of its
    pings into a batch (more bytes than the pings)."""
    if until_ping_s is None:
        return hold_s
    send_at = until_ping_s - PING_MARGIN_S - PING_MARGIN_SHARE * keepalive_s
    if send_at < hold_s <= send_at + min(0.4 * flush_s, 0.5 * keepalive_s):
        return max(send_at, 0.0)
    return hold_s
