"""The collector's store side: validation, the write pipeline, the spool and the registry, run in a
process of its own beside the MQTT intake.

Why a second process: paho's receive path and the contract's validation are both Python, and in one
process they take turns on one core under the GIL. Split, the intake process does only MQTT (receive,
hand over, acknowledge) and this one validates and writes, so both cores work (bench.collector_ingest).

Protocol over one multiprocessing pipe, every frame pickled:
  intake -> store:  [(mid, qos, topic, payload, received_ms, held_s), ...]   a batch of received messages
                    ("reload",)                         check the registry file now; answered
                    None                                drain, write, acknowledge, stop; answered
  store -> intake:  ("facts", bytes)                    what clinic state needs from the messages handled
                                                        so far (collector.state.digest), sent before the
                                                        acknowledgement of any of them; at least every
                                                        FACTS_S, empty or not (the state engine's sign that
                                                        ingest is running)
                    ("ack", bytes)                      packet ids (array 'i') to acknowledge
                    ("stats", dict)                     counters for /metrics, every STATS_S
                    ("reloaded", bool) / ("stopped",)   answers
If the intake process dies, the store sees the pipe close and exits at once: nothing it holds was
acknowledged, so the broker redelivers it to the next collector. If the store process dies, the
intake stops too (`failed`), for the service manager to restart both.
"""

from __future__ import annotations

import array
import logging
import os
import pickle
import queue
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

from collector.ingest.agentclock import AgentClocks
from collector.config import CollectorConfig
from collector.ingest.pipeline import Pipeline
from collector.registry import RegistryError, load_registry
from collector.ingest.spool import Spool
from collector.ingest.store import make_writer
from collector.ingest.validate import DeadLetters, Validator
from collector.state import digest
from collector.state.facts import Fact

log = logging.getLogger("clinicwatch.collector")
REGISTRY_CHECK_S = 10.0
STATS_S = 0.5
FACTS_S = 0.25  # facts wait at most this long (and come at least this often: ingest's heartbeat)
HANDOVER_BATCH = 256  # messages per frame to the store process
HANDOVER_S = 0.01  # a partial frame waits at most this long


class Store:
    """Validation and storage for received messages; acknowledgements go out through `ack`."""

    def __init__(self, config: CollectorConfig, ack: Any) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.facts: list[Fact] = []
        self.facts_lock = threading.Lock()
        self.validator = Validator(load_registry(config.registry), DeadLetters(config.data_dir / "dead-letters.jsonl"),
                                   AgentClocks(config.data_dir / "agent-clocks.log"), facts=self._facts)
        self.registry_mtime = config.registry.stat().st_mtime
        self.registry_reload_ok = True
        self.spool = Spool(config.data_dir / "spool", int(config.spool_max_mb * 1024 * 1024))
        self.pipeline = Pipeline(make_writer(config.store), self.spool, ack, config.data_dir / "refused-points.jsonl",
                                 config.store.batch_points, config.store.flush_interval_s)

    def _facts(self, facts: list[Fact]) -> None:
        with self.facts_lock:
            self.facts.extend(facts)

    def take_facts(self) -> list[Fact]:
        with self.facts_lock:
            facts, self.facts = self.facts, []
        return facts

    def start(self) -> None:
        self.pipeline.start()

    def stop(self) -> None:
        self.pipeline.stop()

    def handle(self, mid: int, qos: int, topic: str, payload: bytes, received_ms: int, held_s: int | None) -> None:
        lines = self.validator.lines(topic, payload, received_ms, held_s)
        if qos == 0:
            if lines:
                self.pipeline.submit(-1, lines)
            return
        # A rejected message (kept in the dead letters) is acknowledged in turn with the others.
        self.pipeline.submit(mid, lines or [])

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

    def snapshot(self) -> dict[str, Any]:
        validator = self.validator
        return {"accepted": dict(validator.accepted), "rejected": dict(validator.rejected),
                "rejected_records": dict(validator.rejected_records),
                "last_seen_ms": dict(validator.last_seen_ms), "pipeline": asdict(self.pipeline.stats),
                "spool_files": len(self.spool.files()), "registry_reload_ok": self.registry_reload_ok,
                "clinics": len(validator.tags)}


