"""The Grafana dashboards (dashboards/): current, valid for Grafana 11 (the SDK's models), naming only the
schema, and every query answering on a real InfluxDB filled through the real collector by a simulated
fleet, with Grafana's macros and variables substituted as Grafana substitutes them.

Grafana's server cannot be installed here: the InfluxDB data source's substitution is reproduced
(FIELD-NOTES: pkg/tsdb/influxdb/influxql) and the queries run on the real InfluxDB.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as model

from dashboards import build
from dashboards.schema import MEASUREMENTS
from lab.servers import Mosquitto
from tests.collector_harness import REPO, collector_config, start_collector, wait_subscribed

FILES = sorted((REPO / "dashboards" / "grafana").glob("*.json"))
BUILTIN = {"timeFilter", "__interval", "interval", "__interval_ms", "__timeFilter"}
# InfluxQL words and functions that appear quoted nowhere but are not identifiers either.
_QUOTED = re.compile(r'"([^"]+)"')


def _docs() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in FILES]


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["panels"] if p.get("type") != "row"]


def _targets(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in _panels(doc) for t in p.get("targets", [])]


def test_the_committed_dashboards_are_what_the_code_makes() -> None:
    assert [p.stem for p in FILES] == sorted(build.DASHBOARDS)
    for path in FILES:
        assert path.read_text() == build.render(path.stem), f"{path.name}: run .venv/bin/python -m dashboards.build"


def test_every_dashboard_is_valid_for_grafana_11_and_complete() -> None:
    uids = set()
    for doc in _docs():
        parsed = model.Dashboard.from_json(doc)  # the SDK's model of Grafana 11.6's dashboard schema
        assert parsed.uid == doc["uid"] and parsed.title == doc["title"] and doc["schemaVersion"] >= 39
        assert len(parsed.panels or []) == len(doc["panels"])
        uids.add(doc["uid"])
        defined = {v["name"] for v in doc["templating"].get("list", [])}
        for variable in doc["templating"].get("list", []):
            assert variable["datasource"]["uid"] == build.INFLUX.uid, variable["name"]
        texts = [t.get("query") or t.get("expr") for _, t in _targets(doc)]
        texts += [v["query"] for v in doc["templating"].get("list", [])]
        texts += [a["query"] for a in doc["annotations"].get("list", []) if "query" in a]
        for text in texts:
            used = set(re.findall(r"\$\{?(\w+)", text)) - BUILTIN
            used = {u for u in used if not u.startswith(("tag_", "col"))}
            assert used <= defined, f"{doc['uid']}: {used - defined} used, not defined, in {text}"
        for panel in _panels(doc):
            assert panel["datasource"]["uid"] in (build.INFLUX.uid, build.PROMETHEUS.uid), panel["title"]
            assert panel.get("targets"), f"{doc['uid']}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], panel["title"]
    assert len(uids) == len(FILES)


def _names(query: str) -> tuple[set[str], set[str]]:
    """The measurements a query reads and the other quoted identifiers it names (fields, tags, aliases)."""
    measurements = set(re.findall(r'FROM "([^"]+)"', query))
    aliases = set(re.findall(r'AS "([^"]+)"', query))
    named = set(_QUOTED.findall(query)) - measurements - aliases
    return measurements, named


def test_no_query_names_a_measurement_or_field_the_schema_lacks() -> None:
    checked = 0
    for doc in _docs():
        queries = [t["query"] for _, t in _targets(doc) if "query" in t]
        queries += [v["query"] for v in doc["templating"].get("list", [])]
        queries += [a["query"] for a in doc["annotations"].get("list", []) if "query" in a]
        for query in queries:
            measurements, named = _names(query)
            assert measurements, query
            unknown = measurements - set(MEASUREMENTS)
            assert not unknown, f"{doc['uid']}: no measurement {unknown}: {query}"
            known = set().union(*(MEASUREMENTS[m][0] | MEASUREMENTS[m][1] for m in measurements))
            assert named <= known, f"{doc['uid']}: {named - known} not in {measurements}: {query}"
            checked += 1
    assert checked > 40


def test_the_schema_check_catches_a_wrong_field() -> None:
    measurements, named = _names('SELECT mean("rtt_ms") FROM "icmp" WHERE "clinic" =~ /^$clinic$/')
    known = MEASUREMENTS["icmp"][0] | MEASUREMENTS["icmp"][1]
    assert measurements == {"icmp"} and named - known == {"rtt_ms"}


# -- the queries on real data ----------------------------------------------------------------------
CLINICS = {  # id: (region, isp, lat, lon, story)
    "es-ib-0001": ("Illes Balears", "Movistar", 39.57, 2.65, "healthy"),
    "es-ib-0002": ("Illes Balears", "Vodafone", 39.88, 3.10, "degraded"),
    "es-ib-0003": ("Illes Balears", "Movistar", 38.91, 1.43, "down"),
    "es-ct-0004": ("Catalunya", "Movistar", 42.26, 1.17, "battery"),
    "es-ct-0005": ("Catalunya", "Vodafone", 41.98, 2.82, "flapping"),
    "es-ct-0006": ("Catalunya", "Vodafone", 41.39, 2.17, "silent"),
    "es-ct-0007": ("Catalunya", "Movistar", 41.62, 0.62, "maintenance"),
}
BOOT = "0123456789abcdef"


class Fleet:
    """Publishes each clinic's story as its agent would (wire contract), times in the last hour."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-sim",
                                  protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.seq: dict[str, int] = {}
        self.now = time.time_ns() // 1_000_000
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def _next(self, clinic: str) -> int:
        self.seq[clinic] = self.seq.get(clinic, 0) + 1
        return self.seq[clinic]

    def publish(self, clinic: str, kind: str, doc: dict[str, Any]) -> None:
        payload = json.dumps({"v": 1, "clinic": clinic, "boot": BOOT, **doc}).encode()
        if kind == "telemetry":
            payload = zlib.compress(payload)
        self.infos.append(self.client.publish(f"clinicwatch/v1/{clinic}/{kind}", payload, qos=1,
                                              retain=kind == "status"))

    def status(self, clinic: str, state: str, reason: str | None = None) -> None:
        self.publish(clinic, "status", {"state": state, "agent": "sim", **({"reason": reason} if reason else {})})

    def samples(self, clinic: str, samples: list[tuple[int, str, dict[str, str], dict[str, Any]]]) -> None:
        self.publish(clinic, "telemetry", {"mono_now": self.now, "samples": [
            {"seq": self._next(clinic), "t": t, "mono": t, "sync": "ntp", "m": m, "tags": tags, "f": f}
            for t, m, tags, f in samples]})

    def events(self, clinic: str, events: list[tuple[int, str, dict[str, Any]]]) -> None:
        self.publish(clinic, "event", {"mono_now": self.now, "events": [
            {"seq": self._next(clinic), "t": t, "mono": t, "sync": "ntp", "kind": kind, "detail": detail}
            for t, kind, detail in events]})

    def link(self, clinic: str, loss: float, rtt: float, minutes: int = 30) -> None:
        rows = []
        for k in range(minutes * 2, 0, -1):
            t = self.now - k * 30_000
            for target in ("records", "hub"):
                f: dict[str, Any] = {"success": loss < 100, "reason": "" if loss < 100 else "timeout",
                                     "loss_pct": loss, "sent": 10, "received": round(10 * (1 - loss / 100)),
                                     "duration_ms": 2000.0}
                if loss < 100:
                    f |= {"rtt_avg_ms": rtt, "jitter_ms": rtt / 20}
                rows.append((t, "icmp", {"target": target}, f))
        self.samples(clinic, rows)

    def devices(self, clinic: str, on_battery: bool = False) -> None:
        t = self.now - 60_000
        ok = {"success": True, "reason": "", "duration_ms": 50.0}
        self.samples(clinic, [
            (t, "tcp", {"target": "records"}, ok | {"connect_ms": 31.5}),
            (t, "tcp", {"target": "records"}, {"success": False, "reason": "refused", "duration_ms": 3.0}),
            (t - 1, "icmp", {"target": "gateway"}, {"success": False, "reason": "no_route", "sent": 0,
                                                    "received": 0, "duration_ms": 1.0}),
            (t - 1, "dns", {"target": "resolver"}, {"success": False, "reason": "timeout", "duration_ms": 5000.0}),
            (t - 1, "http", {"target": "records"}, {"success": False, "reason": "tls", "duration_ms": 90.0}),
            (t, "dns", {"target": "resolver"}, ok | {"resolve_ms": 12.0, "rcode": "NOERROR", "answers": 1}),
            (t, "http", {"target": "records"}, ok | {"connect_ms": 30.0, "tls_ms": 60.0, "ttfb_ms": 120.0,
                                                     "status": 200}),
            (t, "traceroute", {"target": "records"}, ok | {"path": "192.168.1.1>10.0.0.1>198.18.0.1", "hops": 3,
                                                           "reached": True, "route_changed": True}),
            (t, "throughput", {"target": "hub"}, ok | {"down_kbps": 9000.0, "up_kbps": 2000.0,
                                                       "spent_month_bytes": 52_000_000}),
            (t, "agent", {}, {"outbox_samples": 3, "outbox_events": 0, "outbox_bytes": 2048,
                              "oldest_unsent_age_s": 1.5, "rss_kib": 30_000}),
            (t, "snmp_if", {"device": "router", "interface": "wwan0"},
             {"in_bps": 800_000.0, "out_bps": 120_000.0, "in_errors_ps": 0.0, "out_errors_ps": 0.1,
              "in_discards_ps": 0.0, "out_discards_ps": 0.0, "oper_up": True}),
            (t, "snmp_cellular", {"device": "router", "modem": "lte1"},
             {"rssi_dbm": -71.0, "rsrp_dbm": -98.0, "rsrq_db": -11.0, "sinr_db": 7.5}),
            (t, "snmp_ups", {"device": "ups"}, {"on_battery": on_battery, "charge_pct": 64.0 if on_battery else 100.0,
                                                "minutes_remaining": 22.0, "input_voltage_v": 0.0 if on_battery
                                                else 229.0, "output_load_pct": 31.0}),
        ])

    def wait(self) -> None:
        for info in self.infos:
            info.wait_for_publish(10)
        self.client.loop_stop()
        self.client.disconnect()


