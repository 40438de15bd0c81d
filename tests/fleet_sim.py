"""A simulated fleet for tests that need a collector full of realistic data: seven clinics (healthy, a
degraded link, down, on battery then down, a flapping link whose cuts the agent lived through and
recorded, never heard, in maintenance) published as their agents would (wire contract) to a real
broker, into the real collector (ingest, state engine, status points every second) and a real
InfluxDB."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from lab.servers import Mosquitto
from tests.collector_harness import collector_config, start_collector, wait_subscribed

CLINICS = {  # id: (region, isp, lat, lon, story)
    "es-ib-0001": ("Illes Balears", "Movistar", 39.57, 2.65, "healthy"),
    "es-ib-0002": ("Illes Balears", "Vodafone", 39.88, 3.10, "degraded"),
    "es-ib-0003": ("Illes Balears", "Movistar", 38.91, 1.43, "down"),
    "es-ct-0004": ("Catalunya", "Movistar", 42.26, 1.17, "battery"),
    "es-ct-0005": ("Catalunya", "Vodafone", 41.98, 2.82, "flapping"),
    "es-ct-0006": ("Catalunya", "Vodafone", 41.39, 2.17, "silent"),
    "es-ct-0007": ("Catalunya", "Movistar", 41.62, 0.62, "maintenance"),
}
BOOT = "0123456789abcdef"


class Fleet:
    """Publishes each clinic's story as its agent would (wire contract), times in the last hour."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-sim",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq: dict[str, int] = {}
        self.now = time.time_ns() // 1_000_000
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def _next(self, clinic: str) -> int:
        self.seq[clinic] = self.seq.get(clinic, 0) + 1
        return self.seq[clinic]

    def publish(self, clinic: str, kind: str, doc: dict[str, Any]) -> None:
        payload = json.dumps({"v": 1, "clinic": clinic, "boot": BOOT, **doc}).encode()
        if kind == "telemetry":
            payload = zlib.compress(payload)
        self.infos.append(self.client.publish(f"clinicwatch/v1/{clinic}/{kind}", payload, qos=1,
                                              retain=kind == "status"))

    def status(self, clinic: str, state: str, reason: str | None = None) -> None:
        self.publish(clinic, "status", {"state": state, "agent": "sim", **({"reason": reason} if reason else {})})

    def samples(self, clinic: str, samples: list[tuple[int, str, dict[str, str], dict[str, Any]]]) -> None:
        self.publish(clinic, "telemetry", {"mono_now": self.now, "samples": [
            {"seq": self._next(clinic), "t": t, "mono": t, "sync": "ntp", "m": m, "tags": tags, "f": f}
            for t, m, tags, f in samples]})

    def events(self, clinic: str, events: list[tuple[int, str, dict[str, Any]]]) -> None:
        self.publish(clinic, "event", {"mono_now": self.now, "events": [
            {"seq": self._next(clinic), "t": t, "mono": t, "sync": "ntp", "kind": kind, "detail": detail}
            for t, kind, detail in events]})

    def link(self, clinic: str, loss: float, rtt: float, minutes: int = 30,
             cuts: list[tuple[int, int]] = ()) -> None:
        """ICMP towards two central targets every 30 s for `minutes`; lost entirely within `cuts`."""
        rows = []
        for k in range(minutes * 2, 0, -1):
            t = self.now - k * 30_000
            lost = 100.0 if any(a <= t < b for a, b in cuts) else loss
            for target in ("records", "hub"):
                f: dict[str, Any] = {"success": lost < 100, "reason": "" if lost < 100 else "timeout",
                                     "loss_pct": lost, "sent": 10, "received": round(10 * (1 - lost / 100)),
                                     "duration_ms": 2000.0}
                if lost < 100:
                    f |= {"rtt_avg_ms": rtt, "jitter_ms": rtt / 20}
                rows.append((t, "icmp", {"target": target}, f))
        self.samples(clinic, rows)

    def devices(self, clinic: str, on_battery: bool = False) -> None:
        t = self.now - 60_000
        ok = {"success": True, "reason": "", "duration_ms": 50.0}
        self.samples(clinic, [
            (t, "tcp", {"target": "records"}, ok | {"connect_ms": 31.5}),
            (t, "tcp", {"target": "records"}, {"success": False, "reason": "refused", "duration_ms": 3.0}),
            (t - 1, "icmp", {"target": "gateway"}, {"success": False, "reason": "no_route", "sent": 0,
                                                    "received": 0, "duration_ms": 1.0}),
            (t - 1, "dns", {"target": "resolver"}, {"success": False, "reason": "timeout", "duration_ms": 5000.0}),
            (t - 1, "http", {"target": "records"}, {"success": False, "reason": "tls", "duration_ms": 90.0}),
            (t, "dns", {"target": "resolver"}, ok | {"resolve_ms": 12.0, "rcode": "NOERROR", "answers": 1}),
            (t, "http", {"target": "records"}, ok | {"connect_ms": 30.0, "tls_ms": 60.0, "ttfb_ms": 120.0,
                                                     "status": 200}),
            (t, "traceroute", {"target": "records"}, ok | {"path": "192.168.1.1>10.0.0.1>198.18.0.1", "hops": 3,
                                                           "reached": True, "route_changed": True}),
            (t, "throughput", {"target": "hub"}, ok | {"down_kbps": 9000.0, "up_kbps": 2000.0,
                                                       "spent_month_bytes": 52_000_000}),
            (t, "agent", {}, {"outbox_samples": 3, "outbox_events": 0, "outbox_bytes": 2048,
                              "oldest_unsent_age_s": 1.5, "rss_kib": 30_000, "wan_month_bytes": 71_000_000,
                              "wan_probes_month_bytes": 9_000_000, "wan_reporting_month_bytes": 10_000_000,
                              "wan_throughput_month_bytes": 52_000_000, "lan_month_bytes": 400_000,
                              "wan_projected_month_bytes": 120_000_000, "data_budget_month_bytes": 100_000_000}),
            (t, "snmp_if", {"device": "router", "interface": "wwan0"},
             {"in_bps": 800_000.0, "out_bps": 120_000.0, "in_errors_ps": 0.0, "out_errors_ps": 0.1,
              "in_discards_ps": 0.0, "out_discards_ps": 0.0, "oper_up": True}),
            (t, "snmp_cellular", {"device": "router", "modem": "lte1"},
             {"rssi_dbm": -71.0, "rsrp_dbm": -98.0, "rsrq_db": -11.0, "sinr_db": 7.5}),
            (t, "snmp_ups", {"device": "ups"}, {"on_battery": on_battery, "charge_pct": 64.0 if on_battery else 100.0,
                                                "minutes_remaining": 22.0, "input_voltage_v": 0.0 if on_battery
                                                else 229.0, "output_load_pct": 31.0}),
        ])

    def wait(self) -> None:
        for info in self.infos:
            info.wait_for_publish(10)
        self.client.loop_stop()
        self.client.disconnect()


