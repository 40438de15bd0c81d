"""Command line of the central collector (`clinicwatch-collector`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import wire
from collector import __version__

DESCRIPTION = """\
ClinicWatch collector: the central service. `run` subscribes to every clinic's
MQTT topics, validates each message against the wire contract and the clinic
registry, and stores the measurements in InfluxDB; a rejected message is counted
and kept as a dead letter, which `validate` re-checks. It keeps each clinic's
state (up, degraded, down, unknown, maintenance) with the likely cause, groups
clinics that fail together into incidents and records every outage, served as
JSON and metrics and stored for Grafana; `report` turns the outages into a
month's availability. `check-config` checks a configuration and its registry;
`broker-config` writes Mosquitto's password and ACL files from the registry.
"""

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinicwatch-collector", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"clinicwatch-collector {__version__} "
                                                                f"(wire contract v{wire.VERSION})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("validate", help="check one message payload against the wire contract",
                                description="Check a payload file (for example one kept in the dead-letter "
                                            "store) against the wire contract and say why it is rejected.")
    check.add_argument("--topic", required=True, help="the topic it was published on")
    check.add_argument("payload", type=Path, help="file holding the raw payload bytes")
    run = commands.add_parser("run", help="run the collector until SIGTERM", description="Subscribe, validate, "
                              "store; JSON-lines logs on stderr; Prometheus metrics on metrics_port.")
    run.add_argument("--config", type=Path, required=True)
    check_config = commands.add_parser("check-config", help="validate the configuration and the registry")
    check_config.add_argument("--config", type=Path, required=True)
    broker = commands.add_parser("broker-config", help="write Mosquitto's password and ACL files from the registry",
                                 description="Write `passwd` (hashed with mosquitto_passwd), `acl` and "
                                             "`credentials/<clinic>.password` (kept between runs) into --out. "
                                             "Each clinic may publish only under its own topics.")
    broker.add_argument("--registry", type=Path, required=True,
                        help="the clinic registry (YAML, or CSV as a spreadsheet exports it)")
    broker.add_argument("--out", type=Path, required=True, help="directory for the files")
    report = commands.add_parser("report", help="a month's availability per clinic, region and ISP",
                                 description="Availability per clinic, region and ISP over one month (UTC), from "
                                             "the state engine's outage records in the collector's data_dir: "
                                             "maintenance left out, unknown time shown apart (docs/collector.md).")
    report.add_argument("--config", type=Path, required=True)
    report.add_argument("--month", required=True, help="YYYY-MM")
    report.add_argument("--region", help="only this region's clinics")
    report.add_argument("--format", choices=["csv", "html"], default="csv")
    report.add_argument("--out", type=Path, help="write here instead of standard output")
    return parser


def _report(args: argparse.Namespace) -> int:
    from collector.config import ConfigError, load_collector_config
    from collector.registry import RegistryError, load_registry
    from collector.state import report
    from collector.state.db import StateDB

    try:
        config = load_collector_config(args.config)
        registry = load_registry(config.registry)
        start, end = report.month_bounds(args.month, time.time_ns() // 1_000_000)
    except (ConfigError, RegistryError, ValueError) as exc:
        print(f"clinicwatch-collector: {exc}", file=sys.stderr)
        return 2
    if args.region is not None and args.region not in {c.region for c in registry.clinics}:
        print(f"clinicwatch-collector: --region {args.region!r} is not a region of the registry", file=sys.stderr)
        return 2
    path = config.data_dir / "state.sqlite"
    if not path.exists():
        print(f"clinicwatch-collector: no state records in {config.data_dir} (the state engine has not run there)",
              file=sys.stderr)
        return 2
    db = StateDB(path)
    rows = report.build(db, registry, start, end, args.region)
    db.close()
    text = report.to_csv(rows) if args.format == "csv" else report.to_html(rows, args.month, args.region)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from wire import logs
    from collector.config import ConfigError, load_collector_config
    from collector.registry import RegistryError, load_registry

    try:
        config = load_collector_config(args.config)
        registry = load_registry(config.registry)
        windows = config.state.maintenance_file
        if windows is not None and windows.exists():
            from collector.state.service import load_windows

            load_windows(windows)
    except (ConfigError, RegistryError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: valid; store {config.store.kind}, {len(registry.clinics)} clinics in {config.registry}")
        return 0
    from collector.service import Collector

    logs.setup()
    service = Collector(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service.start()
    while not stop.wait(1.0):
        if service.failed.is_set():
            service.stop()
            return 1
    service.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "validate":
        try:
            message = wire.decode(args.topic, args.payload.read_bytes(), int(time.time() * 1000))
        except OSError as exc:
            print(f"clinicwatch-collector: cannot read {args.payload}: {exc.strerror}", file=sys.stderr)
            return 2
        except wire.Rejected as exc:
            print(f"rejected: {exc.reason}: {exc.detail}")
            return 1
        print(f"valid {type(message).__name__.lower()} message from clinic {message.clinic}")
        return 0
    if args.command in ("run", "check-config"):
        return _run(args)
    if args.command == "report":
        return _report(args)
    if args.command == "broker-config":
        from collector.brokerconfig import write_broker_config
        from collector.registry import RegistryError, load_registry

        try:
            paths = write_broker_config(load_registry(args.registry), args.out)
        except (RegistryError, RuntimeError) as exc:
            print(f"clinicwatch-collector: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {paths['passwd']}, {paths['acl']} and passwords in {paths['credentials']}/")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
