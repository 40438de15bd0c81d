"""Line protocol for samples: escaping and types, checked by the real InfluxDB reading them back."""

from __future__ import annotations

import wire
from collector.ingest.lineproto import sample_line, stamp, telemetry_lines

NOW = 1_795_000_000_000


def _sample(**over: object) -> wire.Sample:
    base = dict(seq=1, t=NOW, mono=1, sync="ntp", m="icmp", tags={"target": "gw"},
                f={"rtt_avg_ms": 12.5, "sent": 10, "up": True, "path": "a b"})
    return wire.build(wire.Sample, {**base, **over})


def test_sample_line_types_and_order() -> None:
    assert sample_line(_sample(), "es-ib-0042", NOW, {"region": "Illes Balears"}) == (
        'icmp,clinic=es-ib-0042,region=Illes\\ Balears,target=gw rtt_avg_ms=12.5,sent=10i,up=true,path="a b" '
        f"{NOW}")


def test_tricky_strings_survive_a_real_influxdb_round_trip(influxdb) -> None:
    server, db = influxdb
    sample = _sample(tags={"target": "hospital, main=1"}, f={"note": 'say "hi"\\ now', "rtt_avg_ms": 1.0})
    server.write(db, sample_line(sample, "es-ib-0042", NOW))
    body = server.query("SELECT * FROM icmp", db=db)
    series = body["results"][0]["series"][0]
    row = dict(zip(series["columns"], series["values"][0]))
    assert row["target"] == "hospital, main=1"
    assert row["note"] == 'say "hi"\\ now'


def test_unsynchronised_samples_get_the_corrected_time() -> None:
    message = wire.Telemetry(v=1, clinic="c1", boot="abcdef12", mono_now=10_000,
                             samples=[_sample(t=5, mono=4_000, sync="none")])
    (line,) = telemetry_lines(message, sent_ms=NOW, bound_ms=1000)
    assert line.endswith(f",time_bound_ms=1000i {stamp(NOW - 6_000, 'abcdef12', 1)}")
    assert stamp(NOW - 6_000, "abcdef12", 1) // 1_000_000 == NOW - 6_000
