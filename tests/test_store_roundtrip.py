"""Every wire-valid sample either reads back equal from the real stores or is rejected, with its
reason, before storage; and a batch the store refuses in part loses only the refused lines.

The samples are made by hypothesis with the characters that line protocol escapes or cannot
carry (backslashes, commas, spaces, equals signs, quotes, line breaks, other control characters,
accented letters), and go through the collector's own validation into InfluxDB 1.6.7 (v1 /write)
and VictoriaMetrics (influxdb-client's v2 write API), which are read back.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import wire
from collector.ingest.lineproto import unstorable
from collector.ingest.pipeline import Pipeline
from collector.registry import Clinic, Registry
from collector.ingest.spool import Spool
from collector.ingest.store import InfluxV1Writer, InfluxV2Writer, StoreError
from collector.ingest.validate import UNSTORABLE, DeadLetters, Validator

CLINIC = "es-ib-0001"
REGISTRY_TAGS = {"region": "Illes Balears", "isp": "Movistar", "link": "lte"}
BASE_MS = 1_790_000_000_000
_times = itertools.count()

tricky = st.one_of(st.text(st.sampled_from(list("ab\\, =\"'#é·ñ\u2028")), max_size=10),
                   st.text(st.sampled_from(list("ab\\, =\n\r\t\x00\x7f\x85")), max_size=6))
tag_keys = st.sampled_from(["target", "interface", "device", "t_x"] * 3 + ["clinic", "region", "time"])
# One type per field name, as a store that keeps a type per field needs (conflicts are tested below).
field_values = {
    "f_int": st.integers(min_value=wire.schema.INT64_MIN, max_value=wire.schema.INT64_MAX),
    "f_float": st.floats(allow_nan=False, allow_infinity=False),
    "f_bool": st.booleans(),
    "f_str": tricky,
    "time": st.floats(allow_nan=False, allow_infinity=False),
}
# VictoriaMetrics keeps a block of a series' values (a run of them, written together) as integers
# with one power of ten: each value is cut to 1e-12 of itself as it is converted, in floats (a dozen
# roundings of 1.1e-16 at most, hence the 1e-14), then to the power the block's largest fits with.
# It reads a block back as zeros when that power is under 10^-308 (1/10^309 is 1/inf), which takes
# every value of the block under int64's largest x 1e-309, 9.22e-291. Measured: docs/collector.md.
VM_RELATIVE = 1e-12 + 1e-14
VM_ZEROED_UNDER = 9.3e-291

samples = st.builds(
    lambda tags, fields: {"m": "rt", "tags": tags, "f": fields},
    st.dictionaries(tag_keys, tricky, max_size=3),
    st.dictionaries(st.sampled_from(sorted(field_values)), st.none(), min_size=1, max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: field_values[k] for k in keys})))


def _message(batch: list[dict]) -> tuple[bytes, list[int]]:
    times = [BASE_MS + next(_times) for _ in batch]
    records = [{"seq": i, "t": t, "mono": 1, "sync": "ntp", **sample} for i, (t, sample) in enumerate(zip(times, batch))]
    return wire.encode(wire.Telemetry(v=1, clinic=CLINIC, boot="abcdef12", samples=records)), times


def _validator(tmp: Path) -> Validator:
    registry = Registry(clinics=[Clinic(id=CLINIC, name="Centre de Salut", **REGISTRY_TAGS)])
    return Validator(registry, DeadLetters(tmp / "dead-letters.jsonl"))


@pytest.fixture(scope="module")
def stores(influxdb_server, victoria):
    db = "roundtrip"
    influxdb_server.create_database(db)
    v2 = InfluxV2Writer(victoria.url, "roundtrip", "clinicwatch", None)
    yield influxdb_server, db, InfluxV1Writer(influxdb_server.url, db), victoria, v2
    v2.client.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(samples, min_size=1, max_size=6))
@example(batch=[{"m": "rt", "tags": {"t_x": "ñ"}, "f": {"f_float": -1.5370116739581599e-298}}])  # read back 0 (CI)
def test_a_sample_reads_back_equal_or_is_rejected_with_its_reason(stores, tmp_path_factory, batch) -> None:
    influx, db, v1, victoria, v2 = stores
    tmp = tmp_path_factory.mktemp("roundtrip")
    validator = _validator(tmp)
    payload, times = _message(batch)
    lines = validator.lines(wire.topic(CLINIC, "telemetry"), payload)
    assert lines is not None
    why = [unstorable(s["tags"], s["f"]) for s in batch]
    stored = [(s, t) for s, t, w in zip(batch, times, why) if w is None]
    assert len(lines) == len(stored)
    refused = [i for i, w in enumerate(why) if w is not None]
    assert validator.rejected_records[UNSTORABLE] == len(refused)
    if refused:  # the message is kept, with every refused sample named
        (letter,) = [json.loads(line) for line in (tmp / "dead-letters.jsonl").open()]
        assert letter["reason"] == UNSTORABLE
        assert letter["detail"].startswith(f"{len(refused)} samples not stored")
        assert f"samples[{refused[0]}]." in letter["detail"]
    event("some samples stored" if lines else "every sample rejected")
    event("some samples rejected" if refused else "no sample rejected")
    if not lines:
        return
    v1(lines)  # any refusal raises: every line that passed validation must be accepted
    v2(lines)

    result = influx.query(f"SELECT * FROM rt WHERE time >= {min(times)}ms AND time < {max(times) + 1}ms", db=db)
    series = result["results"][0]["series"][0]
    rows = {row[0]: dict(zip(series["columns"], row)) for row in series["values"]}
    assert sorted(rows) == sorted(t for _, t in stored)
    exported = [s for s in victoria.export('{__name__=~"rt_.*"}') if set(s["timestamps"]) & set(times)]
    for sample, t in stored:
        row = rows[t]
        tags = {**REGISTRY_TAGS, "clinic": CLINIC, **{k: v for k, v in sample["tags"].items() if v != ""}}
        for key in ("target", "interface", "device", "t_x"):
            assert row.get(key) == tags.get(key)
        for key, value in sample["f"].items():
            if type(value) is float:  # InfluxDB's JSON prints the shortest digits that give the float back
                assert float(row[key]) == value
            else:
                assert row[key] == value and type(row[key]) is type(value)
        for key, value in sample["f"].items():
            if isinstance(value, str):
                continue  # VictoriaMetrics keeps numbers only
            (vm,) = [s for s in exported if s["metric"]["__name__"] == f"rt_{key}" and t in s["timestamps"]]
            assert {k: v for k, v in vm["metric"].items() if k not in ("__name__", "db")} == tags
            scale = max(abs(float(value)), *(abs(x) for x in vm["values"]))
            assert abs(vm["values"][vm["timestamps"].index(t)] - float(value)) <= VM_RELATIVE * scale + VM_ZEROED_UNDER


@pytest.mark.parametrize(("written", "read"), [
    (1.5e-298, 1.5e-298), (1.5370116739581599e-298, 0.0),  # 14 digits kept would need 10^-311
    (1e-308, 1e-308), (1e-309, 0.0), (1.5370116739581599e-295, 1.5370116739581e-295)])
def test_victoriametrics_reads_a_lone_tiny_value_as_documented(stores, written: float, read: float) -> None:
    *_, victoria, v2 = stores
    t = BASE_MS + 10_000_000 + next(_times)
    v2([f"tiny,case={written!r} v={written!r} {t * 1_000_000}"])
    (series,) = victoria.export(f'tiny_v{{case="{written!r}"}}')
    assert series["values"] == [read]


class _WholeRequestWriter:
    """A store that refuses a whole request when any line of it is bad (as InfluxDB 2.x does for a
    type conflict): here, lines holding `BAD`. Records what it stored."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.requests = 0

    def __call__(self, lines: list[str]) -> None:
        self.requests += 1
        if any("BAD" in line for line in lines):
            raise StoreError("400: a line is bad", retryable=False)
        self.stored += lines


