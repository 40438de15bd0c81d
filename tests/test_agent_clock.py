"""A box that boots with a wrong clock: its samples still land at the right time.

The agent runs in-process with a scripted clock (the machine's own clock cannot be
moved for a test) against a real Mosquitto; what arrives is checked by the wire
contract's own effective-time rule, as the collector applies it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import wire
from agent.config import parse_config
from agent.runtime import Agent
from lab.servers import Mosquitto
from tests.agent_harness import Watcher

THREE_YEARS_MS = 3 * 365 * 86_400_000


class ScriptedClock:
    """Monotonic time is real; the wall clock is 3 years behind until `sync()`."""

    def __init__(self) -> None:
        self.offset_ms = -THREE_YEARS_MS
        self.is_synced = False

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def synced(self) -> bool:
        return self.is_synced

    def sync(self) -> None:
        self.offset_ms, self.is_synced = 0, True


def _run_agent(agent: Agent, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> threading.Thread:
    def target() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(agent.run(stop))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _wait_outbox(state_dir, done, what: str, timeout_s: float = 60) -> None:
    """Wait until `done({sync: samples held})` for the agent's outbox."""
    import sqlite3

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            db = sqlite3.connect(state_dir / "outbox.sqlite3")
            try:
                held = dict(db.execute("SELECT sync, COUNT(*) FROM records WHERE kind = 'sample' GROUP BY sync"))
            finally:
                db.close()
        except sqlite3.OperationalError:  # not created yet
            held = {}
        if done(held):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_samples_taken_before_the_clock_was_right_get_corrected_timestamps(start_server, tmp_path) -> None:
    # The watcher's session is made while the broker runs, then the broker stops: what the agent sends
    # once the broker is back is queued for the watcher even before it reconnects.
    broker = start_server(Mosquitto())
    port = broker.port
    Watcher(broker.host, broker.port, client_id="clock-watcher").close()
    broker.stop()
    config = parse_config({
        "clinic_id": "es-ib-0042", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5,
                 "flush_interval_s": 0.5},
        "self_metrics_interval_s": 60,
        "probes": [{"kind": "tcp", "name": "svc", "host": "127.0.0.1", "port": 9, "interval_s": 1}],
    }, "test")
    clock = ScriptedClock()
    agent = Agent(config, clock=clock)
    agent.clock_check_s = 0.5
    loop, stop = asyncio.new_event_loop(), asyncio.Event()
    started = time.time()
    thread = _run_agent(agent, stop, loop)
    try:
        # 1. Broker unreachable, clock wrong: samples wait in the outbox with sync "none".
        _wait_outbox(tmp_path / "state", lambda held: held.get("none", 0) >= 3, "three unsynced samples held")
        clock.sync()
        synced_at = time.time()
        # The agent notices and re-times what it holds, all in one transaction.
        _wait_outbox(tmp_path / "state", lambda held: "none" not in held and held.get("fixed", 0) >= 3,
                     "the held samples re-timed")
        # 2. Broker up: the backlog goes out re-timed ("fixed"); new samples are "ntp".
        broker.start()
        watcher = Watcher(broker.host, broker.port, client_id="clock-watcher")
        watcher.wait_for(lambda: any(r.sync == "ntp" for _, r, _ in watcher.records()), what="synced samples")
        # 3. The clock is lost again (a reboot without RTC would do this) while the link is up:
        #    samples go out with sync "none" and the collector places them by mono_now.
        clock.offset_ms, clock.is_synced = -THREE_YEARS_MS, False
        agent.clock_watch.was_synced = False
        unsynced_from = time.time()
        watcher.wait_for(lambda: sum(r.sync == "none" for _, r, _ in watcher.records()) >= 3, what="unsynced")
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        watcher.close()
    records = watcher.records()
    fixed = [(r, b) for _, r, b in records if r.sync == "fixed"]
    assert len(fixed) >= 3, "the samples held while the clock was wrong"
    for record, batch in fixed:
        assert started - 0.01 <= record.t / 1000 < synced_at, "re-timed to when they were really taken"
    unsynced = [(r, b) for _, r, b in records if r.sync == "none"]
    for record, batch in unsynced:
        assert record.t / 1000 < time.time() - THREE_YEARS_MS / 1000 + 60, "sent with the wrong clock as it was"
        assert batch.mono_now is not None
        when = wire.effective_time(record, batch.mono_now, watcher.received_ms[id(batch)]) / 1000
        assert unsynced_from - 1 < when < time.time(), "placed right by the collector's rule"
    events = [r for _, r, _ in watcher.records("event")]
    assert any(e.kind == "clock_synced" and e.detail["retimed_records"] >= 3 for e in events)
