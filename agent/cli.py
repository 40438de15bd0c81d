"""Command line of the clinic agent (`clinicwatch-agent`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import wire
from agent import __version__

DESCRIPTION = """\
ClinicWatch agent: runs on a clinic's router or edge box. `run` measures the
clinic's link (ICMP, TCP, DNS, HTTP, traceroute, throughput) and its local devices
(SNMP), keeps every measurement in a durable outbox, and reports to the central
collector over MQTT, backfilling in order after an outage. `probe-once` and
`snmp-once` show what the probes and devices read now, `check-config` checks a
configuration, `topics` prints a clinic's MQTT topics, and `render-config` writes
one clinic's files for its hardware (firmware_configs/README.md).
"""

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinicwatch-agent", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"clinicwatch-agent {__version__} "
                                                                f"(wire contract v{wire.VERSION})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    topics = commands.add_parser("topics", help="print the MQTT topics a clinic uses (for broker ACLs)")
    topics.add_argument("clinic_id", help="the clinic's id, e.g. es-ib-0042")
    check = commands.add_parser("check-config", help="validate a configuration file and say what is wrong")
    check.add_argument("--config", type=Path, required=True)
    run = commands.add_parser("run", help="run the agent: probe on schedule, keep an outbox, report over MQTT",
                              description="Run the agent until SIGTERM or SIGINT, then flush what it can and "
                                          "stop. Logs are JSON lines on stderr.")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    once = commands.add_parser("probe-once", help="run every configured probe once and print the results",
                               description="Run every configured probe once, all at the same time, and print "
                                           "a table: what a technician runs when installing a clinic.")
    once.add_argument("--config", type=Path, required=True)
    once.add_argument("--json", action="store_true", help="one JSON object per result instead of a table")
    once.add_argument("--only", action="append", metavar="KIND", help="run only probes of this kind (repeatable)")
    snmp = commands.add_parser("snmp-once", help="poll every configured SNMP device and print what it said",
                               description="Poll each configured SNMP device (twice, `--interval` apart, so that "
                                           "counters give rates) and print its status, samples and events: what "
                                           "an installer runs to check credentials and profiles.")
    snmp.add_argument("--config", type=Path, required=True)
    snmp.add_argument("--device", action="append", metavar="NAME", help="only this device (repeatable)")
    snmp.add_argument("--interval", type=float, default=5.0, help="seconds between the two polls (0: poll once)")
    snmp.add_argument("--json", action="store_true", help="JSON lines instead of text")
    render = commands.add_parser(
        "render-config", help="write one clinic's configuration, secrets, service and install script",
        description="Write into --out everything an installer copies to one clinic's hardware: the agent's "
                    "configuration, its MQTT password, SNMP keys made for this clinic, the service definition, "
                    "the snmpd configuration and install.sh (firmware_configs/README.md).")
    render.add_argument("--clinic", required=True, help="the clinic's id in the registry")
    render.add_argument("--registry", type=Path, required=True, help="the collector's clinic registry (YAML or CSV)")
    render.add_argument("--site", type=Path, required=True, help="what every clinic shares: broker, CA, credentials, "
                                                                  "probes (firmware_configs/site.sample.yaml)")
    render.add_argument("--target", required=True, choices=["debian", "openwrt", "rutos", "mikrotik"])
    render.add_argument("--out", type=Path, required=True, help="directory for the files (SNMP keys there are kept)")
    render.add_argument("--router-address", help="the clinic router's LAN address (default: 192.168.88.1 for "
                                                  "mikrotik; none for debian, so no gateway probe)")
    render.add_argument("--agent-address", help="mikrotik: the edge box's LAN address, the only one SNMP answers")
    return parser


def _render(args: argparse.Namespace) -> int:
    from agent.render import RenderError, render

    try:
        written = render(args.clinic, args.registry, args.site, args.target, args.out,
                         router_address=args.router_address, agent_address=args.agent_address)
    except RenderError as exc:
        print(f"clinicwatch-agent render-config: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(written)} files for clinic {args.clinic} ({args.target}): "
          f"{', '.join(sorted(p.name for p in written))}")
    print(f"next: copy {args.out} to the clinic's box and run `sh install.sh` there as root "
          f"(firmware_configs/{args.target}/README.md)")
    return 0


def _snmp_once(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config
    from agent.snmp import DevicePoller, Engines

    try:
        config = load_config(args.config)
        profiles = config.profiles(str(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    devices = [d for d in config.devices if not args.device or d.name in args.device]
    if not devices:
        print(f"{args.config}: no SNMP devices{' by those names' if args.device else ''} configured", file=sys.stderr)
        return 2

    async def poll_all() -> list:
        engines = Engines()
        pollers = [DevicePoller(d, engines, profiles) for d in devices]
        polls = await asyncio.gather(*(p.poll() for p in pollers))
        if args.interval > 0:
            await asyncio.sleep(args.interval)
            polls = await asyncio.gather(*(p.poll() for p in pollers))
        engines.close()
        return list(polls)

    polls = asyncio.run(poll_all())
    for poll in polls:
        if args.json:
            print(json.dumps({"device": poll.device, "status": poll.status, "detail": poll.detail,
                              "profile": poll.profile, "requests": poll.requests,
                              "duration_ms": round(poll.duration_ms, 1), "readings": poll.readings,
                              "samples": [{"m": m, "tags": t, "f": f} for m, t, f in poll.samples],
                              "events": [{"kind": k, "detail": d} for k, d in poll.events]}))
            continue
        print(f"{poll.device}: {poll.status}{' - ' + poll.detail if poll.detail else ''} "
              f"(profile {poll.profile or '-'}, {poll.requests} requests, {poll.duration_ms:.0f} ms)")
        for measurement, tags, fields in poll.samples[1:]:
            label = " ".join(f"{k}={v}" for k, v in tags.items() if k != "device")
            print(f"  {measurement:<14} {label:<22} " + " ".join(f"{k}={v}" for k, v in fields.items()))
        for kind, detail in poll.events:
            print(f"  event {kind}: " + " ".join(f"{k}={v}" for k, v in detail.items() if k != "device"))
    return 0 if all(p.status in ("ok", "partial") for p in polls) else 1


def _table(results: list) -> str:
    rows = [("kind", "target", "ok", "ms", "reason", "figures")]
    for r in results:
        figures = " ".join(f"{k}={v}" for k, v in r.fields.items())
        rows.append((r.kind, r.target, "yes" if r.success else "NO", f"{r.duration_ms:.0f}",
                     r.reason or "-", figures))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5] for row in rows]
    details = [f"  {r.kind} {r.target}: {r.detail}" for r in results if r.detail]
    return "\n".join(lines + ([""] + details if details else []))


def _run(args: argparse.Namespace) -> int:
    import signal

    from wire import logs
    from agent.config import ConfigError, load_config
    from agent.runtime import Agent

    logs.setup(args.log_level)
    try:
        agent = Agent(load_config(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await agent.run(stop)

    asyncio.run(main())
    return 0


def _probe_once(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config
    from agent.probes import ProbeContext, run_round

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    specs = [s for s in config.probes if not args.only or s.kind in args.only]
    state_dir = config.state_dir if config.state_dir.is_dir() else None
    results = asyncio.run(run_round(specs, ProbeContext(state_dir=state_dir)))
    if args.json:
        for r in results:
            print(json.dumps({"kind": r.kind, "target": r.target, "success": r.success, "reason": r.reason,
                              "detail": r.detail, "duration_ms": round(r.duration_ms, 3), "tags": r.tags,
                              "fields": r.fields}))
    else:
        print(_table(results))
    return 0 if all(r.success for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "topics":
        try:
            for kind in wire.KINDS:
                print(f"{kind:<10} {wire.topic(args.clinic_id, kind)}")
        except ValueError as exc:
            print(f"clinicwatch-agent: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "check-config":
        from agent.config import ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"{args.config}: valid; clinic {config.clinic_id}, {len(config.probes)} probe(s), "
              f"{len(config.devices)} SNMP device(s)")
        return 0
    if args.command == "probe-once":
        return _probe_once(args)
    if args.command == "snmp-once":
        return _snmp_once(args)
    if args.command == "run":
        return _run(args)
    if args.command == "render-config":
        return _render(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