def _tell_story(fleet: Fleet) -> None:
    now = fleet.now
    # Two messages the collector rejects (counted by reason): not JSON, and a record without its time.
    fleet.client.publish("clinicwatch/v1/es-ib-0001/event", b"{not json", qos=1)
    fleet.events("es-ib-0001", [(now, "interface_up", {"interface": "wwan0"})])
    fleet.publish("es-ib-0001", "event", {"mono_now": now, "events": [
        {"seq": 99, "mono": now, "sync": "ntp", "kind": "interface_up", "detail": {}}]})
    for clinic, (*_, story) in CLINICS.items():
        if story == "silent":
            continue
        fleet.status(clinic, "online")
        if story == "degraded":
            fleet.link(clinic, 30.0, 130.0)
        else:
            fleet.link(clinic, 0.0, 45.0)
        fleet.devices(clinic, on_battery=story == "battery")
        if story == "flapping":  # the agent's own records of short cuts it lived through
            fleet.events(clinic, [(now - k * 180_000, "outage", {
                "down_t": now - k * 180_000 - 20_000, "down_mono": now - k * 180_000 - 20_000,
                "up_mono": now - k * 180_000, "duration_s": 20.0, "cause": "mqtt disconnected",
                "power_cycled": False, "down_sync": "ntp"}) for k in range(12, 0, -1)])
        if story == "battery":
            fleet.events(clinic, [(now - 30_000, "on_battery", {"charge_pct": 64.0, "minutes_remaining": 22.0,
                                                                "input_voltage_v": 0.0})])
            fleet.status(clinic, "offline", "lost")
        if story == "down":
            fleet.events(clinic, [(now - 40_000, "interface_down", {"interface": "wwan0", "status": "down",
                                                                    "previous": "up"})])
            fleet.status(clinic, "offline", "lost")


