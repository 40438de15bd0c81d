"""Benchmark: broker -> collector -> InfluxDB, against a bare paho subscriber; and a backfill storm.

    .venv/bin/python -m bench.collector_ingest [--messages 60000] [--rounds 5] [--samples-per-message 2]
                                                [--storm-clinics 1000]

Both consumers get the same messages, queued by the broker for their persistent
sessions before they start, so each is timed draining alone:
  1. Steady state: messages as clinics send them every 30 s (2 ICMP samples each, or
     `--samples-per-message`).
     The collector (intake and store processes) is timed from its first stored point
     until every point is in InfluxDB (1.6.7, v1 /write), and from its process start;
     the bare subscriber's until every message has arrived (the ceiling: no
     validation, no storage). Bare and collector drain in turn, `--rounds` times, and
     the median ratio is the figure: this shared 2-core machine moves the bare
     subscriber's rate by a third between runs. CPU of every process (broker and
     InfluxDB included) is reported per message.
  2. Backfill storm: `--storm-clinics` clinics return with a day of samples at 30 s
     (2,880 each) in the agent's batches of 500; time until all are in InfluxDB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import zlib
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import wire
from collector.ingest.lineproto import telemetry_lines
from collector.ingest.store import InfluxV1Writer
from lab.servers import InfluxDB, Mosquitto
from tests.collector_harness import REGISTRY_TAGS, children, collector_config, count_points, start_collector

FIELDS = {"success": True, "reason": "", "duration_ms": 812.4, "sent": 5, "received": 5, "loss_pct": 0.0,
          "rtt_min_ms": 58.2, "rtt_avg_ms": 61.9, "rtt_max_ms": 70.1, "rtt_stddev_ms": 4.2, "jitter_ms": 5.5}


def payloads(clinics: int, per_clinic: int, per_message: int, base_ms: int) -> list[tuple[str, bytes]]:
    out = []
    for c in range(clinics):
        clinic = f"bench-{c:05d}"
        for first in range(0, per_clinic, per_message):
            samples = [{"seq": s, "t": base_ms + s * 30_000, "mono": s * 30_000, "sync": "ntp", "m": "load",
                        "tags": {"target": "records"}, "f": {**FIELDS, "v": float(s)}}
                       for s in range(first, min(per_clinic, first + per_message))]
            raw = json.dumps({"v": 1, "clinic": clinic, "boot": "0123456789abcdef", "samples": samples},
                             separators=(",", ":")).encode()
            packed = zlib.compress(raw, 6)
            out.append((f"clinicwatch/v1/{clinic}/telemetry", packed if len(packed) < len(raw) else raw))
    return out


def _session(broker: Mosquitto, client_id: str, topic: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    return client


PUBLISH_WINDOW = 1000  # QoS 1 messages in flight


def publisher(broker: Mosquitto, client_id: str) -> tuple[mqtt.Client, threading.Semaphore]:
    """A connected, running QoS 1 publisher and its window: acquire the window before each publish, and
    all of it (PUBLISH_WINDOW times) to wait until every message is acknowledged."""
    window = threading.Semaphore(PUBLISH_WINDOW)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(PUBLISH_WINDOW)
    client.on_publish = lambda *_: window.release()
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, window


def publish_all(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    client, window = publisher(broker, "bench-publisher")
    for topic, payload in messages:
        window.acquire()
        client.publish(topic, payload, qos=1)
    for _ in range(PUBLISH_WINDOW):
        window.acquire()
    client.loop_stop()
    client.disconnect()


def bare_drain(broker: Mosquitto, expected: int) -> float:
    done, got = threading.Event(), [0]

    def on_message(*_: object) -> None:
        got[0] += 1
        if got[0] >= expected:
            done.set()

    client = _session(broker, "bench-bare", "")
    client.on_message = on_message
    start = time.perf_counter()
    client.loop_start()
    done.wait(900)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return elapsed


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    return [p for child in children(pid) for p in (child, *descendants(child))]


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its descendants (the collector's store process)."""
    found = {}
    for p in [pid, *descendants(pid)]:
        try:
            found[p] = cpu_s(p)
        except OSError:
            pass
    return found


