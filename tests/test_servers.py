"""Each real server the project depends on, started by the shared fixtures, used for real."""

from __future__ import annotations

import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from lab.servers import InfluxDB, Mosquitto, ServerError, Snmpd, VictoriaMetrics


def _client(name: str) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)


def test_mosquitto_delivers_qos1_messages_in_order(mosquitto: Mosquitto) -> None:
    got: list[tuple[str, bytes]] = []
    subscribed, all_in = threading.Event(), threading.Event()
    sub = _client("reader")
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, msg.payload))
        if len(got) == 200:
            all_in.set()

    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("clinicwatch/v1/+/telemetry", qos=1)
    sub.loop_start()
    pub = _client("writer")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        assert subscribed.wait(5)
        infos = [pub.publish(f"clinicwatch/v1/c{i % 3}/telemetry", f"m{i}".encode(), qos=1) for i in range(200)]
        for info in infos:
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
            info.wait_for_publish(5)
        assert all_in.wait(10), f"only {len(got)} of 200 arrived"
    finally:
        for client in (pub, sub):
            client.loop_stop()
            client.disconnect()
    assert [payload for _, payload in got] == [f"m{i}".encode() for i in range(200)]
    assert got[4][0] == "clinicwatch/v1/c1/telemetry"


def test_influxdb_stores_line_protocol_and_answers_influxql(influxdb: tuple[InfluxDB, str]) -> None:
    server, db = influxdb
    base = 1_795_000_000_000
    lines = "\n".join(
        f"icmp,clinic=es-ib-{c:04d},target=gw rtt_avg_ms={10 + c + i / 10},loss_pct=0 {base + i * 30_000}"
        for c in range(3) for i in range(10)
    )
    server.write(db, lines)
    body = server.query('SELECT count(rtt_avg_ms), mean(rtt_avg_ms) FROM icmp GROUP BY clinic', db=db)
    series = {s["tags"]["clinic"]: s["values"][0] for s in body["results"][0]["series"]}
    assert sorted(series) == ["es-ib-0000", "es-ib-0001", "es-ib-0002"]
    _, count, mean = series["es-ib-0002"]
    assert count == 10
    assert mean == pytest.approx(12.45)


def test_influxdb_overwrites_a_point_with_the_same_series_and_time(influxdb: tuple[InfluxDB, str]) -> None:
    # Idempotent writes are what make at-least-once delivery harmless (DESIGN.md).
    server, db = influxdb
    for _ in range(3):
        server.write(db, "icmp,clinic=a rtt_avg_ms=5 1795000000000")
    rows = server.query("SELECT rtt_avg_ms FROM icmp", db=db)["results"][0]["series"][0]["values"]
    assert rows == [[1795000000000, 5]]


def test_victoriametrics_accepts_influxdb_client_v2_writes(victoria: VictoriaMetrics) -> None:
    now_ms = int(time.time() * 1000) // 1000 * 1000
    lines = [f"snmp_if,clinic=it-lo-0007,device=rtr-1,interface=wan in_bps={1000 * i},oper_up=1i {now_ms - i * 60_000}"
             for i in range(5)]
    with InfluxDBClient(url=victoria.url, token="unused", org="clinicwatch") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="clinicwatch", record=lines, write_precision="ms")
    exported = victoria.export('{__name__="snmp_if_in_bps",clinic="it-lo-0007"}')
    assert len(exported) == 1
    series = exported[0]
    assert series["metric"]["interface"] == "wan" and series["metric"]["device"] == "rtr-1"
    assert sorted(zip(series["timestamps"], series["values"])) == sorted(
        (now_ms - i * 60_000, 1000.0 * i) for i in range(5))


SNMPD_CONFIG = """\
rocommunity clinicwatch 127.0.0.1
sysLocation Centro de Salud Test
override .1.3.6.1.2.1.1.3.0 timeticks 4294967000
"""


def test_snmpd_answers_get_and_walk(start_server) -> None:
    """The fixture's snmpd, read with net-snmp's own tools (the agent's client is tested in tests/test_snmp.py)."""
    snmpd = start_server(Snmpd(SNMPD_CONFIG))
    address = f"{snmpd.host}:{snmpd.port}"
    got = subprocess.run(["snmpget", "-v2c", "-c", "clinicwatch", "-Oqvt", address, "1.3.6.1.2.1.1.3.0",
                          "1.3.6.1.2.1.1.6.0"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert got == ["4294967000", "\"Centro de Salud Test\""]  # the uptime served by `override`
    walked = subprocess.run(["snmpbulkwalk", "-v2c", "-c", "clinicwatch", "-Oqv", address, "1.3.6.1.2.1.2.2.1.2"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert '"lo"' in walked


def test_a_server_that_fails_to_start_reports_its_own_log(start_server) -> None:
    broken = Mosquitto(extra_config="no_such_option 1\n")
    with pytest.raises(ServerError) as caught:
        start_server(broken)
    assert "no_such_option" in str(caught.value)
    assert "mosquitto exited" in str(caught.value)


def test_broker_restart_keeps_port_and_persistent_sessions(start_server) -> None:
    broker = start_server(Mosquitto())
    port = broker.port
    got: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="persistent-reader", clean_session=False)
    sub.on_message = lambda _c, _u, msg: got.append(msg.payload)
    sub.connect(broker.host, port)
    sub.subscribe("clinicwatch/v1/x/telemetry", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    sub.loop_stop()
    sub.disconnect()
    broker.restart()
    assert broker.port == port
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(port), "-q", "1", "-t",
                    "clinicwatch/v1/x/telemetry", "-m", "queued while away"], check=True)
    sub.connect(broker.host, port)
    sub.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    sub.loop_stop()
    sub.disconnect()
    assert got == [b"queued while away"]
