"""Benchmark: InfluxDB disk per clinic and day, for sizing the central site.

    .venv/bin/python -m bench.storage [--clinics 200] [--days 1] [--per-hour 180]

Writes `--days` of samples for `--clinics` clinics into a fresh InfluxDB 1.6.7 (Debian's), as the
collector writes them (its own line protocol, registry tags included), lets the database compact its
write-ahead log into TSM files as in steady operation (after seconds instead of its default minutes),
and measures the bytes on disk (data and WAL). The samples are ICMP results, the agent's most common kind, with the fields and the
noise of a real link (RTTs vary, losses are rare), 180 an hour per clinic: what the sample
configuration's schedule produces (docs/agent.md, Outbox). Prints bytes per sample, against the
line protocol the database was sent (the reference), and the disk a 1,000-clinic fleet needs a day
and for 13 months of retention.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import wire
from collector.ingest.lineproto import telemetry_lines
from collector.ingest.store import InfluxV1Writer
from lab.servers import InfluxDB

TAGS = {"region": "Illes Balears", "isp": "Movistar", "link": "lte"}
TARGETS = ("gateway", "records", "dns")


class SettlingInfluxDB(InfluxDB):
    """InfluxDB that snapshots its cache and fully compacts a shard after seconds, not the 10 minutes and
    4 hours of its defaults: the same files steady operation ends with, measured without the wait."""

    def command(self) -> list[str]:
        argv = super().command()
        conf = self.dir / "influxdb.conf"
        conf.write_text(conf.read_text().replace("query-log-enabled = false", 'query-log-enabled = false\n'
                        '  cache-snapshot-write-cold-duration = "2s"\n  compact-full-write-cold-duration = "5s"'))
        return argv


def disk_bytes(directory: Path) -> int:
    """Bytes allocated on disk (the series file's segments are preallocated sparse files)."""
    return sum(p.stat().st_blocks * 512 for p in directory.rglob("*") if p.is_file())


def samples_of(clinic: int, hours: float, per_hour: int, start_ms: int, rng: random.Random) -> list[wire.Sample]:
    out = []
    step = 3_600_000 // per_hour
    for s in range(int(hours * per_hour)):
        rtts = sorted(max(1.0, rng.gauss(60, 12)) for _ in range(5))
        received = 5 if rng.random() > 0.03 else 4
        fields = {"success": True, "reason": "", "duration_ms": round(800 + rng.random() * 60, 3), "sent": 5,
                  "received": received, "loss_pct": 100.0 * (5 - received) / 5,
                  "rtt_min_ms": round(rtts[0], 3), "rtt_avg_ms": round(sum(rtts) / 5, 3),
                  "rtt_max_ms": round(rtts[-1], 3), "jitter_ms": round(rng.random() * 8, 3)}
        out.append(wire.Sample(seq=s, t=start_ms + s * step, mono=s * step, sync="ntp", m="icmp",
                               tags={"target": TARGETS[s % len(TARGETS)]}, f=fields))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinics", type=int, default=200)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--per-hour", type=int, default=180, help="samples per clinic an hour")
    args = parser.parse_args(argv)
    rng = random.Random(2026)
    start_ms = int(time.time() * 1000) - int(args.days * 86_400_000)
    with SettlingInfluxDB() as influx:
        influx.create_database("clinicwatch")
        write = InfluxV1Writer(influx.url, "clinicwatch")
        empty = disk_bytes(influx.dir / "data") + disk_bytes(influx.dir / "wal")
        written, raw, t0 = 0, 0, time.perf_counter()
        for c in range(args.clinics):
            clinic = f"bench-{c:05d}"
            samples = samples_of(c, args.days * 24, args.per_hour, start_ms, rng)
            lines: list[str] = []
            heads: dict = {}
            for first in range(0, len(samples), 500):
                message = wire.Telemetry(v=1, clinic=clinic, boot="0123456789abcdef", samples=samples[first:first + 500])
                lines += telemetry_lines(message, start_ms, None, TAGS, heads)
            for first in range(0, len(lines), 5000):
                write(lines[first:first + 5000])
            written += len(lines)
            raw += sum(len(line) + 1 for line in lines)
        write_s = time.perf_counter() - t0
        sizes = [0, -1]
        while sizes[-1] != sizes[-2] or disk_bytes(influx.dir / "wal") > 1_000_000:  # until it settles
            time.sleep(5)
            sizes.append(disk_bytes(influx.dir / "data") + disk_bytes(influx.dir / "wal"))
        stored = influx.query('SELECT count("rtt_avg_ms") FROM "icmp"', db="clinicwatch")
        counted = stored["results"][0]["series"][0]["values"][0][1]
        used = disk_bytes(influx.dir / "data") + disk_bytes(influx.dir / "wal") - empty
        tsm = sum(p.stat().st_size for p in (influx.dir / "data").rglob("*.tsm"))
    per_sample = used / written
    per_clinic_day = per_sample * args.per_hour * 24
    print(f"InfluxDB 1.6.7: {written:,} samples of {args.clinics} clinics ({args.days:g} day(s) at {args.per_hour}/h), "
          f"{counted:,} counted back, written in {write_s:.1f} s")
    print(f"  on disk (all)           {used / 1e6:8.1f} MB = {per_sample:.1f} bytes per sample "
          f"(the samples' TSM files {tsm / 1e6:.1f} MB = {tsm / written:.1f} bytes per sample; the rest is the "
          f"series index)")
    print(f"  reference: the same samples as line protocol, as sent to it: {raw / 1e6:.1f} MB = "
          f"{raw / written:.0f} bytes per sample; on disk {used / raw:.2f}x of that")
    print(f"  per clinic and day      {per_clinic_day / 1e6:8.2f} MB")
    print(f"  1,000 clinics: {per_clinic_day * 1000 / 1e9:.2f} GB a day, {per_clinic_day * 1000 * 396 / 1e9:.0f} GB "
          f"for 13 months of retention")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
