"""Command line of the central collector (`clinicwatch-collector`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

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
month's availability. It tells the registry's contacts of incidents by email,
SMS, webhook, Slack or Teams, in their language; `silence` mutes some of that
for a while; `alerts` sends a contact a test message and lists what was sent
and what could not be. `check-config` checks a configuration and
its registry; `broker-config` writes Mosquitto's password and ACL files from the
registry; `grafana` (push) installs the dashboards in a Grafana.
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
    silence = commands.add_parser("silence", help="mute alerts about some clinics, regions or incidents for a while",
                                  description="Silences mute messages without losing them: each is still decided "
                                              "and kept in the notification log as muted. A recovery is still sent "
                                              "to whoever was told of the incident before the silence began. The "
                                              "running collector reads them within 10 s.")
    silences = silence.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = silences.add_parser("add", help="add a silence; prints its id")
    add.add_argument("--config", type=Path, required=True)
    add.add_argument("--clinic", action="append", default=[], help="a clinic id (repeat for more)")
    add.add_argument("--region", action="append", default=[], help="a region (repeat for more)")
    add.add_argument("--incident", action="append", default=[], help="an incident id (repeat for more)")
    add.add_argument("--for", dest="duration", help="how long: 30m, 2h, 1d (default 2h)")
    add.add_argument("--until", help="or until when: 2026-11-30T08:00:00+01:00")
    add.add_argument("--start", help="from when (default now)")
    add.add_argument("--author", required=True, help="who silences it")
    add.add_argument("--comment", required=True, help="why")
    listing = silences.add_parser("list", help="the silences in force or to come (--all: expired ones too)")
    listing.add_argument("--config", type=Path, required=True)
    listing.add_argument("--all", action="store_true")
    expire = silences.add_parser("expire", help="end a silence now")
    expire.add_argument("--config", type=Path, required=True)
    expire.add_argument("id")
    alerts = commands.add_parser("alerts", help="test a contact's channels; list what was sent")
    alert_actions = alerts.add_subparsers(dest="action", metavar="ACTION", required=True)
    test = alert_actions.add_parser("test", help="send a test message through each of a contact's channels",
                                    description="For installers: a test message in the contact's language through "
                                                "each of its channels, and what became of each (exit 1 if one "
                                                "failed). Contacts are the registry's: a scoped contact's id, or "
                                                "<clinic>/<n> for a clinic's n-th contact.")
    test.add_argument("--config", type=Path, required=True)
    test.add_argument("--contact", required=True)
    shown = alert_actions.add_parser("list", help="the notification log: each message, channel and what became of it")
    shown.add_argument("--config", type=Path, required=True)
    shown.add_argument("--incident", help="only this incident's")
    shown.add_argument("--problems", action="store_true", help="only those not delivered (retry, failed, expired)")
    grafana = commands.add_parser("grafana", help="install the data sources, folder and dashboards in a Grafana")
    grafana_actions = grafana.add_subparsers(dest="action", metavar="ACTION", required=True)
    gpush = grafana_actions.add_parser(
        "push", help="create or update them through Grafana's HTTP API (a second push changes nothing)",
        description="Creates or updates ClinicWatch's InfluxDB and Prometheus data sources, the folder "
                    "ClinicWatch and the dashboards of dashboards/grafana/ in a running Grafana (10.4 or 11), "
                    "by uid: what is already as it should be is left alone. Needs clinicwatch[grafana] "
                    "(grafana-client), best in a virtual environment of its own (dashboards/README.md).")
    gpush.add_argument("--url", required=True, help="Grafana's address, e.g. https://grafana.example.org")
    gpush.add_argument("--token-file", type=Path, required=True,
                       help="file holding a Grafana service account token (role Editor or Admin)")
    gpush.add_argument("--influx-url", default="http://127.0.0.1:8086",
                       help="InfluxDB as Grafana reaches it (default %(default)s)")
    gpush.add_argument("--database", default="clinicwatch", help="the collector's store.database "
                                                                 "(default %(default)s)")
    gpush.add_argument("--influx-token-file", type=Path,
                       help="InfluxDB 2.x: file holding a read token (the bucket mapped to --database by DBRP)")
    gpush.add_argument("--prometheus-url", default="http://127.0.0.1:9090",
                       help="the Prometheus that scrapes the collector's /metrics (default %(default)s)")
    return parser


def _grafana(args: argparse.Namespace) -> int:
    from dashboards import push

    token = None
    if args.influx_token_file is not None:
        try:
            token = args.influx_token_file.read_text().strip()
        except OSError as exc:
            print(f"{args.influx_token_file}: cannot read the token: {exc.strerror}", file=sys.stderr)
            return 2
    return push.main(args.url, args.token_file, push.Targets(args.influx_url, args.database, args.prometheus_url,
                                                             token))


def _duration_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = float(text[:-1]), units[text[-1]]
        if value <= 0:
            raise ValueError
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"--for {text!r}: give a number and a unit, such as 30m, 2h or 1d") from None
    return value * unit


def _moment(text: str, option: str) -> "dt.datetime":
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{option} {text!r}: give a time such as 2026-11-30T08:00:00+01:00") from None
    if moment.tzinfo is None:
        raise ValueError(f"{option} {text!r}: give its UTC offset, such as 2026-11-30T08:00:00+01:00")
    return moment


def _silence(args: argparse.Namespace) -> int:
    import datetime as dt

    from collector.alerts import silences
    from collector.config import ConfigError, load_collector_config

    try:
        config = load_collector_config(args.config)
        path = config.silences_path()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        if args.action == "add":
            if not (args.clinic or args.region or args.incident):
                raise ValueError("name what to silence: --clinic, --region or --incident")
            start = _moment(args.start, "--start") if args.start else now
            if args.until and args.duration:
                raise ValueError("give --for or --until, not both")
            end = _moment(args.until, "--until") if args.until else start + dt.timedelta(
                seconds=_duration_s(args.duration or "2h"))
            if end <= start:
                raise ValueError("the silence would end before it starts")
            made = silences.add(path, start, end, args.clinic, args.region, args.incident, args.author, args.comment)
            print(made.id)
            return 0
        if args.action == "expire":
            ended = silences.expire(path, args.id, now)
            print(f"{ended.id} ends {ended.end.isoformat()}")
            return 0
        rows = [s for s in silences.listing(path) if args.all or s.end > now]
    except (ConfigError, silences.SilenceError, ValueError) as exc:
        print(f"clinicwatch-collector: {exc}", file=sys.stderr)
        return 2
    for s in rows:
        what = " ".join([*(f"clinic={c}" for c in s.clinics), *(f"region={r}" for r in s.regions),
                         *(f"incident={i}" for i in s.incidents)])
        status = "expired" if s.end <= now else ("active" if s.start <= now else "pending")
        print(f"{s.id}  {status:7}  {s.start.isoformat()} .. {s.end.isoformat()}  {what}  by {s.author}: {s.comment}")
    if not rows:
        print("no silences" + ("" if args.all else " in force or to come"))
    return 0


def _alerts(args: argparse.Namespace) -> int:
    try:
        config, registry = _config_and_registry(args.config)
    except ValueError as exc:
        print(f"clinicwatch-collector: {exc}", file=sys.stderr)
        return 2
    if args.action == "test":
        from collector.alerts.dispatch import recipients, test_channels

        people = recipients(registry)[1]
        if args.contact not in people:
            print(f"clinicwatch-collector: no contact {args.contact!r} in {config.registry} (contacts: "
                  f"{', '.join(sorted(people)) or 'none'})", file=sys.stderr)
            return 2
        person = people[args.contact]
        if not person.channels:
            print(f"clinicwatch-collector: contact {args.contact!r} has no channel (email, phone, webhook, slack, "
                  f"teams)", file=sys.stderr)
            return 2
        failed = 0
        for channel, address, delivery in test_channels(config.alerts, person):
            print(f"{channel:8} {address}: {delivery.outcome} ({delivery.detail})")
            failed += delivery.outcome != "delivered"
        return 1 if failed else 0
    from collector.alerts.log import NotificationLog

    db = _state_db(config, "notification log")
    if db is None:
        return 2
    rows = NotificationLog(db.db, db.lock).rows(args.incident)
    db.close()
    if args.problems:
        rows = [r for r in rows if r["status"] in ("retry", "failed", "expired")]
    for r in rows:
        import datetime as dt

        when = dt.datetime.fromtimestamp(r["decided"] / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{when}  {r['status']:7}  {r['channel']:7} {r['address']}  {r['key']}  attempts={r['attempts']}"
              + (f"  {r['error']}" if r["error"] and r["status"] != "sent" else ""))
    if not rows:
        print("no messages" + (" with problems" if args.problems else ""))
    return 0


def _config_and_registry(path: Path) -> tuple[Any, Any]:
    """The configuration and its registry; ValueError (ConfigError, RegistryError) names what is wrong."""
    from collector.config import load_collector_config
    from collector.registry import load_registry

    config = load_collector_config(path)
    return config, load_registry(config.registry)


def _state_db(config: Any, what: str) -> Any:
    """The state engine's database in the configuration's data_dir, or None (said on stderr) if it never ran."""
    from collector.state.db import StateDB

    path = config.data_dir / "state.sqlite"
    if not path.exists():
        print(f"clinicwatch-collector: no {what} in {config.data_dir} (the state engine has not run there)",
              file=sys.stderr)
        return None
    return StateDB(path)


def _report(args: argparse.Namespace) -> int:
    from collector.state import report

    try:
        config, registry = _config_and_registry(args.config)
        start, end = report.month_bounds(args.month, time.time_ns() // 1_000_000)
    except ValueError as exc:
        print(f"clinicwatch-collector: {exc}", file=sys.stderr)
        return 2
    if args.region is not None and args.region not in {c.region for c in registry.clinics}:
        print(f"clinicwatch-collector: --region {args.region!r} is not a region of the registry", file=sys.stderr)
        return 2
    db = _state_db(config, "state records")
    if db is None:
        return 2
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
    from collector.alerts.silences import SilenceError, load_silences
    from collector.config import ConfigError, load_collector_config
    from collector.registry import RegistryError, load_registry

    try:
        config = load_collector_config(args.config)
        registry = load_registry(config.registry)
        windows = config.state.maintenance_file
        if windows is not None and windows.exists():
            from collector.state.service import load_windows

            load_windows(windows)
        load_silences(config.silences_path())
    except (ConfigError, RegistryError, SilenceError) as exc:
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
    if args.command == "silence":
        return _silence(args)
    if args.command == "alerts":
        return _alerts(args)
    if args.command == "grafana":
        return _grafana(args)
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
