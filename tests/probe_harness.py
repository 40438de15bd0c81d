"""Run the agent's `probe-once` inside an emulated clinic, as a technician would on the box."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from agent.probes.docs import declared

from lab.links import EmulatedLink

REPO = Path(__file__).resolve().parent.parent


def write_config(directory: Path, probes: list[dict[str, Any]], clinic_id: str = "es-ib-0042") -> Path:
    state = directory / "state"
    state.mkdir(exist_ok=True)
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump({"clinic_id": clinic_id, "state_dir": str(state), "probes": probes}))
    return path


def probe_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "agent.cli", "probe-once", "--config", str(config), "--json"]


def parse_results(stdout: str) -> dict[str, dict[str, Any]]:
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    for r in results:  # what a probe reports must be what docs/probes.md says it reports
        fields, reasons = declared(r["kind"])
        assert set(r["fields"]) <= fields, f"undeclared {r['kind']} fields: {set(r['fields']) - fields}"
        assert r["reason"] in reasons, f"undeclared {r['kind']} reason {r['reason']!r}"
    return {f"{r['kind']}:{r['target']}": r for r in results}


def probe_in(link: EmulatedLink, directory: Path, probes: list[dict[str, Any]],
             user: int | None = None) -> dict[str, dict[str, Any]]:
    """Results of one probe-once run in the clinic's namespace, keyed "kind:target".

    With `user` (a uid, used as gid too) the agent runs unprivileged; `directory`
    must then be reachable by that user."""
    config = write_config(directory, probes)
    command = probe_command(config)
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    done = link.exec(*command, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300)
    results = parse_results(done.stdout)
    # probe-once exits 1 when a probe failed, which these tests often want; no result at all is an error.
    assert done.returncode in (0, 1) and results, f"probe-once failed ({done.returncode}):\n{done.stderr}"
    return results


def start_probe_in(link: EmulatedLink, directory: Path, probes: list[dict[str, Any]]) -> subprocess.Popen[str]:
    config = write_config(directory, probes)
    return link.popen(*probe_command(config), cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
