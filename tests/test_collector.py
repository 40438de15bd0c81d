"""The collector against the real Mosquitto, InfluxDB 1.6.7 (v1) and VictoriaMetrics (v2), with faults."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from collector.config import load_collector_config
from collector.service import Collector
from lab.servers import Mosquitto, free_port
from tests.agent_harness import agent_config, start_agent, stop_agent
from tests.collector_harness import (LoadPublisher, collector_config, gone, scrape, start_collector,
                                     store_process, wait_points, wait_subscribed)

CLINICS = [f"es-ib-{i:04d}" for i in range(1, 21)]


def _service(tmp_path, broker, store, **kw) -> Collector:
    service = Collector(load_collector_config(collector_config(tmp_path / "collector", broker.port, store, CLINICS,
                                                               **kw)))
    service.start()
    assert service.intake.connected.wait(10)
    return service


def test_agent_samples_become_the_documented_points_in_influxdb(start_server, influxdb, tmp_path) -> None:
    influx, db = influxdb
    broker = start_server(Mosquitto())
    service = _service(tmp_path, broker, {"kind": "influx_v1", "url": influx.url, "database": db})
    config = agent_config(tmp_path, broker.host, broker.port,
                          [{"kind": "tcp", "name": "broker", "host": "127.0.0.1", "port": broker.port,
                            "interval_s": 1}], clinic_id="es-ib-0007")
    agent = start_agent(config)
    try:
        assert wait_points(influx, db, 3, measurement="tcp", field="duration_ms") >= 3
    finally:
        stop_agent(agent)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the agent's clean stop publishes a retained `offline`
            statuses = influx.query('SELECT last("state") FROM "agent_status"', db=db)["results"][0].get("series")
            if statuses and statuses[0]["values"][0][1] == "offline":
                break
            time.sleep(0.1)
        service.stop()
    assert not service.failed.is_set(), "a clean stop is not a store process failure"
    series = influx.query('SELECT * FROM "tcp" GROUP BY *', db=db)["results"][0]["series"]
    assert len(series) == 1
    assert series[0]["tags"] == {"clinic": "es-ib-0007", "target": "broker", "region": "Illes Balears",
                                 "isp": "Movistar", "link": "lte"}
    row = dict(zip(series[0]["columns"], series[0]["values"][0]))
    assert row["success"] is True and row["reason"] == "" and row["connect_ms"] < 50
    statuses = influx.query('SELECT "state", "quiet_max_s" FROM "agent_status"', db=db)["results"][0]["series"][0]
    assert [v[1] for v in statuses["values"]][-1] == "offline"
    # The birth says how long the agent may stay quiet (flush 0.5 s, a probe each second, 10 s for a run).
    assert {(v[1], v[2]) for v in statuses["values"]} == {("online", 12), ("offline", None)}
    events = influx.query('SELECT * FROM "agent_event" GROUP BY "kind"', db=db)["results"][0]["series"]
    assert "outage" in {s["tags"]["kind"] for s in events}  # from the agent's start, before it connected


def test_metrics_can_be_asked_for_by_name(start_server, influxdb, tmp_path) -> None:
    """`?name[]=`: a poller asking for one counter does not make the collector build every clinic's series."""
    influx, db = influxdb
    broker = start_server(Mosquitto())
    port = free_port()
    service = _service(tmp_path, broker, {"kind": "influx_v1", "url": influx.url, "database": db}, metrics_port=port)
    try:
        everything = scrape(port)
        acked = scrape(port, "?name[]=clinicwatch_messages_acked_total")
        two = scrape(port, "?name[]=clinicwatch_clinic_state&name[]=clinicwatch_state_blind")
    finally:
        service.stop()
    assert len([k for k in everything if k.startswith("clinicwatch_clinic_state{")]) == 5 * len(CLINICS)
    assert len([k for k in everything if k.startswith("clinicwatch_clinic_last_seen_seconds")]) == 0  # none heard
    assert acked == {"clinicwatch_messages_acked_total": 0.0}
    assert two == {"clinicwatch_state_blind": everything["clinicwatch_state_blind"],
                   **{f'clinicwatch_clinic_state{{clinic="{c}",state="{s}"}}': 1.0 if s == "unknown" else 0.0
                      for c in CLINICS for s in ("up", "degraded", "down", "unknown", "maintenance")}}


