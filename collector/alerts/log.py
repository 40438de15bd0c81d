"""The notification log: every message the policy decided, one row per channel, written before it is
sent and marked after (table `notification` in the state database, collector.state.db).

Rows are inserted in the same transaction as the state changes that caused them (the engine's commit
each second), so a collector killed at any point neither loses an intended message (the engine decides
again from its journal and inserts the same keys, which the table holds once) nor sends it twice
because it was decided twice. The dispatcher (collector.alerts.dispatch) sends pending rows and marks
each `sent`, `retry` (with the next try's time), `failed` (the channel gave up) or `expired` (not
delivered by its deadline); a muted message is recorded `muted` and never sent. A collector killed
between sending and marking sends that one message again after its restart: at least once, since no
channel here can be asked afterwards whether a message arrived; each carries its key (a webhook's
`Idempotency-Key` header and `key` field, an email's Message-ID) so a receiver can drop the copy.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS notification (
    key TEXT NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL, recipient TEXT NOT NULL,
    incident TEXT NOT NULL, kind TEXT NOT NULL, decided INTEGER NOT NULL, deadline INTEGER NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try INTEGER NOT NULL,
    done INTEGER, error TEXT, doc TEXT NOT NULL, PRIMARY KEY (key, channel, address));
CREATE INDEX IF NOT EXISTS notification_due ON notification (status, next_try);
"""
PENDING, RETRY, SENT, FAILED, EXPIRED, MUTED = "pending", "retry", "sent", "failed", "expired", "muted"


@dataclass(frozen=True)
class Row:
    key: str
    channel: str
    address: str
    recipient: str
    incident: str
    kind: str
    decided: int
    deadline: int
    attempts: int
    doc: dict[str, Any]


def create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def insert(db: sqlite3.Connection, rows: list[Row], muted: set[str]) -> None:
    """Inside the caller's transaction; a key already there is left as it is."""
    db.executemany(
        "INSERT OR IGNORE INTO notification (key, channel, address, recipient, incident, kind, decided, deadline, "
        "status, next_try, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.key, r.channel, r.address, r.recipient, r.incident, r.kind, r.decided, r.deadline,
          MUTED if r.key in muted else PENDING, r.decided, json.dumps(r.doc)) for r in rows])


class NotificationLog:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db, self.lock = db, lock

    def due(self, now: int, limit: int = 100, longest_wait_ms: int | None = None) -> list[Row]:
        """Messages to send or try again at `now`. A retry set further ahead than `longest_wait_ms` (the
        longest backoff) was set by a clock since set back: due too, so that a clock set back an hour
        delays no retry by an hour (at most by the longest backoff)."""
        beyond = now + longest_wait_ms if longest_wait_ms is not None else 1 << 62
        with self.lock:
            rows = self.db.execute(
                "SELECT key, channel, address, recipient, incident, kind, decided, deadline, attempts, doc "
                "FROM notification WHERE status IN (?, ?) AND (next_try <= ? OR next_try > ?) "
                "ORDER BY decided, key LIMIT ?", (PENDING, RETRY, now, beyond, limit)).fetchall()
        return [Row(*r[:9], json.loads(r[9])) for r in rows]

    def mark(self, row: Row, status: str, now: int, error: str | None = None, next_try: int | None = None) -> None:
        with self.lock:
            self.db.execute(
                "UPDATE notification SET status = ?, attempts = attempts + ?, next_try = ?, done = ?, error = ? "
                "WHERE key = ? AND channel = ? AND address = ?",
                (status, 0 if status == EXPIRED else 1, next_try if next_try is not None else now,
                 now if status in (SENT, FAILED, EXPIRED) else None, error, row.key, row.channel, row.address))

    def counts(self) -> dict[tuple[str, str], int]:
        """(channel, status) -> messages."""
        with self.lock:
            rows = self.db.execute("SELECT channel, status, count(*) FROM notification GROUP BY channel, status")
            return {(c, s): n for c, s, n in rows.fetchall()}

    def rows(self, incident: str | None = None) -> list[dict[str, Any]]:
        query, args = ("SELECT key, channel, address, recipient, incident, kind, decided, status, attempts, done, error "
                       "FROM notification"), []
        if incident is not None:
            query, args = query + " WHERE incident = ?", [incident]
        with self.lock:
            found = self.db.execute(query + " ORDER BY decided, key, channel", args).fetchall()
        names = ("key", "channel", "address", "recipient", "incident", "kind", "decided", "status", "attempts",
                 "done", "error")
        return [dict(zip(names, r)) for r in found]
