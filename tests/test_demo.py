"""The README's main job: the demo fleet through the real broker, collector and database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import need_binaries

REPO = Path(__file__).resolve().parent.parent


def test_demo_fleet_reports_every_clinic_through_the_collector(tmp_path) -> None:
    need_binaries("mosquitto", "influxd")
    done = subprocess.run([sys.executable, "-m", "lab.demo", "--clinics", "5", "--hours", "0.25",
                           "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stored 150 points from 5 messages; rejected {'clinic_mismatch': 1}" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("demo-")]
    assert [r[:2] for r in rows] == [["demo-0000", "fibre"], ["demo-0001", "dsl"], ["demo-0002", "lte"],
                                     ["demo-0003", "geo_satellite"], ["demo-0004", "dying"]]
    lte_rtt = float(rows[2][3])
    assert 50 < lte_rtt < 70
    assert (tmp_path / "collector" / "dead-letters.jsonl").read_text().count("clinic_mismatch") == 1