GRAFANA_INTERVAL = "1m"


def substitute(query: str, start_ms: int, end_ms: int, variables: dict[str, list[str]]) -> str:
    """As Grafana's InfluxDB data source does before it sends a query (FIELD-NOTES)."""
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("$__interval_ms", "60000").replace("$__interval", GRAFANA_INTERVAL)
    for name, values in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        if values == [".*"]:
            text = ".*"  # the variable's allValue
        else:
            escaped = [re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", v) for v in values]
            text = escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"
        query = query.replace(f"${name}", text)
    return query


def _outer(query: str) -> str:
    """The query without its subquery."""
    start = query.find("(SELECT")
    if start < 0:
        return query
    depth = 0
    for i in range(start, len(query)):
        depth += {"(": 1, ")": -1}.get(query[i], 0)
        if depth == 0:
            return query[:start] + "sub" + query[i + 1:]
    raise AssertionError(f"unbalanced: {query}")


def _columns(query: str) -> list[str]:
    """The columns a query's outer SELECT gives (besides time), as InfluxDB names them."""
    select = query[len("SELECT "):query.index(" FROM ")]
    out = []
    for item in re.split(r',\s*(?![^()]*\))', select):
        alias = re.search(r'AS "([^"]+)"$', item)
        if alias:
            out.append(alias.group(1))
        elif item.startswith('"'):
            out.append(item.strip('"'))
        else:
            out.append(item[:item.index("(")])
    return out


@pytest.fixture(scope="module")
def filled(influxdb_server, tmp_path_factory):
    """The real collector (ingest, state engine, status points every second) fed by the simulated fleet."""
    tmp = tmp_path_factory.mktemp("dashboards")
    broker = Mosquitto()  # its own: the fleet's retained statuses must not reach other tests
    broker.start()
    db = "dashboards"
    influxdb_server.create_database(db)
    now = time.time_ns() // 1_000_000
    (tmp / "maintenance.yaml").write_text(yaml.safe_dump({"windows": [{
        "clinics": ["es-ct-0007"], "reason": "router replaced",
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 - 600)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 + 3600))}]}))
    config = collector_config(tmp, broker.port, {"kind": "influx_v1", "url": influxdb_server.url, "database": db},
                              list(CLINICS), metrics_port=_free_port(),
                              state={"status_interval_s": 1, "maintenance_file": str(tmp / "maintenance.yaml")})
    registry = yaml.safe_load((tmp / "clinics.yaml").read_text())
    for entry in registry["clinics"]:
        region, isp, lat, lon, _ = CLINICS[entry["id"]]
        entry.update(region=region, isp=isp, lat=lat, lon=lon)
    (tmp / "clinics.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True))
    collector = start_collector(config)
    try:
        wait_subscribed(config)
        fleet = Fleet(broker.port)
        _tell_story(fleet)
        fleet.wait()
        port = yaml.safe_load(config.read_text())["metrics_port"]
        deadline = time.monotonic() + 60
        wanted = {"incident", "outage", "clinic_state", "clinic_status", "snmp_ups", "agent_event"}
        while time.monotonic() < deadline:
            have = _measurements(influxdb_server, db)
            downs = _current(influxdb_server, db)
            if wanted <= have and downs.get("es-ct-0004") == "down" and downs.get("es-ct-0007") == "maintenance":
                break
            time.sleep(0.5)
        yield influxdb_server, db, port, fleet.now
    finally:
        collector.terminate()
        collector.wait(20)
        broker.stop()
        influxdb_server.query(f'DROP DATABASE "{db}"', method="POST")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measurements(influx, db: str) -> set[str]:
    series = influx.query("SHOW MEASUREMENTS", db=db)["results"][0].get("series", [])
    return {row[0] for row in series[0]["values"]} if series else set()


def _current(influx, db: str) -> dict[str, str]:
    result = influx.query('SELECT last("state") FROM "clinic_status" WHERE time > now() - 1m GROUP BY "clinic"',
                          db=db)["results"][0]
    return {s["tags"]["clinic"]: s["values"][0][1] for s in result.get("series", [])}


def test_every_influxql_query_answers_with_what_its_panel_expects(filled) -> None:
    influx, db, _, now = filled
    start, end = now - 3_600_000, time.time_ns() // 1_000_000 + 60_000
    assert _current(influx, db) == {"es-ib-0001": "up", "es-ib-0002": _current(influx, db)["es-ib-0002"],
                                    "es-ib-0003": "down", "es-ct-0004": "down", "es-ct-0005": "up",
                                    "es-ct-0006": "unknown", "es-ct-0007": "maintenance"}
    answered = 0
    for doc in _docs():
        variables = {v["name"]: [".*"] for v in doc["templating"].get("list", []) if v.get("includeAll")}
        if "clinic" in {v["name"] for v in doc["templating"].get("list", [])}:
            # The variable's own query gives the clinic to pick, as its drop-down would.
            variables["clinic"] = ["es-ct-0004"]
        for variable in doc["templating"].get("list", []):
            got = influx.query(substitute(variable["query"], start, end, variables), db=db)["results"][0]
            values = {row[1] for s in got["series"] for row in s["values"]}
            assert values, f"{doc['uid']}: variable {variable['name']} has no values"
        for title, target in _targets(doc):
            if "query" not in target:
                continue
            query = substitute(target["query"], start, end, variables)
            result = influx.query(query, db=db)["results"][0]
            assert "error" not in result, f"{doc['uid']} / {title}: {result}"
            assert result.get("series"), f"{doc['uid']} / {title}: no data for {query}"
            expected = _columns(target["query"])
            for s in result["series"]:
                assert s["columns"] == ["time", *expected], f"{doc['uid']} / {title}: {s['columns']}"
                assert any(v is not None for row in s["values"] for v in row[1:]), f"{doc['uid']} / {title}"
            grouped = re.findall(r'GROUP BY (.*?)(?: fill|$)', _outer(target["query"]))
            tags = set(re.findall(r'"(\w+)"', grouped[0])) if grouped else set()
            for s in result["series"]:
                assert tags <= set(s.get("tags", {})), f"{doc['uid']} / {title}: tags {s.get('tags')}"
            answered += 1
        for annotation in doc["annotations"].get("list", []):
            if "query" in annotation:
                result = influx.query(substitute(annotation["query"], start, end, variables), db=db)["results"][0]
                assert result.get("series"), f"{doc['uid']} / annotation {annotation['name']}"
                assert {annotation["textColumn"], annotation["tagsColumn"]} <= set(result["series"][0]["columns"])
    assert answered > 30


def test_the_fleet_panels_count_map_and_rate_the_clinics(filled) -> None:
    influx, db, _, now = filled
    start, end = now - 3_600_000, time.time_ns() // 1_000_000 + 60_000
    fleet = json.loads((REPO / "dashboards" / "grafana" / "clinicwatch-fleet.json").read_text())
    every = {"region": [".*"], "isp": [".*"], "link": [".*"]}

    def run(title: str, variables: dict[str, list[str]] = every) -> list[dict[str, Any]]:
        target = next(t for p in _panels(fleet) if p["title"] == title for t in p["targets"])
        return influx.query(substitute(target["query"], start, end, variables), db=db)["results"][0].get("series", [])

    counts = {name: (run(f"Clinics {name}") or [{"values": [[0, 0]]}])[0]["values"][0][1]
              for name, *_ in build.STATES}
    assert sum(counts.values()) == len(CLINICS)
    assert counts["down"] == 2 and counts["unknown"] == 1 and counts["maintenance"] == 1
    catalunya = {"region": ["Catalunya"], "isp": [".*"], "link": [".*"]}
    assert (run("Clinics down", catalunya) or [{"values": [[0, 0]]}])[0]["values"][0][1] == 1
    two = {"region": ["Catalunya", "Illes Balears"], "isp": ["Vodafone"], "link": [".*"]}
    assert (run("Clinics unknown", two) or [{"values": [[0, 0]]}])[0]["values"][0][1] == 1
    on_map = {s["tags"]["clinic"]: dict(zip(s["columns"], s["values"][0])) for s in run("Clinics on the map, by state")}
    assert set(on_map) == set(CLINICS)
    assert on_map["es-ct-0004"]["state"] == "down" and on_map["es-ct-0004"]["cause"] == "power"
    assert (on_map["es-ib-0001"]["lat"], on_map["es-ib-0001"]["lon"]) == (39.57, 2.65)
    worst = {(s["tags"]["clinic"], s["tags"]["target"]): s["values"][0][1] for s in run("Worst links, last 15 minutes")}
    assert worst[("es-ib-0002", "records")] == pytest.approx(30.0) and worst[("es-ib-0001", "hub")] == 0.0


def test_the_collector_health_dashboard_names_only_metrics_the_collector_serves(filled) -> None:
    _, _, port, _ = filled
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    # Every family, with samples yet or not (a counter's TYPE line names it with _total, or without).
    served = {re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (\w+) ", page, re.M)}
    assert {"clinicwatch_messages_accepted", "clinicwatch_records_rejected", "clinicwatch_notifications"} <= served
    doc = json.loads((REPO / "dashboards" / "grafana" / "clinicwatch-collector.json").read_text())
    for title, target in _targets(doc):
        for name in re.findall(r"\b(clinicwatch_\w+)", target["expr"]):
            assert re.sub(r"_total$", "", name) in served, f"{title}: {name} is not on /metrics"


def test_the_provisioning_files_give_every_data_source_the_dashboards_name() -> None:
    provisioning = REPO / "dashboards" / "provisioning"
    named = {t["datasource"]["uid"] for doc in _docs() for _, t in _targets(doc)}
    for path in (provisioning / "datasources").iterdir():
        sources = yaml.safe_load(path.read_text())["datasources"]
        influx = [s for s in sources if s["type"] == "influxdb"]
        assert len(influx) == 1 and influx[0]["uid"] == build.INFLUX.uid, path.name
        if path.suffix == ".yaml":
            assert {s["uid"] for s in sources} == named
    provider = yaml.safe_load((provisioning / "dashboards" / "clinicwatch.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == build.FOLDER and provider["options"]["path"]
