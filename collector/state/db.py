"""The state engine on disk: one SQLite file (`data_dir/state.sqlite`, WAL, synchronous=FULL).

The engine's own state is kept as a snapshot plus a journal (event sourcing): every digest the engine
applied, every moment it judged the fleet, every registry or maintenance change, in the order they
happened. The engine is deterministic, so the snapshot with the journal replayed is the engine as it
was. Each second's commit holds, in one transaction, the journal since the last one, the state changes,
incidents and outage records that second produced, and the lines still to be written to the time-series
store; the engine acknowledges digests to the broker only after the commit that journals them. So a
SIGKILL at any point neither loses a fact (the broker sends it again) nor repeats a state change (the
journal that produced it is committed with it, and replaying it yields the state after it). When
snapshot_due says so, the whole engine is written and the journal before it dropped. Writing a clinic's whole
state at each of its reports cost more than the rest of the engine (bench.state_engine): the journal
costs a row per digest.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from collector.alerts import log as alerts_log
from collector.state.clinic import Transition
from collector.state.incidents import Incident
from collector.state.outages import Outage

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot (one INTEGER PRIMARY KEY CHECK (one = 1), journal_id INTEGER NOT NULL,
    format TEXT NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transition (
    id INTEGER PRIMARY KEY AUTOINCREMENT, clinic TEXT NOT NULL, at INTEGER NOT NULL, detected_at INTEGER NOT NULL,
    old TEXT NOT NULL, new TEXT NOT NULL, cause TEXT, reason TEXT, evidence TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transition_clinic_at ON transition (clinic, at);
CREATE TABLE IF NOT EXISTS incident (id TEXT PRIMARY KEY, opened INTEGER NOT NULL, closed INTEGER,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outage (id TEXT PRIMARY KEY, clinic TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outage_clinic_start ON outage (clinic, start);
CREATE TABLE IF NOT EXISTS blind (start INTEGER NOT NULL, end INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS export (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
"""
SNAPSHOT_FORMAT = "1"  # bump when the engine's classes change incompatibly
# A snapshot pickles every clinic's machine (0.39 s of CPU for 10,000 clinics, bench.state_engine) and spares
# a restart replaying the journal written since the last one (62 us a fact, decoding included). Written every
# `snapshot_s` whatever the journal held, a 10,000-clinic fleet paid a fifth of the state's CPU for
# snapshots: so one is written only once the facts journalled since the last number
# SNAPSHOT_FACTS_PER_CLINIC a clinic, which keeps a snapshot's share to a few us a fact and a restart's
# replay under a second per 1,000 clinics; and at the latest every SNAPSHOT_LONGEST x `snapshot_s`, so that
# a quiet fleet's journal of judgements stays short too.
SNAPSHOT_FACTS_PER_CLINIC = 10
SNAPSHOT_LONGEST = 12


def snapshot_due(elapsed_s: float, facts: int, clinics: int, every_s: float) -> bool:
    """Whether to write a snapshot, `elapsed_s` after the last one, with `facts` journalled since."""
    if elapsed_s < every_s:
        return False
    return facts >= SNAPSHOT_FACTS_PER_CLINIC * clinics or elapsed_s >= SNAPSHOT_LONGEST * every_s