def test_v2_write_path_into_victoriametrics(start_server, victoria, tmp_path) -> None:
    broker = start_server(Mosquitto())
    service = _service(tmp_path, broker, {"kind": "influx_v2", "url": victoria.url, "bucket": "clinicwatch"})
    load = LoadPublisher(broker.host, broker.port, CLINICS[:2], per_message=5)
    try:
        load.publish(8)
        load.wait_acked()
        deadline = time.monotonic() + 30
        exported: list = []
        while time.monotonic() < deadline and sum(len(s["values"]) for s in exported) < 40:
            exported = victoria.export('{__name__="load_v"}')
            time.sleep(0.3)
    finally:
        load.close()
        service.stop()
    assert sum(len(s["values"]) for s in exported) == 40
    assert {s["metric"]["clinic"] for s in exported} == set(CLINICS[:2])
    assert all(s["metric"]["region"] == "Illes Balears" for s in exported)


def test_influxdb_down_under_load_loses_nothing(start_server, influxdb, tmp_path) -> None:
    influx, db = influxdb
    broker = start_server(Mosquitto())
    service = _service(tmp_path, broker, {"kind": "influx_v1", "url": influx.url, "database": db})
    load = LoadPublisher(broker.host, broker.port, CLINICS, per_message=20)
    try:
        sent = load.publish(100, pause_s=0.005)
        influx.stop()
        sent += load.publish(200, pause_s=0.005)  # stored while the database is away: spooled
        load.wait_acked()
        deadline = time.monotonic() + 20
        while service.snapshot()["pipeline"]["points_spooled"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        influx.start()
        assert wait_points(influx, db, sent) == sent
        deadline = time.monotonic() + 20
        while service.snapshot()["spool_files"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        load.close()
        service.stop()
    stats = service.snapshot()["pipeline"]
    assert stats["points_spooled"] > 0, "the outage went through the disk spool"
    assert stats["points_replayed"] == stats["points_spooled"]
    assert stats["points_written"] + stats["points_replayed"] == sent
    assert service.snapshot()["spool_files"] == 0


@pytest.mark.parametrize("victim", ["intake", "store"])
def test_collector_process_killed_under_load_loses_nothing(victim, start_server, influxdb, tmp_path) -> None:
    """SIGKILL of the intake process (the store process ends with it) or of the store process (the
    intake stops with exit 1 for the service manager); restarted, the collector stores every sample."""
    influx, db = influxdb
    broker = start_server(Mosquitto())
    config = collector_config(tmp_path / "c", broker.port, {"kind": "influx_v1", "url": influx.url, "database": db},
                              CLINICS)
    collector = start_collector(config)
    load = LoadPublisher(broker.host, broker.port, CLINICS, per_message=20)
    try:
        wait_subscribed(config)  # a persistent session from here on
        store = store_process(collector.pid)
        sent = load.publish(150, pause_s=0.01)
        if victim == "intake":
            collector.kill()
            collector.wait()
            assert gone(store, 10), "the store process ends with the intake it served"
        else:
            os.kill(store, signal.SIGKILL)
            assert collector.wait(30) == 1, "the intake stops (exit 1) for the service manager to restart both"
        sent += load.publish(150, pause_s=0.002)  # held by the broker for the collector's session
        load.wait_acked()
        collector = start_collector(config)
        assert wait_points(influx, db, sent) == sent
        collector.terminate()
        assert collector.wait(30) == 0, "SIGTERM: the store drains, then both end cleanly"
    finally:
        load.close()
        collector.terminate()
        collector.wait(20)
    reported = "the collector's store process ended" in config.with_suffix(".log").read_text()
    assert reported == (victim == "store")


def test_broker_restart_under_load_loses_nothing(start_server, influxdb, tmp_path) -> None:
    influx, db = influxdb
    broker = start_server(Mosquitto())
    service = _service(tmp_path, broker, {"kind": "influx_v1", "url": influx.url, "database": db})
    try:
        load = LoadPublisher(broker.host, broker.port, CLINICS, per_message=20)
        sent = load.publish(100)
        load.wait_acked()
        load.close()
        broker.restart()
        load = LoadPublisher(broker.host, broker.port, CLINICS, per_message=20)
        load.next_seq = {c: 1000 for c in CLINICS}
        sent += load.publish(100)
        load.wait_acked()
        load.close()
        assert wait_points(influx, db, sent) == sent
    finally:
        service.stop()


def test_three_collectors_in_one_share_group_store_each_message_once(start_server, influxdb, tmp_path) -> None:
    from lab.servers import free_port

    influx, db = influxdb
    broker = start_server(Mosquitto())
    ports = [free_port() for _ in range(3)]
    collectors = [start_collector(collector_config(tmp_path / f"c{i}", broker.port,
                                                   {"kind": "influx_v1", "url": influx.url, "database": db}, CLINICS,
                                                   client_id=f"collector-{i}", share_group="collectors",
                                                   metrics_port=ports[i])) for i in range(3)]
    load = LoadPublisher(broker.host, broker.port, CLINICS, per_message=1)
    try:
        for i in range(3):
            wait_subscribed(tmp_path / f"c{i}" / "collector.yaml")
        sent = load.publish(3000)
        load.wait_acked()
        assert wait_points(influx, db, sent) == sent
        deadline = time.monotonic() + 20
        while True:  # each collector's metrics are at most a moment old
            accepted = [scrape(p).get('clinicwatch_messages_accepted_total{kind="telemetry"}', 0) for p in ports]
            if sum(accepted) >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        load.close()
        for proc in collectors:
            proc.terminate()
            proc.wait(20)
    assert sum(accepted) == 3000, f"each message delivered to exactly one collector: {accepted}"
    assert all(share > 300 for share in accepted), f"the load is spread: {accepted}"


def test_registry_is_reloaded_without_restart_and_a_bad_one_is_refused(start_server, influxdb, tmp_path) -> None:
    influx, db = influxdb
    broker = start_server(Mosquitto())
    service = _service(tmp_path, broker, {"kind": "influx_v1", "url": influx.url, "database": db})
    newcomer = "es-ib-9999"
    load = LoadPublisher(broker.host, broker.port, [newcomer], per_message=1)
    try:
        load.publish(1)
        load.wait_acked()
        deadline = time.monotonic() + 10
        while service.snapshot()["rejected"].get("unknown_clinic", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.snapshot()["rejected"].get("unknown_clinic", 0) == 1
        registry = service.config.registry
        registry.write_text(registry.read_text() + f"- id: {newcomer}\n  name: New clinic\n  region: Menorca\n")
        assert service.reload_registry() is True
        load.publish(1)
        load.wait_acked()
        assert wait_points(influx, db, 1) == 1
        registry.write_text("clinics: [{id: BAD ID}]\n")
        time.sleep(0.01)
        import os

        os.utime(registry, (time.time() + 5, time.time() + 5))
        assert service.reload_registry() is False
        load.publish(1)
        load.wait_acked()
        assert wait_points(influx, db, 2) == 2, "the previous registry stays in force"
    finally:
        load.close()
        service.stop()
    letters = [json.loads(line) for line in (tmp_path / "collector" / "data" / "dead-letters.jsonl").open()]
    assert [(d["reason"], d["detail"]) for d in letters] == [
        ("unknown_clinic", f"clinic {newcomer!r} is not in the registry")]


def test_a_sample_the_store_cannot_take_is_rejected_alone_and_its_batch_is_stored(start_server, influxdb,
                                                                                  tmp_path) -> None:
    """One bad tag value (`ends\\`) used to make InfluxDB refuse its line, and the collector refuse the batch."""
    import paho.mqtt.client as mqtt

    import wire

    influx, db = influxdb
    broker = start_server(Mosquitto())
    service = _service(tmp_path, broker, {"kind": "influx_v1", "url": influx.url, "database": db,
                                          "batch_points": 10_000, "flush_interval_s": 1.0})
    load = LoadPublisher(broker.host, broker.port, CLINICS, per_message=5)
    now = int(time.time() * 1000)
    poisoned = wire.Telemetry(v=1, clinic="es-ib-0003", boot="feedc0de00000009", samples=[
        wire.Sample(seq=s, t=now - 1000 * s, mono=s, sync="ntp", m="load", tags={"target": target}, f={"v": 1.0})
        for s, target in enumerate(["wan", "ends\\", "lan"])])
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        load.publish(10)
        publisher.publish(wire.topic("es-ib-0003", "telemetry"), wire.encode(poisoned), qos=1).wait_for_publish(10)
        load.publish(10)
        load.wait_acked()
        assert wait_points(influx, db, 102) == 102
        deadline = time.monotonic() + 10
        while service.snapshot()["pipeline"]["messages_acked"] < 21 and time.monotonic() < deadline:
            time.sleep(0.05)
        snapshot = service.snapshot()
    finally:
        publisher.loop_stop()
        load.close()
        service.stop()
    assert (snapshot["pipeline"]["points_written"], snapshot["pipeline"]["points_refused"]) == (102, 0)
    assert snapshot["rejected_records"] == {"unstorable_value": 1}
    assert snapshot["pipeline"]["messages_acked"] == 21
    targets = influx.query("SELECT count(v) FROM load WHERE clinic = 'es-ib-0003' GROUP BY target", db=db)
    assert {s["tags"]["target"] for s in targets["results"][0]["series"]} >= {"wan", "lan"}
    letters = [json.loads(line) for line in (tmp_path / "collector" / "data" / "dead-letters.jsonl").open()]
    assert [(d["reason"], d["detail"][:45]) for d in letters] == [
        ("unstorable_value", "1 samples not stored, the others were: sample")]
    assert "samples[1].tags.target: 'ends\\\\' has a backslash at its end" in letters[0]["detail"]
    assert not (tmp_path / "collector" / "data" / "refused-points.jsonl").exists()
