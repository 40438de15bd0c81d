"""The state engine's configuration, maintenance windows and digests: bad input gets a clear error."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
import yaml

from collector import cli
from collector.state import digest
from collector.state.facts import EventSeen, Heard, ProbeSeen, Report, StatusSeen


def _config(tmp: Path, state: dict) -> Path:
    registry = tmp / "clinics.yaml"
    registry.write_text(yaml.safe_dump({"clinics": [{"id": "c1", "name": "C", "link": "satellite"}]}))
    path = tmp / "collector.yaml"
    path.write_text(yaml.safe_dump({"store": {"kind": "influx_v1", "url": "http://127.0.0.1:1", "database": "x"},
                                    "registry": "clinics.yaml", "data_dir": str(tmp / "data"), "state": state}))
    return path


def test_link_rules_override_one_type_and_keep_the_others(tmp_path, capsys) -> None:
    from collector.config import load_collector_config

    config = load_collector_config(_config(tmp_path, {"rules": {"links": {
        "satellite": {"loss_pct": 4, "rtt_ms": 900, "jitter_ms": 100}}}}))
    rules = config.state.rules
    assert (rules.link("satellite").rtt_ms, rules.link("fibre").rtt_ms, rules.link("cable").rtt_ms) == (900, 80, 300)


@pytest.mark.parametrize("state, message", [
    ({"rules": {"links": {"cable": {"loss_pct": 1, "rtt_ms": 9, "jitter_ms": 1}}}},
     "state.rules.links: Value error, unknown link type(s) cable; the registry's are fibre, dsl, lte, satellite, other"),
    ({"rules": {"flap_high_pct": 0}}, "state.rules.flap_high_pct: Input should be greater than 0"),
    ({"engine": "sometimes"}, "state.engine: Input should be a valid boolean, unable to interpret input")])
def test_a_bad_state_setting_names_file_key_and_fix(tmp_path, capsys, state: dict, message: str) -> None:
    path = _config(tmp_path, state)
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}: {message}\n"


@pytest.mark.parametrize("window, message", [
    ({"clinics": ["c1"], "start": "2026-11-25T08:00:00", "end": "2026-11-25T10:00:00+01:00"},
     "windows[0]: Value error, start and end need a UTC offset, e.g. 2026-11-25T08:00:00+01:00"),
    ({"clinics": ["c1"], "start": "2026-11-25T10:00:00Z", "end": "2026-11-25T08:00:00Z"},
     "windows[0]: Value error, end must be after start"),
    ({"start": "2026-11-25T08:00:00Z", "end": "2026-11-25T10:00:00Z"},
     "windows[0]: Value error, name the clinics or the regions it covers"),
    ({"clinic": ["c1"], "start": "2026-11-25T08:00:00Z", "end": "2026-11-25T10:00:00Z"},
     "windows[0].clinic: Extra inputs are not permitted"),
    ({"regions": ["r"], "every": ["sunday"], "from": "02:00", "to": "04:00"},
     "windows[0]: Value error, every: ['sunday'] are not days; use mon, tue, wed, thu, fri, sat, sun or day"),
    ({"regions": ["r"], "every": ["sun"], "from": "02:00"},
     "windows[0]: Value error, a recurring window needs every (mon..sun or day), from and to, e.g. every: [sun], "
     "from: '02:00', to: '04:00'"),
    ({"regions": ["r"], "every": ["sun"], "from": "02:00", "to": "04:00", "start": "2026-11-25T08:00:00Z"},
     "windows[0]: Value error, give start and end (once) or every, from and to (recurring), not both"),
    ({"regions": ["r"], "every": ["sun"], "from": "02:00", "to": "04:00", "tz": "Mallorca"},
     "windows[0]: Value error, tz 'Mallorca' is not a time zone name such as Europe/Madrid")])
def test_a_bad_maintenance_window_is_named(tmp_path, capsys, window: dict, message: str) -> None:
    path = _config(tmp_path, {"maintenance_file": "maintenance.yaml"})
    (tmp_path / "maintenance.yaml").write_text(yaml.safe_dump({"windows": [window]}))
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'maintenance.yaml'}: {message}\n"


def test_digests_round_trip_and_garbage_is_refused() -> None:
    facts = [Heard("c1", 5, "b00t", 7), StatusSeen("c1", 6, "offline", "b00t", "lost"),
             ProbeSeen("c1", 4, 5, "icmp", "records", False, "timeout", 100.0, None, None),
             EventSeen("c1", 3, 5, "outage", "b00t", 9, {"cause": "x"}, 1, 3),
             Report("c1", 5, "b00t", 7, [(4, "icmp", "records", True, None, 0.0, 41.5, 2.0),
                                         (4, "tcp", "records", False, "refused", None, None, None)])]
    got = digest.decode(digest.encode(facts, "collector-1"))
    # Read back with tuples for arrays (a report's probe results: tuples, read only, as ingest makes them)
    assert got.src == "collector-1" and got.facts[:4] == facts[:4]
    assert got.facts[4] == facts[4]._replace(probes=tuple(facts[4].probes))
    for payload in (b"", b"\x78\x9c", b'{"v": 1, "src": "x", "sent": 1, "facts": []}', msgpack.packb([]),
                    msgpack.packb({"v": 2, "src": "x", "sent": 1, "facts": []}),
                    msgpack.packb({"v": 1, "src": "x", "sent": 1, "facts": [["z", 1]]}),
                    msgpack.packb({"v": 1, "src": "x", "sent": 1, "facts": [["h", "c1"]]})):
        with pytest.raises(ValueError):
            digest.decode(payload)
