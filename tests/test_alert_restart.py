"""No alert lost or repeated by a SIGKILL: the real collector (with its state engine), a real Mosquitto
and InfluxDB, a clinic's agent played by a publisher of wire messages, and a webhook receiver.

Killed between writing a message and sending it (the receiver is down, so it waits in the log to be
retried), the restarted collector sends it once. Killed between sending and marking (the receiver
holds the request open), it is sent again after the restart: at least once, the most a channel that
cannot be asked afterwards allows; the copy carries the same Idempotency-Key, so a receiver that
keeps the keys it has seen takes it once, and that count is asserted to be exactly one."""

from __future__ import annotations

import signal
import time

import paho.mqtt.client as mqtt
import pytest

import wire
from lab.hooks import HookServer
from lab.servers import InfluxDB, Mosquitto, free_port
from tests.collector_harness import collector_config, start_collector, wait_subscribed

CLINIC = "es-ib-0042"
BOOT = "feedc0de00000001"


class Agent:
    """What the collector would hear from the clinic's agent: birth, reports, then its Last Will."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="played-agent", protocol=mqtt.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.seq = 0

    def status(self, state: str, reason: str | None = None) -> None:
        message = wire.Status(v=1, clinic=CLINIC, state=state, boot=BOOT, agent="test", reason=reason)
        self.client.publish(wire.topic(CLINIC, "status"), wire.encode(message), qos=1).wait_for_publish(10)

    def report(self) -> None:
        self.seq += 1
        now = int(time.time() * 1000)
        batch = wire.Telemetry(v=1, clinic=CLINIC, boot=BOOT, samples=[wire.Sample(
            seq=self.seq, t=now, mono=self.seq * 1000, sync="ntp", m="tcp", tags={"target": "records"},
            f={"success": True, "reason": "", "duration_ms": 12.0})])
        self.client.publish(wire.topic(CLINIC, "telemetry"), wire.encode(batch), qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(condition, what: str, timeout_s: float = 30):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def keys(hooks: HookServer) -> list[str]:
    return [r.headers["Idempotency-Key"] for r in hooks.received()]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("moment", ["between writing and sending", "between sending and marking"])
def test_a_sigkill_neither_loses_nor_repeats_an_alert(start_server, tmp_path, moment: str) -> None:
    broker = start_server(Mosquitto())
    influx = start_server(InfluxDB())
    influx.create_database("clinicwatch")
    hook_port = free_port()
    contact = {"id": "ib-admins", "name": "TIC", "lang": "es", "webhook": f"http://127.0.0.1:{hook_port}/hook",
               "all": True}
    config = collector_config(tmp_path / "collector", broker.port, {"kind": "influx_v1", "url": influx.url,
                              "database": "clinicwatch"}, [CLINIC], contacts=[contact],
                              alerts={"group_wait_s": 1, "retry_min_s": 0.5, "retry_max_s": 1})
    hooks = HookServer(port=0)  # only bound on hook_port below (a bound socket accepts connections already)
    if moment == "between sending and marking":
        hooks = HookServer(port=hook_port).__enter__()
        hooks.hold.clear()  # the receiver takes the request and does not answer yet
    collector = start_collector(config)
    agent = Agent(broker)
    try:
        wait_subscribed(config)
        agent.status("online")
        for _ in range(4):
            agent.report()
            time.sleep(0.5)
        time.sleep(3)  # up, judged
        agent.status("offline", "lost")  # what the broker publishes as the agent's Last Will
        log = (tmp_path / "collector" / "collector.log")
        if moment == "between writing and sending":
            # Nothing listens: the message is written, tried, and waits in the log for its retry.
            wait_for(lambda: '"alert to be retried"' in log.read_text(), "a failed first try")
        else:
            wait_for(lambda: hooks.received(), "the request in flight")
        collector.send_signal(signal.SIGKILL)
        collector.wait(10)
        if moment == "between writing and sending":
            hooks.__exit__()
            hooks = HookServer(port=hook_port).__enter__()
        else:
            hooks.hold.set()  # the killed sender never reads this answer
        collector = start_collector(config)
        wait_for(lambda: keys(hooks).count(f"{keys(hooks)[0] if keys(hooks) else ''}") >= (
            1 if moment == "between writing and sending" else 2), "the message sent after the restart", 60)
        agent.status("online")
        agent.report()
        wait_for(lambda: any("/recovery/" in k for k in keys(hooks)), "the recovery", 60)
        time.sleep(3)  # nothing more comes
    finally:
        agent.close()
        collector.terminate()
        collector.wait(30)
        hooks.__exit__()
    received = keys(hooks)
    opened = [k for k in received if "/open/" in k]
    assert len(set(received)) == 2 and all(k.endswith("/1/ib-admins") for k in received), received
    if moment == "between writing and sending":
        assert len(opened) == 1  # sent once: never received before the kill
    else:
        assert len(opened) == 2  # the copy, with the same key: at least once
    assert len([k for k in received if "/recovery/" in k]) == 1
    bodies = {r.json()["key"]: r.json() for r in hooks.received()}
    assert {b["kind"] for b in bodies.values()} == {"open", "recovery"}
    assert all(b["down" if b["kind"] == "open" else "back"][0]["id"] == CLINIC for b in bodies.values())
