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
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap, stat, statetimeline, table, timeseries

from dashboards import build
from dashboards.schema import MEASUREMENTS
from tests.collector_harness import REPO
from tests.fleet_sim import CLINICS, current, fleet_collector

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


# The InfluxQL annotation's own keys, which the SDK's annotation model lacks (dashboards/build.py).
INFLUX_ANNOTATION_KEYS = {"query", "textColumn", "tagsColumn"}
PANEL_OPTIONS = {"timeseries": timeseries.Options, "stat": stat.Options, "table": table.Options,
                 "geomap": geomap.Options, "state-timeline": statetimeline.Options}


def _roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=JSONEncoder))


def _valid(doc: dict[str, Any]) -> None:
    """Raises AssertionError where the dashboard is not what the SDK's Grafana 11.6 models read: a key
    they do not know is dropped by them, a value of the wrong kind changed."""
    plain = json.loads(json.dumps(doc))
    for entry in plain["annotations"].get("list", []):
        for key in INFLUX_ANNOTATION_KEYS:
            entry.pop(key, None)
    assert _roundtrip(model.Dashboard.from_json(plain)) == plain, doc["uid"]
    for panel in _panels(doc):
        assert panel["type"] in PANEL_OPTIONS, f"{doc['uid']}: panel type {panel['type']}"
        options = panel.get("options", {})
        read = _roundtrip(PANEL_OPTIONS[panel["type"]].from_json(options))  # adds the defaults it lacks
        assert {k: read.get(k) for k in options} == options, f"{doc['uid']} / {panel['title']}: options"


def test_the_validity_check_catches_an_unknown_key() -> None:
    doc = _docs()[0]
    _valid(doc)
    for spoil in (lambda d: d.update(refreshh="1m"), lambda d: d["panels"][1].update(gridpos={}),
                  lambda d: _panels(d)[0].setdefault("options", {}).update(colourMode="x")):
        spoilt = json.loads(json.dumps(doc))
        spoil(spoilt)
        with pytest.raises(AssertionError):
            _valid(spoilt)


def test_every_dashboard_is_valid_for_grafana_11_and_complete() -> None:
    uids = set()
    for doc in _docs():
        _valid(doc)  # the SDK's models of Grafana 11.6's dashboard schema and panel options
        parsed = model.Dashboard.from_json(doc)
        assert parsed.uid == doc["uid"] and parsed.title == doc["title"] and doc["schemaVersion"] >= 39
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
GRAFANA_INTERVAL = "1m"


def substitute(query: str, start_ms: int, end_ms: int, variables: dict[str, list[str] | str]) -> str:
    """As Grafana's InfluxDB data source does before it sends a query (FIELD-NOTES): a variable that is
    neither multi-value nor has "All" (a str here) goes in as it is; a multi-value one (a list) as its
    custom all value when "All" is chosen, else as (a|b) of its values, regex-escaped as Grafana's
    regexEscape does."""
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("$__interval_ms", "60000").replace("$__interval", GRAFANA_INTERVAL)
    for name, values in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        if isinstance(values, str):
            text = values
        elif values == [".*"]:
            text = ".*"  # the variable's allValue
        else:
            text = "(" + "|".join(re.sub(r"([\\^$*+?.()|{}\[\]/])", r"\\\1", v) for v in values) + ")"
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
    with fleet_collector(influxdb_server, tmp_path_factory.mktemp("dashboards"), "dashboards") as (_, port, now):
        yield influxdb_server, "dashboards", port, now


def test_every_influxql_query_answers_with_what_its_panel_expects(filled) -> None:
    influx, db, _, now = filled
    start, end = now - 3_600_000, time.time_ns() // 1_000_000 + 60_000
    assert current(influx, db) == {"es-ib-0001": "up", "es-ib-0002": "degraded",
                                    "es-ib-0003": "down", "es-ct-0004": "down", "es-ct-0005": "up",
                                    "es-ct-0006": "unknown", "es-ct-0007": "maintenance"}
    answered = 0
    for doc in _docs():
        variables = {v["name"]: [".*"] for v in doc["templating"].get("list", []) if v.get("includeAll")}
        if "clinic" in {v["name"] for v in doc["templating"].get("list", [])}:
            # The variable's own query gives the clinic to pick, as its drop-down would.
            variables["clinic"] = "es-ct-0004"
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
    served = {re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (\w+) ", page, re.MULTILINE)}
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
    assert provider["type"] == "file" and provider["folder"] == "ClinicWatch" and provider["options"]["path"]
