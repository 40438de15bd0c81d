"""Run the real agent (`clinicwatch-agent run`) and watch what reaches the broker.

`Watcher` is a subscriber with a persistent session (so a broker restart loses it
nothing) that decodes every message with the wire contract and keeps them in
arrival order.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import wire

REPO = Path(__file__).resolve().parent.parent


class Watcher:
    def __init__(self, host: str, port: int, username: str | None = None, password: str | None = None,
                 topic: str = "clinicwatch/v1/#", tls_ca: Path | None = None, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, Any]] = []  # (kind, decoded message) in arrival order
        self.received_ms: dict[int, int] = {}  # id(decoded message) -> when it arrived (wall clock, ms)
        self.received_mono: dict[int, float] = {}  # id(decoded message) -> when it arrived (time.monotonic())
        self.rejected: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        # A given client id resumes that watcher's session: what the broker queued for it meanwhile arrives.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"watcher-{os.getpid()}-{id(self)}", protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_message = self._message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # keep the session (and what is queued for it) across a broker restart
        self.client.connect(host, port, clean_start=False, properties=props)
        self.client.loop_start()
        if not subscribed.wait(10):  # nothing published before this point can be missed
            raise AssertionError(f"watcher: no SUBACK from {host}:{port} within 10 s")

    def _message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now_ms = int(time.time() * 1000)
        try:
            decoded = wire.decode(msg.topic, msg.payload, now_ms)
        except wire.Rejected as exc:
            with self.lock:
                self.rejected.append((msg.topic, str(exc)))
            return
        with self.lock:
            self.messages.append((msg.topic.rsplit("/", 1)[1], decoded))
            self.received_ms[id(decoded)] = now_ms
            self.received_mono[id(decoded)] = time.monotonic()

    def records(self, kind: str = "telemetry") -> list[tuple[str, Any, Any]]:
        """(boot, record, batch) for every sample (or event) in arrival order, duplicates included."""
        with self.lock:
            batches = [m for k, m in self.messages if k == kind]
        return [(b.boot, r, b) for b in batches for r in (b.samples if kind == "telemetry" else b.events)]

    def repeated(self) -> list[float]:
        """When each record (sample or event) that arrived more than once first arrived (time.monotonic());
        one entry per repeat."""
        first: dict[tuple[str, int], float] = {}
        out = []
        for boot, record, batch in self.records("telemetry") + self.records("event"):
            key = (boot, record.seq)
            if key in first:
                out.append(first[key])
            else:
                first[key] = self.received_mono[id(batch)]
        return out

    def statuses(self) -> list[Any]:
        with self.lock:
            return [m for k, m in self.messages if k == "status"]

    def wait_for(self, condition, timeout: float = 60, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def outbox_rows(state_dir: Path) -> tuple[int, int]:
    """(records held, highest id ever given) in an agent's outbox, read while it may run; (0, 0)
    before the agent has created it."""
    path = state_dir / "outbox.sqlite3"
    if not path.exists():
        return 0, 0
    db = sqlite3.connect(path)
    try:
        count, last = db.execute("SELECT COUNT(*), MAX(id) FROM records").fetchone()
        return count, last or 0
    except sqlite3.OperationalError:  # created, tables not yet there
        return 0, 0
    finally:
        db.close()


def agent_config(directory: Path, host: str, port: int, probes: list[dict[str, Any]], **extra: Any) -> Path:
    config = {
        "clinic_id": extra.pop("clinic_id", "es-ib-0042"),
        "state_dir": str(directory / "state"),
        "mqtt": {"host": host, "port": port, "keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 2,
                 "flush_interval_s": 0.5,
                 **extra.pop("mqtt", {})},
        "clock": {"sync_check": "assume"},
        "self_metrics_interval_s": 5,
        "probes": probes,
        **extra,
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_agent(config: Path, netns: str | None = None, log: Path | None = None,
                python: str | None = None) -> subprocess.Popen[bytes]:
    """The agent in its own process; `python`: another interpreter's (bench.agent_env), else this one's."""
    command = [python or sys.executable, "-m", "agent.cli", "run", "--config", str(config)]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    log = log or config.with_suffix(".log")
    out = open(log, "ab")
    # faulthandler: an agent that will not stop is sent SIGABRT below and prints every thread's stack.
    proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONFAULTHANDLER": "1"})
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def stop_agent(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    """SIGTERM (or SIGKILL) and wait. An agent still running 30 s after SIGTERM is a defect: its threads'
    stacks are dumped into its log (SIGABRT with faulthandler on) and the test fails with that log's end."""
    if proc.poll() is not None:
        return
    if kill:
        proc.kill()
        proc.wait(30)
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        tail = Path(proc.log_path).read_text(errors="replace")[-6000:]  # type: ignore[attr-defined]
        raise AssertionError(f"the agent did not stop within 30 s of SIGTERM; its log ends:\n{tail}") from None


def check_complete_and_ordered(records: list[tuple[str, Any, Any]], boots_in_order: list[str]) -> dict[str, int]:
    """Every boot's sequence arrives without a gap, each record first seen in order; returns duplicates per boot.

    A sequence number is shared by samples and events, so gaps are judged on both together by the caller;
    here, on what it is given."""
    first_seen: list[tuple[int, int]] = []
    seen: set[tuple[str, int]] = set()
    duplicates: dict[str, int] = {b: 0 for b in boots_in_order}
    for boot, record, _ in records:
        key = (boot, record.seq)
        if key in seen:
            duplicates[boot] += 1
            continue
        seen.add(key)
        first_seen.append((boots_in_order.index(boot), record.seq))
    assert first_seen == sorted(first_seen), "records arrived out of order (oldest first, boot after boot)"
    return duplicates
