"""`clinicwatch-collector grafana push`, run as typed (in .venv-grafana, where grafana-client lives),
against lab.grafana_stub: a local HTTP server that answers the few Grafana API endpoints the push calls.
Grafana's own server cannot be installed here; the stub stands in for it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab.grafana_stub import GrafanaStub
from tests.collector_harness import REPO
from tests.conftest import skip_or_fail

PYTHON = REPO / ".venv-grafana" / "bin" / "python"
BOARDS = sorted(p.stem for p in (REPO / "dashboards" / "grafana").glob("*.json"))


@pytest.fixture
def grafana(tmp_path):
    if not PYTHON.exists():
        skip_or_fail("no .venv-grafana (scripts/setup.sh makes it)", "CLINICWATCH_REQUIRE_SERVERS")
    (tmp_path / "token").write_text("glsa_test_token\n")
    with GrafanaStub("glsa_test_token") as stub:
        yield stub, tmp_path / "token"


def push(url: str, token: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYTHON), "-m", "collector.cli", "grafana", "push", "--url", url, "--token-file",
                           str(token), *extra], cwd=REPO, capture_output=True, text=True, timeout=120)


def _every(done: str) -> list[str]:
    """What push prints when every object was `done`."""
    return [f"datasource clinicwatch-influxdb: {done}", f"datasource clinicwatch-collector: {done}",
            f"folder clinicwatch: {done}", *(f"dashboard {uid}: {done}" for uid in BOARDS)]


def test_a_first_push_installs_everything_and_a_second_changes_nothing(grafana) -> None:
    stub, token = grafana
    targets = ("--influx-url", "http://influx.internal:8086", "--database", "cw", "--prometheus-url",
               "http://prom.internal:9090")
    first = push(stub.url, token, *targets)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == _every("created")
    influx = stub.datasources["clinicwatch-influxdb"]
    assert (influx["type"], influx["url"], influx["jsonData"]["dbName"]) == ("influxdb", "http://influx.internal:8086",
                                                                             "cw")
    assert stub.datasources["clinicwatch-collector"]["url"] == "http://prom.internal:9090"
    assert stub.folders["clinicwatch"]["title"] == "ClinicWatch"
    for uid in BOARDS:
        saved = stub.dashboards[uid]
        committed = json.loads((REPO / "dashboards" / "grafana" / f"{uid}.json").read_text())
        assert saved["folderUid"] == "clinicwatch"
        assert {k: v for k, v in saved["dashboard"].items() if k not in ("id", "version")} == committed
    writes = len(stub.writes())
    assert writes == 2 + 1 + len(BOARDS)

    second = push(stub.url, token, *targets)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == _every("unchanged")
    assert len(stub.writes()) == writes  # nothing written
    assert all(stub.dashboards[uid]["dashboard"]["version"] == 1 for uid in BOARDS)


def test_a_changed_dashboard_and_data_source_are_updated_in_place_not_duplicated(grafana) -> None:
    stub, token = grafana
    assert push(stub.url, token).returncode == 0
    # Someone edits a dashboard in Grafana and adds a setting of their own to the data source.
    stub.dashboards["clinicwatch-fleet"]["dashboard"]["title"] = "edited by hand"
    stub.datasources["clinicwatch-influxdb"]["jsonData"]["maxSeries"] = 5000
    again = push(stub.url, token, "--influx-url", "http://influx2.internal:8086")
    assert again.returncode == 0, again.stderr
    assert "dashboard clinicwatch-fleet: updated" in again.stdout.splitlines()
    assert "datasource clinicwatch-influxdb: updated" in again.stdout.splitlines()
    assert "dashboard clinicwatch-clinic: unchanged" in again.stdout.splitlines()
    fleet = stub.dashboards["clinicwatch-fleet"]["dashboard"]
    assert fleet["title"] == "ClinicWatch: fleet" and fleet["version"] == 2 and len(stub.dashboards) == len(BOARDS)
    influx = stub.datasources["clinicwatch-influxdb"]
    assert influx["url"] == "http://influx2.internal:8086" and influx["jsonData"]["maxSeries"] == 5000
    assert influx["id"] == 1 and len(stub.datasources) == 2


def test_influxdb_2_token_is_sent_as_a_secret(grafana, tmp_path) -> None:
    stub, token = grafana
    (tmp_path / "influx-token").write_text("read-token\n")
    bodies = []
    route = stub.route

    def spy(method, path, body):
        if method == "POST" and path == "/api/datasources":
            bodies.append(body)
        return route(method, path, body)

    stub.route = spy
    assert push(stub.url, token, "--influx-token-file", str(tmp_path / "influx-token")).returncode == 0
    influx = next(b for b in bodies if b["type"] == "influxdb")
    assert influx["secureJsonData"] == {"httpHeaderValue1": "Token read-token"}
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"


def test_errors_name_what_failed(grafana, tmp_path) -> None:
    stub, token = grafana
    (tmp_path / "wrong").write_text("not-the-token")
    refused = push(stub.url, tmp_path / "wrong")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"grafana push to {stub.url} failed: ") and "Unauthorized" in refused.stderr
    missing = push(stub.url, tmp_path / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr == f"{tmp_path / 'nowhere'}: cannot read the token: No such file or directory\n"
    (tmp_path / "empty").write_text("\n")
    empty = push(stub.url, tmp_path / "empty")
    assert empty.returncode == 2
    assert empty.stderr == f"{tmp_path / 'empty'}: empty; put a Grafana service account token in it\n"
    nobody = push("http://127.0.0.1:9", token)  # nothing listens on the discard port here
    assert nobody.returncode == 1 and nobody.stderr.startswith("grafana push to http://127.0.0.1:9 failed: ")
    assert "Connection refused" in nobody.stderr
    assert stub.writes() == []
