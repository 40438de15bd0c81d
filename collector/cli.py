"""Command line of the central collector (`clinicwatch-collector`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import wire
from collector import __version__

DESCRIPTION = """\
ClinicWatch collector: the central service. It subscribes to every clinic's
MQTT topics, validates each message against the wire contract, stores the
measurements in InfluxDB, keeps each clinic's state (up, degraded, down) and
alerts health administrators, grouping one regional failure into one incident.
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
    broker = commands.add_parser("broker-config", help="write Mosquitto's password and ACL files from the registry",
                                 description="Write `passwd` (hashed with mosquitto_passwd), `acl` and "
                                             "`credentials/<clinic>.password` (kept between runs) into --out. "
                                             "Each clinic may publish only under its own topics.")
    broker.add_argument("--registry", type=Path, required=True, help="the clinic registry (YAML)")
    broker.add_argument("--out", type=Path, required=True, help="directory for the files")
    return parser


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