def _pipeline(writer, tmp: Path) -> tuple[Pipeline, list[int]]:
    acked: list[int] = []
    return Pipeline(writer, Spool(tmp / "spool", 10_000_000), acked.extend, tmp / "refused-points.jsonl",
                    batch_points=10_000, flush_interval_s=0.05), acked


def _drain(pipeline: Pipeline, acked: list[int], count: int) -> None:
    pipeline.start()
    deadline = time.monotonic() + 30
    while len(acked) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    pipeline.stop()


@pytest.mark.parametrize("bad_at", [[0], [57], [99], [3, 4, 5], list(range(0, 100, 10))])
def test_a_store_refusing_a_whole_request_loses_only_the_refused_lines(tmp_path: Path, bad_at: list[int]) -> None:
    lines = [f"m,clinic=c{i % 7} {'BAD' if i in bad_at else 'v'}=1 {BASE_MS + i}" for i in range(100)]
    writer = _WholeRequestWriter()
    pipeline, acked = _pipeline(writer, tmp_path)
    for mid in range(10):
        pipeline.submit(mid, lines[mid * 10:(mid + 1) * 10])
    _drain(pipeline, acked, 10)
    assert sorted(acked) == list(range(10))
    assert sorted(writer.stored) == sorted(line for i, line in enumerate(lines) if i not in bad_at)
    assert pipeline.stats.points_written == 100 - len(bad_at)
    assert pipeline.stats.points_refused == len(bad_at)
    kept = [line for record in map(json.loads, (tmp_path / "refused-points.jsonl").open()) for line in record["lines"]]
    assert sorted(kept) == sorted(lines[i] for i in bad_at)


def test_influxdb_partial_write_counts_and_keeps_only_the_refused_lines(influxdb, tmp_path: Path) -> None:
    """InfluxDB 1.x answers 400 `partial write` and stores the good lines: only the refused ones are refused."""
    influx, db = influxdb
    influx.write(db, f"m,clinic=c1 v=1.5 {BASE_MS - 1}")  # `v` is a float from now on
    ns = 1_000_000  # the collector writes nanoseconds
    good = [f"m,clinic=c{i} v={i}.25 {(BASE_MS + i) * ns}" for i in range(40)]
    conflict = f"m,clinic=c1 v=7i {(BASE_MS + 1000) * ns}"  # an integer where floats are: field type conflict
    unparsable = f"m,clinic=c2,iface=ends\\ v=1.0 {(BASE_MS + 1001) * ns}"  # as if escaping had failed
    lines = good[:10] + [conflict] + good[10:30] + [unparsable] + good[30:]
    pipeline, acked = _pipeline(InfluxV1Writer(influx.url, db), tmp_path)
    pipeline.submit(1, lines)
    _drain(pipeline, acked, 1)
    assert acked == [1]
    assert (pipeline.stats.points_written, pipeline.stats.points_refused) == (40, 2)
    records = [json.loads(line) for line in (tmp_path / "refused-points.jsonl").open()]
    assert sorted(line for r in records for line in r["lines"]) == sorted([conflict, unparsable])
    assert any("field type conflict" in r["error"] for r in records)
    result = influx.query(f"SELECT count(v) FROM m WHERE time >= {BASE_MS}ms", db=db)
    assert result["results"][0]["series"][0]["values"][0][1] == 40
