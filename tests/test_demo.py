"""The README's main job: the quickstart's story with real agents, the real collector, broker, database
and SMTP server; and Ctrl-C leaving no process, namespace or temporary directory behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.links import NETNS_PREFIX
from tests.conftest import need_binaries, need_privileges

REPO = Path(__file__).resolve().parent.parent


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            for child in children:
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.privileged
@pytest.mark.timeout(600)
def test_the_quickstart_plays_its_story_and_ctrl_c_leaves_nothing_behind() -> None:
    need_binaries("mosquitto", "influxd", "snmpd")
    need_privileges()  # each agent behind an emulated link
    demo = subprocess.Popen([sys.executable, "-m", "lab.demo", "--clinics", "12", "--minutes", "2", "--serve"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 420
        while not any("serving:" in line for line in lines):
            assert demo.poll() is None and time.monotonic() < deadline, "".join(lines)[-5000:]
            time.sleep(1)
        children = descendants(demo.pid)
        assert len(children) > 12  # an agent per clinic, the collector, the servers, the relays
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole foreground process group
        assert demo.wait(120) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    reader.join(10)
    out = "".join(lines)
    [files] = re.findall(r"files in (\S+)", out)

    # The story, as the collector told it. Lombardia's three clinics all run on FastNet, which fails.
    for clinic in ("it-lom-0001", "it-lom-0002", "it-lom-0003"):
        assert re.search(rf"{clinic} +up -> down \(cause wan\)", out), out
    assert re.search(r"es-ib-0001 +up -> down \(cause power\)", out), out  # on battery, then silence
    assert re.search(r"pt-al-0001 +up -> down \(cause wan\)", out), out  # the satellite's first drop
    assert re.search(r"es-ct-0001 +up -> maintenance", out) and not re.search(r"es-ct-0001 +\S+ -> down", out), out
    incidents = out.split("\nincidents:\n")[1].split("\n\n")[0].splitlines()
    assert any(line.endswith("it-lom-0001, it-lom-0002, it-lom-0003") and "cause wan" in line for line in incidents)
    assert any(line.endswith(" es-ib-0001") and "cause power" in line for line in incidents), incidents
    assert not any("es-ct-0001" in line for line in incidents)  # maintenance: no incident
    mails = out.split("alerts received by the SMTP catcher")[1].split("\n\n")[0].splitlines()[1:]
    assert any(m.startswith("  [it] to it-lom-ict@example.org: NON RAGGIUNGIBILE") for m in mails), mails
    assert any(m.startswith("  [it] to it-lom-ict@example.org: RIPRISTINATE: 3 strutture") for m in mails), mails
    assert any(m.startswith("  [es] to es-ib-ict@example.org: SIN CONEXIÓN: Illes Balears clinic 1") for m in mails)
    assert any(m.startswith("  [en] to noc@example.org: ") for m in mails), mails
    assert not any("es-ct-ict" in m for m in mails), mails  # nobody is told of maintenance
    assert "status page: http://127.0.0.1:" in out
    assert re.search(r"Grafana: provisioning for this demo in \S+grafana-provisioning \(its InfluxDB data source at "
                     r"http://127\.0\.0\.1:\d+, database 'clinicwatch'", out), out

    # Ctrl-C: nothing left.
    assert "stopped: every process, namespace and temporary directory the demo made is gone" in out
    assert not Path(files).exists()
    assert [pid for pid in children if alive(pid)] == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{NETNS_PREFIX}{demo.pid}-" not in namespaces
