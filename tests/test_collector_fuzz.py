"""Bad input at volume: malformed, oversized, mis-addressed and random payloads through the real
broker leave the collector running, every one counted by reason and kept in the dead letters."""

from __future__ import annotations

import collections
import json
import random
import threading
import time
import zlib

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wire
from collector.config import load_collector_config
from collector.service import Collector
from lab.servers import Mosquitto
from tests.collector_harness import LoadPublisher, collector_config, wait_points

CLINIC = "es-ib-0001"
VALID = {"v": 1, "clinic": CLINIC, "boot": "feedc0de00000002", "samples": [
    {"seq": 1, "t": 0, "mono": 1, "sync": "ntp", "m": "icmp", "tags": {"target": "gw"}, "f": {"rtt_avg_ms": 1.0}}]}

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


def mutations(rng: random.Random, now_ms: int) -> list[tuple[str, bytes]]:
    """Hand-made bad cases, each kind many times with random details."""
    topic = wire.topic(CLINIC, "telemetry")
    out = []
    for _ in range(100):
        doc = json.loads(json.dumps(VALID))
        doc["samples"][0]["t"] = now_ms
        key = rng.choice(["v", "clinic", "boot", "samples"])
        broken = dict(doc)
        del broken[key]
        out += [
            (topic, json.dumps(broken).encode()),  # missing field
            (topic, json.dumps({**doc, "v": rng.randint(2, 99)}).encode()),  # wrong version
            (topic, json.dumps({**doc, "clinic": "es-ib-0002"}).encode()),  # not its topic
            (wire.topic("es-zz-0404", "telemetry"), json.dumps({**doc, "clinic": "es-zz-0404"}).encode()),  # unknown
            (topic, b"x" * rng.randint(262_145, 400_000)),  # oversize
            (topic, zlib.compress(b"{" + b" " * 1_200_000 + b"}")),  # zip bomb
            (topic, json.dumps(doc).encode()[: rng.randint(1, 60)]),  # truncated
            (topic, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))),  # noise
            ("clinicwatch/v1/" + CLINIC + "/nonsense", json.dumps(doc).encode()),  # unknown kind
            (topic, json.dumps({**doc, "samples": [{**doc["samples"][0], "t": now_ms + 86_400_000 * 400}]}).encode()),
        ]
    return out


def test_thousands_of_bad_messages_are_counted_kept_and_do_not_stop_intake(start_server, influxdb, tmp_path) -> None:
    influx, db = influxdb
    broker = start_server(Mosquitto())
    service = Collector(load_collector_config(collector_config(tmp_path, broker.port, {
        "kind": "influx_v1", "url": influx.url, "database": db}, [CLINIC, "es-ib-0002"])))
    service.start()
    assert service.intake.connected.wait(10)
    sent: list[tuple[str, bytes]] = mutations(random.Random(7), int(time.time() * 1000))

    @settings(max_examples=1500, suppress_health_check=list(HealthCheck), deadline=None, database=None)
    @given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)))
    def generated(payload: bytes) -> None:
        sent.append((wire.topic(CLINIC, "telemetry"), payload))

    generated()
    acked = threading.Semaphore(500)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzzer", protocol=mqtt.MQTTv5)
    client.on_publish = lambda *_: acked.release()
    client.max_inflight_messages_set(500)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in sent:
            acked.acquire()
            client.publish(topic, payload, qos=1)
        for _ in range(500):
            acked.acquire(timeout=30)
        # The non-contract topic ("nonsense") is outside the collector's subscriptions: never seen.
        expected = sum(1 for topic, _ in sent if not topic.endswith("/nonsense"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(service.snapshot()["rejected"].values()) < expected:
            time.sleep(0.2)
        # Intake is still alive: a good message after all that is stored.
        load = LoadPublisher(broker.host, broker.port, [CLINIC], per_message=3)
        load.publish(1)
        load.wait_acked()
        assert wait_points(influx, db, 3) == 3
        load.close()
    finally:
        client.loop_stop()
        client.disconnect()
        service.stop()
    rejected = collections.Counter(service.snapshot()["rejected"])
    assert sum(rejected.values()) == expected, rejected
    for reason in ("missing_field", "unsupported_version", "clinic_mismatch", "unknown_clinic", "oversize",
                   "bad_json", "timestamp_in_future"):
        assert rejected[reason] >= 100, (reason, rejected)
    letters = (tmp_path / "data" / "dead-letters.jsonl").read_text().splitlines()
    assert len(letters) == expected
    first = json.loads(letters[0])
    assert set(first) == {"received_ms", "topic", "reason", "detail", "payload_b64"}
