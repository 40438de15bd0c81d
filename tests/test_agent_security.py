"""Broker credentials and ACL generated from the registry, TLS with a test CA, secrets kept out of logs,
and remote configuration: applied when valid, refused with a reason when not."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import yaml

import wire
from collector.brokerconfig import COLLECTOR_USER, write_broker_config
from collector.registry import load_registry
from lab.certs import CertificateAuthority
from lab.servers import Mosquitto
from tests.agent_harness import Watcher, agent_config, outbox_rows, start_agent, stop_agent

REGISTRY = {"clinics": [{"id": "es-ib-0001", "name": "Sóller"}, {"id": "es-ib-0002", "name": "Deià"}]}


def _secured_broker(start_server, tmp_path):
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(REGISTRY))
    paths = write_broker_config(load_registry(tmp_path / "registry.yaml"), tmp_path / "broker")
    broker = start_server(Mosquitto(password_file=paths["passwd"], acl_file=paths["acl"]))
    password = {p.stem: p.read_text().strip() for p in paths["credentials"].glob("*.password")}
    return broker, password, paths


def _publish(broker, user: str, password: str, topic: str) -> int:
    """Publish once as `user`; return the PUBACK's MQTT v5 reason code."""
    done, codes = threading.Event(), []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-probe", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_publish = lambda _c, _u, _mid, reason, _p: (codes.append(reason.value), done.set())
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, b"{}", qos=1)
    assert done.wait(10)
    client.loop_stop()
    client.disconnect()
    return codes[0]


def test_a_clinic_may_publish_only_under_its_own_topics(start_server, tmp_path) -> None:
    broker, password, paths = _secured_broker(start_server, tmp_path)
    assert oct(paths["credentials"].joinpath("es-ib-0001.password").stat().st_mode & 0o777) == "0o600"
    watcher = Watcher(broker.host, broker.port, COLLECTOR_USER, password[COLLECTOR_USER])
    try:
        own = _publish(broker, "es-ib-0001", password["es-ib-0001"], wire.topic("es-ib-0001", "telemetry"))
        other = _publish(broker, "es-ib-0001", password["es-ib-0001"], wire.topic("es-ib-0002", "telemetry"))
        config = _publish(broker, "es-ib-0001", password["es-ib-0001"], wire.topic("es-ib-0001", "config"))
        watcher.wait_for(lambda: len(watcher.rejected) >= 1, what="the allowed message")
    finally:
        watcher.close()
    assert own == 0
    assert other == 135 and config == 135, "MQTT v5 'Not authorized'"
    assert [topic for topic, _ in watcher.rejected] == [wire.topic("es-ib-0001", "telemetry")]  # "{}" is no batch
    # Regenerating keeps every clinic's password (installers already have them).
    again = write_broker_config(load_registry(tmp_path / "registry.yaml"), tmp_path / "broker")
    assert again["credentials"].joinpath("es-ib-0001.password").read_text().strip() == password["es-ib-0001"]


def test_an_agent_whose_publishes_are_refused_keeps_its_records_and_never_logs_its_password(start_server,
                                                                                           tmp_path) -> None:
    broker, password, _ = _secured_broker(start_server, tmp_path)
    secret = tmp_path / "mqtt.password"
    secret.write_text(password["es-ib-0001"])
    # Installed with clinic 0001's credentials but clinic 0002's id: every publish is refused.
    config = agent_config(tmp_path, broker.host, broker.port,
                          [{"kind": "tcp", "name": "svc", "host": "127.0.0.1", "port": 9, "interval_s": 1}],
                          clinic_id="es-ib-0002", mqtt={"username": "es-ib-0001", "password_file": str(secret)})
    agent = start_agent(config)
    log = config.with_suffix(".log")
    try:
        watcher = Watcher(broker.host, broker.port, COLLECTOR_USER, password[COLLECTOR_USER])
        watcher.wait_for(lambda: log.read_text().count("broker refused a publish") >= 4, what="refusals in the log")
    finally:
        stop_agent(agent)
        watcher.close()
    assert watcher.records() == []
    # A refused record is offered again at reconnect and at self-metrics time, so four refusals may be three
    # records: what must hold is that none was ever deleted (ids run 1..n without a hole) and all are kept.
    kept, last_id = outbox_rows(tmp_path / "state")
    assert kept >= 2 and kept == last_id, "refused records stay in the outbox"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    refusals = [e for e in entries if e["msg"] == "broker refused a publish; records kept in the outbox"]
    assert len(refusals) >= 4 and all(e["reason"] == "Not authorized" and e["records"] >= 1 for e in refusals)
    assert password["es-ib-0001"] not in log.read_text()