def tell_story(fleet: Fleet) -> None:
    now = fleet.now
    # Two messages the collector rejects (counted by reason): not JSON, and a record without its time.
    fleet.client.publish("clinicwatch/v1/es-ib-0001/event", b"{not json", qos=1)
    fleet.events("es-ib-0001", [(now, "interface_up", {"interface": "wwan0"})])
    fleet.publish("es-ib-0001", "event", {"mono_now": now, "events": [
        {"seq": 99, "mono": now, "sync": "ntp", "kind": "interface_up", "detail": {}}]})
    for clinic, (*_, story) in CLINICS.items():
        if story == "silent":
            continue
        fleet.status(clinic, "online")
        # Flapping: a 65 s cut every 3 minutes for half an hour, which the agent lived through: its probes
        # failed meanwhile and it recorded each cut. All of it is older than the collector's first word
        # from the clinic, so the engine records the outages but does not judge that past as flapping
        # (it judges a link from when it first heard it): the clinic is `up` with ten agent outages.
        cuts = [(now - k * 180_000 - 65_000, now - k * 180_000) for k in range(10, 0, -1)] if story == "flapping" else []
        if story == "degraded":
            fleet.link(clinic, 30.0, 130.0)
        else:
            fleet.link(clinic, 0.0, 45.0, cuts=cuts)
        fleet.devices(clinic, on_battery=story == "battery")
        if cuts:
            fleet.events(clinic, [(b, "outage", {
                "down_t": a, "down_mono": a, "up_mono": b, "duration_s": (b - a) / 1000, "cause": "mqtt disconnected",
                "power_cycled": False, "down_sync": "ntp"}) for a, b in cuts])
        if story == "battery":
            fleet.events(clinic, [(now - 30_000, "on_battery", {"charge_pct": 64.0, "minutes_remaining": 22.0,
                                                                "input_voltage_v": 0.0})])
            fleet.status(clinic, "offline", "lost")
        if story == "down":
            fleet.events(clinic, [(now - 40_000, "interface_down", {"interface": "wwan0", "status": "down",
                                                                    "previous": "up"})])
            fleet.status(clinic, "offline", "lost")


