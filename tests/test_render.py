"""`clinicwatch-agent render-config`: one clinic's files per target, checked as the installer's tools and
the real daemons would check them (check-config, shellcheck, systemd-analyze verify, a real snmpd
polled by the agent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.cli import main as agent_main
from lab.servers import Snmpd
from tests.conftest import need_binaries

REPO = Path(__file__).resolve().parent.parent
CLINIC = "es-ib-0042"
SECRETS = {"mqtt.password", "snmp-box.auth", "snmp-box.priv", "snmp-router.auth", "snmp-router.priv",
           "snmp.community", "snmp-ups.community"}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The sample site file beside a CA and the credentials broker-config wrote for the sample registry."""
    assert subprocess.run([sys.executable, "-m", "collector.cli", "broker-config", "--registry",
                           str(REPO / "collector" / "clinics.sample.yaml"), "--out", str(tmp_path / "broker")],
                          cwd=REPO, capture_output=True).returncode == 0
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    shutil.copy(REPO / "firmware_configs" / "site.sample.yaml", tmp_path / "site.yaml")
    return tmp_path / "site.yaml"


def render(site: Path, target: str, out: Path, *extra: str) -> int:
    return agent_main(["render-config", "--clinic", CLINIC, "--registry", str(REPO / "collector" / "clinics.sample.yaml"),
                       "--site", str(site), "--target", target, "--out", str(out), *extra])


COMMON = {"agent.yaml", "ca.pem", "mqtt.password", "install.sh", "snmp-ups.community"}
TABLE = {
    # target: (its files besides the common ones, state_dir, devices by name and host)
    "debian": ({"clinicwatch-agent.service", "snmpd.conf", "snmp-box.auth", "snmp-box.priv"},
               "/var/lib/clinicwatch", {"edge-box": "127.0.0.1", "ups": "192.168.1.5"}),
    "openwrt": ({"clinicwatch-agent.init", "snmpd.uci", "snmp.community"},
                "/etc/clinicwatch/state", {"router": "127.0.0.1", "ups": "192.168.1.5"}),
    "rutos": ({"clinicwatch-agent.init", "snmp-router.auth", "snmp-router.priv"},
              "/etc/clinicwatch/state", {"router": "127.0.0.1", "ups": "192.168.1.5"}),
    "mikrotik": ({"clinicwatch-agent.service", "snmpd.conf", "snmp-box.auth", "snmp-box.priv", "snmp-router.auth",
                  "snmp-router.priv", "clinicwatch-snmp.rsc"},
                 "/var/lib/clinicwatch", {"edge-box": "127.0.0.1", "router": "192.168.88.1", "ups": "192.168.1.5"}),
}


@pytest.mark.parametrize("target", list(TABLE))
def test_render_config_writes_one_clinics_files_for_each_target(site: Path, tmp_path: Path, target: str,
                                                                  capsys) -> None:
    out = tmp_path / target
    assert render(site, target, out, "--agent-address", "192.168.88.10") == 0
    files, state_dir, devices = TABLE[target]
    assert {p.name for p in out.iterdir()} == COMMON | files
    config = yaml.safe_load((out / "agent.yaml").read_text())
    assert (config["clinic_id"], config["state_dir"]) == (CLINIC, state_dir)
    assert config["mqtt"] == {"host": "collector.salud.example", "port": 8883,
                              "password_file": "/etc/clinicwatch/mqtt.password", "tls": {"ca_file": "/etc/clinicwatch/ca.pem"}}
    assert [p["name"] for p in config["probes"]] == ["records", "records", "records"]  # the site's
    assert {d["name"]: d["host"] for d in config["devices"]} == devices
    # Every file a device or the broker needs is one of the rendered secrets, at its installed path.
    needed = {Path(v).name for d in config["devices"] for v in [d.get("community_file"), *(d.get("v3") or {}).values()]
              if isinstance(v, str) and v.startswith("/etc/clinicwatch/")}
    assert needed <= {p.name for p in out.iterdir()}
    password = (tmp_path / "broker" / "credentials" / f"{CLINIC}.password").read_text()
    assert (out / "mqtt.password").read_text() == password
    for secret in SECRETS & {p.name for p in out.iterdir()}:
        assert (out / secret).stat().st_mode & 0o777 == 0o600, secret
        assert len((out / secret).read_text().strip()) >= 20
    install = (out / "install.sh").read_text()
    assert CLINIC in install and "collector.salud.example:8883" in install and "@" not in install.replace(
        "$@", "")
    assert agent_main(["check-config", "--config", str(out / "agent.yaml")]) == 0
    capsys.readouterr()
    # Rendered again (a site file changed): the same keys, so nothing on the devices needs changing.
    keys = {p.name: p.read_text() for p in out.iterdir() if p.name in SECRETS}
    assert render(site, target, out, "--agent-address", "192.168.88.10") == 0
    assert {p.name: p.read_text() for p in out.iterdir() if p.name in SECRETS} == keys


