"""Benchmark: polling one router with 8 interfaces over SNMP, against net-snmp's own tools.

    sudo .venv/bin/python -m bench.snmp_poll [--polls 50] [--idle 20]

The "router" is a real net-snmp snmpd (its own C IF-MIB code) in a network
namespace holding 8 interfaces (4 veth pairs) besides `lo`. Measured in the same
run, on the same daemon:
  - the agent's DevicePoller (warm: engine, target and table sizes known), system
    group + ifTable + ifXTable, rates computed: wall and CPU time per poll,
    requests per poll, resident memory; then the CPU the process spends idle between polls,
    `--idle` seconds (the client keeps no timer between requests);
  - net-snmp's C tools (peak memory through GNU time) reading the same tables as a shell script would on each
    poll: `snmpget` of the system scalars and `snmpbulkwalk` of ifTable and of
    ifXTable (three processes): wall, CPU (children's rusage) and peak memory.
Without root (no namespace), it falls back to this machine's interfaces and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEM = ["1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0"]
MQTT_OVERHEAD = 150  # PUBLISH + PUBACK, TCP/IP headers and TLS records, per message (bench.agent_month's order)
TABLES = ["1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1"]


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def inner(polls: int, idle_s: float) -> dict:
    rss_bare = _rss_kib()
    from agent.snmp import DevicePoller, DeviceSpec, Engines, Profiles
    from agent.snmp.facts import FactsOnChange
    from agent.structs import convert
    from lab.servers import Snmpd

    rss_imports = _rss_kib()
    results: dict = {"rss_bare_kib": rss_bare, "rss_after_imports_kib": rss_imports}
    with Snmpd("rocommunity public 127.0.0.1\n") as snmpd:
        address = f"{snmpd.host}:{snmpd.port}"
        spec = convert({"name": "rtr", "host": snmpd.host, "port": snmpd.port, "community": "public",
                        "sections": ["system", "interfaces"]}, DeviceSpec, "bench")

        async def agent_polls() -> tuple[list[float], float, list[int], int]:
            engines = Engines()
            poller = DevicePoller(spec, engines, Profiles())
            for _ in range(3):  # warm: engine, transport, table sizes
                warm = await poller.poll()
                assert warm.status == "ok", warm.detail
            walls, requests = [], []
            cpu0 = time.process_time()
            facts, sent = FactsOnChange(), []
            for _ in range(polls):
                t0 = time.perf_counter()
                polled = await poller.poll()
                walls.append((time.perf_counter() - t0) * 1000)
                requests.append(polled.requests)
                sent.append(facts(polled.samples))  # what the running agent stores, facts on change
            cpu_ms = (time.process_time() - cpu0) * 1000 / polls
            results["wire_bytes_steady"] = _wire_bytes(sent[-1])
            interfaces = sum(1 for m, _, _ in polled.samples if m == "snmp_if")
            if idle_s:  # between polls, the device's socket open
                cpu0 = time.process_time()
                await asyncio.sleep(idle_s)
                results.update(idle_s=idle_s, idle_cpu_ms=(time.process_time() - cpu0) * 1000)
            engines.close()
            return walls, cpu_ms, requests, interfaces, polled

        walls, cpu_ms, requests, interfaces, polled = asyncio.run(agent_polls())
        results["wire_bytes_per_poll"] = _wire_bytes(polled.samples)
        results["agent"] = {"wall_ms_median": statistics.median(walls), "wall_ms_p90": sorted(walls)[int(polls * .9)],
                            "cpu_ms_per_poll": cpu_ms, "requests_per_poll": statistics.median(requests),
                            "interfaces_reported": interfaces, "rss_peak_kib":
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        base = ["-v2c", "-c", "public", "-On", "-Oq"]
        commands = [["snmpget", *base, address, *SYSTEM]] + [["snmpbulkwalk", *base, "-Cr25", address, t]
                                                             for t in TABLES]
        rows = sum(1 for line in subprocess.run(commands[1], capture_output=True, text=True,
                                                check=True).stdout.splitlines() if ".2.2.1.2." in line)
        walls = []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(polls):
            t0 = time.perf_counter()
            for command in commands:
                subprocess.run(command, capture_output=True, check=True)
            walls.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # A child's peak RSS as getrusage sees it includes the Python pages it had between fork and
        # exec; GNU time, a small C parent, reports the tool's own.
        peaks = [int(subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True,
                                    check=True).stderr.split()[-1]) for command in commands]
        results["net_snmp"] = {"wall_ms_median": statistics.median(walls),
                               "wall_ms_p90": sorted(walls)[int(polls * .9)],
                               "cpu_ms_per_poll": ((after.ru_utime + after.ru_stime) -
                                                   (before.ru_utime + before.ru_stime)) * 1000 / polls,
                               "processes_per_poll": len(commands), "rss_peak_kib": max(peaks),
                               "if_rows": rows}
    return results


def _wire_bytes(polled_samples: list) -> int:
    """One poll's samples as the agent sends them: one compressed telemetry message (it flushes every 30 s)."""
    import wire

    now = int(time.time() * 1000)
    samples = [{"seq": 1000 + i, "t": now, "mono": 5_000_000, "sync": "ntp", "m": m, "tags": tags, "f": fields}
               for i, (m, tags, fields) in enumerate(polled_samples)]
    message = wire.build(wire.Telemetry, {"v": 1, "clinic": "es-ib-0042", "boot": "0123456789abcdef",
                                          "mono_now": 5_000_100, "samples": samples})
    return len(wire.encode(message))


