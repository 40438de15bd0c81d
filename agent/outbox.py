"""Durable outbox: every sample and event is written here before it is sent, and removed
only after the broker's PUBACK.

SQLite in WAL mode, `synchronous=FULL` by default so a committed record survives a
power cut, not only a process kill. Records leave oldest first, events before
samples. Sequence numbers are assigned in the same transaction that stores the
record, so a crash can never leave a gap in a boot's sequence.

When full (`max_bytes` of records), the outbox thins old samples rather than
refusing new ones: outside the newest quarter, it drops every other sample among
those thinned least so far and marks the survivors one level thinner. Old data
thus loses resolution evenly (1 in 2, then 1 in 4, ...) while the newest quarter
stays whole, so after a long outage the operator still sees the whole period and
the latest state in full. Events (outages, reboots, power) are never thinned.
What was thinned is counted (`thinned_total`), so the gaps are explained.

One thread uses an Outbox (the agent's event loop); it is not shared.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

RecordKind = Literal["sample", "event"]
ROW_OVERHEAD = 64  # bytes SQLite spends per row beyond its text, roughly; counts toward max_bytes

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT    NOT NULL,            -- sample | event
    boot  TEXT    NOT NULL,            -- agent run id
    kboot TEXT    NOT NULL,            -- kernel boot id: whose monotonic clock `mono` is
    seq   INTEGER NOT NULL,
    t     INTEGER NOT NULL,
    mono  INTEGER NOT NULL,
    sync  TEXT    NOT NULL,
    body  TEXT    NOT NULL,            -- the rest of the record, JSON
    size  INTEGER NOT NULL,
    lvl   INTEGER NOT NULL DEFAULT 0,  -- times thinned around it: 1 in 2**lvl of its period is left
    UNIQUE (boot, seq)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Stored:
    id: int
    kind: RecordKind
    boot: str
    kboot: str
    seq: int
    t: int
    mono: int
    sync: str
    body: dict[str, Any]

    def as_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": self.t, "mono": self.mono, "sync": self.sync, **self.body}


@dataclass(frozen=True)
class NewRecord:
    kind: RecordKind
    t: int
    mono: int
    sync: str
    body: dict[str, Any]


def _padded(ids: list[int]) -> tuple[str, list[int]]:
    """`?,?,...` for `ids`, padded to a power of two by repeating the last id (a list given to IN is a set),
    and the ids to bind to it. The sqlite3 module keeps a compiled statement for each SQL text it has
    run (the last 128); with one text per batch size, the agent's memory grew with each new size it met
    (SQLite's own, 5.1 MiB more after 300 sizes). Padded, a query has one text per power of two (ten up
    to 512)."""
    if not ids:
        return "", []
    size = 1 << (len(ids) - 1).bit_length()
    return ",".join("?" * size), [*ids, *ids[-1:] * (size - len(ids))]


class Outbox:
    def __init__(self, path: Path, boot: str, kboot: str, max_bytes: int = 64 * 1024 * 1024,
                 synchronous: Literal["full", "normal"] = "full") -> None:
        self.path = path
        self.boot, self.kboot = boot, kboot
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.db.executescript(SCHEMA)
        self._next_seq = 0
        self._bytes = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM records").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    # -- writing -------------------------------------------------------------
    def put(self, records: Iterable[NewRecord]) -> list[int]:
        """Store records of the running boot in one transaction; return their sequence numbers."""
        rows, seqs = [], []
        for record in records:
            body = json.dumps(record.body, separators=(",", ":"))
            seq = self._next_seq
            self._next_seq += 1
            rows.append((record.kind, self.boot, self.kboot, seq, record.t, record.mono, record.sync, body,
                         len(body) + ROW_OVERHEAD))
            seqs.append(seq)
        if not rows:
            return seqs
        with self._transaction():
            self.db.executemany("INSERT INTO records (kind, boot, kboot, seq, t, mono, sync, body, size) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._bytes += sum(r[-1] for r in rows)
            if self._bytes > self.max_bytes:
                self._thin()
        return seqs

    def _thin(self) -> None:
        """Halve the least-thinned old samples until the outbox fits (caller holds a transaction)."""
        while self._bytes > self.max_bytes:
            count = self.db.execute("SELECT COUNT(*) FROM records WHERE kind = 'sample'").fetchone()[0]
            oldest = count - count // 4
            old = "kind = 'sample' AND id IN (SELECT id FROM records WHERE kind = 'sample' ORDER BY id LIMIT ?)"
            level = self.db.execute(f"SELECT MIN(lvl) FROM records WHERE {old}", (oldest,)).fetchone()[0]
            if level is None:
                break  # only events and the newest samples left: keep them, over the limit if need be
            ids = [r[0] for r in self.db.execute(f"SELECT id FROM records WHERE {old} AND lvl = ? ORDER BY id",
                                                 (oldest, level))]
            victims, survivors = ids[1::2], ids[0::2]
            if not victims:
                if len(ids) == 1:  # a lone sample at this level: promote it so the next pass moves on
                    self.db.execute("UPDATE records SET lvl = lvl + 1 WHERE id = ?", (ids[0],))
                    continue
                break
            self._remove(victims)
            for start in range(0, len(survivors), 500):
                marks, chunk = _padded(survivors[start:start + 500])
                self.db.execute(f"UPDATE records SET lvl = lvl + 1 WHERE id IN ({marks})", chunk)
            self._add_meta("thinned_total", len(victims))

    # -- sending -------------------------------------------------------------
    def next_batch(self, exclude: set[int], max_records: int) -> list[Stored]:
        """Oldest unsent records of one kind and one boot: events first, then samples."""
        marks, excluded = _padded(list(exclude))
        not_in = f"AND id NOT IN ({marks})" if exclude else ""
        first = self.db.execute(f"SELECT kind, boot FROM records WHERE 1 {not_in} "
                                f"ORDER BY kind = 'event' DESC, id LIMIT 1", excluded).fetchone()
        if first is None:
            return []
        rows = self.db.execute(f"SELECT id, kind, boot, kboot, seq, t, mono, sync, body FROM records "
                               f"WHERE kind = ? AND boot = ? {not_in} ORDER BY id LIMIT ?",
                               [*first, *excluded, max_records]).fetchall()
        return [Stored(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8])) for r in rows]

    def delete(self, ids: Iterable[int]) -> None:
        """Sent and acknowledged: gone."""
        with self._transaction():
            self._remove(list(ids))

    def _remove(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
            marks, chunk = _padded(ids[start:start + 500])
            self._bytes -= self.db.execute(f"SELECT COALESCE(SUM(size), 0) FROM records WHERE id IN ({marks})",
                                           chunk).fetchone()[0]
            self.db.execute(f"DELETE FROM records WHERE id IN ({marks})", chunk)

    # -- clock ---------------------------------------------------------------
    def fix_clock(self, wall_ms: int, mono_ms: int) -> int:
        """The clock is right now: re-time this kernel boot's unsynchronised records from their `mono`."""
        with self._transaction():
            cursor = self.db.execute("UPDATE records SET t = ? - (? - mono), sync = 'fixed' "
                                     "WHERE sync = 'none' AND kboot = ?", (wall_ms, mono_ms, self.kboot))
        return cursor.rowcount

    # -- state ---------------------------------------------------------------
    def depth(self) -> dict[str, int]:
        counts = dict(self.db.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind").fetchall())
        return {"samples": counts.get("sample", 0), "events": counts.get("event", 0), "bytes": self._bytes}

    def oldest_t(self) -> int | None:
        row = self.db.execute("SELECT MIN(t) FROM records").fetchone()
        return row[0]

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _add_meta(self, key: str, amount: int) -> None:
        self.set_meta(key, str(int(self.meta(key, "0") or 0) + amount))

    def _transaction(self) -> "_Transaction":
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