def test_agent_reports_over_tls_and_refuses_a_broker_it_cannot_verify(start_server, tmp_path) -> None:
    ca = CertificateAuthority(tmp_path)
    cert, key = ca.issue("broker", ["127.0.0.1"], days_valid=30)
    broker = start_server(Mosquitto(tls=(ca.ca_file, cert, key)))
    watcher = Watcher(broker.host, broker.port, tls_ca=ca.ca_file)
    probe = [{"kind": "tcp", "name": "svc", "host": "127.0.0.1", "port": 9, "interval_s": 1}]
    trusted = agent_config(tmp_path, broker.host, broker.port, probe, mqtt={"tls": {"ca_file": str(ca.ca_file)}})
    agent = start_agent(trusted)
    try:
        watcher.wait_for(lambda: len(watcher.records()) >= 3, what="samples over TLS")
    finally:
        stop_agent(agent)
    untrusting_dir = tmp_path / "untrusting"
    untrusting_dir.mkdir()
    other_ca = CertificateAuthority(untrusting_dir)
    untrusting = agent_config(untrusting_dir, broker.host, broker.port, probe,
                              mqtt={"tls": {"ca_file": str(other_ca.ca_file)}})
    before = len(watcher.records())
    agent = start_agent(untrusting)
    try:
        deadline = time.monotonic() + 30
        while outbox_rows(untrusting_dir / "state")[0] < 3 and time.monotonic() < deadline:  # it keeps trying
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop_agent(agent)
        watcher.close()
    assert len(watcher.records()) == before, "nothing is sent to a broker whose certificate does not verify"
    assert outbox_rows(untrusting_dir / "state")[0] >= 3


def test_remote_config_is_applied_when_valid_and_refused_with_a_reason_when_not(start_server, tmp_path) -> None:
    broker = start_server(Mosquitto())
    watcher = Watcher(broker.host, broker.port)
    config = agent_config(tmp_path, broker.host, broker.port,
                          [{"kind": "tcp", "name": "old", "host": "127.0.0.1", "port": 9, "interval_s": 1}])
    agent = start_agent(config)

    def push(rev: int, settings: dict) -> None:
        message = wire.Config(v=1, clinic="es-ib-0042", rev=rev, config=settings)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="central", protocol=mqtt.MQTTv5)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        publisher.publish(wire.topic("es-ib-0042", "config"), wire.encode(message), qos=1, retain=True) \
            .wait_for_publish(5)
        publisher.loop_stop()
        publisher.disconnect()

    def targets() -> set[str]:
        return {r.tags.get("target") for _, r, _ in watcher.records() if r.m == "tcp"}

    try:
        watcher.wait_for(lambda: "old" in targets(), what="the local config's probe")
        push(2, {"probes": [{"kind": "tcp", "name": "new", "host": "127.0.0.1", "port": 9, "interval_s": 2}]})
        watcher.wait_for(lambda: "new" in targets(), what="the remote config's probe")
        push(3, {"probes": [{"kind": "tcp", "name": "bad", "host": "127.0.0.1", "port": 70000}]})
        watcher.wait_for(lambda: any(r.kind == "config_rejected" for _, r, _ in watcher.records("event")),
                         what="the rejection event")
        count_new = sum(1 for _, r, _ in watcher.records() if r.tags.get("target") == "new")
        watcher.wait_for(lambda: sum(1 for _, r, _ in watcher.records() if r.tags.get("target") == "new")
                         > count_new + 2, what="rev 2 carrying on")
    finally:
        stop_agent(agent)
        watcher.close()
    events = {r.kind: r for _, r, _ in watcher.records("event")}
    assert events["config_applied"].detail["rev"] == 2
    rejected = events["config_rejected"]
    assert rejected.detail["rev"] == 3
    assert "probes[0].port: expected `int` <= 65535, got 70000 (correct the value)" in rejected.detail["error"]
    assert "bad" not in targets()
    saved = json.loads((tmp_path / "state" / "remote-config.json").read_text())
    assert saved["rev"] == 2 and saved["settings"]["probes"][0]["name"] == "new"
    # The birth says how long the agent may stay quiet (flush 0.5 s + its shortest interval + 10 % + 10 s), and
    # is said again when a new schedule changes it.
    assert [s.quiet_max_s for s in watcher.statuses() if s.state == "online"] == [12, 13]


def test_collector_reports_subscriptions_the_broker_refuses(caplog) -> None:
    """A collector whose subscriptions are refused would sit connected and receive nothing. Mosquitto 2.0's
    acl_file grants every SUBACK and filters at delivery (checked: a clinic user gets QoS 1 for another
    clinic's filter), so a refusal cannot be provoked here; brokers that do refuse (dynamic security, EMQX,
    HiveMQ) send these reason codes, fed to the callback as paho would."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from collector.config import IntakeConfig
    from collector.ingest.intake import Intake

    intake = Intake(IntakeConfig())
    intake._topics = ["clinicwatch/v1/+/telemetry", "clinicwatch/v1/+/event", "clinicwatch/v1/+/status"]
    granted, refused = ReasonCode(PacketTypes.SUBACK, identifier=1), ReasonCode(PacketTypes.SUBACK, identifier=135)
    intake._subscribed(intake.client, None, 1, [granted, refused, granted], None)
    assert not intake.connected.is_set()
    [record] = [r for r in caplog.records if r.getMessage().startswith("broker refused the collector's")]
    assert record.fields["refused"] == ["clinicwatch/v1/+/event: Not authorized"]
    intake._subscribed(intake.client, None, 2, [granted] * 3, None)
    assert intake.connected.is_set()
