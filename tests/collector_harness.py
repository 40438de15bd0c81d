"""Collectors (in-process or as processes), a registry, and a load publisher whose samples have
known identities and distinct timestamps, so that points in InfluxDB can be counted exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

import wire

REPO = Path(__file__).resolve().parent.parent


REGISTRY_TAGS = {"region": "Illes Balears", "isp": "Movistar", "link": "lte"}  # every clinic's, in write_registry


def write_registry(directory: Path, clinics: list[str], contacts: list[dict[str, Any]] | None = None) -> Path:
    path = directory / "clinics.yaml"
    document: dict[str, Any] = {"clinics": [{"id": c, "name": f"Clinic {c}", **REGISTRY_TAGS} for c in clinics]}
    if contacts:
        document["contacts"] = contacts
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def collector_config(directory: Path, broker_port: int, store: dict[str, Any], clinics: list[str],
                     client_id: str = "collector-1", share_group: str | None = None, metrics_port: int = 0,
                     broker_host: str = "127.0.0.1", contacts: list[dict[str, Any]] | None = None,
                     **extra: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {"intake": {"host": broker_host, "port": broker_port, "username": None, "client_id": client_id,
                         "share_group": share_group},
              "store": {"flush_interval_s": 0.2, **store},
              "registry": str(write_registry(directory, clinics, contacts)),
              "data_dir": str(directory / "data"), "metrics_port": metrics_port, **extra}
    path = directory / "collector.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_collector(config: Path) -> subprocess.Popen[bytes]:
    log = open(config.with_suffix(".log"), "ab")
    return subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "--config", str(config)], cwd=REPO,
                            stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)})


def wait_subscribed(config: Path, times: int = 1, timeout_s: float = 20) -> None:
    """Until a collector process started with `config` has logged its granted subscriptions `times` times."""
    log, deadline = config.with_suffix(".log"), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count('"msg": "subscribed"') >= times:
            return
        time.sleep(0.05)
    raise AssertionError(f"collector {config} not subscribed after {timeout_s} s; its log: {log}")


def children(pid: int) -> list[int]:
    """The pids of a process's children (of any of its threads)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def store_process(collector_pid: int, timeout_s: float = 20) -> int:
    """The pid of a collector process's store process (collector.ingest.store_side), once it runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children(collector_pid):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        time.sleep(0.05)
    raise AssertionError(f"collector {collector_pid} has no store process after {timeout_s} s")


def gone(pid: int, timeout_s: float) -> bool:
    """True once `pid` has exited (or is a zombie) within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def scrape(port: int, query: str = "") -> dict[str, float]:
    """Prometheus text format to {name{labels}: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class LoadPublisher:
    """Publishes telemetry batches as agents would: measurement `load`, one series per clinic,
    timestamps 1 s apart per clinic so each sample is a distinct point."""

    def __init__(self, host: str, port: int, clinics: list[str], per_message: int = 10) -> None:
        self.clinics, self.per_message = clinics, per_message
        self.base_ms = int(time.time() * 1000) - 3 * 86_400_000
        self.next_seq = {c: 0 for c in clinics}
        self.published = 0
        self.pending = threading.Semaphore(200)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"load-{os.getpid()}-{id(self)}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.on_publish = lambda *_: self.pending.release()
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, messages: int, pause_s: float = 0.0) -> int:
        """Publish `messages` batches round-robin over the clinics; return samples published."""
        samples = 0
        for n in range(messages):
            clinic = self.clinics[n % len(self.clinics)]
            first = self.next_seq[clinic]
            batch = wire.Telemetry(v=1, clinic=clinic, boot="feedc0de00000001", samples=[
                wire.Sample(seq=s, t=self.base_ms + s * 1000, mono=s * 1000, sync="ntp", m="load",
                            tags={"target": "x"}, f={"v": float(s), "seq": s})
                for s in range(first, first + self.per_message)])
            self.next_seq[clinic] = first + self.per_message
            self.pending.acquire()
            self.client.publish(wire.topic(clinic, "telemetry"), wire.encode(batch), qos=1)
            samples += self.per_message
            if pause_s:
                time.sleep(pause_s)
        self.published += samples
        return samples

    def wait_acked(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending._value == 200:  # every publish has its PUBACK
                return
            time.sleep(0.05)
        raise AssertionError("the broker did not acknowledge every publish")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def count_points(influx, database: str, measurement: str = "load", field: str = "v") -> int:
    body = influx.query(f'SELECT count("{field}") FROM "{measurement}"', db=database)
    series = body["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def wait_points(influx, database: str, expected: int, timeout: float = 120, measurement: str = "load",
                field: str = "v") -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = count_points(influx, database, measurement, field)
        if count >= expected:
            return count
        time.sleep(0.3)
    return count
