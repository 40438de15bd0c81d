"""The durable outbox on a real SQLite file: order, acknowledgement, kills, the full policy, clock fixes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from agent.outbox import NewRecord, Outbox


def sample(t: int, value: float = 1.0, sync: str = "ntp", mono: int | None = None) -> NewRecord:
    return NewRecord("sample", t, t if mono is None else mono, sync, {"m": "icmp", "tags": {"target": "gw"},
                                                                      "f": {"rtt_avg_ms": value}})


def everything(box: Outbox) -> list:
    """All records in sending order, batch after batch."""
    seen: set[int] = set()
    out = []
    while batch := box.next_batch(seen, 1000):
        out += batch
        seen.update(r.id for r in batch)
    return out


def event(t: int) -> NewRecord:
    return NewRecord("event", t, t, "ntp", {"kind": "outage", "detail": {"duration_s": 60.0}})


def test_records_leave_events_first_then_oldest_first_one_boot_per_batch(tmp_path) -> None:
    old = Outbox(tmp_path / "o.db", boot="b1", kboot="k")
    assert old.put([sample(1), sample(2)]) == [0, 1]
    old.close()
    box = Outbox(tmp_path / "o.db", boot="b2", kboot="k")
    box.put([sample(3)])
    box.put([event(4)])
    first = box.next_batch(set(), 10)
    assert [(r.kind, r.boot, r.seq) for r in first] == [("event", "b2", 1)]
    second = box.next_batch({r.id for r in first}, 10)
    assert [(r.boot, r.seq, r.t) for r in second] == [("b1", 0, 1), ("b1", 1, 2)]
    assert second[0].as_wire() == {"seq": 0, "t": 1, "mono": 1, "sync": "ntp", "m": "icmp",
                                   "tags": {"target": "gw"}, "f": {"rtt_avg_ms": 1.0}}
    box.delete(r.id for r in first + second)
    assert [(r.boot, r.seq) for r in box.next_batch(set(), 10)] == [("b2", 0)]
    assert box.depth()["samples"] == 1 and box.depth()["events"] == 0


def test_nothing_committed_is_lost_to_sigkill(tmp_path) -> None:
    path = tmp_path / "o.db"
    writer = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from agent.outbox import NewRecord, Outbox
        box = Outbox(__import__("pathlib").Path({str(path)!r}), boot="b", kboot="k")
        n = 0
        while True:
            box.put([NewRecord("sample", n, n, "ntp", {{"m": "x", "tags": {{}}, "f": {{"n": n}}}})])
            print(n, flush=True)
            n += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    while acknowledged < 300:
        acknowledged = int(proc.stdout.readline())  # printed only after its commit returned
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    box = Outbox(path, boot="b2", kboot="k")
    seqs = [r.seq for r in everything(box)]
    assert seqs[: acknowledged + 1] == list(range(acknowledged + 1)), "every committed record survived"
    assert seqs == list(range(len(seqs))), "no gap in the sequence"


def test_a_full_outbox_thins_old_samples_keeps_the_newest_and_every_event(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db", boot="b", kboot="k", max_bytes=60_000)
    box.put([event(0)])
    for t in range(1, 2001):
        box.put([sample(t, float(t))])
    depth = box.depth()
    assert depth["bytes"] <= 60_000
    assert depth["events"] == 1
    kept = [r.t for r in everything(box) if r.kind == "sample"]
    thinned = int(box.meta("thinned_total"))
    assert thinned == 2000 - len(kept) > 0
    assert kept[-50:] == list(range(1951, 2001)), "the newest samples are all there"
    # Old data is thinner, not gone: the first hour of the outage is still represented.
    assert kept[0] <= 10 and len([t for t in kept if t <= 1000]) >= 50
    gaps = [b - a for a, b in zip(kept, kept[1:])]
    assert max(gaps) <= 64, "thinning halves resolution step by step; it does not cut a hole"


def test_clock_fix_retimes_unsynchronised_records_of_this_kernel_boot_only(tmp_path) -> None:
    earlier = Outbox(tmp_path / "o.db", boot="b0", kboot="old-kernel-boot")
    earlier.put([sample(5, sync="none", mono=1000)])
    earlier.close()
    box = Outbox(tmp_path / "o.db", boot="b1", kboot="this-boot")
    box.put([sample(86_400_000, sync="none", mono=10_000), sample(86_460_000, sync="none", mono=70_000),
             sample(1_795_000_000_000, sync="ntp", mono=80_000)])
    # At mono 100 s the clock is known to be right: 1 795 000 100 000 ms.
    assert box.fix_clock(wall_ms=1_795_000_100_000, mono_ms=100_000) == 2
    by_boot = {(r.boot, r.seq): (r.t, r.sync) for r in everything(box)}
    assert by_boot[("b1", 0)] == (1_795_000_010_000, "fixed")
    assert by_boot[("b1", 1)] == (1_795_000_070_000, "fixed")
    assert by_boot[("b1", 2)] == (1_795_000_000_000, "ntp")
    assert by_boot[("b0", 0)] == (5, "none"), "another kernel boot's monotonic clock cannot be trusted"


class _Statements:
    """The outbox's connection, recording the text of each statement it runs (the sqlite3 module keeps a
    compiled statement for each text, the last 128 of them)."""

    def __init__(self, db) -> None:
        self.db, self.texts = db, set()

    def execute(self, sql: str, *args):
        self.texts.add(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self.texts.add(sql)
        return self.db.executemany(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


def test_batches_of_any_size_run_a_few_statement_texts_not_one_per_size(tmp_path) -> None:
    """A statement text per batch size had the agent's memory grow with every new size it met (SQLite's
    compiled statements, cached): over a day of schedule at the sample config it kept growing."""
    box = Outbox(tmp_path / "o.db", boot="b", kboot="k", max_bytes=20_000)
    box.db = recording = _Statements(box.db)
    sent = []
    for size in range(1, 301):
        box.put([sample(t) for t in range(size)])
        first = box.next_batch(set(), size // 2 + 1)
        second = box.next_batch({r.id for r in first}, 1000)
        assert not {r.id for r in first} & {r.id for r in second}
        sent += first + second
        box.delete(r.id for r in first + second)
    assert box.depth()["samples"] == 0
    assert int(box.meta("thinned_total")) > 0  # the thinning's statements ran too
    assert len(sent) == 300 * 301 // 2 - int(box.meta("thinned_total"))
    variable = {text for text in recording.texts if "?," in text}  # those with a list of ids
    assert len(variable) <= 4 * 10, sorted(variable)  # each query, one text per power of two up to 512
    assert len(recording.texts) <= 60
