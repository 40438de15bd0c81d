"""The collector as a running service: the MQTT intake in this process, validation and storage
in a store process beside it (collector.ingest.store_side), self-metrics on a Prometheus endpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from collector.config import CollectorConfig
from collector.ingest.intake import Intake
from collector.ingest.store_side import StoreProcess

log = logging.getLogger("clinicwatch.collector")


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.intake = Intake(config.intake)
        self.store = StoreProcess(config, self.intake.ack)
        self.intake.handle = self.store.handle
        self.failed = self.store.failed
        self.metrics = CollectorRegistry()
        self.metrics.register(_Metrics(self))

    def start(self) -> None:
        self.store.start()
        self.intake.start()
        if self.config.metrics_port:
            start_http_server(self.config.metrics_port, self.config.metrics_host, registry=self.metrics)
        log.info("collector running", extra={"fields": {"store": self.config.store.kind,
                                                        "clinics": self.store.snapshot()["clinics"]}})

    def stop(self) -> None:
        """Everything received is written and acknowledged (or left for the broker to redeliver)."""
        self.store.stop()
        self.intake.stop()

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
        snapshot = self.service.snapshot()
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
                                value=1 if self.service.intake.connected.is_set() else 0)
        yield GaugeMetricFamily("clinicwatch_registry_reload_ok", "1 if the last registry reload worked",
                                value=1 if snapshot["registry_reload_ok"] else 0)
        seen = GaugeMetricFamily("clinicwatch_clinic_last_seen_seconds", "When each clinic was last heard from",
                                 labels=["clinic"])
        for clinic, ms in snapshot["last_seen_ms"].items():
            seen.add_metric([clinic], ms / 1000)
        yield seen
