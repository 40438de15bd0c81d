"""The collector as a running service: the MQTT intake in this process, validation and storage
in a store process beside it (collector.ingest.store_side), self-metrics on a Prometheus endpoint."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from collector.config import CollectorConfig
from collector.ingest.intake import Intake
from collector.ingest.store_side import StoreProcess
from collector.state.service import STATE_CODES, StateService
from collector.web.api import Api
from collector.web.statuspage import StatusPage

log = logging.getLogger("clinicwatch.collector")


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.intake = Intake(config.intake)
        self.store = StoreProcess(config, self.intake.ack, self.intake.publish_facts)
        self.intake.handle = self.store.handle
        self.failed = self.store.failed
        self.state = StateService(config) if config.state.engine else None
        self.metrics = CollectorRegistry()
        # Three collectors, each naming its families (describe), so that a scrape asking for some of them
        # by name (`/metrics?name[]=...`, Prometheus' convention) builds only those: the per-clinic
        # families have one sample per clinic (five per clinic for the state).
        self.metrics.register(_Metrics(self))
        self.metrics.register(_LastSeen(self))
        if self.state is not None:
            self.metrics.register(_StateMetrics(self.state))
        self.api: Api | None = None

    def start(self) -> None:
        if self.state is not None:
            self.state.start()
        self.store.start()
        self.intake.start()
        if self.config.metrics_port:
            page = self.config.status_page
            status = StatusPage(page, self.state) if page.enabled and self.state is not None else None
            auth = (page.basic_auth.user, page.basic_auth.password()) if page.basic_auth is not None else None
            self.api = Api(self.config.metrics_host, self.config.metrics_port, self.metrics, self.state, status, auth)
            self.api.start()
        log.info("collector running", extra={"fields": {"store": self.config.store.kind,
                                                        "clinics": self.store.snapshot()["clinics"]}})

    def stop(self) -> None:
        """Everything received is written and acknowledged (or left for the broker to redeliver)."""
        self.store.stop()
        self.intake.stop()
        if self.state is not None:
            self.state.stop()
        if self.api is not None:
            self.api.stop()

    def reload_registry(self) -> bool:
        """Check the registry file now (the store process also does every 10 s)."""
        return self.store.reload_registry()

    def snapshot(self) -> dict:
        """The store process's latest counters (at most a moment old): accepted, rejected, rejected_records,
        last_seen_ms, pipeline, spool_files, registry_reload_ok, clinics."""
        return self.store.snapshot()


class _Metrics(PromCollector):
    """Reads the latest counters at scrape time (no module-level metric objects)."""

    def __init__(self, service: Collector) -> None:
        self.service = service

    def collect(self) -> Iterator[object]:
        return _ingest_metrics(self.service.snapshot(), self.service.intake.connected.is_set())

    def describe(self) -> Iterator[object]:
        nothing = {"accepted": {}, "rejected": {}, "rejected_records": {}, "pipeline": defaultdict(int),
                   "spool_files": 0, "registry_reload_ok": True}
        return _names_only(_ingest_metrics(nothing, False))


def _ingest_metrics(snapshot: dict, subscribed: bool) -> Iterator[object]:
    stats = snapshot["pipeline"]
    accepted = CounterMetricFamily("clinicwatch_messages_accepted", "Valid messages", labels=["kind"])
    for kind, count in snapshot["accepted"].items():
        accepted.add_metric([kind], count)
    yield accepted
    rejected = CounterMetricFamily("clinicwatch_messages_rejected", "Rejected messages, kept in dead letters",
                                   labels=["reason"])
    for reason, count in snapshot["rejected"].items():
        rejected.add_metric([reason], count)
    yield rejected
    records = CounterMetricFamily("clinicwatch_records_rejected", "Samples and events left out of an otherwise "
                                  "valid message (the message is kept in dead letters)", labels=["reason"])
    for reason, count in snapshot["rejected_records"].items():
        records.add_metric([reason], count)
    yield records
    for key, text in (
            ("points_written", "Points the database accepted"),
            ("points_spooled", "Points written to the disk spool"),
            ("points_replayed", "Spooled points written later"),
            ("points_refused", "Points the database refused (kept aside)"),
            ("write_errors", "Failed write attempts"),
            ("messages_acked", "Messages acknowledged to the broker"),
            ("write_seconds_total", "Time spent in database writes"),
            ("writes", "Database write calls")):
        yield CounterMetricFamily(f"clinicwatch_{key.removesuffix('_total')}", text, value=stats[key])
    yield GaugeMetricFamily("clinicwatch_spool_files", "Batches waiting in the spool",
                            value=snapshot["spool_files"])
    yield GaugeMetricFamily("clinicwatch_intake_subscribed",
                            "1 while connected to the broker with the subscriptions granted",
                            value=1 if subscribed else 0)
    yield GaugeMetricFamily("clinicwatch_registry_reload_ok", "1 if the last registry reload worked",
                            value=1 if snapshot["registry_reload_ok"] else 0)


class _LastSeen(PromCollector):
    def __init__(self, service: Collector) -> None:
        self.service = service

    def collect(self) -> Iterator[object]:
        seen = GaugeMetricFamily("clinicwatch_clinic_last_seen_seconds", "When each clinic was last heard from",
                                 labels=["clinic"])
        for clinic, ms in self.service.snapshot()["last_seen_ms"].items():
            seen.add_metric([clinic], ms / 1000)
        yield seen

    def describe(self) -> Iterator[object]:
        yield GaugeMetricFamily("clinicwatch_clinic_last_seen_seconds", "", labels=["clinic"])


class _StateMetrics(PromCollector):
    def __init__(self, state: StateService) -> None:
        self.state = state

    def collect(self) -> Iterator[object]:
        return _state_metrics(self.state.snapshot())

    def describe(self) -> Iterator[object]:
        nothing = {"states": {}, "open_incidents": 0, "blind": False, "counters": defaultdict(int), "cpu_s": 0,
                   "transitions": {}, "notifications": {}, "attempts": {}}
        return _names_only(_state_metrics(nothing))


def _names_only(families: Iterator[object]) -> Iterator[object]:
    for family in families:
        family.samples = []  # type: ignore[attr-defined]
        yield family


def _state_metrics(snapshot: dict) -> Iterator[object]:
    states = GaugeMetricFamily("clinicwatch_clinic_state", "1 for each clinic's current state, 0 for the others",
                               labels=["clinic", "state"])
    for clinic, current in snapshot["states"].items():
        for name in STATE_CODES:
            states.add_metric([clinic, name], 1 if name == current else 0)
    yield states
    yield GaugeMetricFamily("clinicwatch_incidents_open", "Open incidents", value=snapshot["open_incidents"])
    yield GaugeMetricFamily("clinicwatch_state_blind", "1 while the state engine hears from no ingest process",
                            value=1 if snapshot["blind"] else 0)
    transitions = CounterMetricFamily("clinicwatch_state_transitions", "State changes, by the state entered",
                                      labels=["state"])
    for name, count in snapshot["transitions"].items():
        transitions.add_metric([name], count)
    yield transitions
    counters = snapshot["counters"]
    yield CounterMetricFamily("clinicwatch_state_facts", "Facts the state engine applied", value=counters["facts"])
    yield CounterMetricFamily("clinicwatch_state_cpu_seconds", "CPU time of the state engine's threads (reading "
                              "digests, judging, committing, writing its points, sending alerts)", value=snapshot["cpu_s"])
    yield CounterMetricFamily("clinicwatch_state_bad_digests", "Digests the state engine could not read",
                              value=counters["bad_digests"])
    yield CounterMetricFamily("clinicwatch_state_lines_written", "State, outage and incident points stored",
                              value=counters["lines_written"])
    yield CounterMetricFamily("clinicwatch_state_export_errors", "Failed writes of state points (retried)",
                              value=counters["export_errors"])
    for family, name, text, labels, counts in (
            (GaugeMetricFamily, "clinicwatch_notifications", "Alert messages in the notification log, by channel "
             "and status (pending, retry, sent, failed, expired, muted)", ["channel", "status"],
             snapshot["notifications"]),
            (CounterMetricFamily, "clinicwatch_notification_attempts", "Attempts to send an alert message since "
             "start, by channel and outcome (delivered, retry, give_up, expired)", ["channel", "outcome"],
             snapshot["attempts"])):
        metric = family(name, text, labels=labels)
        for key, count in sorted(counts.items()):
            metric.add_metric(list(key), count)
        yield metric
