"""The write pipeline: batches points, writes them, and only then acknowledges their messages.

Messages arrive from the intake with their MQTT packet id and their lines. A batch
is written when it holds `batch_points` points or its oldest has waited
`flush_interval_s`. Written: every message in it is acknowledged. The database down
or slow: a few quick retries, then the batch goes to the disk spool (fsynced) and is
acknowledged from there; the spool is replayed, oldest first, once writes succeed
again. Spool full: no more acknowledgements, so the broker keeps the messages.
Points the database refuses outright (a field whose type changed, say) are found by
writing halves of the batch again until each stands alone; only they are kept, with
the error, in `refused-points.jsonl`, the rest is stored, and the messages are
acknowledged: retrying cannot help.
"""

from __future__ import annotations

import json
import logging
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collector.ingest.spool import Spool
from collector.ingest.store import StoreError, Writer

log = logging.getLogger("clinicwatch.collector")
QUICK_RETRIES = 2
MAX_BACKOFF_S = 30.0


@dataclass
class PipelineStats:
    points_written: int = 0
    points_spooled: int = 0
    points_replayed: int = 0
    points_refused: int = 0
    write_errors: int = 0
    messages_acked: int = 0
    write_seconds_total: float = 0.0
    writes: int = 0


class Pipeline:
    def __init__(self, writer: Writer, spool: Spool, ack: Callable[[list[int]], None], refused_path: Path,
                 batch_points: int = 5000, flush_interval_s: float = 1.0) -> None:
        self.writer, self.spool, self.ack = writer, spool, ack
        self.refused_path = refused_path
        self.batch_points, self.flush_interval_s = batch_points, flush_interval_s
        # A deque and an event rather than queue.Queue: the validating thread appends for every message,
        # and a Queue's lock and condition cost it more than the append.
        self.inbox: collections.deque[tuple[int, list[str]] | None] = collections.deque()
        self._wake = threading.Event()
        self._idle = False
        self.stats = PipelineStats()
        self.healthy = True
        self._next_probe = 0.0
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def submit(self, mid: int, lines: list[str]) -> None:
        """Called for every received message once validated (lines may be empty: it is acked in turn)."""
        self.inbox.append((mid, lines))
        if self._idle:
            self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.inbox.append(None)
        self._wake.set()
        self._thread.join(timeout_s)

    # -- worker thread ----------------------------------------------------------
    def _run(self) -> None:
        mids: list[int] = []
        lines: list[str] = []
        oldest = 0.0
        while True:
            timeout = max(0.0, oldest + self.flush_interval_s - time.monotonic()) if mids else self.flush_interval_s
            item = self._next(timeout)
            if item is None:
                if mids:
                    self._write_batch(mids, lines)
                return
            if item:
                mid, new_lines = item  # type: ignore[misc]
                if not mids:
                    oldest = time.monotonic()
                mids.append(mid)
                lines.extend(new_lines)
            if mids and (len(lines) >= self.batch_points or time.monotonic() - oldest >= self.flush_interval_s):
                self._write_batch(mids, lines)
                mids, lines = [], []
            # Replay the spool between batches once writes work, and probe the database now and then if not.
            if not mids and (self.healthy or time.monotonic() >= self._next_probe):
                self._next_probe = time.monotonic() + 2.0
                self._replay_one()

    def _next(self, timeout: float) -> tuple[int, list[str]] | None | tuple[()]:
        """The next submitted item; () if none came within `timeout`."""
        try:
            return self.inbox.popleft()
        except IndexError:
            pass
        self._idle = True  # set before looking again, so a submit either is seen here or wakes us
        try:
            if not self.inbox:
                self._wake.wait(timeout)
            self._wake.clear()
            return self.inbox.popleft()
        except IndexError:
            return ()
        finally:
            self._idle = False

    def _write_batch(self, mids: list[int], lines: list[str]) -> None:
        backoff = 0.2
        attempt = 0
        while True:
            try:
                self._store(lines, "points_written")
                break
            except StoreError as exc:  # retryable: the database is down or overloaded
                lines = exc.unwritten  # type: ignore[attr-defined]
                self.healthy = False
                attempt += 1
                if attempt > QUICK_RETRIES and self.spool.has_room(lines):
                    self.spool.put(lines)
                    self.stats.points_spooled += len(lines)
                    log.warning("database unavailable: batch spooled to disk", extra={"fields": {
                        "points": len(lines), "error": str(exc)}})
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                if self._stop.is_set() and attempt > QUICK_RETRIES:
                    return  # shutting down with a full spool: leave the messages unacknowledged at the broker
        self.ack(mids)
        self.stats.messages_acked += len(mids)

    def _store(self, lines: list[str], counter: str) -> None:
        """Write `lines`, adding those stored to the stats' `counter`.

        Lines the database refuses outright (a parse error, a field whose type changed) are found by
        writing halves again until each refused line stands alone: they go to refused-points.jsonl and
        the rest is stored. (InfluxDB 1.x stores a batch's good lines even when it answers 400, others
        refuse the whole request; writing a stored line again is the same point again, so both end
        alike.) If the database becomes unavailable, the retryable StoreError is raised with
        `unwritten`: the lines not yet stored.
        """
        chunks = [lines]
        while chunks:
            chunk = chunks.pop()
            try:
                self._write(chunk)
            except StoreError as exc:
                self.stats.write_errors += 1
                if exc.retryable:
                    exc.unwritten = [line for c in chunks for line in c] + chunk  # type: ignore[attr-defined]
                    raise
                if len(chunk) == 1:
                    self._refuse(chunk, str(exc))
                else:
                    half = len(chunk) // 2
                    chunks += [chunk[half:], chunk[:half]]  # the first half is written first
                continue
            setattr(self.stats, counter, getattr(self.stats, counter) + len(chunk))

    def _write(self, lines: list[str]) -> None:
        start = time.perf_counter()
        self.writer(lines)
        self.stats.write_seconds_total += time.perf_counter() - start
        self.stats.writes += 1
        if not self.healthy:
            log.info("database writes succeed again", extra={"fields": {"spooled_files": len(self.spool.files())}})
        self.healthy = True

    def _replay_one(self) -> None:
        files = self.spool.files()
        if not files:
            return
        lines = self.spool.read(files[0])
        try:
            self._store(lines, "points_replayed")
        except StoreError as exc:
            self.healthy = False
            if len(exc.unwritten) < len(lines):  # type: ignore[attr-defined]
                self.spool.rewrite(files[0], exc.unwritten)  # type: ignore[attr-defined]
            return
        files[0].unlink()

    def _refuse(self, lines: list[str], error: str) -> None:
        self.stats.points_refused += len(lines)
        log.error("database refused points; kept in refused-points.jsonl", extra={"fields": {
            "points": len(lines), "error": error[:300]}})
        with open(self.refused_path, "a") as out:
            out.write(json.dumps({"error": error, "lines": lines}) + "\n")