def collector_drain(config: Path, influx: InfluxDB, db: str, points: int,
                    cpu: dict[str, float] | None = None) -> tuple[float, float]:
    """(seconds from process start, seconds from the first stored point) until every point is in;
    `cpu` gets the CPU seconds the collector's two processes spent meanwhile."""
    start = time.perf_counter()
    proc = start_collector(config)
    first = None
    try:
        while (count := count_points(influx, db)) < points:
            if proc.poll() is not None:
                raise RuntimeError(f"collector exited: {config.with_suffix('.log').read_text()[-2000:]}")
            if count and first is None:
                first = (time.perf_counter(), count)
            time.sleep(0.1)
        end = time.perf_counter()
        if cpu is not None:
            tree = tree_cpu_s(proc.pid)
            cpu.update(intake=tree.pop(proc.pid), store=sum(tree.values()))
        if first is None:
            first = (start, 0)
        return end - start, (end - first[0]) * points / max(1, points - first[1])
    finally:
        proc.terminate()
        proc.wait(30)


def lines_of(messages: list[tuple[str, bytes]]) -> list[str]:
    """The line protocol the collector writes for these messages (registry tags as the harness's)."""
    now, heads, out = int(time.time() * 1000), {}, []
    for topic, payload in messages:
        message = wire.decode(topic, payload, now)
        out += telemetry_lines(message, now, None, REGISTRY_TAGS, heads)  # type: ignore[arg-type]
    return out


def influx_alone(influx: InfluxDB, lines: list[str], batch: int = 5000) -> tuple[float, float]:
    """Seconds InfluxDB takes to accept `lines` from one writer in the collector's batches (the
    database's own ceiling, with no MQTT and no validation), and the CPU seconds it spent."""
    influx.create_database("alone")
    write = InfluxV1Writer(influx.url, "alone")
    start, cpu = time.perf_counter(), cpu_s(influx.proc.pid)  # type: ignore[union-attr]
    for i in range(0, len(lines), batch):
        write(lines[i:i + batch])
    return time.perf_counter() - start, cpu_s(influx.proc.pid) - cpu  # type: ignore[union-attr]