def test_the_routeros_script_names_the_edge_box_and_this_clinics_keys(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "rb"
    assert render(site, "mikrotik", out, "--agent-address", "192.168.88.10", "--router-address", "192.168.88.1") == 0
    script = (out / "clinicwatch-snmp.rsc").read_text()
    auth, priv = (out / "snmp-router.auth").read_text().strip(), (out / "snmp-router.priv").read_text().strip()
    assert f'authentication-password="{auth}"' in script and f'encryption-password="{priv}"' in script
    assert "addresses=192.168.88.10/32" in script and "src-address=!192.168.88.10" in script
    assert 'location="Centro de Salud de Sóller"' in script


@pytest.mark.parametrize(("args", "edit", "message"), [
    (["--clinic", "es-ib-9999"], None, "clinics.sample.yaml: no clinic 'es-ib-9999' (some there: es-ib-0042, es-ib-0043)"),
    (["--target", "mikrotik"], None, "--target mikrotik: give --agent-address, the edge box's LAN address"),
    ([], lambda s: s.replace("credentials: broker/credentials", "credentials: elsewhere"),
     f"elsewhere/{CLINIC}.password: no MQTT password for {CLINIC}; run `clinicwatch-collector broker-config"),
    ([], lambda s: s.replace("  host: collector.salud.example   # as the broker's TLS certificate names it\n", ""),
     "site.yaml: broker.host: missing (add it)"),
])
def test_render_config_says_what_is_wrong_and_writes_nothing(site: Path, tmp_path: Path, capsys, args, edit,
                                                              message: str) -> None:
    if edit:
        site.write_text(edit(site.read_text()))
    argv = {"--clinic": CLINIC, "--registry": str(REPO / "collector" / "clinics.sample.yaml"), "--site": str(site),
            "--target": "debian", "--out": str(tmp_path / "out")}
    argv.update(dict(zip(args[::2], args[1::2])))
    assert agent_main(["render-config", *[x for kv in argv.items() for x in kv]]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _shell_scripts(rendered: Path) -> list[Path]:
    shipped = [*REPO.glob("scripts/*.sh"), REPO / ".ci" / "run", *REPO.glob("agent/recipes/*.sh"),
               *REPO.glob("agent/recipes/*.init"), *REPO.glob("firmware_configs/**/*.sh")]
    return shipped + [*rendered.glob("*/install.sh"), *rendered.glob("*/*.init")]


def test_every_shell_script_passes_shellcheck(site: Path, tmp_path: Path, capsys) -> None:
    need_binaries("shellcheck")
    for target in TABLE:
        assert render(site, target, tmp_path / "r" / target, "--agent-address", "192.168.88.10") == 0
    scripts = _shell_scripts(tmp_path / "r")
    assert len(scripts) >= 10
    checked = subprocess.run(["shellcheck", *map(str, scripts)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/sh\nrm -rf $1/*\n")  # the check can fail: unquoted, may expand to /*
    assert subprocess.run(["shellcheck", str(broken)], capture_output=True).returncode != 0


def _verify(root: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify of `unit` as installed in `root`: systemd's own units copied there, and the
    unit's commands as empty executables (they are not installed on this machine)."""
    if not (root / "usr" / "lib" / "systemd" / "system").exists():
        (root / "usr" / "lib" / "systemd").mkdir(parents=True)
        shutil.copytree("/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    for line in unit.read_text().splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            command = root / line.split("=", 1)[1].split()[0].lstrip("/")
            command.parent.mkdir(parents=True, exist_ok=True)
            command.write_text("#!/bin/sh\n")
            command.chmod(0o755)
    (root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    shutil.copy(unit, root / "etc" / "systemd" / "system" / unit.name)
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit.name], capture_output=True, text=True)


def test_the_systemd_units_pass_systemd_analyze_verify(site: Path, tmp_path: Path, capsys) -> None:
    need_binaries("systemd-analyze")
    assert render(site, "debian", tmp_path / "debian") == 0
    for unit in (tmp_path / "debian" / "clinicwatch-agent.service", REPO / "collector" / "clinicwatch-collector.service"):
        verified = _verify(tmp_path / "root", unit)
        assert (verified.returncode, verified.stderr) == (0, ""), (unit, verified.stderr)
    broken = tmp_path / "broken.service"  # the check can fail
    broken.write_text((tmp_path / "debian" / "clinicwatch-agent.service").read_text().replace("Restart=always",
                                                                                              "Restart=sometimes"))
    assert "Failed to parse service restart specifier" in _verify(tmp_path / "root", broken).stderr


def test_the_rendered_snmpd_conf_answers_what_the_agent_polls(site: Path, tmp_path: Path, start_server) -> None:
    """The edge box's snmpd.conf in a real snmpd (less its listening address: the test's port instead), with
    the user net-snmp-create-v3-user makes from the rendered keys; the rendered agent configuration, its
    key paths pointed at the rendered files, polls it."""
    need_binaries("snmpd")
    out = tmp_path / "debian"
    assert render(site, "debian", out) == 0
    auth, priv = (out / "snmp-box.auth").read_text().strip(), (out / "snmp-box.priv").read_text().strip()
    body = "\n".join(line for line in (out / "snmpd.conf").read_text().splitlines()
                     if not line.startswith("agentAddress"))
    snmpd = start_server(Snmpd(body + f'\ncreateUser clinicwatch SHA "{auth}" AES "{priv}"\n'))
    config = yaml.safe_load((out / "agent.yaml").read_text())
    [box] = [d for d in config["devices"] if d["name"] == "edge-box"]
    box["port"] = snmpd.port
    box["v3"] |= {"auth_key_file": str(out / "snmp-box.auth"), "priv_key_file": str(out / "snmp-box.priv")}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    polled = subprocess.run([sys.executable, "-m", "agent.cli", "snmp-once", "--config", str(tmp_path / "agent.yaml"),
                             "--device", "edge-box", "--json", "--interval", "1"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert polled.returncode == 0, polled.stderr
    [result] = [json.loads(line) for line in polled.stdout.splitlines()]
    assert result["status"] == "ok", result
    measured = {s["m"] for s in result["samples"]}
    assert {"snmp_device", "snmp_system", "snmp_if", "snmp_host", "snmp_storage"} <= measured


def test_the_central_mosquitto_conf_takes_clinics_over_tls_with_their_own_password_and_topics(tmp_path: Path) -> None:
    """The shipped central-site Mosquitto configuration in a real Mosquitto, its paths and ports pointed at
    the test's own files: a clinic connects over TLS with its broker-config password and its reports reach
    the collector's user on loopback; a report under another clinic's topic does not, an unknown
    password is refused."""
    import ssl
    import time

    import paho.mqtt.client as mqtt

    from lab.certs import CertificateAuthority
    from lab.servers import free_port

    need_binaries("mosquitto", "mosquitto_passwd")
    registry = REPO / "collector" / "clinics.sample.yaml"
    assert subprocess.run([sys.executable, "-m", "collector.cli", "broker-config", "--registry", str(registry),
                           "--out", str(tmp_path / "auth")], cwd=REPO, capture_output=True).returncode == 0
    ca = CertificateAuthority(tmp_path)
    cert, key = ca.issue("broker", ["127.0.0.1"], days_valid=30)
    tls_port, local_port = free_port(), free_port()
    conf = (REPO / "firmware_configs" / "central" / "mosquitto.conf").read_text()
    for installed, here in {"/etc/mosquitto/clinicwatch/": f"{tmp_path}/auth/", "/etc/mosquitto/certs/broker.crt": str(cert),
                            "/etc/mosquitto/certs/broker.key": str(key), "/var/lib/mosquitto/": f"{tmp_path}/",
                            "listener 8883": f"listener {tls_port} 127.0.0.1",
                            "listener 1883 127.0.0.1": f"listener {local_port} 127.0.0.1"}.items():
        assert installed in conf
        conf = conf.replace(installed, here)
    (tmp_path / "mosquitto.conf").write_text(conf + "log_dest stderr\n" + ("user root\n" if os.geteuid() == 0 else ""))
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stderr=subprocess.PIPE, text=True)
    try:
        received: list[str] = []

        def client(user: str, password: str, tls: bool) -> mqtt.Client:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}", protocol=mqtt.MQTTv5)
            c.username_pw_set(user, password)
            if tls:
                c.tls_set(ca_certs=str(ca.ca_file), cert_reqs=ssl.CERT_REQUIRED)
            return c

        def password(user: str) -> str:
            return (tmp_path / "auth" / "credentials" / f"{user}.password").read_text().strip()

        deadline = time.monotonic() + 10
        collector = client("clinicwatch-collector", password("clinicwatch-collector"), tls=False)
        collector.on_message = lambda _c, _u, m: received.append(m.topic)
        while True:
            try:
                collector.connect("127.0.0.1", local_port)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and broker.poll() is None, broker.stderr.read()
                time.sleep(0.1)
        collector.subscribe("clinicwatch/v1/+/telemetry", qos=1)
        collector.loop_start()
        clinic = client("es-ib-0042", password("es-ib-0042"), tls=True)
        clinic.connect("127.0.0.1", tls_port)
        clinic.loop_start()
        time.sleep(0.5)
        clinic.publish("clinicwatch/v1/es-ib-0043/telemetry", b"{}", qos=1).wait_for_publish(5)  # not its own
        clinic.publish("clinicwatch/v1/es-ib-0042/telemetry", b"{}", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert received == ["clinicwatch/v1/es-ib-0042/telemetry"]
        intruder = client("es-ib-0042", "not-the-password", tls=True)
        refused: list[object] = []
        intruder.on_connect = lambda _c, _u, _f, reason, _p: refused.append(reason)
        intruder.connect("127.0.0.1", tls_port)
        intruder.loop_start()
        deadline = time.monotonic() + 5
        while not refused and time.monotonic() < deadline:
            time.sleep(0.1)
        intruder.loop_stop()
        assert refused and refused[0].is_failure, refused
        for c in (clinic, collector):
            c.loop_stop()
            c.disconnect()
    finally:
        broker.terminate()
        broker.wait(10)
