"""`clinicwatch-collector report --month`: a month of state records (outages corrected by agents, a
maintenance window, an outage inside it, a clinic first heard from on day 3, an outage across the month's
end, one still open, an hour the collector was blind) against figures computed by hand."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
import yaml

from collector import cli
from collector.state.clinic import Transition
from collector.state.db import StateDB
from collector.state.outages import Outage

H = 3_600_000


def utc(day: int, hour: int = 0, month: int = 10) -> int:
    return int(dt.datetime(2026, month, day, hour, tzinfo=dt.UTC).timestamp() * 1000)


def _outage(clinic: str, start: int, end: int | None, source: str = "agent") -> Outage:
    return Outage(id=f"{clinic}:{start}", clinic=clinic, start=start, end=end, cause="wan", source=source)


def _move(clinic: str, at: int, old: str, new: str) -> Transition:
    return Transition(clinic, at, at, old, new)


@pytest.fixture
def month(tmp_path: Path) -> Path:
    registry = tmp_path / "clinics.yaml"
    registry.write_text(yaml.safe_dump({"clinics": [
        {"id": "a", "name": "Clinic A", "region": "R1", "isp": "IspA"},
        {"id": "b", "name": "Clinic B", "region": "R1", "isp": "IspB"},
        {"id": "c", "name": "Clinic C", "region": "R2", "isp": "IspA"}]}))
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"store": {"kind": "influx_v1", "url": "http://127.0.0.1:1", "database": "x"},
                                      "registry": str(registry), "data_dir": str(tmp_path / "data")}))
    db = StateDB(tmp_path / "data" / "state.sqlite")
    transitions = [
        _move("a", utc(1, month=9), "unknown", "up"),  # known since September
        _move("a", utc(10, 8), "up", "maintenance"), _move("a", utc(10, 12), "maintenance", "up"),
        _move("b", utc(3), "unknown", "up"),  # first heard from on 3 October
        _move("c", utc(1, month=9), "unknown", "up"), _move("c", utc(30, 12), "up", "down")]
    outages = [
        _outage("a", utc(5, 10), utc(5, 12)),  # 2 h
        _outage("a", utc(10, 9), utc(10, 10)),  # inside the maintenance window: left out
        _outage("a", utc(1, 3, month=9), utc(1, 4, month=9)),  # in September: not this month
        _outage("b", utc(15, 0), utc(15, 6), source="collector"),  # 6 h
        _outage("b", utc(31, 23), utc(1, 2, month=11)),  # 1 h of it in October
        _outage("c", utc(30, 12), None, source="collector")]  # still open: 36 h to the month's end
    db.commit([], transitions, [], outages, [(utc(20, 0), utc(20, 1))], [], utc(24, month=11))
    db.close()
    return config


def _rows(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict[str, str]]:
    assert cli.main(["report", "--config", str(config), "--month", "2026-10", *extra]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    return {f"{r['level']}:{r['key']}": r for r in rows}


def test_a_months_availability_matches_the_hand_computation(month: Path, capsys) -> None:
    rows = _rows(month, capsys)
    hours = 31 * 24  # 744
    # a: 4 h maintenance (the outage inside it left out), 2 h down, 1 h the collector was blind.
    a = rows["clinic:a"]
    assert (a["maintenance_h"], a["down_h"], a["unknown_h"], a["outages"]) == ("4.00", "2.00", "1.00", "1")
    assert float(a["monitored_h"]) == hours - 4 - 1
    assert float(a["availability_pct"]) == pytest.approx(100 * (739 - 2) / 739, abs=5e-4)
    assert float(a["worst_case_pct"]) == pytest.approx(100 * (739 - 2) / 740, abs=5e-4)
    # b: unknown until 3 October (48 h) and the blind hour; down 6 h + the first hour of the last outage.
    b = rows["clinic:b"]
    assert (b["unknown_h"], b["down_h"], b["outages"]) == ("49.00", "7.00", "2")
    assert float(b["availability_pct"]) == pytest.approx(100 * (695 - 7) / 695, abs=5e-4)
    assert float(b["worst_case_pct"]) == pytest.approx(100 * (695 - 7) / 744, abs=5e-4)
    # c: down from 30 October 12:00 to the month's end, still open.
    c = rows["clinic:c"]
    assert (c["down_h"], c["unknown_h"]) == ("36.00", "1.00")
    assert float(c["availability_pct"]) == pytest.approx(100 * (743 - 36) / 743, abs=5e-4)
    # Groups are sums of time, not means of percentages.
    assert float(rows["region:R1"]["availability_pct"]) == pytest.approx(100 * (1434 - 9) / 1434, abs=5e-4)
    assert float(rows["isp:IspA"]["availability_pct"]) == pytest.approx(100 * (1482 - 38) / 1482, abs=5e-4)
    assert float(rows["all:all"]["down_h"]) == 2 + 7 + 36


def test_a_region_alone_and_as_a_page(month: Path, capsys, tmp_path: Path) -> None:
    rows = _rows(month, capsys, "--region", "R1")
    assert sorted(k for k in rows if k.startswith("clinic:")) == ["clinic:a", "clinic:b"]
    assert rows["all:R1"]["availability_pct"] == rows["region:R1"]["availability_pct"]
    page = tmp_path / "report.html"
    assert cli.main(["report", "--config", str(month), "--month", "2026-10", "--format", "html",
                     "--out", str(page)]) == 0
    text = page.read_text()
    assert "<title>ClinicWatch availability, 2026-10</title>" in text
    assert "<td>Clinic B</td>" in text and f"<td>{100 * 688 / 695:.3f}</td>" in text


@pytest.mark.parametrize("args, message", [
    (["--month", "2026-13"], "--month '2026-13': give the month as YYYY-MM, e.g. 2026-11"),
    (["--month", "2099-01"], "--month 2099-01: has not begun"),
    (["--month", "2026-10", "--region", "Nowhere"], "--region 'Nowhere' is not a region of the registry")])
def test_bad_arguments_are_named(month: Path, capsys, args: list[str], message: str) -> None:
    assert cli.main(["report", "--config", str(month), *args]) == 2
    assert capsys.readouterr().err == f"clinicwatch-collector: {message}\n"