def run_case(tmp: Path, name: str, messages: list[tuple[str, bytes]], points: int, clinics: list[str],
             rounds: int = 1, alone: list[str] | None = None) -> list[dict]:
    """`rounds` times: queue every message for both sessions, drain the bare subscriber, then the
    collector (into a fresh database each round, so its points are counted anew). With `alone`,
    the first result also gets the time InfluxDB takes to accept those lines by themselves."""
    results = []
    with Mosquitto(workdir=tmp / f"{name}-broker") as broker, InfluxDB(workdir=tmp / f"{name}-influx") as influx:
        def config(db: str) -> Path:
            return collector_config(tmp / f"{name}-collector-{db}", broker.port,
                                    {"kind": "influx_v1", "url": influx.url, "database": db, "flush_interval_s": 1.0},
                                    clinics)
        # Register both persistent sessions (the collector's client id is the same in every round).
        bare = _session(broker, "bench-bare", "")
        bare.subscribe("clinicwatch/v1/+/telemetry", qos=1)
        bare.loop(1)
        bare.disconnect()
        proc = start_collector(config("register"))
        time.sleep(3)
        proc.terminate()
        proc.wait(30)
        servers = {"mosquitto": broker.proc.pid, "influxd": influx.proc.pid}  # type: ignore[union-attr]
        for r in range(rounds):
            db = f"bench{r}"
            influx.create_database(db)
            round_config = config(db)
            t0 = time.perf_counter()
            publish_all(broker, messages)
            publish_s = time.perf_counter() - t0
            before = {k: cpu_s(pid) for k, pid in servers.items()} | {"bare": cpu_s(os.getpid())}
            bare_s = bare_drain(broker, len(messages))
            bare_cpu = {f"bare_{k}": cpu_s(pid) - before[k] for k, pid in servers.items()}
            bare_cpu["bare"] = cpu_s(os.getpid()) - before["bare"]
            before = {k: cpu_s(pid) for k, pid in servers.items()}
            cpu: dict[str, float] = {}
            collector_s, drain_s = collector_drain(round_config, influx, db, points, cpu)
            cpu.update({k: cpu_s(pid) - before[k] for k, pid in servers.items()})
            results.append({"messages": len(messages), "points": points, "publish_s": publish_s, "bare_s": bare_s,
                            "collector_s": collector_s, "drain_s": drain_s,
                            **{f"{k}_cpu_s": v for k, v in (bare_cpu | cpu).items()}})
        if alone:
            alone_s, alone_cpu_s = influx_alone(influx, alone)
            results[0].update(alone_s=alone_s, alone_cpu_s=alone_cpu_s, alone_points=len(alone))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60_000, help="steady-state messages per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="steady-state rounds, bare and collector in turn (the machine's noise moves both)")
    parser.add_argument("--samples-per-message", type=int, default=2,
                        help="steady state: samples in each message (an agent on the default schedule sends 2-10)")
    parser.add_argument("--storm-clinics", type=int, default=1000)
    args = parser.parse_args()
    k = args.samples_per_message
    base = int(time.time() * 1000) - 86_400_000 - 60_000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clinics = max(1, args.messages // 10)
        steady = payloads(clinics, 10 * k, k, base)[: args.messages]
        rounds = run_case(tmp, "steady", steady, k * len(steady), [f"bench-{c:05d}" for c in range(clinics)],
                          args.rounds)
        storm = payloads(args.storm_clinics, 2880, 500, base)
        b = run_case(tmp, "storm", storm, args.storm_clinics * 2880,
                     [f"bench-{c:05d}" for c in range(args.storm_clinics)], alone=lines_of(storm[:600]))[0]
    n = len(steady)
    print(f"steady state: {n} messages of {k} samples, queued by the broker, then drained; {args.rounds} rounds, "
          f"bare paho subscriber and collector (into InfluxDB, from its first point stored) in turn")
    ratios = []
    for r, a in enumerate(rounds, 1):
        bare, collector = n / a["bare_s"], n / a["drain_s"]
        ratios.append(collector / bare)
        print(f"  round {r}: bare {bare:7.0f} msg/s, collector {collector:7.0f} msg/s = {k * collector:7.0f} "
              f"samples/s: {100 * collector / bare:3.0f} %   (collector from process start: {a['collector_s']:.1f} s, "
              f"bare {a['bare_s']:.1f} s)")
    print(f"  median ratio {100 * statistics.median(ratios):.0f} % of the bare subscriber (target 70 %); "
          f"collector median {statistics.median(n / a['drain_s'] for a in rounds):.0f} msg/s; at 10,000 clinics "
          f"every 30 s the fleet sends {10_000 / 30:.0f} msg/s")
    per = {who: 1e6 * statistics.median(a[f"{who}_cpu_s"] for a in rounds) / n
           for who in ("bare", "bare_mosquitto", "intake", "store", "influxd", "mosquitto")}
    print(f"  CPU per message (medians, us): bare subscriber {per['bare']:.0f} + broker {per['bare_mosquitto']:.0f} = "
          f"{per['bare'] + per['bare_mosquitto']:.0f}; collector intake {per['intake']:.0f} + store {per['store']:.0f} "
          f"(start-up included) + InfluxDB {per['influxd']:.0f} + broker {per['mosquitto']:.0f} = "
          f"{per['intake'] + per['store'] + per['influxd'] + per['mosquitto']:.0f}; on {os.cpu_count()} cores")
    storm_rate = b["points"] / b["collector_s"]
    print(f"backfill storm: {args.storm_clinics} clinics x 2,880 samples = {b['points']} samples in {b['messages']} "
          f"messages")
    print(f"  bare paho subscriber      {b['bare_s']:8.1f} s ({b['points'] / b['bare_s']:.0f} samples/s)")
    print(f"  collector into InfluxDB   {b['collector_s']:8.1f} s from process start ({storm_rate:.0f} samples/s; "
          f"target under 300 s)")
    alone = b["alone_points"] / b["alone_s"]
    drained = b["points"] / b["drain_s"]
    storm_cpu = {who: 1e6 * b[f"{who}_cpu_s"] / b["points"] for who in ("intake", "store", "influxd", "mosquitto")}
    print(f"  CPU per sample (us): collector intake {storm_cpu['intake']:.1f} + store {storm_cpu['store']:.1f}, "
          f"InfluxDB {storm_cpu['influxd']:.1f}, broker {storm_cpu['mosquitto']:.1f}: "
          f"{sum(storm_cpu.values()):.1f} in all, on {os.cpu_count()} cores")
    print(f"  InfluxDB alone            {alone:8.0f} samples/s (the same lines, precomputed, {b['alone_points']} of "
          f"them, written in the collector's batches of 5,000 from one writer); the collector from its first "
          f"point stored: {drained:.0f} samples/s, {100 * drained / alone:.0f} % of the database's own rate; "
          f"InfluxDB alone spent {1e6 * b['alone_cpu_s'] / b['alone_points']:.1f} us of CPU per sample")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
