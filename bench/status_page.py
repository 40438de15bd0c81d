"""Benchmark: what the status page and the status points cost for a large fleet.

    .venv/bin/python -m bench.status_page [--clinics 3180 10000] [--rounds 5]

For each fleet size, a real StateService (the collector's state engine with its SQLite database, not
started: no broker needed) over a registry of that many clinics with coordinates, 2 % of them down
and 3 % degraded. Measured, median of --rounds: rendering the fleet page (`/`, in Spanish) and one
clinic's page (30 days of availability), and building one round of `clinic_status` points (what the
engine's export thread writes every status_interval_s); beside the reference measured in the same
run: the JSON API's `/api/v1/clinics` body (json.dumps of the same clinic views).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from collector.config import load_collector_config
from collector.state.service import StateService
from collector.web.statuspage import StatusPage


def _fleet(directory: Path, clinics: int) -> Path:
    rng = random.Random(7)
    registry = {"clinics": [{"id": f"es-{c:05d}", "name": f"Centro de Salud {c}", "region": f"Región {c % 17}",
                             "isp": f"isp{c % 5}", "link": "lte", "lat": round(36 + rng.random() * 7, 4),
                             "lon": round(-9 + rng.random() * 12, 4)} for c in range(clinics)]}
    (directory / "clinics.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True))
    config = {"store": {"kind": "influx_v1", "url": "http://127.0.0.1:9", "database": "x"},
              "registry": "clinics.yaml", "data_dir": str(directory / "data"), "status_page": {"tz": "Europe/Madrid"}}
    (directory / "collector.yaml").write_text(yaml.safe_dump(config))
    return directory / "collector.yaml"


def _median_ms(fn: Any, rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def run(clinics: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = load_collector_config(_fleet(Path(tmp), clinics))
        state = StateService(config)
        now = time.time_ns() // 1_000_000
        for i, machine in enumerate(state.engine.machines.values()):
            machine.state, machine.since, machine.last_heard = "up", now - 3_600_000, now - 20_000
            if i % 50 == 0:
                machine.state, machine.cause = "down", "wan"
            elif i % 33 == 0:
                machine.state, machine.reason = "degraded", "loss"
        page = StatusPage(config.status_page, state)
        ref_ms, body = _median_ms(lambda: json.dumps(state.clinics()).encode(), rounds)
        fleet_ms, fleet = _median_ms(lambda: page.respond([], {}, {"Accept-Language": "es"})[1].encode(), rounds)
        clinic_ms, _ = _median_ms(lambda: page.respond(["clinics", "es-00050"], {}, {"Accept-Language": "es"}),
                                  rounds)
        points_ms, points = _median_ms(lambda: state.status_lines(now), rounds)
        state.db.close()
    every_s = config.state.status_interval_s
    print(f"{clinics} clinics:")
    print(f"  reference: /api/v1/clinics JSON   {ref_ms:8.1f} ms  {len(body) / 1024:7.0f} kB")
    print(f"  fleet page (/)                    {fleet_ms:8.1f} ms  {len(fleet) / 1024:7.0f} kB  "
          f"= {fleet_ms / ref_ms:.1f}x the reference")
    print(f"  one clinic's page (30 days)       {clinic_ms:8.1f} ms")
    print(f"  one round of clinic_status points {points_ms:8.1f} ms  {len(points)} points "
          f"= {points_ms / 1000 / every_s * 100:.2f} % of a core at status_interval_s {every_s:g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clinics", type=int, nargs="+", default=[3180, 10_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for clinics in args.clinics:
        run(clinics, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
