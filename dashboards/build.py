"""ClinicWatch's Grafana dashboards, as code (grafana-foundation-sdk, the 11.6 flavour; Grafana 10.4 and 11
read them too).

    .venv/bin/python -m dashboards.build          writes dashboards/grafana/<uid>.json
    .venv/bin/python -m dashboards.build --check  exits 1 when a committed file is not what this makes

The committed JSON is what Grafana's provisioning reads and `clinicwatch-collector grafana push` sends;
tests/test_dashboards.py keeps it current and runs every query against a real InfluxDB.

Queries are InfluxQL on the schema of docs/collector.md (dashboards/schema.py). The SDK has no InfluxDB
query model, so targets are written as Grafana stores them (raw InfluxQL). Template variables are
multi-valued and used as `=~ /^$var$/`, which Grafana turns into an escaped `(a|b)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomodel

OUT = Path(__file__).resolve().parent / "grafana"
INFLUX = model.DataSourceRef(type_val="influxdb", uid="clinicwatch-influxdb")
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="clinicwatch-collector")

# The fleet filter every fleet-wide query carries (the region, ISP and link variables).
FLEET = '"region" =~ /^$region$/ AND "isp" =~ /^$isp$/ AND "link" =~ /^$link$/'
ONE = '"clinic" =~ /^$clinic$/'
# clinic_status points come every state.status_interval_s (60 s): the last 5 minutes hold every
# clinic's current state, whatever the dashboard's range.
NOW = "time > now() - 5m"
STATES = [("up", 0, "green"), ("degraded", 1, "orange"), ("down", 2, "red"), ("unknown", 3, "purple"),
          ("maintenance", 4, "blue")]


class InfluxQL(cogvariants.Dataquery):
    def __init__(self, ref: str, query: str, fmt: str, alias: str | None, datasource: model.DataSourceRef) -> None:
        self.ref, self.query, self.fmt, self.alias, self.datasource = ref, query, fmt, alias, datasource

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref, "datasource": self.datasource.to_json(), "query": self.query,
                                  "rawQuery": True, "resultFormat": self.fmt}
        if self.alias:
            out["alias"] = self.alias
        return out


class PromQL(cogvariants.Dataquery):
    def __init__(self, ref: str, expr: str, legend: str | None) -> None:
        self.ref, self.expr, self.legend = ref, expr, legend

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref, "datasource": PROMETHEUS.to_json(), "expr": self.expr,
                                  "range": True}
        if self.legend:
            out["legendFormat"] = self.legend
        return out


class Query(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, target: cogvariants.Dataquery) -> None:
        self.target = target

    def build(self) -> cogvariants.Dataquery:
        return self.target


def influx(query: str, ref: str = "A", fmt: str = "time_series", alias: str | None = None) -> Query:
    return Query(InfluxQL(ref, query, fmt, alias, INFLUX))


def prom(expr: str, legend: str | None = None, ref: str = "A") -> Query:
    return Query(PromQL(ref, expr, legend))


def state_mappings() -> list[model.ValueMapping]:
    options = {str(code): model.ValueMappingResult(text=name, color=color, index=code)
               for name, code, color in STATES}
    options |= {name: model.ValueMappingResult(text=name, color=color, index=code) for name, code, color in STATES}
    return [model.ValueMap(options=options)]


def tag_variable(name: str, label: str, measurement: str, where: str = "") -> db.QueryVariable:
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{name}"' + (f" WHERE {where}" if where else "")
    return (db.QueryVariable(name).label(label).query(query).datasource(INFLUX).multi(True).include_all(True)
            .all_value(".*").refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC))


def fleet_variables(d: db.Dashboard) -> db.Dashboard:
    return (d.with_variable(tag_variable("region", "Region", "clinic_status"))
            .with_variable(tag_variable("isp", "ISP", "clinic_status", '"region" =~ /^$region$/'))
            .with_variable(tag_variable("link", "Link", "clinic_status", '"region" =~ /^$region$/')))


def series(title: str, query: str, unit: str, alias: str, w: int = 12, h: int = 8,
           description: str = "", more: tuple[tuple[str, str], ...] = ()) -> timeseries.Panel:
    """A time series panel of `query`; `more`: further (query, alias) targets drawn with it."""
    panel = (timeseries.Panel().title(title).description(description).datasource(INFLUX).unit(unit).span(w)
             .height(h).span_nulls(False).with_target(influx(query, alias=alias)))
    for ref, (extra, extra_alias) in zip("BCDEFGH", more):
        panel = panel.with_target(influx(extra, ref=ref, alias=extra_alias))
    return panel


# -- fleet overview --------------------------------------------------------------------------------
def fleet() -> db.Dashboard:
    d = (db.Dashboard("ClinicWatch: fleet").uid("clinicwatch-fleet").tags(["clinicwatch"]).refresh("1m")
         .time("now-6h", "now").timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR)
         .description("Which clinics can work right now, where, and which links are worst."))
    d = fleet_variables(d)
    for name, code, color in STATES:
        d = d.with_panel(
            stat.Panel().title(f"Clinics {name}").datasource(INFLUX).span(4 if code < 3 else 6).height(4)
            .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)
            .no_value("0")
            .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
                model.Threshold(value=None, color="transparent" if code else "green"),
                model.Threshold(value=1, color=color)]))
            .with_target(influx(
                f'SELECT count("code") AS "clinics" FROM (SELECT last("code") AS "code" FROM "clinic_status" '
                f'WHERE {NOW} AND {FLEET} GROUP BY "clinic") WHERE "code" = {code}', fmt="table")))
    layer = (cb.MapLayerOptions().type("markers").name("Clinics").tooltip(True)
             .location(cb.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS).latitude("lat")
                       .longitude("lon"))
             .config({"showLegend": True, "style": {"color": {"field": "code", "fixed": "dark-green"}, "opacity": 0.9,
                                                    "size": {"fixed": 7}, "symbol": {
                                                        "fixed": "img/icons/marker/circle.svg", "mode": "fixed"}}}))
    d = d.with_panel(
        geomap.Panel().title("Clinics on the map, by state").datasource(INFLUX).span(14).height(14)
        .description("Registry coordinates (lat, lon); clinics without them are left off the map.")
        .view(geomap.MapViewConfig().id("fit").zoom(6))
        # Grafana's default base layer (its tiles come from the internet unless geomap.default_baselayer
        # in grafana.ini names a local one); the clinics' markers need none.
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .tooltip(geomap.TooltipOptions().mode(geomodel.TooltipMode.DETAILS))
        .layers([layer]).mappings(state_mappings())
        .thresholds(db.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
            model.Threshold(value=None, color="green"), model.Threshold(value=1, color="orange"),
            model.Threshold(value=2, color="red"), model.Threshold(value=3, color="purple"),
            model.Threshold(value=4, color="blue")]))
        .with_target(influx(
            f'SELECT last("code") AS "code", last("state") AS "state", last("lat") AS "lat", last("lon") AS "lon", '
            f'last("name") AS "name", last("cause") AS "cause" FROM "clinic_status" WHERE {NOW} AND {FLEET} '
            f'GROUP BY "clinic"', fmt="table")))
    d = d.with_panel(
        table.Panel().title("Clinics not up").datasource(INFLUX).span(10).height(14)
        .description("Current state of every clinic that is not up, longest first.")
        .mappings(state_mappings())
        .sort_by([sort("since", False)])
        .with_target(influx(
            f'SELECT "name", "state", "cause", "reason", "since" FROM (SELECT last("name") AS "name", '
            f'last("state") AS "state", last("code") AS "code", last("cause") AS "cause", last("reason") AS "reason", '
            f'last("since_ms") AS "since" FROM "clinic_status" WHERE {NOW} AND {FLEET} GROUP BY "clinic") '
            f'WHERE "code" > 0', fmt="table"))
        .override_by_name("since", [model.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]))
    d = d.with_panel(
        table.Panel().title("Worst links, last 15 minutes").datasource(INFLUX).span(12).height(10)
        .description("ICMP towards each target: mean loss, RTT and jitter; worst loss first.")
        .sort_by([sort("loss %", True)])
        .with_target(influx(
            f'SELECT mean("loss_pct") AS "loss %", mean("rtt_avg_ms") AS "rtt ms", mean("jitter_ms") AS "jitter ms" '
            f'FROM "icmp" WHERE time > now() - 15m AND {FLEET} GROUP BY "clinic", "target"', fmt="table")))
    d = d.with_panel(
        table.Panel().title("Open incidents").datasource(INFLUX).span(12).height(10)
        .description("Incidents opened in the last 30 days and not closed: clinics affected now, cause, scope.")
        .with_transformation(model.DataTransformerConfig(id_val="filterByValue", options={
            "filters": [{"fieldName": "closed_ms", "config": {"id": "isNull", "options": {}}}],
            "type": "include", "match": "all"}))
        .with_target(influx(
            'SELECT last("open_clinics") AS "clinics now", last("clinics") AS "clinics", last("cause") AS "cause", '
            'last("scope") AS "scope", last("members") AS "members", last("opened_ms") AS "opened_ms", '
            'last("closed_ms") AS "closed_ms" FROM "incident" WHERE time > now() - 30d GROUP BY "incident"',
            fmt="table"))
        .override_by_name("opened_ms", [model.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")]))
    return d


def sort(field: str, desc: bool) -> cb.TableSortByFieldState:
    return cb.TableSortByFieldState().display_name(field).desc(desc)


# -- clinic detail -----------------------------------------------------------------------------------
def clinic() -> db.Dashboard:
    d = (db.Dashboard("ClinicWatch: clinic").uid("clinicwatch-clinic").tags(["clinicwatch"]).refresh("1m")
         .time("now-24h", "now").timezone("browser").tooltip(model.DashboardCursorSync.CROSSHAIR)
         .description("One clinic: its link towards each target, its devices, its agent; state changes, "
                      "outages and device events as annotations."))
    d = fleet_variables(d).with_variable(
        db.QueryVariable("clinic").label("Clinic").datasource(INFLUX).multi(False).include_all(False)
        .query(f'SHOW TAG VALUES FROM "clinic_status" WITH KEY = "clinic" WHERE {FLEET}')
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC))
    link = f"WHERE {ONE} AND $timeFilter"
    by_target = 'GROUP BY time($__interval), "target" fill(none)'
    d = (d.with_row(db.Row("Link"))
         .with_panel(series("RTT towards each target", f'SELECT mean("rtt_avg_ms") FROM "icmp" {link} {by_target}',
                            "ms", "$tag_target"))
         .with_panel(series("Loss towards each target", f'SELECT mean("loss_pct") FROM "icmp" {link} {by_target}',
                            "percent", "$tag_target"))
         .with_panel(series("Jitter towards each target", f'SELECT mean("jitter_ms") FROM "icmp" {link} {by_target}',
                            "ms", "$tag_target"))
         .with_panel(series("TCP connect", f'SELECT mean("connect_ms") FROM "tcp" {link} {by_target}', "ms",
                            "$tag_target",
                            description="The TCP handshake towards each target, of the TCP checks and of the "
                                        "HTTP(S) checks (the sample configuration has no TCP check of a port its "
                                        "HTTPS check connects to).",
                            more=((f'SELECT mean("connect_ms") FROM "http" {link} {by_target}',
                                   "$tag_target (HTTP check)"),)))
         .with_panel(series("DNS resolution", f'SELECT mean("resolve_ms") FROM "dns" {link} {by_target}', "ms",
                            "$tag_target"))
         .with_panel(
             timeseries.Panel().title("HTTP(S) timings").datasource(INFLUX).unit("ms").span(12).height(8)
             .with_target(influx(f'SELECT mean("connect_ms") AS "connect", mean("tls_ms") AS "tls", '
                                 f'mean("ttfb_ms") AS "first byte" FROM "http" {link} {by_target}',
                                 alias="$tag_target $col")))
         .with_panel(
             table.Panel().title("Failed probes and why").datasource(INFLUX).span(12).height(8)
             .description("Every failed ICMP, TCP, DNS and HTTP result in the range, newest first.")
             .sort_by([sort("Time", True)])
             .targets([influx(f'SELECT "reason", "target" FROM "{m}" WHERE {ONE} AND "success" = false AND '
                              f'$timeFilter', ref=ref, fmt="table")
                       for ref, m in zip("ABCD", ("icmp", "tcp", "dns", "http"))])
             .with_transformation(model.DataTransformerConfig(id_val="merge", options={})))
         .with_panel(
             table.Panel().title("Traceroute path changes").datasource(INFLUX).span(12).height(8)
             .description("Each traceroute whose path differed from the previous one towards the same target.")
             .with_target(influx(f'SELECT "path", "hops", "reached", "target" FROM "traceroute" WHERE {ONE} AND '
                                 f'"route_changed" = true AND $timeFilter', fmt="table"))))
    dev = f"WHERE {ONE} AND $timeFilter"
    by_if = 'GROUP BY time($__interval), "device", "interface" fill(none)'
    d = (d.with_row(db.Row("Devices"))
         .with_panel(
             timeseries.Panel().title("Interface traffic").datasource(INFLUX).unit("bps").span(12).height(8)
             .with_target(influx(f'SELECT mean("in_bps") AS "in", mean("out_bps") AS "out" FROM "snmp_if" {dev} '
                                 f'{by_if}', alias="$tag_device $tag_interface $col")))
         .with_panel(
             timeseries.Panel().title("Interface errors and discards").datasource(INFLUX).unit("pps").span(12)
             .height(8)
             .with_target(influx(f'SELECT mean("in_errors_ps") AS "in errors", mean("out_errors_ps") AS '
                                 f'"out errors", mean("in_discards_ps") AS "in discards", mean("out_discards_ps") '
                                 f'AS "out discards" FROM "snmp_if" {dev} {by_if}',
                                 alias="$tag_device $tag_interface $col")))
         .with_panel(
             timeseries.Panel().title("Cellular signal").datasource(INFLUX).unit("dB").span(12).height(8)
             .with_target(influx(f'SELECT mean("rssi_dbm") AS "rssi dBm", mean("rsrp_dbm") AS "rsrp dBm", '
                                 f'mean("rsrq_db") AS "rsrq dB", mean("sinr_db") AS "sinr dB" FROM "snmp_cellular" '
                                 f'{dev} GROUP BY time($__interval), "modem" fill(none)', alias="$tag_modem $col")))
         .with_panel(
             timeseries.Panel().title("UPS: battery and power").datasource(INFLUX).span(12).height(8)
             .with_target(influx(f'SELECT mean("charge_pct") AS "charge %", mean("minutes_remaining") AS '
                                 f'"minutes left", mean("input_voltage_v") AS "input V", mean("output_load_pct") AS '
                                 f'"load %" FROM "snmp_ups" {dev} GROUP BY time($__interval), "device" fill(none)',
                                 alias="$tag_device $col"))))
    d = (d.with_row(db.Row("Agent"))
         .with_panel(
             timeseries.Panel().title("Agent's outbox (unsent)").datasource(INFLUX).span(12).height(8)
             .with_target(influx(f'SELECT max("outbox_samples") AS "samples", max("outbox_events") AS "events", '
                                 f'max("oldest_unsent_age_s") AS "oldest age s" FROM "agent" {dev} '
                                 'GROUP BY time($__interval) fill(none)', alias="$col")))
         .with_panel(
             timeseries.Panel().title("Agent's own data use this month, and its budget").datasource(INFLUX)
             .unit("bytes").span(12).height(8)
             .description("What the agent put on the clinic's WAN this calendar month (UTC), by kind; the month "
                          "projected at its pace (after 6 h of counting); the budget if one is set "
                          "(data_budget_mb); its traffic to the clinic's own network apart; the outbox's size "
                          "(docs/agent.md, data use).")
             .targets([influx(f'SELECT max("wan_probes_month_bytes") AS "probes", max("wan_reporting_month_bytes") '
                              f'AS "reporting", max("wan_throughput_month_bytes") AS "throughput tests", '
                              f'max("wan_projected_month_bytes") AS "projected", max("data_budget_month_bytes") AS '
                              f'"budget", max("lan_month_bytes") AS "clinic network (not WAN)" FROM "agent" {dev} '
                              'GROUP BY time($__interval) fill(none)', alias="$col"),
                       influx(f'SELECT max("outbox_bytes") AS "outbox" FROM "agent" {dev} GROUP BY time($__interval) '
                              'fill(none)', ref="B", alias="$col")])))
    d = (d.annotation(annotation("State changes", "red",
                                 f'SELECT "state", "cause", "previous" FROM "clinic_state" WHERE {ONE} AND $timeFilter',
                                 "state", "cause"))
         .annotation(annotation("Device and agent events", "orange",
                                f'SELECT "kind", "interface", "seq" FROM "agent_event" WHERE {ONE} AND $timeFilter',
                                "kind", "kind"))
         .annotation(annotation("Outages", "purple",
                                f'SELECT "cause", "source", "duration_s" FROM "outage" WHERE {ONE} AND $timeFilter',
                                "cause", "source")))
    return d


def annotation(name: str, color: str, query: str, text: str, tags: str) -> db.AnnotationQuery:
    # The InfluxQL annotation (Grafana's `query`, `textColumn`, `tagsColumn`) is added by `render`:
    # the SDK's annotation model has no InfluxDB target.
    built = db.AnnotationQuery().name(name).datasource(INFLUX).enable(True).icon_color(color)
    ANNOTATIONS[name] = {"query": query, "textColumn": text, "tagsColumn": tags}
    return built


ANNOTATIONS: dict[str, dict[str, str]] = {}


# -- outages and SLA ---------------------------------------------------------------------------------
def sla() -> db.Dashboard:
    d = (db.Dashboard("ClinicWatch: outages and availability").uid("clinicwatch-sla").tags(["clinicwatch"])
         .refresh("5m").time("now-7d", "now").timezone("browser")
         .description("State over time, incidents and outages, availability over the chosen range: up and "
                      "degraded count as available, down as not, unknown and maintenance are left out "
                      "(as in `clinicwatch-collector report`)."))
    d = fleet_variables(d)
    d = d.with_panel(
        statetimeline.Panel().title("State of each clinic").datasource(INFLUX).span(24).height(12)
        .mappings(state_mappings()).show_value(common.VisibilityMode.NEVER).merge_values(True)
        .with_target(influx(f'SELECT last("state") FROM "clinic_status" WHERE $timeFilter AND {FLEET} '
                            'GROUP BY time($__interval), "clinic" fill(null)', alias="$tag_clinic")))
    d = d.with_panel(
        table.Panel().title("Availability per clinic").datasource(INFLUX).unit("percent").decimals(3).span(12)
        .height(10).sort_by([sort("availability", False)])
        .with_target(influx(f'SELECT mean("avail") * 100 AS "availability" FROM "clinic_status" WHERE $timeFilter '
                            f'AND {FLEET} GROUP BY "clinic"', fmt="table")))
    d = d.with_panel(
        table.Panel().title("Availability per region and ISP").datasource(INFLUX).unit("percent").decimals(3)
        .span(12).height(10)
        .targets([influx(f'SELECT mean("avail") * 100 AS "availability" FROM "clinic_status" WHERE $timeFilter AND '
                         f'{FLEET} GROUP BY "region"', fmt="table"),
                  influx(f'SELECT mean("avail") * 100 AS "availability" FROM "clinic_status" WHERE $timeFilter AND '
                         f'{FLEET} GROUP BY "isp"', ref="B", fmt="table")]))
    d = d.with_panel(
        table.Panel().title("Incidents").datasource(INFLUX).span(12).height(10)
        .sort_by([sort("Time", True)])
        .with_target(influx('SELECT "clinics", "open_clinics", "cause", "scope", "duration_s", "members" '
                            'FROM "incident" WHERE $timeFilter GROUP BY "incident"', fmt="table"))
        .override_by_name("duration_s", [model.DynamicConfigValue(id_val="unit", value="s")]))
    d = d.with_panel(
        table.Panel().title("Outages").datasource(INFLUX).span(12).height(10)
        .description("Every down interval: cause, and whether the collector saw it or the agent recorded it.")
        .sort_by([sort("Time", True)])
        .with_target(influx(f'SELECT "cause", "source", "duration_s", "revisions" FROM "outage" WHERE $timeFilter '
                            f'AND {FLEET} GROUP BY "clinic"', fmt="table"))
        .override_by_name("duration_s", [model.DynamicConfigValue(id_val="unit", value="s")]))
    return d


# -- collector health ------------------------------------------------------------------------------
def collector() -> db.Dashboard:
    """From the collector's own Prometheus metrics (`/metrics`), scraped by a Prometheus that Grafana reads."""
    d = (db.Dashboard("ClinicWatch: collector").uid("clinicwatch-collector").tags(["clinicwatch"]).refresh("1m")
         .time("now-6h", "now").timezone("browser")
         .description("The collector itself, from its Prometheus metrics: intake, rejects, writes, spool, "
                      "state engine, alerts, and when each clinic was last heard."))
    d = (d.with_panel(series_prom("Messages accepted per second, by kind",
                                  "sum by (kind) (rate(clinicwatch_messages_accepted_total[5m]))", "{{kind}}", "ops"))
         .with_panel(series_prom("Rejected per second, by reason",
                                 "sum by (reason) (rate(clinicwatch_messages_rejected_total[5m])) or "
                                 "sum by (reason) (rate(clinicwatch_records_rejected_total[5m]))", "{{reason}}", "ops"))
         .with_panel(series_prom("Points written per second", "sum(rate(clinicwatch_points_written_total[5m]))",
                                 "written", "ops"))
         .with_panel(series_prom("Mean write latency", "sum(rate(clinicwatch_write_seconds_total[5m])) / "
                                 "sum(rate(clinicwatch_writes_total[5m]))", "latency", "s"))
         .with_panel(series_prom("Spool (files waiting for the database)", "sum(clinicwatch_spool_files)", "files",
                                 "short"))
         .with_panel(series_prom("Write errors per second", "sum(rate(clinicwatch_write_errors_total[5m]))",
                                 "errors", "ops"))
         .with_panel(series_prom("State engine: CPU share of one core",
                                 "rate(clinicwatch_state_cpu_seconds_total[5m])", "state", "percentunit"))
         .with_panel(series_prom("Alerts by channel and status", "sum by (channel, status) "
                                 "(clinicwatch_notifications)", "{{channel}} {{status}}", "short"))
         .with_panel(
             table.Panel().title("Clinics by time since last heard").datasource(PROMETHEUS).unit("s").span(24)
             .height(10).sort_by([sort("Value", True)])
             .with_target(prom("time() - clinicwatch_clinic_last_seen_seconds", "{{clinic}}"))))
    return d


def series_prom(title: str, expr: str, legend: str, unit: str) -> timeseries.Panel:
    return (timeseries.Panel().title(title).datasource(PROMETHEUS).unit(unit).span(12).height(8)
            .with_target(prom(expr, legend)))


DASHBOARDS = {"clinicwatch-fleet": fleet, "clinicwatch-clinic": clinic, "clinicwatch-sla": sla,
              "clinicwatch-collector": collector}


def render(uid: str) -> str:
    ANNOTATIONS.clear()
    document = json.loads(json.dumps(DASHBOARDS[uid]().build(), cls=JSONEncoder))
    for entry in document.get("annotations", {}).get("list", []):
        entry.update(ANNOTATIONS.get(entry.get("name"), {}))
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the Grafana dashboards' JSON into dashboards/grafana/")
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    OUT.mkdir(exist_ok=True)
    for uid in DASHBOARDS:
        path, text = OUT / f"{uid}.json", render(uid)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"not current: {', '.join(stale)}; run .venv/bin/python -m dashboards.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
