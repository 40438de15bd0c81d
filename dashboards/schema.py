"""The measurements, tags and fields ClinicWatch stores (docs/collector.md), as data: what the
dashboards may name. Probe fields come from the probe registry itself (agent/probes); the rest is
written here beside the code that writes them, and tests/test_dashboards.py checks every dashboard
query against it and, on a real InfluxDB filled by the real collector, that the fields arrive.
"""

from __future__ import annotations

from agent.probes.docs import declared

CLINIC_TAGS = frozenset({"clinic", "region", "isp", "link"})
PROBES = ("icmp", "tcp", "dns", "http", "traceroute", "throughput")


def _probe(kind: str) -> tuple[frozenset[str], frozenset[str]]:
    tags = CLINIC_TAGS | {"target"} | ({"method"} if kind == "icmp" else set())
    return frozenset(tags), frozenset(declared(kind)[0] | {"time_bound_ms"})


SNMP_TAGS = CLINIC_TAGS | {"device"}
MEASUREMENTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    **{kind: _probe(kind) for kind in PROBES},
    # agent/runtime.py, _self_metrics_job
    "agent": (CLINIC_TAGS, frozenset({
        "outbox_samples", "outbox_events", "outbox_bytes", "oldest_unsent_age_s", "thinned_total",
        "published_records", "publish_refused", "last_publish_age_s", "connected", "version", "uptime_s",
        "cpu_s", "rss_kib", "time_bound_ms", "wan_month_bytes", "wan_probes_month_bytes", "wan_reporting_month_bytes",
        "wan_throughput_month_bytes", "lan_month_bytes", "wan_projected_month_bytes", "data_budget_month_bytes"})),
    # docs/snmp.md
    "snmp_device": (SNMP_TAGS | {"profile"}, frozenset({"status", "reachable", "detail", "uptime_s", "requests",
                                                       "poll_ms", "time_bound_ms"})),
    "snmp_system": (SNMP_TAGS, frozenset({"host_uptime_s", "response_ms", "name", "time_bound_ms"})),
    "snmp_if": (SNMP_TAGS | {"interface"}, frozenset({
        "oper_up", "oper_status", "admin_up", "speed_bps", "in_bps", "out_bps", "in_errors_ps", "out_errors_ps",
        "in_discards_ps", "out_discards_ps", "counter_bits", "time_bound_ms"})),
    "snmp_host": (SNMP_TAGS, frozenset({"cpus", "cpu_load_pct", "mem_total_bytes", "mem_used_bytes", "mem_used_pct",
                                        "time_bound_ms"})),
    "snmp_storage": (SNMP_TAGS | {"storage"}, frozenset({"size_bytes", "used_bytes", "used_pct", "time_bound_ms"})),
    "snmp_ups": (SNMP_TAGS, frozenset({
        "on_battery", "output_source", "battery_status", "charge_pct", "minutes_remaining", "seconds_on_battery",
        "battery_voltage_v", "input_voltage_v", "output_load_pct", "alarms", "time_bound_ms"})),
    "snmp_cellular": (SNMP_TAGS | {"modem"}, frozenset({
        "rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db", "operator", "technology", "registration", "cell_id",
        "time_bound_ms"})),
    # An event's detail keys are its fields (docs/snmp.md, docs/agent.md); the dashboards name only these.
    "agent_event": (CLINIC_TAGS | {"kind"}, frozenset({
        "seq", "time_bound_ms", "interface", "status", "previous", "uptime_s", "charge_pct", "minutes_remaining",
        "input_voltage_v", "error"})),
    "agent_status": (CLINIC_TAGS, frozenset({"state", "boot", "agent", "reason", "quiet_max_s"})),
    # collector/state/service.py
    "clinic_state": (CLINIC_TAGS, frozenset({"state", "code", "previous", "cause", "reason", "detected_ms"})),
    "clinic_status": (CLINIC_TAGS, frozenset({"state", "code", "avail", "cause", "reason", "since_ms",
                                              "last_heard_ms", "name", "lat", "lon"})),
    "outage": (CLINIC_TAGS, frozenset({"start_ms", "end_ms", "duration_s", "cause", "source", "revisions"})),
    "incident": (frozenset({"incident"}), frozenset({"clinics", "open_clinics", "members", "scope", "cause",
                                                     "opened_ms", "closed_ms", "duration_s"})),
}