def _namespace(name: str, pairs: int) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)
    run = ["ip", "netns", "exec", name]
    subprocess.run([*run, "ip", "link", "set", "lo", "up"], check=True)
    for i in range(pairs):
        subprocess.run([*run, "ip", "link", "add", f"lan{i}", "type", "veth", "peer", "name", f"port{i}"], check=True)
        for end in (f"lan{i}", f"port{i}"):
            subprocess.run([*run, "ip", "link", "set", end, "up"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=50)
    parser.add_argument("--idle", type=float, default=20, help="seconds idle after the polls (0: skip)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(inner(args.polls, args.idle)))
        return
    where = "a namespace with 8 veth interfaces + lo"
    command = [sys.executable, "-m", "bench.snmp_poll", "--inner", "--polls", str(args.polls), "--idle", str(args.idle)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    namespace = f"cwbench-snmp-{os.getpid()}"
    if os.geteuid() == 0:
        _namespace(namespace, 4)
        command = ["ip", "netns", "exec", namespace, *command]
    else:
        where = "this machine's own interfaces (not root: no namespace)"
    try:
        out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["ip", "netns", "del", namespace], check=False)
    if out.returncode:
        sys.exit(out.stderr)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    a, n = r["agent"], r["net_snmp"]
    print(f"SNMP poll of one router: real snmpd in {where}; {args.polls} polls each, medians")
    print(f"  tables: system scalars + ifTable + ifXTable ({n['if_rows']} rows); agent reports "
          f"{a['interfaces_reported']} interfaces (lo excluded)")
    print(f"{'':28}{'agent':>16}{'net-snmp tools':>16}{'ratio':>8}")
    print(f"{'wall per poll, ms':28}{a['wall_ms_median']:16.2f}{n['wall_ms_median']:16.2f}"
          f"{a['wall_ms_median'] / n['wall_ms_median']:8.2f}")
    print(f"{'wall p90, ms':28}{a['wall_ms_p90']:16.2f}{n['wall_ms_p90']:16.2f}")
    print(f"{'CPU per poll, ms':28}{a['cpu_ms_per_poll']:16.2f}{n['cpu_ms_per_poll']:16.2f}"
          f"{a['cpu_ms_per_poll'] / n['cpu_ms_per_poll']:8.2f}")
    print(f"{'requests / processes':28}{a['requests_per_poll']:16.0f}{n['processes_per_poll']:16d}")
    print(f"{'peak RSS, MiB':28}{a['rss_peak_kib'] / 1024:16.1f}{n['rss_peak_kib'] / 1024:16.1f}"
          f"{a['rss_peak_kib'] / n['rss_peak_kib']:8.2f}")
    print(f"  agent RSS: python with the bench's stdlib imports {r['rss_bare_kib'] / 1024:.1f} MiB, after the agent.snmp imports "
          f"{r['rss_after_imports_kib'] / 1024:.1f} MiB")
    print(f"  at the default 60 s interval: agent CPU {a['cpu_ms_per_poll'] * 60 / 1000:.2f} s per hour per router")
    if "idle_cpu_ms" in r:
        print(f"  between polls ({r['idle_s']:g} s idle): {r['idle_cpu_ms']:.2f} ms of CPU, "
              f"{r['idle_cpu_ms'] * 3600 / r['idle_s'] / 1000:.3f} s an hour")
    per_poll, steady = r["wire_bytes_per_poll"] + MQTT_OVERHEAD, r["wire_bytes_steady"] + MQTT_OVERHEAD
    print(f"  reporting: {r['wire_bytes_per_poll']} B per poll with every field as a compressed telemetry message "
          f"(+{MQTT_OVERHEAD} B MQTT/TCP/IP/TLS) -> {per_poll * 43_200 / 1e6:.1f} MB per month at 60 s; with facts on "
          f"change (the running agent) {r['wire_bytes_steady']} B -> {steady * 43_200 / 1e6:.1f} MB "
          f"({steady / per_poll:.2f}x; computed, not counted on a link); measurements every 300 s (the default "
          f"report_interval_s; the polls between send only facts that changed, none here) "
          f"{steady * 8_640 / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