@contextlib.contextmanager
def fleet_collector(influx: Any, tmp: Path, db: str, **extra: Any) -> Iterator[tuple[Path, int, int]]:
    """The collector with its own broker (the fleet's retained statuses must not reach other tests), fed
    the fleet's story; yields (its config, its HTTP port, the fleet's `now`) once the states are in."""
    broker = Mosquitto()
    broker.start()
    influx.create_database(db)
    now = time.time_ns() // 1_000_000
    (tmp / "maintenance.yaml").write_text(yaml.safe_dump({"windows": [{
        "clinics": ["es-ct-0007"], "reason": "router replaced",
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 600)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 + 3600))}]}))
    config = collector_config(tmp, broker.port, {"kind": "influx_v1", "url": influx.url, "database": db},
                              list(CLINICS), metrics_port=free_port(),
                              state={"status_interval_s": 1, "maintenance_file": str(tmp / "maintenance.yaml")},
                              **extra)
    registry = yaml.safe_load((tmp / "clinics.yaml").read_text())
    for entry in registry["clinics"]:
        region, isp, lat, lon, _ = CLINICS[entry["id"]]
        entry.update(region=region, isp=isp, lat=lat, lon=lon)
    (tmp / "clinics.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True))
    collector = start_collector(config)
    try:
        wait_subscribed(config)
        fleet = Fleet(broker.port)
        tell_story(fleet)
        fleet.wait()
        port = yaml.safe_load(config.read_text())["metrics_port"]
        deadline = time.monotonic() + 60
        wanted = {"incident", "outage", "clinic_state", "clinic_status", "snmp_ups", "agent_event"}
        # es-ib-0002 too: the fleet dashboard's "Clinics degraded" panel has data only once it is degraded.
        states = {"es-ct-0004": "down", "es-ct-0007": "maintenance", "es-ib-0002": "degraded"}
        while True:
            have, now_states = measurements(influx, db), current(influx, db)
            missing = [f"measurement {m}" for m in sorted(wanted - have)] + [
                f"{clinic} {state} (is {now_states.get(clinic)})" for clinic, state in states.items()
                if now_states.get(clinic) != state]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the simulated fleet's collector not ready in 60 s: {'; '.join(missing)}")
            time.sleep(0.5)
        yield config, port, fleet.now
    finally:
        collector.terminate()
        collector.wait(20)
        broker.stop()
        influx.query(f'DROP DATABASE "{db}"', method="POST")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measurements(influx, db: str) -> set[str]:
    series = influx.query("SHOW MEASUREMENTS", db=db)["results"][0].get("series", [])
    return {row[0] for row in series[0]["values"]} if series else set()


def current(influx, db: str) -> dict[str, str]:
    result = influx.query('SELECT last("state") FROM "clinic_status" WHERE time > now() - 1m GROUP BY "clinic"',
                          db=db)["results"][0]
    return {s["tags"]["clinic"]: s["values"][0][1] for s in result.get("series", [])}
