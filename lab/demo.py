"""Demo fleet: simulated clinics report through a real Mosquitto into a real InfluxDB.

    python -m lab.demo --clinics 20 --hours 1

Starts Mosquitto and InfluxDB (Debian packages) on free loopback ports, runs the
collector service (manual-ack intake, validation against the contract and a
generated registry, batched writes with its spool), and has each simulated clinic publish an hour of ICMP
samples as wire-contract telemetry. Each clinic's link is one of the named link
profiles: its pings go through the same link model as the test relay, so the
stored figures are what that kind of link looks like. One misconfigured clinic
publishes under another's topic, to show rejection and dead-lettering. Prints
what InfluxDB holds per clinic, answered by InfluxQL. `--serve` keeps the fleet
reporting live until Ctrl-C, for pointing Grafana at the database.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

import wire
import yaml

from collector.config import CollectorConfig
from collector.service import Collector
from lab.linkmodel import PROFILES, LinkModel
from lab.servers import InfluxDB, Mosquitto

DATABASE = "clinicwatch"
ROUND_S = 30
PINGS_PER_ROUND = 10


class SimulatedClinic:
    def __init__(self, clinic_id: str, profile: str, seed: int) -> None:
        self.clinic_id, self.profile = clinic_id, profile
        self.model = LinkModel(PROFILES[profile], random.Random(seed))
        self.boot = secrets.token_hex(8)
        self.seq = 0
        self.started = time.monotonic()

    def icmp_sample(self, t_ms: int) -> wire.Sample:
        rtts = []
        for i in range(PINGS_PER_ROUND):
            now = t_ms / 1000 + i
            there = self.model.admit("up", 84, now)
            back = self.model.admit("down", 84, there) if there is not None else None
            if back is not None:
                rtts.append((back - now) * 1000)
        fields: dict[str, float | int] = {"sent": PINGS_PER_ROUND, "received": len(rtts),
                                          "loss_pct": 100.0 * (PINGS_PER_ROUND - len(rtts)) / PINGS_PER_ROUND}
        if rtts:
            fields |= {"rtt_min_ms": min(rtts), "rtt_avg_ms": statistics.mean(rtts), "rtt_max_ms": max(rtts)}
        if len(rtts) > 1:
            fields["jitter_ms"] = statistics.mean(abs(a - b) for a, b in zip(rtts, rtts[1:]))
        self.seq += 1
        mono = int((time.monotonic() - self.started) * 1000)
        return wire.Sample(seq=self.seq, t=t_ms, mono=mono, sync="ntp", m="icmp", tags={"target": "central"},
                           f={k: round(v, 3) if isinstance(v, float) else v for k, v in fields.items()})

    def batch(self, samples: list[wire.Sample], clinic_field: str | None = None) -> bytes:
        return wire.encode(wire.Telemetry(v=1, clinic=clinic_field or self.clinic_id, boot=self.boot,
                                          samples=samples))


def run(clinics: int, hours: float, serve: bool, data_dir: Path) -> int:
    with Mosquitto(workdir=data_dir / "mosquitto") as broker, InfluxDB(workdir=data_dir / "influxdb") as influx:
        influx.create_database(DATABASE)
        names = list(PROFILES)
        fleet = [SimulatedClinic(f"demo-{i:04d}", names[i % len(names)], seed=i) for i in range(clinics)]
        registry = data_dir / "clinics.yaml"
        links = {"geo_satellite": "satellite", "dying": "lte"}
        registry.write_text(yaml.safe_dump({"clinics": [
            {"id": c.clinic_id, "name": f"Demo clinic {c.clinic_id[-4:]}", "region": "Demo",
             "link": links.get(c.profile, c.profile)} for c in fleet]}))
        service = Collector(CollectorConfig.model_validate({
            "intake": {"host": broker.host, "port": broker.port, "username": None, "client_id": "demo-collector"},
            "store": {"kind": "influx_v1", "url": influx.url, "database": DATABASE, "flush_interval_s": 0.5},
            "registry": str(registry), "data_dir": str(data_dir / "collector"), "metrics_port": 0}))
        service.start()
        service.intake.connected.wait(10)

        def written() -> int:
            return service.snapshot()["pipeline"]["points_written"]

        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-fleet")
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        now_ms = int(time.time() * 1000)
        rounds = int(hours * 3600 / ROUND_S)
        expected = 0
        for clinic in fleet:
            samples = [clinic.icmp_sample(now_ms - (rounds - r) * ROUND_S * 1000) for r in range(rounds)]
            for start in range(0, len(samples), 60):  # a backlog goes out in batches, as the outbox sends it
                publisher.publish(wire.topic(clinic.clinic_id, "telemetry"), clinic.batch(samples[start:start + 60]),
                                  qos=1).wait_for_publish(10)
            expected += len(samples)
        # A clinic whose agent was given another clinic's id: rejected, counted and kept.
        rogue = fleet[0]
        publisher.publish(wire.topic(fleet[1].clinic_id, "telemetry"),
                          rogue.batch([rogue.icmp_sample(now_ms)], clinic_field=rogue.clinic_id), qos=1)
        deadline = time.monotonic() + 60
        while written() < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        snapshot = service.snapshot()
        print(f"broker {broker.host}:{broker.port}  InfluxDB {influx.url} (database {DATABASE!r})")
        print(f"stored {snapshot['pipeline']['points_written']} points from {sum(snapshot['accepted'].values())} "
              f"messages; rejected {snapshot['rejected']}; dead letters in {data_dir / 'collector' / 'dead-letters.jsonl'}\n")
        result = influx.query("SELECT count(rtt_avg_ms), mean(rtt_avg_ms), mean(jitter_ms), mean(loss_pct) "
                              "FROM icmp GROUP BY clinic", db=DATABASE)
        print(f"{'clinic':<11} {'link':<14} {'samples':>7} {'rtt ms':>8} {'jitter ms':>9} {'loss %':>7}")
        for series in result["results"][0].get("series", []):
            clinic_id = series["tags"]["clinic"]
            _, count, rtt, jitter, loss = series["values"][0]
            profile = next(c.profile for c in fleet if c.clinic_id == clinic_id)
            print(f"{clinic_id:<11} {profile:<14} {count:>7} {rtt:>8.1f} {jitter or 0:>9.1f} {loss:>7.2f}")
        if serve:
            print("\nserving: each clinic reports every 30 s; Ctrl-C stops")
            try:
                while True:
                    time.sleep(ROUND_S)
                    t = int(time.time() * 1000)
                    for clinic in fleet:
                        publisher.publish(wire.topic(clinic.clinic_id, "telemetry"),
                                          clinic.batch([clinic.icmp_sample(t)]), qos=1)
            except KeyboardInterrupt:
                pass
        publisher.loop_stop()
        service.stop()
        return 0 if written() >= expected else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinics", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0, help="history each clinic backfills")
    parser.add_argument("--serve", action="store_true", help="keep reporting live until Ctrl-C")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep broker and database files here")
    args = parser.parse_args(argv)
    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        return run(args.clinics, args.hours, args.serve, args.data_dir)
    with tempfile.TemporaryDirectory(prefix="clinicwatch-demo-") as tmp:
        return run(args.clinics, args.hours, args.serve, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())
