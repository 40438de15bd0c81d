"""The quickstart: a fleet of real agents, the whole collector, and a story of failures, in a few minutes.

    python -m lab.demo [--clinics 20] [--minutes 4] [--serve] [--data-dir DIR]

Starts, on free loopback ports: Mosquitto, InfluxDB, a local SMTP server standing in for the health
service's mail server (it keeps what it is sent and delivers nothing), one simulated UPS behind a
real net-snmp snmpd, and the collector (`clinicwatch-collector run`: ingest, clinic state, incidents,
alerts in each contact's language, the status page, the JSON API and /metrics). Then one real agent
(`clinicwatch-agent run`) per clinic. As root, each agent lives in a network namespace behind an
emulated link of its own (lab/links.py: DSL, LTE, a geostationary satellite...), and a cut is a real
cut of that link. Without root the agents run as local processes on loopback, and a cut is played by
freezing the agent (SIGSTOP): the collector then sees silence without the agent's own record of a
link down, so the causes it finds are not those it finds on real links (README).

The story, spread over `--minutes` (at least 2):
- a maintenance window on one clinic whose router is replaced (it goes silent: no incident, no alert);
- a regional ISP failure: the clinics of one ISP in one region lose their link one after another
  (one incident, one message to that region's administrators);
- a power cut: the clinic's UPS goes on battery (the agent reads it over SNMP), then the clinic falls
  silent (cause `power`);
- a satellite clinic whose link drops for 15 s every 45 s (down at first, then `degraded`, flapping);
- a clinic on a lossy LTE link (`degraded`, never `down`);
- recoveries of all of them.

The terminal shows the story's steps, every state change the collector reports, and the fleet's
counts; at the end the incidents and the alerts the SMTP server received, with their language.
Ctrl-C stops everything and removes every process, namespace and temporary directory it made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from lab.links import EmulatedLink, privileged_reason
from lab.mailserver import MailServer
from lab.servers import InfluxDB, Mosquitto, Snmpd, free_port
from lab.snmpdevice import ON_BATTERY, SIMULATED_MODULES, SimulatedDevice, ups_card, ups_entries

REPO = Path(__file__).resolve().parent.parent
DATABASE = "clinicwatch"
STORY_S = 180.0  # the story's own length at --minutes 3; other lengths scale its steps
FLAP_CUT_S = 15.0  # each drop of the satellite link (the agent's Last Will comes 7.5 s after its last packet)
FLAP_EVERY_S = 45.0
# Flap detection in 15 s slots judged 20 s after they end (defaults 60 and 90 s), so that a link
# dropping every 45 s is seen flapping within the story's minutes rather than after ten.
DEMO_RULES = {"flap_slot_s": 15, "flap_settle_s": 20}

# (region, contact language, clinic id prefix, ISPs): the first ISP of the first region fails in the story.
REGIONS = [("Lombardia", "it", "it-lom", ["FastNet", "TIM"]),
           ("Illes Balears", "es", "es-ib", ["Movistar"]),
           ("Catalunya", "ca", "es-ct", ["Orange"]),
           ("Alentejo", "pt", "pt-al", ["MEO"])]


@dataclass
class Clinic:
    id: str
    name: str
    region: str
    isp: str
    link: str  # the registry's link type (thresholds)
    profile: str  # the emulated link's profile
    changes: dict[str, Any] = field(default_factory=dict)  # the profile's parameters changed
    role: str = ""  # isp | power | flapping | maintenance | lossy | ""
    net: EmulatedLink | None = None
    agent: subprocess.Popen[bytes] | None = None
    config: Path | None = None


def fleet(size: int) -> list[Clinic]:
    """`size` clinics over four regions; the story's roles go to the first clinics of each region."""
    counts: Counter[str] = Counter()
    clinics = []
    for i in range(size):
        region, _, prefix, isps = REGIONS[i % len(REGIONS)]
        counts[region] += 1
        n = counts[region]
        clinics.append(Clinic(f"{prefix}-{n:04d}", f"{region} clinic {n}", region,
                              isps[0] if n <= 4 or len(isps) == 1 else isps[1], "dsl", "dsl"))
    by_region = {r[0]: [c for c in clinics if c.region == r[0]] for r in REGIONS}
    for clinic in by_region["Lombardia"]:
        clinic.role = "isp" if clinic.isp == "FastNet" else ""
    power, lossy = by_region["Illes Balears"][:2]
    power.role = "power"
    flapping = by_region["Alentejo"][0]
    flapping.role, flapping.link, flapping.profile, flapping.isp = "flapping", "satellite", "geo_satellite", "Hispasat"
    by_region["Catalunya"][0].role = "maintenance"
    lossy.role, lossy.link, lossy.profile, lossy.changes = "lossy", "lte", "lte", {"loss_pct": 12}
    for i, clinic in enumerate(c for c in clinics if not c.role):
        clinic.link = clinic.profile = ("dsl", "lte", "fibre")[i % 3]
    return clinics


