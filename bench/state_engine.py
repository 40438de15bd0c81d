"""Benchmark: what clinic state costs beside ingest, and how soon a cut link is `down`.

    .venv/bin/python -m bench.state_engine [--clinics 10000] [--minutes 10] [--flush 180] [--failed 2]
                                           [--rounds 3] [--paced] [--cuts 10] [--keepalive 10] [--group-wait 10]

1. Throughput (no privileges needed): a fleet of `--clinics` clinics, each running the sample
   config's probes (ICMP to its gateway and the records service every minute; DNS and its
   self-metrics every 5 minutes; HTTPS every 15) and sending them as the agent does: together when
   the oldest has waited `--flush` seconds (the agent's default, 180), at once after a failed check
   (`--failed` % of checks fail outright, 2 by default: the state's work grows with it); its status
   at the start and an event about every 50 minutes; for `--minutes` of scripted time. Every message
   is run through ingest's validation and line protocol (collector.ingest.validate.Validator, the
   store process's work) without facts and with them, its facts through a digest (encode and decode,
   as between ingest and the engine) and the state engine (apply, and a tick every second of
   scripted time), all in this process on the same messages. The figure is the state's CPU per
   message against ingest's store-process CPU per message, both measured here in the same run.
   End to end (`--rounds`, no privileges needed): the same messages queued in a real Mosquitto and
   drained by the real collector into a real InfluxDB, with the state engine off and on in turn,
   `--rounds` times: the collector's CPU per message either way (intake and store processes, the
   engine's threads by their own metric too). The queued messages' results are an hour old when
   drained, older than the engine's quality window: the drain measures the collector at full speed,
   and the engine still judges, but on windows those results have left, not as it would live ones.
   `--paced`: instead, each run gets the messages at the fleet's own pace
   in real time, dated as they are sent (so the engine judges them as a live fleet's), and its CPU
   is counted from the first message until all are stored and applied: what the state adds to a
   collector running such a fleet, per-second work of both included. A round takes twice `--minutes`.
2. Detection (as root): a real agent behind an emulated link, a real Mosquitto and a real collector
   with the state engine; the link is cut `--cuts` times and the time from each cut to the state
   API saying `down` is measured, with the agent's MQTT keepalive `--keepalive` (the broker
   publishes the Last Will 1.5 keepalives after the agent's last packet), and the time from the cut
   to the alert email in a real SMTP server's hands, with `--group-wait`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import wire
from collector.ingest.validate import DeadLetters, Validator
from collector.registry import Clinic, Registry
from collector.state import digest
from collector.state.db import SNAPSHOT_FACTS_PER_CLINIC, StateDB, snapshot_due
from collector.state.engine import ClinicInfo, Engine
from collector.state.service import replay

BASE_MS = 1_790_000_000_000


# The sample config's schedule (firmware_configs/agent.yaml, without its SNMP devices, traceroute and
# throughput test): (measurement, target, interval s).
SCHEDULE = (("icmp", "gateway", 60), ("icmp", "records", 60), ("http", "records", 900),
            ("dns", "router-resolver", 300), ("agent", "", 300))
SNAPSHOT_S = 300  # the service's default snapshot_s
FAILED = 0.02  # the share of checks that fail outright (ICMP 100 % loss, TCP refused, HTTP timeout, ...)


def _result(m: str, ok: bool, rng: random.Random) -> dict[str, Any]:
    if m == "icmp":
        f: dict[str, Any] = {"success": ok, "loss_pct": 0.0 if ok else 100.0, "sent": 5, "received": 5 if ok else 0}
        if ok:
            f.update(rtt_avg_ms=40 + rng.random() * 10, jitter_ms=rng.random() * 5)
        return f
    if m == "agent":
        return {"outbox_samples": 3, "outbox_events": 0, "outbox_bytes": 1523, "connected": True, "version": "0.1.0",
                "uptime_s": 3600.0, "cpu_s": 1.2, "rss_kib": 40_000, "wan_month_bytes": 12_345_678}
    f = {"success": ok, "reason": "" if ok else "timeout", "duration_ms": 30 + rng.random() * 60}
    if ok and m == "http":
        f.update(status=200, connect_ms=20.0, tls_ms=25.0, ttfb_ms=40.0)
    if ok and m == "dns":
        f.update(rcode="NOERROR", answers=1)
    return f


def fleet_messages(clinics: int, minutes: int, seed: int = 1, base_ms: int = BASE_MS,
                   flush_s: float = 180, failed: float = FAILED) -> list[tuple[int, str, bytes]]:
    """(time ms, topic, payload) in time order. Every clinic runs the sample config's schedule from a
    random start and sends what it measured as the agent does: together once the oldest result has
    waited `flush_s`, and at once after a failed check (a share `failed` of checks); an event every 50
    minutes or so, and its status at the start. Payloads are encoded as the agent encodes them (zlib with the
    contract's dictionary)."""
    BASE_MS = base_ms  # noqa: N806
    rng = random.Random(seed)
    end = BASE_MS + minutes * 60_000
    flush_ms = int(flush_s * 1000)
    out = []
    for c in range(clinics):
        clinic = f"bench-{c:05d}"
        seq = 0

        def send(at: int, kind: str, records: list[dict], clinic: str = clinic) -> None:
            doc = {"v": 1, "clinic": clinic, "boot": "0123456789abcdef", "mono_now": at - BASE_MS,
                   "samples" if kind == "telemetry" else "events": records}
            out.append((at, f"clinicwatch/v1/{clinic}/{kind}", wire.encode(wire.build(
                wire.Telemetry if kind == "telemetry" else wire.Events, doc))))

        status = {"v": 1, "clinic": clinic, "state": "online", "boot": "0123456789abcdef", "agent": "b"}
        out.append((BASE_MS - 1, f"clinicwatch/v1/{clinic}/status", json.dumps(status).encode()))
        runs = sorted((BASE_MS + rng.randrange(min(interval, 10) * 1000) + k * interval * 1000, m, target)
                      for m, target, interval in SCHEDULE for k in range(minutes * 60 // interval + 1))
        runs += [(at, "event", "") for at in range(BASE_MS + rng.randrange(3_000_000), end, 3_000_000)]
        pending: list[dict] = []
        for at, m, target in sorted(runs):
            if at >= end:
                break
            if pending and at >= pending[0]["t"] + flush_ms:
                send(pending[0]["t"] + flush_ms, "telemetry", pending)
                pending = []
            seq += 1
            if m == "event":  # sent at once, and the samples that waited with it
                send(at, "event", [{"seq": seq, "t": at, "mono": at - BASE_MS, "sync": "ntp", "kind": "interface_up",
                                    "detail": {"interface": "wwan0"}}])
                if pending:
                    send(at, "telemetry", pending)
                    pending = []
                continue
            ok = m == "agent" or rng.random() >= failed
            pending.append({"seq": seq, "t": at, "mono": at - BASE_MS, "sync": "ntp", "m": m,
                            "tags": {"target": target} if target else {}, "f": _result(m, ok, rng)})
            if not ok:  # a failed check sends what waited with it
                send(at + 1000, "telemetry", pending)
                pending = []
        if pending and pending[0]["t"] + flush_ms < end:
            send(pending[0]["t"] + flush_ms, "telemetry", pending)
    out.sort(key=lambda m: m[0])
    return out


def throughput(clinics: int, minutes: int, flush_s: float, failed: float = FAILED) -> None:
    messages = fleet_messages(clinics, minutes, flush_s=flush_s, failed=failed)
    registry = Registry(clinics=[Clinic(id=f"bench-{c:05d}", name="b", region=f"r{c % 17}", isp=f"i{c % 5}",
                                        link="lte") for c in range(clinics)])
    gc.freeze()  # the messages are this bench's, not the collector's: the GC need not scan them
    cpu = dict.fromkeys(("ingest", "with_facts", "digests", "engine", "commit"), 0.0)
    counts = {"facts": 0, "transitions": 0}
    with tempfile.TemporaryDirectory() as tmp:
        letters = DeadLetters(Path(tmp) / "dead.jsonl")
        plain = Validator(registry, letters)
        facts: list = []
        feeding = Validator(registry, letters, facts=facts.extend)
        infos = {c.id: ClinicInfo(c.region, c.isp, c.link) for c in registry.clinics}
        engine = Engine(infos)
        db = StateDB(Path(tmp) / "state.sqlite")
        journal: list[tuple[str, bytes]] = []
        last_snapshot, since_snapshot, snapshots = BASE_MS, 0, 0
        # A second of the fleet's messages at a time, as they would arrive: every stage on the same ones.
        seconds: dict[int, list[tuple[int, str, bytes]]] = {}
        for message in messages:
            seconds.setdefault((message[0] - BASE_MS) // 1000, []).append(message)
        for second in range(min(seconds), max(seconds) + 1):
            chunk = seconds.get(second, [])
            next_tick = BASE_MS + (second + 1) * 1000
            cpu0 = time.process_time()
            for at, topic, payload in chunk:
                plain.lines(topic, payload, at, 0)
            cpu1 = time.process_time()
            for at, topic, payload in chunk:
                feeding.lines(topic, payload, at, 0)
            cpu2 = time.process_time()
            payload = digest.encode(facts, "bench")  # one digest per second here; the service sends four
            got = digest.decode(payload)
            cpu3 = time.process_time()
            counts["facts"] += len(facts)
            since_snapshot += len(facts)
            facts.clear()
            for fact in got.facts:
                engine.apply(fact)
            journal.append(("digest", payload))
            changes = engine.tick(next_tick)
            counts["transitions"] += len(changes.transitions)
            cpu4 = time.process_time()
            # The service's commit each second (the journal and what changed, one transaction) and its
            # snapshot when due (at its default snapshot_s).
            journal.append(("tick", json.dumps([next_tick, True]).encode()))
            db.commit(journal, changes.transitions, changes.incidents, changes.outages, changes.blind, [], next_tick)
            journal = []
            cpu5 = time.process_time()
            # Snapshots are charged below, at the rate the rule writes them (a window holds one or none).
            if snapshot_due((next_tick - last_snapshot) / 1000, since_snapshot, clinics, SNAPSHOT_S):
                db.snapshot(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL))
                last_snapshot, since_snapshot, snapshots = next_tick, 0, snapshots + 1
            for key, a, b in (("ingest", cpu0, cpu1), ("with_facts", cpu1, cpu2), ("digests", cpu2, cpu3),
                              ("engine", cpu3, cpu4), ("commit", cpu4, cpu5)):
                cpu[key] += b - a
        # What a restart at the end would do: load the last snapshot (if any) and replay the journal since.
        wall0 = time.perf_counter()
        blob, rows = db.load()
        restored = pickle.loads(blob) if blob is not None else Engine(infos)
        replayed = sum(replay(restored, kind, body) for kind, body in rows)
        restart_s = time.perf_counter() - wall0
        # A snapshot's cost, charged at the rate the service's rule writes them at this fleet's pace (a
        # window of a few minutes holds one or none).
        cpu0 = time.process_time()
        db.snapshot(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL))
        snapshot_cpu_s = time.process_time() - cpu0
        db.close()
    gc.unfreeze()
    n = len(messages)
    facts_extra = cpu["with_facts"] - cpu["ingest"]
    window_s = minutes * 60
    rate = n / window_s
    every_s = SNAPSHOT_S
    while not snapshot_due(every_s, int(counts["facts"] * every_s / window_s), clinics, SNAPSHOT_S):
        every_s += 1
    snapshots_s = snapshot_cpu_s * window_s / every_s
    state_s = max(facts_extra, 0.0) + cpu["digests"] + cpu["engine"] + cpu["commit"] + snapshots_s

    def us(seconds: float) -> str:
        return f"{seconds / n * 1e6:7.1f} us/message"

    print(f"throughput: {clinics} clinics, {minutes} min of their reports at the fleet's pace ({rate:.0f} msg/s), "
          f"{100 * failed:g} % of checks failing, {n} messages, {counts['facts']} facts, {counts['transitions']} "
          f"state changes; CPU per stage:")
    print(f"  ingest (validate + line protocol), no facts : {us(cpu['ingest'])} ({n / cpu['ingest']:,.0f} msg/s)")
    print(f"  ingest's extra work to extract facts         : {us(facts_extra)}")
    print(f"  digests (encode + decode)                    : {us(cpu['digests'])}")
    print(f"  engine (apply, and its look each second)     : {us(cpu['engine'])} ({n / cpu['engine']:,.0f} msg/s)")
    print(f"  commits (SQLite journal, each second)        : {us(cpu['commit'])}")
    print(f"  {f'snapshots (one every {every_s / 60:.0f} min at this pace)':45s}: {us(snapshots_s)} (a snapshot: "
          f"{snapshot_cpu_s:.2f} s of CPU; {snapshots} written in the run)")
    print(f"  state, all told                              : {us(state_s)} = {100 * state_s / cpu['ingest']:.1f} % of "
          f"ingest's validation here (the whole collector's CPU: end to end below)")
    print(f"  a restart at the end: {'the snapshot loaded and ' if blob else ''}{replayed} facts of journal replayed "
          f"in {restart_s:.1f} s ({restart_s / max(replayed, 1) * 1e6:.0f} us a fact; at most "
          f"{SNAPSHOT_FACTS_PER_CLINIC * clinics} facts wait for the next snapshot)")
    print(f"  at the fleet's pace the state costs {state_s / window_s * 100:.1f} % of one core")


def end_to_end(clinics: int, minutes: int, rounds: int, flush_s: float, failed: float = FAILED,
               paced: bool = False) -> None:
    """The real collector draining the same queued messages without and with the state engine, in turn;
    or, `paced`, taking them as they come, at the fleet's pace in real time."""
    from bench.collector_ingest import publish_all, tree_cpu_s
    from lab.servers import InfluxDB, Mosquitto, free_port
    from tests.collector_harness import collector_config, count_points, start_collector, wait_subscribed

    if paced:
        # Made again for each run, dated from when it starts (below): results as recent as a live fleet's,
        # so the engine judges them as it would a live fleet's. Here only to count them.
        made = time.perf_counter()
        fleet = fleet_messages(clinics, minutes, flush_s=flush_s, failed=failed)
        lead_s = 2 * (time.perf_counter() - made) + 5
    else:
        fleet = fleet_messages(clinics, minutes, base_ms=time.time_ns() // 1_000_000 - 3_600_000, flush_s=flush_s,
                               failed=failed)
    messages = [(topic, payload) for _, topic, payload in fleet]
    points = sum(1 for at, topic, payload in fleet if topic.endswith("/telemetry")
                 for s in wire.decode(topic, payload, at).samples if s.m == "icmp")
    ids = [f"bench-{c:05d}" for c in range(clinics)]
    cpu: dict[bool, list[float]] = {False: [], True: []}
    own: list[float] = []  # the engine's threads, by its own metric
    with tempfile.TemporaryDirectory() as tmp_name, Mosquitto() as broker, InfluxDB() as influx:
        tmp = Path(tmp_name)

        def config(engine: bool, db: str, r: int) -> Path:
            # A client id of its own for each run: a collector's persistent session would otherwise keep
            # the messages published for the other runs while it is away, and drain them too.
            return collector_config(tmp / f"c-{engine}-{db}", broker.port, {"kind": "influx_v1", "url": influx.url,
                                    "database": db, "flush_interval_s": 1.0}, ids,
                                    client_id=f"bench-{engine}-{r}", metrics_port=metrics_port,
                                    state={"engine": engine, "client_id": f"bench-state-{engine}-{r}"})
        metrics_port = free_port()
        for r in range(rounds):
            for engine in (False, True):
                db = f"r{r}{int(engine)}"
                influx.create_database(db)
                if paced:
                    path = config(engine, db, r)
                    proc = start_collector(path)
                    try:
                        wait_subscribed(path, timeout_s=120)
                        used, own_s = _paced_run(broker, proc.pid, metrics_port, engine, clinics, minutes, flush_s,
                                                 failed, len(messages), lead_s)
                        assert count_points(influx, db, "icmp", "loss_pct") == points
                    finally:
                        proc.terminate()
                        proc.wait(30)
                    cpu[engine].append(used)
                    if engine:
                        own.append(own_s)
                    print(f"  round {r + 1}, state engine {'on ' if engine else 'off'}: {used / len(messages) * 1e6:6.1f} "
                          f"us of collector CPU per message, at the fleet's pace" + (
                              f"; the engine's threads: {own_s / len(messages) * 1e6:.1f} us" if engine else ""))
                    continue
                first = config(engine, f"register{r}", r)  # the run's persistent session, before its messages
                proc = start_collector(first)
                wait_subscribed(first, timeout_s=120)
                proc.terminate()
                proc.wait(30)
                if engine:
                    # Ingest publishes digests whether an engine runs or not: the engine's session starts
                    # afresh here, so it applies this run's facts only.
                    fresh_state_session(broker, f"bench-state-True-{r}")
                publish_all(broker, messages)
                path = config(engine, db, r)
                proc = start_collector(path)
                try:
                    # Start-up (reading a 10,000-clinic registry, in both processes) is left out: it is
                    # once per start, not per message.
                    wait_subscribed(path, timeout_s=120)
                    begin = sum(tree_cpu_s(proc.pid).values())
                    begin_own = state_cpu_s(metrics_port) if engine else 0.0
                    while metric(metrics_port, "clinicwatch_messages_acked_total") < len(messages):
                        time.sleep(0.5)
                    time.sleep(3)  # the engine applies what is left
                    used = sum(tree_cpu_s(proc.pid).values()) - begin
                    if engine:
                        own.append(state_cpu_s(metrics_port) - begin_own)
                    assert count_points(influx, db, "icmp", "loss_pct") == points
                finally:
                    proc.terminate()
                    proc.wait(30)
                cpu[engine].append(used)
                print(f"  round {r + 1}, state engine {'on ' if engine else 'off'}: {used / len(messages) * 1e6:6.1f} us "
                      f"of collector CPU per message (intake + store process{' + engine' if engine else ''}, "
                      f"after start-up)" + (f"; the engine's threads: {own[-1] / len(messages) * 1e6:.1f} us"
                                               if engine else ""))
    off, on = statistics.median(cpu[False]), statistics.median(cpu[True])
    how = (f"published at the fleet's pace over {minutes} minutes and taken as they came" if paced else
           "queued and drained")
    print(f"end to end: {len(messages)} messages of {clinics} clinics, {how} by the real collector "
          f"into InfluxDB; medians of {rounds} rounds: off {off / len(messages) * 1e6:.1f} us/message, on "
          f"{on / len(messages) * 1e6:.1f}: the state adds {100 * (on - off) / off:.1f} % to the collector's CPU "
          f"(target: under 10 %); by its own metric the engine's threads used "
          f"{statistics.median(own) / len(messages) * 1e6:.1f} us/message = "
          f"{100 * statistics.median(own) / off:.1f} % of the collector's CPU without it")


def _paced_run(broker: Any, pid: int, metrics_port: int, engine: bool, clinics: int, minutes: int, flush_s: float,
               failed: float, expected: int, lead_s: float) -> tuple[float, float]:
    """Publish the fleet's messages at their own times, in real time, to a running collector; (the collector's
    CPU seconds, its engine's threads' CPU seconds) from the first message until all are acknowledged and
    applied. The acknowledged count is read only after the last message: a scrape costs the collector CPU."""
    from bench.collector_ingest import PUBLISH_WINDOW, publisher, tree_cpu_s

    base = time.time_ns() // 1_000_000 + int(lead_s * 1000)  # the messages start once they are made
    fleet = fleet_messages(clinics, minutes, base_ms=base, flush_s=flush_s, failed=failed)
    assert len(fleet) == expected
    client, window = publisher(broker, "bench-paced")
    try:
        time.sleep(max(0.0, (fleet[0][0] - time.time_ns() // 1_000_000) / 1000))
        begin = sum(tree_cpu_s(pid).values())
        begin_own = state_cpu_s(metrics_port) if engine else 0.0
        for at, topic, payload in fleet:
            wait = (at - time.time_ns() // 1_000_000) / 1000
            if wait > 0:
                time.sleep(wait)
            window.acquire()
            client.publish(topic, payload, qos=1)
        for _ in range(PUBLISH_WINDOW):
            window.acquire()
    finally:
        client.loop_stop()
        client.disconnect()
    while metric(metrics_port, "clinicwatch_messages_acked_total") < expected:
        time.sleep(0.5)
    time.sleep(3)  # the engine applies what is left
    used = sum(tree_cpu_s(pid).values()) - begin
    return used, (state_cpu_s(metrics_port) - begin_own if engine else 0.0)


def fresh_state_session(broker: Any, client_id: str) -> None:
    """Start the engine's persistent session afresh, subscribed to digests, so that it holds only what
    comes after this call."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *_: c.subscribe(digest.TOPIC, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86_400
    client.connect(broker.host, broker.port, clean_start=True, properties=props)
    client.loop_start()
    try:
        if not subscribed.wait(30):
            raise RuntimeError(f"{client_id}: no SUBACK from the broker in 30 s")
    finally:
        client.disconnect()
        client.loop_stop()


def metric(port: int, name: str) -> float:
    # Only the series asked for: a whole scrape builds 50,000 state series for 10,000 clinics (about 0.25 s
    # of the collector's CPU), which polling twice a second would add to the engine's figure.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]={name}", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"the collector exports no {name}")


def state_cpu_s(port: int) -> float:
    return metric(port, "clinicwatch_state_cpu_seconds_total")


def detection(cuts: int, keepalive_s: int, group_wait_s: float) -> None:
    from lab.links import EmulatedLink
    from lab.mailserver import MailServer
    from lab.servers import InfluxDB, Mosquitto, free_port
    from tests.agent_harness import agent_config, start_agent, stop_agent
    from tests.collector_harness import collector_config, start_collector, wait_subscribed

    if os.geteuid() != 0:
        print("detection: skipped (needs root for the emulated link)")
        return
    clinic = "bench-0001"
    with tempfile.TemporaryDirectory() as tmp_name, EmulatedLink("dsl") as link, \
            Mosquitto(host=link.central_ip) as broker, InfluxDB() as influx, MailServer() as mail:
        tmp = Path(tmp_name)
        influx.create_database("clinicwatch")
        port = free_port()
        contact = {"id": "noc", "name": "NOC", "email": "noc@example.org", "all": True}
        config = collector_config(tmp / "collector", broker.port, {"kind": "influx_v1", "url": influx.url,
                                                                    "database": "clinicwatch"}, [clinic],
                                  metrics_port=port, broker_host=broker.host, contacts=[contact],
                                  alerts={"group_wait_s": group_wait_s, "email": {
                                      "host": "127.0.0.1", "port": mail.port, "security": "none",
                                      "sender": "bench@example.org"}})
        collector = start_collector(config)
        (tmp / "agent").mkdir()
        agent_file = agent_config(tmp / "agent", link.central_ip, broker.port,
                                  [{"kind": "tcp", "name": "records", "host": link.central_ip, "port": broker.port,
                                    "interval_s": 5, "timeout_s": 2}], clinic_id=clinic,
                                  mqtt={"keepalive_s": keepalive_s, "flush_interval_s": 5})
        agent = None
        try:
            wait_subscribed(config)
            agent = start_agent(agent_file, netns=link.netns)

            def state() -> str:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/clinics/{clinic}") as r:
                        return json.loads(r.read())["state"]
                except OSError:
                    return "?"

            def wait(target: str, limit_s: float) -> float | None:
                begin = time.monotonic()
                while time.monotonic() - begin < limit_s:
                    if state() == target:
                        return time.monotonic() - begin
                    time.sleep(0.1)
                return None

            def told(n: int, limit_s: float) -> float | None:
                begin = time.monotonic()
                while time.monotonic() - begin < limit_s:
                    if sum(m["Subject"].startswith("DOWN") for m in mail.received()) >= n:
                        return time.monotonic() - begin
                    time.sleep(0.1)
                return None

            wait("up", 60)
            times, emails = [], []
            rng = random.Random(3)
            for i in range(cuts):
                time.sleep(5 + rng.random() * keepalive_s)  # cuts fall anywhere in the keepalive cycle
                cut_at = time.monotonic()
                link.cut()
                took = wait("down", 10 * keepalive_s)
                # Kept cut until the email is in the SMTP server's hands (a clinic back within the group
                # wait is told to no one).
                mailed = told(i + 1, 10 * keepalive_s + group_wait_s + 30)
                mailed_s = time.monotonic() - cut_at if mailed is not None else None
                link.restore()
                times.append(took)
                emails.append(mailed_s)
                print(f"  cut {i + 1}: down after {took:.1f} s" if took is not None else f"  cut {i + 1}: not down",
                      f"email after {mailed_s:.1f} s" if mailed_s is not None else "no email")
                wait("up", 60)
        finally:
            if agent is not None:
                stop_agent(agent, kill=True)
            collector.terminate()
            collector.wait(30)
    seen = [t for t in times if t is not None]
    print(f"detection: {len(seen)}/{cuts} cuts seen; keepalive {keepalive_s} s (Last Will at 1.5x = "
          f"{1.5 * keepalive_s:.0f} s after the agent's last packet), state engine lag 2 s, tick 1 s")
    if seen:
        print(f"  cut -> down: median {statistics.median(seen):.1f} s, worst {max(seen):.1f} s = "
              f"{max(seen) / keepalive_s:.2f} keepalive intervals (target: within 2)")
    delivered = [t for t in emails if t is not None]
    if delivered:
        print(f"  cut -> email at the SMTP server ({len(delivered)}/{cuts}; group wait {group_wait_s:g} s): median "
              f"{statistics.median(delivered):.1f} s, worst {max(delivered):.1f} s = "
              f"{(max(delivered) - group_wait_s) / keepalive_s:.2f} keepalive intervals beyond the group wait "
              f"(target: within 2)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clinics", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=10, help="scripted minutes of the fleet's reports")
    parser.add_argument("--flush", type=float, default=180, help="the fleet's agents' flush interval, s")
    parser.add_argument("--failed", type=float, default=100 * FAILED, help=(
        "the share of the fleet's checks that fail outright, %% (the state's work grows with it)"))
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds, engine off and on (0: skip)")
    parser.add_argument("--paced", action="store_true", help=(
        "end to end at the fleet's pace in real time (each round takes --minutes twice) instead of draining a queue"))
    parser.add_argument("--cuts", type=int, default=10, help="link cuts for the detection part (0: skip)")
    parser.add_argument("--keepalive", type=int, default=10, help="the agent's MQTT keepalive, s")
    parser.add_argument("--group-wait", type=float, default=10, help="alerts.group_wait_s for the email timing")
    args = parser.parse_args()
    throughput(args.clinics, args.minutes, args.flush, args.failed / 100)
    if args.rounds:
        end_to_end(args.clinics, args.minutes, args.rounds, args.flush, args.failed / 100, args.paced)
    if args.cuts:
        detection(args.cuts, args.keepalive, args.group_wait)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
