"""Command line of the clinic agent (`clinicwatch-agent`)."""

from __future__ import annotations

import argparse
import sys

import wire
from agent import __version__

DESCRIPTION = """\
ClinicWatch agent: runs on a clinic's router or edge box. It measures the clinic's
link (ICMP, TCP, DNS, HTTP, traceroute, throughput) and its local devices (SNMP),
keeps every measurement in a durable outbox, and reports to the central collector
over MQTT, backfilling in order after an outage.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinicwatch-agent", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"clinicwatch-agent {__version__} "
                                                                f"(wire contract v{wire.VERSION})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    topics = commands.add_parser("topics", help="print the MQTT topics a clinic uses (for broker ACLs)")
    topics.add_argument("clinic_id", help="the clinic's id, e.g. es-ib-0042")
    return parser


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
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