def store_main(config: CollectorConfig, conn: Any) -> None:
    """The store process. Stops only when the intake says so or its pipe closes."""
    from wire import logs

    logs.setup()
    # The service manager signals the whole group; the intake decides when this side stops.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()

    def send(frame: object) -> None:
        data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        with send_lock:
            conn.send_bytes(data)

    store: Store | None = None
    facts_sent = [time.monotonic()]

    def send_facts() -> None:
        # Under the send lock: facts of a message always go out before its acknowledgement.
        assert store is not None
        facts = store.take_facts()
        send(("facts", digest.encode(facts, config.intake.client_id)))
        facts_sent[0] = time.monotonic()

    def ack(mids: list[int]) -> None:
        with facts_lock:
            send_facts()
            send(("ack", array.array("i", mids).tobytes()))

    facts_lock = threading.Lock()
    store = Store(config, ack)
    store.start()
    send(("stats", store.snapshot()))
    next_stats = time.monotonic() + STATS_S
    next_registry = time.monotonic() + REGISTRY_CHECK_S
    while True:
        try:
            ready = conn.poll(FACTS_S)
            frame = pickle.loads(conn.recv_bytes()) if ready else ()
        except (EOFError, OSError):
            os._exit(0)  # the intake is gone: unacknowledged messages go back to the broker
        if isinstance(frame, list):
            for message in frame:
                store.handle(*message)
        elif frame is None:
            store.stop()
            store.validator.clocks.close()
            send(("stats", store.snapshot()))
            send(("stopped",))
            return
        elif frame == ("reload",):
            send(("reloaded", store.reload_registry()))
            next_registry = time.monotonic() + REGISTRY_CHECK_S
        now = time.monotonic()
        if now - facts_sent[0] >= FACTS_S or len(store.facts) >= digest.MAX_FACTS:
            with facts_lock:
                send_facts()
        if now >= next_registry:
            store.reload_registry()
            next_registry = now + REGISTRY_CHECK_S
        if now >= next_stats:
            send(("stats", store.snapshot()))
            next_stats = now + STATS_S


class StoreProcess:
    """The intake's handle on the store process: hands messages over in batches, applies its
    acknowledgements, keeps its latest counters."""

    def __init__(self, config: CollectorConfig, ack: Any, facts: Any) -> None:
        import multiprocessing

        self.config, self.ack, self.facts = config, ack, facts
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._conn, child = context.Pipe()
        self._process = context.Process(target=store_main, args=(config, child), name="clinicwatch-store",
                                        daemon=True)
        self._child_conn = child
        self._batch: list[tuple[int, int, str, bytes, int, int | None]] = []
        self._lock = threading.Lock()
        self._answers: queue.Queue[tuple] = queue.Queue()
        self._stats: dict[str, Any] | None = None
        self._have_stats = threading.Event()
        self._stopping = self._closed = False
        self.failed = threading.Event()

    def start(self) -> None:
        self._process.start()
        self._child_conn.close()
        threading.Thread(target=self._receive, name="store-receive", daemon=True).start()
        threading.Thread(target=self._hand_over_partial, name="store-handover", daemon=True).start()
        deadline = time.monotonic() + 60
        while not self._have_stats.wait(0.2):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self._stopping = True
                self._process.kill()
                raise RuntimeError(f"the collector's store process did not start (exit code "
                                   f"{self._process.exitcode}); its error is logged above")

    def handle(self, mid: int, qos: int, topic: str, payload: bytes, received_ms: int, held_s: int | None) -> None:
        """Called by the intake's MQTT thread for every message."""
        with self._lock:  # the hand-over thread swaps the batch: an append must not land in a sent one
            if self._closed:
                return  # stopping: left unacknowledged, so the broker redelivers it
            self._batch.append((mid, qos, topic, payload, received_ms, held_s))
            if len(self._batch) >= HANDOVER_BATCH:
                batch, self._batch = self._batch, []
                self._send(batch)

    def _hand_over(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
            if batch:
                self._send(batch)

    def _send(self, frame: object) -> None:
        try:
            self._conn.send_bytes(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            self._lost()

    def _hand_over_partial(self) -> None:
        while not self._stopping:
            time.sleep(HANDOVER_S)
            if self._batch:
                self._hand_over()

    def _receive(self) -> None:
        while True:
            try:
                kind, *rest = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                if not self._stopping:
                    self._lost()
                return
            if kind == "facts":
                self.facts(rest[0])
            elif kind == "ack":
                mids = array.array("i")
                mids.frombytes(rest[0])
                self.ack(mids)
            elif kind == "stats":
                self._stats = rest[0]
                self._have_stats.set()
            else:
                if kind == "stopped":
                    self._stopping = True  # the pipe closing next is the normal end
                self._answers.put((kind, *rest))

    def _lost(self) -> None:
        if not self.failed.is_set():
            log.error("the collector's store process ended; stopping so that both restart",
                      extra={"fields": {"exitcode": self._process.exitcode}})
            self.failed.set()

    def snapshot(self) -> dict[str, Any]:
        assert self._stats is not None
        return self._stats

    def reload_registry(self) -> bool:
        with self._lock:
            self._send(("reload",))
        kind, ok = self._answers.get(timeout=60)
        return bool(ok)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Hand over what is left, let the store write and acknowledge it, then end it."""
        self._closed = True
        if not self.failed.is_set():
            self._hand_over()
            with self._lock:
                self._send(None)
            try:
                self._answers.get(timeout=timeout_s)
            except queue.Empty:
                log.error("the store process did not stop in time; ending it")
        self._stopping = True
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