def write_registry(path: Path, clinics: list[Clinic], mail_domain: str = "example.org") -> None:
    contacts = [{"id": f"{prefix}-admins", "name": f"{region} ICT", "lang": lang, "regions": [region],
                 "email": f"{prefix}-ict@{mail_domain}"} for region, lang, prefix, _ in REGIONS]
    contacts.append({"id": "noc", "name": "Network operations", "lang": "en", "all": True,
                     "email": f"noc@{mail_domain}"})
    path.write_text(yaml.safe_dump({
        "clinics": [{"id": c.id, "name": c.name, "region": c.region, "isp": c.isp, "link": c.link}
                    for c in clinics],
        "contacts": contacts}, allow_unicode=True, sort_keys=False))


class Demo:
    def __init__(self, clinics: int, minutes: float, data_dir: Path, local: bool = False,
                 out: Any = sys.stdout) -> None:
        self.clinics = fleet(clinics)
        self.scale = minutes * 60 / STORY_S
        self.dir, self.out = data_dir, out
        self.namespaces = not local and privileged_reason() is None
        self.stack = contextlib.ExitStack()
        self.seen: dict[str, tuple[str, str | None]] = {}

    # ---- output

    def say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')}  {text}", file=self.out, flush=True)

    def progress(self, text: str, done: bool) -> None:
        """One line rewritten in place on a terminal; elsewhere (a log, a test) only its last state."""
        if self.out.isatty():
            print(f"\r  {text}", end="\n" if done else "", file=self.out, flush=True)
        elif done:
            print(f"  {text}", file=self.out, flush=True)

    # ---- setup

    def start(self) -> None:
        mode = ("each agent in a network namespace behind an emulated link" if self.namespaces else
                "agents as local processes (not root: no emulated links; a cut freezes the agent)")
        self.say(f"starting {len(self.clinics)} clinics: {mode}; files in {self.dir}")
        if self.namespaces:
            for i, clinic in enumerate(self.clinics, 1):
                clinic.net = self.stack.enter_context(EmulatedLink(clinic.profile, seed=i, **clinic.changes))
            self.say(f"  {len(self.clinics)} emulated links up")
        listeners = "".join(f"listener {{port}} {c.net.central_ip}\n" for c in self.clinics if c.net)
        self.broker = Mosquitto(workdir=self.dir / "mosquitto")
        self.broker.port = free_port()
        self.broker.extra_config = listeners.replace("{port}", str(self.broker.port))
        self.stack.enter_context(self.broker)
        self.influx = self.stack.enter_context(InfluxDB(workdir=self.dir / "influxdb"))
        self.influx.create_database(DATABASE)
        self.mail = self.stack.enter_context(MailServer())
        self.say(f"  Mosquitto {self.broker.host}:{self.broker.port}, InfluxDB {self.influx.url}, "
                 f"SMTP catcher 127.0.0.1:{self.mail.port} (stands in for the mail server: delivers nothing)")
        self._start_ups()
        self._start_collector()
        self.stack.callback(self._stop_agents)
        for i, clinic in enumerate(self.clinics, 1):
            self._start_agent(clinic)
            self.progress(f"agents started {i}/{len(self.clinics)}", i == len(self.clinics))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = self.states()
            up = sum(1 for s in states.values() if s["state"] in ("up", "degraded"))
            self.progress(f"clinics heard and judged up {up}/{len(self.clinics)}", up == len(self.clinics))
            if up == len(self.clinics):
                break
            time.sleep(1)
        else:
            self.progress(f"clinics heard and judged up {up}/{len(self.clinics)} (going on without the others)", True)
        self.seen = {i: self.label(s) for i, s in self.states().items()}
        self.say(f"status page: http://127.0.0.1:{self.port}/   API: http://127.0.0.1:{self.port}/api/v1/clinics")

    def _start_ups(self) -> None:
        self.power = next(c for c in self.clinics if c.role == "power")
        self.ups = SimulatedDevice(self.dir / "ups.json")
        ups_card(self.ups)
        source = self.power.net.clinic_ip if self.power.net else "127.0.0.1"
        host = self.power.net.central_ip if self.power.net else "127.0.0.1"
        self.snmpd = self.stack.enter_context(Snmpd(self.ups.snmpd_config(None, extra=f"rocommunity public {source}\n"),
                                                    host=host, workdir=self.dir / "snmpd",
                                                    exclude_modules=SIMULATED_MODULES))

    def ups_mains(self) -> None:
        self.ups.update(ups_entries())

    def ups_on_battery(self) -> None:
        self.ups.update(ups_entries(**ON_BATTERY))

    def _start_collector(self) -> None:
        registry = self.dir / "clinics.yaml"
        write_registry(registry, self.clinics)
        self.maintenance = self.dir / "maintenance.yaml"
        self.maintenance.write_text("windows: []\n")
        self.port = free_port()
        config = {"intake": {"host": "127.0.0.1", "port": self.broker.port, "username": None,
                             "client_id": "demo-collector"},
                  "store": {"kind": "influx_v1", "url": self.influx.url, "database": DATABASE, "flush_interval_s": 0.5},
                  "registry": str(registry), "data_dir": str(self.dir / "collector"), "metrics_port": self.port,
                  "state": {"maintenance_file": str(self.maintenance), "status_interval_s": 10, "rules": DEMO_RULES},
                  "alerts": {"group_wait_s": 10, "group_interval_s": 30, "status_url": f"http://127.0.0.1:{self.port}",
                             "email": {"host": "127.0.0.1", "port": self.mail.port, "security": "none",
                                       "sender": "ClinicWatch demo <alerts@example.org>"}},
                  "status_page": {"title": "ClinicWatch demo", "tz": "Europe/Madrid"}}
        path = self.dir / "collector.yaml"
        path.write_text(yaml.safe_dump(config))
        log = self.stack.enter_context(open(self.dir / "collector.log", "ab"))
        self.collector = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "--config", str(path)],
                                          cwd=REPO, stdout=log, stderr=log, start_new_session=True,
                                          env={**os.environ, "PYTHONPATH": str(REPO)})
        self.stack.callback(self._stop, self.collector)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and '"msg": "subscribed"' not in (self.dir / "collector.log").read_text():
            if self.collector.poll() is not None:
                raise RuntimeError(f"the collector stopped; its log: {self.dir / 'collector.log'}")
            time.sleep(0.1)
        self.say(f"  collector running (its configuration: {path})")

    def _agent_config(self, clinic: Clinic) -> Path:
        central = clinic.net.central_ip if clinic.net else "127.0.0.1"
        directory = self.dir / "agents" / clinic.id
        directory.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "clinic_id": clinic.id, "state_dir": str(directory / "state"),
            "mqtt": {"host": central, "port": self.broker.port, "keepalive_s": 5, "reconnect_min_s": 0.5,
                     "reconnect_max_s": 3, "flush_interval_s": 1},
            "clock": {"sync_check": "assume"}, "self_metrics_interval_s": 30,
            "probes": [{"kind": "icmp", "name": "central", "host": central, "count": 5, "interval_ms": 200,
                        "interval_s": 10},
                       {"kind": "tcp", "name": "records", "host": central, "port": self.broker.port,
                        "interval_s": 5, "timeout_s": 2}]}
        if clinic.role == "power":
            config["devices"] = [{"name": "ups", "host": self.snmpd.host, "port": self.snmpd.port,
                                  "community": "public", "sections": ["ups"], "interval_s": 5,
                                  "report_interval_s": 5}]
        path = directory / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _start_agent(self, clinic: Clinic) -> None:
        clinic.config = clinic.config or self._agent_config(clinic)
        command = [sys.executable, "-m", "agent.cli", "run", "--config", str(clinic.config)]
        if clinic.net:
            command = ["ip", "netns", "exec", clinic.net.netns, *command]
        log = self.stack.enter_context(open(clinic.config.with_suffix(".log"), "ab"))
        clinic.agent = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log, start_new_session=True,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})

    def _stop_agents(self) -> None:
        running = [c.agent for c in self.clinics if c.agent is not None and c.agent.poll() is None]
        for agent in running:  # all asked first, so that they stop together
            self._ask_to_stop(agent)
        for agent in running:
            self._wait_stopped(agent)

    @classmethod
    def _stop(cls, process: subprocess.Popen[bytes] | None) -> None:
        if process is None or process.poll() is not None:
            return
        cls._ask_to_stop(process)
        cls._wait_stopped(process)

    @staticmethod
    def _ask_to_stop(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)  # a frozen agent cannot stop
            process.terminate()

    @staticmethod
    def _wait_stopped(process: subprocess.Popen[bytes]) -> None:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # ---- the story's actions

    def cut(self, clinic: Clinic) -> None:
        if clinic.net:
            clinic.net.cut()
        elif clinic.agent and clinic.agent.poll() is None:
            os.killpg(clinic.agent.pid, signal.SIGSTOP)

    def restore(self, clinic: Clinic) -> None:
        if clinic.net:
            clinic.net.restore()
        elif clinic.agent and clinic.agent.poll() is None:
            os.killpg(clinic.agent.pid, signal.SIGCONT)

    def power_off(self, clinic: Clinic) -> None:
        if clinic.agent:
            clinic.agent.kill()  # the box loses power: no clean stop, no Last Will of its own making
            clinic.agent.wait()
        if clinic.net:
            clinic.net.cut()

    def power_on(self, clinic: Clinic) -> None:
        self.ups_mains()
        if clinic.net:
            clinic.net.restore()
        self._start_agent(clinic)

    def window(self, clinic: Clinic, minutes: float, reason: str) -> None:
        start = datetime.now(UTC) - timedelta(seconds=5)
        self.maintenance.write_text(yaml.safe_dump({"windows": [{
            "clinics": [clinic.id], "start": start.isoformat(timespec="seconds"),
            "end": (start + timedelta(minutes=minutes)).isoformat(timespec="seconds"), "reason": reason}]}))

    def story(self) -> list[tuple[float, str, Any]]:
        s = self.scale
        by_role: dict[str, list[Clinic]] = {}
        for c in self.clinics:
            by_role.setdefault(c.role, []).append(c)
        [maint], [flapping], [power], isp = by_role["maintenance"], by_role["flapping"], by_role["power"], by_role["isp"]
        steps: list[tuple[float, str, Any]] = [
            (5 * s, f"maintenance window opens on {maint.id} ({maint.region}): its router is replaced",
             lambda: self.window(maint, (100 * s + 30) / 60, "router replacement")),
            (15 * s, f"{maint.id}'s router is switched off for the replacement", lambda: self.cut(maint)),
            (90 * s, f"{maint.id}'s new router is on", lambda: self.restore(maint)),
            (40 * s, f"{power.id} ({power.region}): mains power fails, the UPS is on battery",
             self.ups_on_battery),
            (65 * s, f"{power.id}: the UPS is exhausted, the clinic goes dark", lambda: self.power_off(power)),
            (140 * s, f"{power.id}: mains power is back", lambda: self.power_on(power)),
            (120 * s, f"{isp[0].isp} is back in {isp[0].region}", lambda: [self.restore(c) for c in isp]),
        ]
        for i, clinic in enumerate(isp):
            steps.append((25 * s + i * 8 * s, f"{clinic.isp} fails in {clinic.region}: {clinic.id} loses its link",
                          lambda c=clinic: self.cut(c)))
        start = 10.0
        while start + FLAP_CUT_S < STORY_S * s - 30:
            steps.append((start, f"{flapping.id}'s satellite link drops", lambda: self.cut(flapping)))
            steps.append((start + FLAP_CUT_S, f"{flapping.id}'s satellite link is back", lambda: self.restore(flapping)))
            start += FLAP_EVERY_S
        return sorted(steps, key=lambda step: step[0])

    # ---- watching

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}", timeout=5) as response:
            return json.loads(response.read())

    def states(self) -> dict[str, dict[str, Any]]:
        try:
            return {c["clinic"]: c for c in self.api("clinics")}
        except OSError:
            return {}

    @staticmethod
    def label(clinic: dict[str, Any]) -> tuple[str, str]:
        """A clinic's state and, in brackets, why: its cause when down, its reason when degraded."""
        if clinic.get("cause"):
            return clinic["state"], f" (cause {clinic['cause']})"
        if clinic["state"] == "degraded" and clinic.get("reason"):
            return clinic["state"], f" ({clinic['reason']})"
        return clinic["state"], ""

    def watch(self) -> None:
        states = self.states()
        for clinic_id, now in sorted(states.items()):
            before, after = self.seen.get(clinic_id, ("unknown", "")), self.label(now)
            if after != before:
                self.say(f"    {clinic_id:<12} {before[0]} -> {after[0]}{after[1]}")
                self.seen[clinic_id] = after

    def summary_line(self) -> str:
        counts = Counter(state for state, _ in self.seen.values())
        try:
            open_incidents = len(self.api("incidents?state=open"))
        except OSError:
            open_incidents = 0
        fleet_counts = ", ".join(f"{counts[s]} {s}" for s in ("up", "degraded", "down", "maintenance", "unknown")
                                 if counts[s])
        trouble = ", ".join(f"{clinic_id} {state}{why}" for clinic_id, (state, why) in sorted(self.seen.items())
                            if state != "up")
        return (f"fleet: {fleet_counts} | open incidents {open_incidents} | emails sent {len(self.mail.received())}"
                + (f"\n          not up: {trouble}" if trouble else ""))

    def play(self) -> None:
        steps = self.story()
        start = time.monotonic()
        end = start + STORY_S * self.scale
        last_line = 0.0
        self.say(f"the story begins ({STORY_S * self.scale / 60:.1f} minutes)")
        while steps or time.monotonic() < end:
            now = time.monotonic() - start
            while steps and steps[0][0] <= now:
                _, text, action = steps.pop(0)
                self.say(f"story: {text}")
                action()
            self.watch()
            if time.monotonic() - last_line >= 15:
                self.say(self.summary_line())
                last_line = time.monotonic()
            time.sleep(0.5)
        deadline = time.monotonic() + 90  # recoveries: every clinic back and told
        while time.monotonic() < deadline:
            self.watch()
            if all(state in ("up", "degraded") for state, _ in self.seen.values()):
                break
            time.sleep(0.5)
        time.sleep(3)
        self.watch()
        self.say(self.summary_line())

    def report(self) -> dict[str, Any]:
        incidents = self.api("incidents")
        print("\nincidents:", file=self.out)
        for incident in incidents:
            members = ", ".join(m["clinic"] for m in incident["members"])
            state = "open" if incident["closed"] is None else "closed"
            print(f"  {incident['id']}  {state:<6} cause {incident.get('cause') or '-':<14} {members}", file=self.out)
        mails = self.mail.received()
        print(f"\nalerts received by the SMTP catcher ({len(mails)}):", file=self.out)
        for mail in mails:
            language = mail.get("Content-Language", "?")
            print(f"  [{language}] to {mail['To']}: {mail['Subject']}", file=self.out)
        print(f"\nstatus page: http://127.0.0.1:{self.port}/", file=self.out)
        print(f"Grafana: provisioning for this demo in {self.grafana_provisioning()} (its InfluxDB data source "
              f"at {self.influx.url}, database {DATABASE!r}; the dashboards from {REPO / 'dashboards' / 'grafana'}): "
              f"copy it into Grafana's provisioning directory (dashboards/README.md)", file=self.out)
        return {"incidents": incidents, "mails": mails}

    def grafana_provisioning(self) -> Path:
        """The shipped provisioning files, pointed at this demo's database and the repository's dashboards."""
        shipped, out = REPO / "dashboards" / "provisioning", self.dir / "grafana-provisioning"
        for kind, old, new in (("datasources", "http://127.0.0.1:8086", self.influx.url),
                               ("dashboards", "/var/lib/grafana/dashboards/clinicwatch", str(REPO / "dashboards" / "grafana"))):
            (out / kind).mkdir(parents=True, exist_ok=True)
            text = (shipped / kind / "clinicwatch.yaml").read_text()
            assert old in text, (kind, old)
            (out / kind / "clinicwatch.yaml").write_text(text.replace(old, new))
        return out

    def close(self) -> None:
        self.stack.close()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(clinics: int, minutes: float, serve: bool, data_dir: Path, local: bool) -> int:
    # Ctrl-C, and a plain `kill`, stop it cleanly; even when started where SIGINT was ignored (in the
    # background of a script).
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    demo = Demo(clinics, minutes, data_dir, local)
    interrupted = False
    try:
        demo.start()
        demo.play()
        demo.report()
        if serve:
            demo.say("serving: the fleet keeps reporting; Ctrl-C stops")
            while True:
                time.sleep(1)
                demo.watch()
    except KeyboardInterrupt:
        interrupted = True
        print("\nstopping...", file=demo.out, flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        demo.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM else signal.default_int_handler)
    print("stopped: every process, namespace and temporary directory the demo made is gone", flush=True)
    return 130 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinics", type=int, default=20, help="clinics in the fleet (at least 12; default 20)")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the story (at least 2; default 4)")
    parser.add_argument("--serve", action="store_true", help="after the story, keep everything running until Ctrl-C")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the broker's, database's, collector's and agents' files here (default: a "
                             "temporary directory, removed at the end)")
    parser.add_argument("--local", action="store_true", help=(
        "run the agents as local processes even as root (no emulated links; what a user without root gets)"))
    args = parser.parse_args(argv)
    if args.clinics < 12:
        parser.error("--clinics: the story needs at least 12 clinics")
    if args.minutes < 2:
        parser.error("--minutes: the story needs at least 2 minutes")
    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        return run(args.clinics, args.minutes, args.serve, args.data_dir, args.local)
    with tempfile.TemporaryDirectory(prefix="clinicwatch-demo-") as tmp:
        return run(args.clinics, args.minutes, args.serve, Path(tmp), args.local)


if __name__ == "__main__":
    raise SystemExit(main())
