"""Benchmark: the running agent at the default schedule, and its outbox drain after a long outage.

    sudo .venv/bin/python -m bench.agent_month [--speed 12] [--minutes 5] [--backlog 50000] [--idle 60]
                                               [--profiles minimal,sample,sample+snmp]
                                               [--keepalive 180] [--flush 180]

1. A clinic's configuration runs against a real Mosquitto, over TLS, across an emulated fibre
   link, with every interval (the MQTT keepalive and flush interval too, by default the sample
   config's) divided by `--speed`, so `--minutes` of wall time cover speed x minutes of schedule.
   Three profiles, one after the other: `minimal` (the sample config's two ICMP probes only),
   `sample` (the sample config's probes and self-metrics) and `sample+snmp` (that and
   its two SNMP devices: the router, a real net-snmp snmpd with an SNMPv3 authPriv user, and the
   UPS card, a simulated UPS-MIB behind snmpd over v2c, both on the clinic's own network inside
   the clinic's namespace). Reported per hour and per month of the real schedule: agent CPU,
   resident memory (and at ten points of the run: whether it grows), bytes on the wire (both
   directions, IP, counted by the link relay: probes and reporting) and the agent's own account
   of them by category (agent/datause.py; the growth of its self-metrics' month counters within
   the measured window, so that the connection's TLS handshake is not multiplied as if it came
   every few minutes). The clinic's gateway is on the clinic's own network (as
   in a clinic), so its echoes do not cross the link, nor do the DNS probe's questions to the
   router's resolver (a dnsmasq at the gateway's address). References in the same run: a bare Python
   interpreter's resident memory, and the bytes the same samples would take sent one per message
   as plain JSON (what batching and compression save). A device is polled at most every 5 s, so
   at a speed over 12 its polls run slower than the rest of the schedule (said when so). The
   throughput test keeps its real 6 h interval: it runs once at the start, before the measured
   window (the link's count is of probes and reporting only), and weighs in the memory. The agent
   runs in `.venv-agent`, with its own dependencies only (bench/agent_env.py), as a clinic box
   installs it: the test environment's extras would change what its libraries load; and its own
   modules load compiled, as pip leaves them (bytecode in their `__pycache__`; since 2026-12-02).
2. Drain: `--backlog` samples are put in the outbox (a long outage), the agent starts
   and the time until a subscriber has them all gives samples/s. Reference in the
   same run: a bare paho client publishing the same number of QoS 1 messages, one
   sample each, to the same broker on loopback.
3. Idle: the agent with no probes, connected to a broker, for `--idle` seconds: the CPU of its
   run loop between jobs.
The measured window is best a whole number of hours of schedule (the default: 5 minutes at 12x):
every interval of the sample config divides an hour, so each run's window holds the same number of
each probe's runs, and a month's figure does not move with where the window fell (a 48-minute
window held three or four HTTPS checks: 2 MB a month apart). The bench says so when it is not.
CPU per hour is extrapolated from compressed time: idle costs (timers, keepalive) do
not scale with speed, so the figure is slightly pessimistic for probing and
optimistic for idling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from agent.outbox import NewRecord, Outbox
from bench.agent_env import agent_python, compile_agent
from bench.site import InClinic, sample_config, sample_site
from lab.certs import CertificateAuthority
from lab.links import EmulatedLink, privileged_reason
from lab.servers import Mosquitto, Snmpd
from lab.snmpdevice import SIMULATED_MODULES, SimulatedDevice, ups_card
from tests.agent_harness import Watcher, start_agent, stop_agent

MONTH_S = 30 * 86400


def _proc(pid: int) -> tuple[float, int, int]:
    """(cpu seconds, VmRSS KiB, VmHWM KiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


PROFILES = ("minimal", "sample", "sample+snmp")
ROUTER_KEYS = ("router-auth-pass", "router-priv-pass")


class LanSnmpd(InClinic, Snmpd):
    """snmpd at the clinic: a device on its own network."""

    def __init__(self, link: EmulatedLink, host: str, port: int, config: str, **kw: object) -> None:
        super().__init__(config, host=host, **kw)  # type: ignore[call-arg]
        self.netns, self.port = link.netns, port


@contextlib.contextmanager
def clinic_devices(tmp: Path, link: EmulatedLink, lan_ip: str, speed: float) -> Iterator[list[dict]]:
    """The sample config's router and UPS card at the clinic's address `lan_ip`: their `devices:` entries."""
    auth, priv = tmp / "snmp-router.auth", tmp / "snmp-router.priv"
    auth.write_text(ROUTER_KEYS[0] + "\n")
    priv.write_text(ROUTER_KEYS[1] + "\n")
    (tmp / "snmp-ups.community").write_text("clinic-ups\n")
    ups = SimulatedDevice(tmp / "ups.json")
    ups_card(ups)
    router_conf = (f"createUser clinicwatch SHA {ROUTER_KEYS[0]} AES {ROUTER_KEYS[1]}\nrouser clinicwatch priv\n"
                   f"sysName router\nsysLocation clinic\n")
    interval, report = max(5.0, 60 / speed), max(5.0, 300 / speed)  # the defaults, scaled like the schedule
    with LanSnmpd(link, lan_ip, 1161, router_conf, workdir=tmp / "router-snmpd"), \
            LanSnmpd(link, lan_ip, 1162, ups.snmpd_config(None, extra=f"rocommunity clinic-ups {lan_ip}\n"),
                     workdir=tmp / "ups-snmpd", exclude_modules=SIMULATED_MODULES):
        yield [{"name": "router", "host": lan_ip, "port": 1161, "version": "3", "interval_s": interval,
                "report_interval_s": report,
                "v3": {"user": "clinicwatch", "level": "authPriv", "auth_protocol": "sha", "auth_key_file": str(auth),
                       "priv_protocol": "aes", "priv_key_file": str(priv)}},
               {"name": "ups", "host": lan_ip, "port": 1162, "community_file": str(tmp / "snmp-ups.community"),
                "sections": ["system", "ups"], "interval_s": interval, "report_interval_s": report}]


def schedule_phase(tmp: Path, link: EmulatedLink, speed: float, minutes: float, profile: str,
                   mqtt_settings: dict[str, float], python: str) -> dict:
    tmp = tmp / profile
    tmp.mkdir()
    with contextlib.ExitStack() as stack:
        (tmp / "broker-ca").mkdir()
        ca = CertificateAuthority(tmp / "broker-ca")  # MQTT over TLS, as deployed: its records and handshakes are reporting's bytes
        cert, key = ca.issue("broker", [link.central_ip], days_valid=30)
        broker = stack.enter_context(Mosquitto(host=link.central_ip, tls=(ca.ca_file, cert, key)))
        site = stack.enter_context(sample_site(tmp, link, speed, lan=True))
        if profile == "minimal":
            site["probes"] = [p for p in site["probes"] if p["kind"] == "icmp"]
        for spec in site["probes"]:  # one throughput test at start, before the measured window, and no more
            if spec["kind"] == "throughput":
                spec["interval_s"] = 6 * 3600
        gateway = next(p["host"] for p in site["probes"] if p["name"] == "gateway")  # on the clinic's network
        devices = stack.enter_context(clinic_devices(tmp, link, gateway, speed)) if profile == "sample+snmp" else []
        watcher = Watcher(broker.host, broker.port, tls_ca=ca.ca_file)
        config = {**site, "devices": devices,
                  "mqtt": {"host": broker.host, "port": broker.port, "tls": {"ca_file": str(ca.ca_file)},
                           "keepalive_s": round(mqtt_settings["keepalive_s"] / speed),
                           "flush_interval_s": mqtt_settings["flush_interval_s"] / speed},
                  "clock": {"sync_check": "assume"}, "self_metrics_interval_s": 300 / speed}
        path = tmp / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        life_before = link.stats()
        agent = start_agent(path, netns=link.netns, python=python)
        try:
            time.sleep(20)  # imports, first runs, first connection
            pid = agent.pid  # `ip netns exec` execs the agent in place: same pid
            cpu0, _, _ = _proc(pid)
            before, received0 = link.stats(), len(watcher.records())
            # Resident memory through the run (ten readings), to see whether it keeps growing.
            trace = [_proc(pid)[1]]
            for _ in range(10):
                time.sleep(minutes * 6)
                trace.append(_proc(pid)[1])
            cpu1, rss, hwm = _proc(pid)
            after, records = link.stats(), watcher.records()[received0:]
        finally:
            stop_agent(agent)
            watcher.close()
        life_after = link.stats()
    wall = minutes * 60
    crossed = sum(life_after[d]["bytes"] - life_before[d]["bytes"] for d in ("up", "down"))
    account = json.loads((Path(site["state_dir"]) / "data-use.json").read_text())["bytes"]
    schedule_s = wall * speed
    moved = sum(after[d]["bytes"] - before[d]["bytes"] for d in ("up", "down"))
    import wire

    single = sum(len(wire.encode(wire.Telemetry(v=1, clinic=batch.clinic, boot=batch.boot, samples=[record]),
                                 compress=False)) + 2 + 2 + len(wire.topic(batch.clinic, "telemetry")) + 2 * 40 + 4
                 for _, record, batch in records)  # + MQTT fixed header, topic, TCP/IP both ways, PUBACK
    messages = len({id(batch) for _, _, batch in records})
    return {"profile": profile, "samples": len(records), "messages": messages, "schedule_hours": schedule_s / 3600,
            "cpu_per_hour_s": (cpu1 - cpu0) / (schedule_s / 3600), "rss_mib": rss / 1024, "hwm_mib": hwm / 1024,
            "rss_trace_mib": [k / 1024 for k in trace], "devices": len(devices),
            "bytes_per_month": moved * MONTH_S / schedule_s, "crossed": crossed, "account": account,
            "account_per_month": window_account(records, speed),
            "single_json_bytes_per_month": single * MONTH_S / schedule_s}


def window_account(records: list, speed: float) -> dict[str, float]:
    """Bytes a month by category, by the agent's own account within the measured window: how much its
    month counters (in its self-metrics samples) grew between the first and the last sample of the
    window. Not its whole life, whose connection set-up (a TLS handshake with the certificate) would
    weigh as if it came back every 20 s of real time."""
    agent = sorted((r for _, r, _ in records if r.m == "agent"), key=lambda r: r.t)
    first, last = agent[0], agent[-1]
    span_s = (last.t - first.t) / 1000 * speed
    fields = {"probes": "wan_probes_month_bytes", "reporting": "wan_reporting_month_bytes", "lan": "lan_month_bytes"}
    return {c: (last.f[name] - first.f[name]) * MONTH_S / span_s for c, name in fields.items()}


def bare_python_rss_mib(python: str) -> float:
    """A bare interpreter's resident memory, the floor under any Python agent."""
    proc = subprocess.Popen([python, "-c", "import time; time.sleep(3)"])
    time.sleep(1.5)
    rss = _proc(proc.pid)[1]
    proc.wait()
    return rss / 1024


def idle_phase(tmp: Path, seconds: float, python: str) -> dict:
    """The agent with nothing to run (no probes, self-metrics once an hour) connected to a broker: what
    its run loop costs between jobs."""
    with Mosquitto() as broker:
        config = tmp / "idle.yaml"
        config.write_text(yaml.safe_dump({"clinic_id": "es-ib-0042", "state_dir": str(tmp / "idle-state"),
                                          "probes": [], "clock": {"sync_check": "assume"},
                                          "self_metrics_interval_s": 3600,
                                          "mqtt": {"host": broker.host, "port": broker.port}}))
        agent = start_agent(config, python=python)
        try:
            time.sleep(15)  # imports, connection
            cpu0, _, _ = _proc(agent.pid)
            time.sleep(seconds)
            cpu1, _, _ = _proc(agent.pid)
        finally:
            stop_agent(agent)
    return {"seconds": seconds, "cpu_s": cpu1 - cpu0}


def drain_phase(tmp: Path, backlog: int, python: str) -> dict:
    body = {"m": "icmp", "tags": {"target": "records"},
            "f": {"success": True, "reason": "", "duration_ms": 812.4, "sent": 5, "received": 5, "loss_pct": 0.0,
                  "duplicates": 0, "late": 0, "loss_max_burst": 0, "rtt_min_ms": 58.2, "rtt_avg_ms": 61.9,
                  "rtt_max_ms": 70.1, "rtt_stddev_ms": 4.2, "jitter_ms": 5.5}}
    with Mosquitto() as broker:
        # Reference: a bare paho publisher, one QoS 1 message per sample, window of 1000 in flight.
        watcher = Watcher(broker.host, broker.port, topic="bench/#")
        payload = json.dumps(body).encode()
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare", protocol=mqtt.MQTTv5)
        publisher.max_inflight_messages_set(1000)
        acked = threading.Semaphore(1000)
        publisher.on_publish = lambda *_: acked.release()
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        start = time.perf_counter()
        for _ in range(backlog):
            acked.acquire()
            publisher.publish("bench/x", payload, qos=1)
        watcher.wait_for(lambda: len(watcher.messages) + len(watcher.rejected) >= backlog, timeout=600,
                         what="the bare publisher's messages")
        bare_s = time.perf_counter() - start
        publisher.loop_stop()
        publisher.disconnect()
        watcher.close()

        state = tmp / "drain-state"
        outbox = Outbox(state / "outbox.sqlite3", boot=uuid.uuid4().hex[:16], kboot="earlier", synchronous="normal")
        now = int(time.time() * 1000)
        for start_index in range(0, backlog, 5000):
            outbox.put([NewRecord("sample", now - (backlog - i) * 1000, i, "ntp", body)
                        for i in range(start_index, min(backlog, start_index + 5000))])
        outbox.close()
        watcher = Watcher(broker.host, broker.port)
        config = tmp / "drain.yaml"
        config.write_text(yaml.safe_dump({"clinic_id": "es-ib-0042", "state_dir": str(state), "probes": [],
                                          "clock": {"sync_check": "assume"}, "self_metrics_interval_s": 3600,
                                          "mqtt": {"host": broker.host, "port": broker.port}}))
        start = time.perf_counter()
        agent = start_agent(config, python=python)
        try:
            watcher.wait_for(lambda: len(watcher.records()) >= backlog, timeout=900, what="the backlog")
            agent_s = time.perf_counter() - start
        finally:
            stop_agent(agent)
            watcher.close()
    return {"backlog": backlog, "agent_s": agent_s, "bare_s": bare_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=12)
    parser.add_argument("--minutes", type=float, default=5,
                        help="wall minutes of each profile's run (best: speed x minutes a whole number of hours)")
    parser.add_argument("--backlog", type=int, default=50_000, help="samples of the drain test (0: no drain test)")
    parser.add_argument("--idle", type=float, default=60, help="seconds of the idle agent's CPU reading (0: none)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help=f"some of {', '.join(PROFILES)}")
    sample_mqtt = sample_config()["mqtt"]
    parser.add_argument("--keepalive", type=float, default=sample_mqtt["keepalive_s"],
                        help="the agent's MQTT keepalive, s of schedule (default: the sample config's)")
    parser.add_argument("--flush", type=float, default=sample_mqtt["flush_interval_s"],
                        help="the agent's flush interval, s of schedule (default: the sample config's)")
    args = parser.parse_args()
    if args.keepalive / args.speed < 5:
        parser.error(f"--keepalive {args.keepalive:g} at {args.speed:g}x is under the agent's least keepalive, 5 s")
    profiles = [p for p in args.profiles.split(",") if p]
    if unknown := [p for p in profiles if p not in PROFILES]:
        parser.error(f"--profiles: no profile {', '.join(unknown)} (one of {', '.join(PROFILES)})")
    if privileged_reason():
        print(f"bench.agent_month {privileged_reason()}", file=sys.stderr)
        return 2
    python = agent_python()  # the agent's own dependencies only, as a clinic box installs them
    compile_agent(python)  # and its own modules compiled, as pip leaves them
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bare = bare_python_rss_mib(python)
        runs = []
        for profile in profiles:
            with EmulatedLink("fibre") as link:
                runs.append(schedule_phase(tmp, link, args.speed, args.minutes, profile,
                                           {"keepalive_s": args.keepalive, "flush_interval_s": args.flush}, python))
        drain = drain_phase(tmp, args.backlog, python) if args.backlog else None
        idle = idle_phase(tmp, args.idle, python) if args.idle else None
    print(f"the agent at the default schedule, {args.minutes:g} min of each profile at {args.speed:g}x = "
          f"{runs[0]['schedule_hours']:.1f} h of schedule; a bare Python interpreter here: {bare:.1f} MiB resident"
          + (f"; devices polled every 5 s, slower than the schedule's {60 / args.speed:g} s" if args.speed > 12 else ""))
    print(f"MQTT over TLS, keepalive {args.keepalive:g} s, flush interval {args.flush:g} s (of schedule)")
    if (args.minutes * args.speed) % 60:
        print(f"note: {args.minutes * args.speed:g} minutes of schedule is not a whole number of hours: the "
              "monthly bytes depend on how many runs of the sparser probes fell in the window")
    for schedule in runs:
        print(f"{schedule['profile']}: {schedule['samples']} samples in {schedule['messages']} messages")
        print(f"  CPU per hour            {schedule['cpu_per_hour_s']:8.1f} s   ({schedule['cpu_per_hour_s'] / 36:.2f} % of one core)")
        print(f"  resident memory         {schedule['rss_mib']:8.1f} MiB (peak {schedule['hwm_mib']:.1f} MiB; "
              f"{schedule['rss_mib'] / bare:.1f}x bare Python)")
        trace = schedule["rss_trace_mib"]
        print(f"  resident through the run {' '.join(f'{m:.1f}' for m in trace)} MiB "
              f"(last - first {trace[-1] - trace[0]:+.1f} MiB over {schedule['schedule_hours']:.1f} h of schedule)")
        print(f"  bytes per month         {schedule['bytes_per_month'] / 1e6:8.1f} MB  (probes and reporting, both ways, "
              f"as the link counted them)")
        month = schedule["account_per_month"]
        # Not the throughput tests: one every 6 h cannot be carried to a month from so short a run (they keep
        # their own monthly budget, which stops them).
        print(f"  by the agent's account, a month: probes {month['probes'] / 1e6:.1f} MB, reporting "
              f"{month['reporting'] / 1e6:.1f} MB; the clinic's own network apart: {month['lan'] / 1e6:.1f} MB "
              f"(from its self-metrics in the measured window); throughput tests in this run: "
              f"{schedule['account']['throughput']:,} bytes")
        account = schedule["account"]
        counted = account["probes"] + account["reporting"] + account["throughput"]
        print(f"  the agent's own account over its life: {counted:,} WAN bytes; the link carried "
              f"{schedule['crossed']:,}: {counted / schedule['crossed']:.3f}x")
        print(f"  reference: the same samples one per message, plain JSON: "
              f"{schedule['single_json_bytes_per_month'] / 1e6:.1f} MB/month for the reporting alone")
    if drain:
        agent_rate, bare_rate = drain["backlog"] / drain["agent_s"], drain["backlog"] / drain["bare_s"]
        print(f"outbox drain after an outage ({drain['backlog']} samples), loopback broker")
        print(f"  agent                   {agent_rate:8.0f} samples/s ({drain['agent_s']:.1f} s)")
        print(f"  bare paho, 1 sample per QoS 1 message: {bare_rate:.0f} samples/s; ratio {agent_rate / bare_rate:.1f}x")
    if idle:
        print(f"idle (no probes, connected): {idle['cpu_s']:.2f} s of CPU in {idle['seconds']:g} s "
              f"= {100 * idle['cpu_s'] / idle['seconds']:.3f} % of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
