"""The collector as a running service: intake -> validate -> pipeline -> store, with its
registry reloaded when the file changes and its self-metrics on a Prometheus endpoint."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from collector.config import CollectorConfig
from collector.intake import Intake
from collector.pipeline import Pipeline
from collector.registry import RegistryError, load_registry
from collector.spool import Spool
from collector.store import make_writer
from collector.validate import DeadLetters, Validator

log = logging.getLogger("clinicwatch.collector")
REGISTRY_CHECK_S = 10.0


class Collector:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.validator = Validator(load_registry(config.registry), DeadLetters(config.data_dir / "dead-letters.jsonl"))
        self.registry_mtime = config.registry.stat().st_mtime
        self.registry_reload_ok = True
        self.intake = Intake(config.intake, self.validator)
        self.spool = Spool(config.data_dir / "spool", int(config.spool_max_mb * 1024 * 1024))
        self.pipeline = Pipeline(make_writer(config.store), self.spool, self.intake.ack,
                                 config.data_dir / "refused-points.jsonl", config.store.batch_points,
                                 config.store.flush_interval_s)
        self.intake.pipeline = self.pipeline
        self._stop = threading.Event()
        self.metrics = CollectorRegistry()
        self.metrics.register(_Metrics(self))

    def start(self) -> None:
        self.pipeline.start()
        self.intake.start()
        if self.config.metrics_port:
            start_http_server(self.config.metrics_port, self.config.metrics_host, registry=self.metrics)
        threading.Thread(target=self._watch_registry, name="registry", daemon=True).start()
        log.info("collector running", extra={"fields": {"store": self.config.store.kind,
                                                        "clinics": len(self.validator.series[0])}})

    def stop(self) -> None:
        self._stop.set()
        self.intake.stop()
        self.pipeline.stop()

    def _watch_registry(self) -> None:
        while not self._stop.wait(REGISTRY_CHECK_S):
            self.reload_registry()

    def reload_registry(self) -> bool:
        try:
            mtime = self.config.registry.stat().st_mtime
            if mtime == self.registry_mtime:
                return self.registry_reload_ok
            registry = load_registry(self.config.registry)
        except (OSError, RegistryError) as exc:
            self.registry_reload_ok = False
            log.error("registry reload failed; keeping the previous one", extra={"fields": {"error": str(exc)}})
            return False
        self.validator.set_registry(registry)
        self.registry_mtime, self.registry_reload_ok = mtime, True
        log.info("registry reloaded", extra={"fields": {"clinics": len(registry.clinics)}})
        return True


class _Metrics(PromCollector):
    """Reads the live counters at scrape time (no module-level metric objects)."""

    def __init__(self, service: Collector) -> None:
        self.service = service

    def collect(self) -> Iterator[object]:
        validator, stats, spool = self.service.validator, self.service.pipeline.stats, self.service.spool
        accepted = CounterMetricFamily("clinicwatch_messages_accepted", "Valid messages", labels=["kind"])
        for kind, count in validator.accepted.items():
            accepted.add_metric([kind], count)
        yield accepted
        rejected = CounterMetricFamily("clinicwatch_messages_rejected", "Rejected messages, kept in dead letters",
                                       labels=["reason"])
        for reason, count in validator.rejected.items():
            rejected.add_metric([reason], count)
        yield rejected
        for name, value, text in (
                ("points_written", stats.points_written, "Points the database accepted"),
                ("points_spooled", stats.points_spooled, "Points written to the disk spool"),
                ("points_replayed", stats.points_replayed, "Spooled points written later"),
                ("points_refused", stats.points_refused, "Points the database refused (kept aside)"),
                ("write_errors", stats.write_errors, "Failed write attempts"),
                ("messages_acked", stats.messages_acked, "Messages acknowledged to the broker"),
                ("write_seconds", stats.write_seconds_total, "Time spent in database writes")):
            yield CounterMetricFamily(f"clinicwatch_{name}", text, value=value)
        yield CounterMetricFamily("clinicwatch_writes", "Database write calls", value=stats.writes)
        files = spool.files()
        yield GaugeMetricFamily("clinicwatch_spool_files", "Batches waiting in the spool", value=len(files))
        yield GaugeMetricFamily("clinicwatch_intake_subscribed",
                                "1 while connected to the broker with the subscriptions granted",
                                value=1 if self.service.intake.connected.is_set() else 0)
        yield GaugeMetricFamily("clinicwatch_registry_reload_ok", "1 if the last registry reload worked",
                                value=1 if self.service.registry_reload_ok else 0)
        seen = GaugeMetricFamily("clinicwatch_clinic_last_seen_seconds", "When each clinic was last heard from",
                                 labels=["clinic"])
        for clinic, ms in validator.last_seen_ms.items():
            seen.add_metric([clinic], ms / 1000)
        yield seen