class StateDB:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        alerts_log.create(self.db)
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # -- the engine's own state ----------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def load(self) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """The latest snapshot (None if none, or written by an incompatible version: documented) and the
        journal after it, in order."""
        with self.lock:
            row = self.db.execute("SELECT journal_id, format, blob FROM snapshot WHERE one = 1").fetchone()
            since = row[0] if row else 0
            journal = self.db.execute("SELECT kind, body FROM journal WHERE id > ? ORDER BY id", (since,)).fetchall()
        if row is not None and row[1] != SNAPSHOT_FORMAT:
            return None, []
        return (row[2] if row else None), [(kind, bytes(body)) for kind, body in journal]

    def commit(self, journal: list[tuple[str, bytes]], transitions: list[Transition], incidents: list[Incident],
               outages: list[Outage], blind: list[tuple[int, int]], lines: list[str], last_tick: int,
               notifications: list[alerts_log.Row] = (), muted: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        with self.lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO journal (kind, body) VALUES (?, ?)", journal)
                db.executemany(
                    "INSERT INTO transition (clinic, at, detected_at, old, new, cause, reason, evidence) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(t.clinic, t.at, t.detected_at, t.old, t.new, t.cause, t.reason, json.dumps(t.evidence))
                     for t in transitions])
                db.executemany("INSERT OR REPLACE INTO incident (id, opened, closed, doc) VALUES (?, ?, ?, ?)",
                               [(i.id, i.opened, i.closed, json.dumps(i.as_dict())) for i in incidents])
                db.executemany("INSERT OR REPLACE INTO outage (id, clinic, start, end, doc) VALUES (?, ?, ?, ?, ?)",
                               [(o.id, o.clinic, o.start, o.end, json.dumps(o.as_dict())) for o in outages])
                db.executemany("INSERT INTO blind (start, end) VALUES (?, ?)", blind)
                db.executemany("INSERT INTO export (line) VALUES (?)", [(line,) for line in lines])
                alerts_log.insert(db, list(notifications), set(muted))
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_tick', ?)", (str(last_tick),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def snapshot(self, blob: bytes) -> None:
        """The whole engine as of the last commit; the journal before it is no longer needed."""
        with self.lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                last = db.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0]
                db.execute("INSERT OR REPLACE INTO snapshot (one, journal_id, format, blob) VALUES (1, ?, ?, ?)",
                           (last, SNAPSHOT_FORMAT, blob))
                db.execute("DELETE FROM journal WHERE id <= ?", (last,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- lines for the time-series store ---------------------------------------------------------------
    def pending_lines(self, limit: int) -> list[tuple[int, str]]:
        with self.lock:
            return self.db.execute("SELECT id, line FROM export ORDER BY id LIMIT ?", (limit,)).fetchall()

    def lines_done(self, upto_id: int) -> None:
        with self.lock:
            self.db.execute("DELETE FROM export WHERE id <= ?", (upto_id,))

    def pending_count(self) -> int:
        with self.lock:
            return self.db.execute("SELECT count(*) FROM export").fetchone()[0]

    # -- reading (API and report) ---------------------------------------------------------------------
    def transitions(self, clinic: str | None = None, since: int | None = None, until: int | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT clinic, at, detected_at, old, new, cause, reason, evidence FROM transition WHERE 1=1", []
        if clinic is not None:
            query, args = query + " AND clinic = ?", [*args, clinic]
        if since is not None:
            query, args = query + " AND at >= ?", [*args, since]
        if until is not None:
            query, args = query + " AND at < ?", [*args, until]
        query += " ORDER BY id"
        with self.lock:
            rows = self.db.execute(query, args).fetchall()
        out = [{"clinic": r[0], "at": r[1], "detected_at": r[2], "old": r[3], "new": r[4], "cause": r[5],
                "reason": r[6], "evidence": json.loads(r[7])} for r in rows]
        return out[-limit:] if limit else out

    def outages(self, clinic: str | None = None, since: int | None = None,
                until: int | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT doc FROM outage WHERE 1=1", []
        if clinic is not None:
            query, args = query + " AND clinic = ?", [*args, clinic]
        if since is not None:
            query, args = query + " AND (end IS NULL OR end > ?)", [*args, since]
        if until is not None:
            query, args = query + " AND start < ?", [*args, until]
        with self.lock:
            rows = self.db.execute(query + " ORDER BY start", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def incidents(self, open_only: bool = False, since: int | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT doc FROM incident WHERE 1=1", []
        if open_only:
            query += " AND closed IS NULL"
        if since is not None:
            query, args = query + " AND (closed IS NULL OR closed > ?)", [*args, since]
        with self.lock:
            rows = self.db.execute(query + " ORDER BY opened", args).fetchall()
        return [json.loads(r[0]) for r in rows]

    def incident(self, incident: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute("SELECT doc FROM incident WHERE id = ?", (incident,)).fetchone()
        return json.loads(row[0]) if row else None

    def blind(self, since: int | None = None, until: int | None = None) -> list[tuple[int, int]]:
        with self.lock:
            rows = self.db.execute("SELECT start, end FROM blind ORDER BY start").fetchall()
        return [(a, b) for a, b in rows if (since is None or b > since) and (until is None or a < until)]

