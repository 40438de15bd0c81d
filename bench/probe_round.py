"""Benchmark: one probe round at the default configuration, on an emulated fibre link.

    sudo .venv/bin/python -m bench.probe_round [--rounds 5] [--kinds icmp,tcp,dns,http,traceroute]

Measures, for the agent (`firmware_configs/agent.yaml`'s probes minus the
throughput test, which runs four times a day under its own budget):
  - CPU time of one round (user + system), and its wall time;
  - resident memory after imports and peak after the rounds;
  - bytes on the wire per round, both directions, counted by the link relay
    (IP packets, so every header is included).
References measured in the same run, on the same link: iputils `ping` sending
the same echoes (CPU), and a bare Python interpreter (memory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(config_path: str, rounds: int) -> None:
    """Runs inside the clinic namespace: import, then time `rounds` rounds."""
    t0 = time.perf_counter()
    from agent.config import load_config
    from agent.probes import ProbeContext, run_round
    # The probes' own modules load on first use: the peak RSS counts them.

    import_s = time.perf_counter() - t0
    rss_after_import = _rss_kib()
    config = load_config(Path(config_path))
    specs = [s for s in config.probes if s.kind != "throughput"]
    ctx = ProbeContext(state_dir=config.state_dir)
    per_round = []
    # Whole rounds, then each probe alone; the parent reads the relay's counters after each step.
    steps = [("round", specs)] * rounds + [(f"{s.kind}:{s.name}", [s]) for s in specs]
    for label, step in steps:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results = asyncio.run(run_round(step, ctx))
        if label == "round":
            per_round.append({"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
                              "failed": [f"{r.kind}:{r.target}:{r.reason}" for r in results if not r.success]})
        print(json.dumps({"step": label, "interval_s": step[0].interval_s}), flush=True)
        sys.stdin.readline()
    print(json.dumps({"import_s": import_s, "rss_after_import_kib": rss_after_import,
                      "peak_rss_kib": _rss_kib("VmHWM"), "rounds": per_round}))


def _rss_kib(field: str = "VmRSS") -> int:
    """Resident (VmRSS) or peak resident (VmHWM) memory of this process image, KiB.

    Not ru_maxrss: it survives execve, so under `ip netns exec` it reports `ip`'s own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", default="icmp,tcp,dns,http,traceroute",
                        help="the sample config's probes of these kinds only (default: all but throughput)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds)
        return 0

    import yaml

    from bench.site import sample_site
    from lab.links import EmulatedLink, privileged_reason

    if privileged_reason():
        print(f"bench.probe_round {privileged_reason()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, EmulatedLink("fibre") as link:
        with sample_site(Path(tmp), link) as site:
            probes = [p for p in site["probes"] if p["kind"] in args.kinds.split(",") and p["kind"] != "throughput"]
            config = Path(tmp) / "agent.yaml"
            config.write_text(yaml.safe_dump({**site, "probes": probes}))
            from agent.probes.icmp import IcmpSpec
            from agent.structs import default_of

            echoes = sum(p.get("count", default_of(IcmpSpec, "count")) for p in probes if p["kind"] == "icmp")

            # Reference 1: iputils ping sending the same number of echoes.
            cpu0 = _children_cpu()
            link.exec("ping", "-n", "-q", "-c", str(echoes), "-i", "0.2", link.central_ip)
            ping_cpu = _children_cpu() - cpu0
            # Reference 2: a bare interpreter's memory.
            bare = link.exec(sys.executable, "-S", "-c", "print([l.split()[1] for l in open('/proc/self/status') "
                                                         "if l.startswith('VmRSS:')][0])")
            bare_rss = int(bare.stdout)

            proc = link.popen(sys.executable, "-m", "bench.probe_round", "--child", str(config), "--rounds",
                              str(args.rounds), cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
            wire_bytes, per_probe = [], {}
            before = link.stats()
            while True:
                line = json.loads(proc.stdout.readline())
                if "step" not in line:
                    report = line
                    break
                after = link.stats()
                moved = {d: after[d]["bytes"] - before[d]["bytes"] for d in ("up", "down")}
                before = after
                if line["step"] == "round":
                    wire_bytes.append(moved)
                else:
                    per_probe[line["step"]] = (moved["up"] + moved["down"], line["interval_s"])
                proc.stdin.write("\n")
                proc.stdin.flush()
            proc.wait()
    rounds = report["rounds"][1:] or report["rounds"]  # the first round also pays lazy imports
    cpu = sorted(r["cpu_s"] for r in rounds)[len(rounds) // 2]
    wall = sorted(r["wall_s"] for r in rounds)[len(rounds) // 2]
    up = sorted(b["up"] for b in wire_bytes[1:] or wire_bytes)[len(rounds) // 2]
    down = sorted(b["down"] for b in wire_bytes[1:] or wire_bytes)[len(rounds) // 2]
    print(f"probe round at the default configuration ({len(probes)} probes: {args.kinds}; {echoes} echoes), "
          f"{args.rounds} rounds on an emulated fibre link; medians after the first round")
    print(f"  CPU per round         {cpu * 1000:8.1f} ms   (iputils ping, same {echoes} echoes: "
          f"{ping_cpu * 1000:.1f} ms; ratio {cpu / max(ping_cpu, 1e-6):.1f}x)")
    print(f"  wall time per round   {wall:8.2f} s")
    print(f"  first round CPU       {report['rounds'][0]['cpu_s'] * 1000:8.1f} ms   (includes lazy imports)")
    print(f"  import time           {report['import_s']:8.2f} s")
    print(f"  RSS after imports     {report['rss_after_import_kib'] / 1024:8.1f} MiB  (bare python: "
          f"{bare_rss / 1024:.1f} MiB; ratio {report['rss_after_import_kib'] / bare_rss:.1f}x)")
    print(f"  peak RSS              {report['peak_rss_kib'] / 1024:8.1f} MiB")
    print(f"  bytes on the wire     {up + down:8d} per round of all probes ({up} up, {down} down)")
    month_s = 30 * 86400
    print("  per probe, at its default interval (30-day month):")
    total = 0.0
    for label, (moved, interval) in per_probe.items():
        monthly = moved * month_s / interval
        total += monthly
        print(f"    {label:<26} {moved:6d} B per run, every {interval:>5.0f} s: {monthly / 1e6:7.1f} MB/month")
    print(f"    {'all probes':<26} {total / 1e6:46.1f} MB/month (the throughput test: its own budget on top)")
    failed = {f for r in report["rounds"] for f in r["failed"]}
    if failed:
        print(f"  note: probes that failed in this run: {sorted(failed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
