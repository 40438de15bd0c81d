"""`clinicwatch-agent render-config`: everything one clinic's installer copies to its hardware.

    clinicwatch-agent render-config --clinic es-ib-0042 --registry clinics.yaml --site site.yaml \\
        --target debian --out /tmp/es-ib-0042

The clinic comes from the collector's registry; what every clinic shares (the broker's address and
CA, where `clinicwatch-collector broker-config` keeps the clinics' passwords, the probes, devices
every clinic has such as a UPS card) from a site file the central team writes once
(firmware_configs/site.sample.yaml). Nothing is left for the installer to edit: the agent's
configuration, its MQTT password, the SNMP keys of this clinic's devices (made here once, kept if the
output directory already has them), the service definition, the snmpd configuration and an
`install.sh` that puts each file in its place. Targets (firmware_configs/<target>/README.md):

    debian     a Debian 12 / Raspberry Pi OS edge box: systemd unit, snmpd.conf (SNMPv3, loopback)
    openwrt    the agent on an OpenWrt router: procd init script, /etc/config/snmpd (loopback only)
    rutos      the agent on a Teltonika router (RutOS): procd init script; SNMP v3 set in its WebUI
    mikrotik   a MikroTik router polled from an edge box beside it: the edge box's files (as debian)
               and a RouterOS script enabling SNMPv3 read-only for that box only
"""

from __future__ import annotations

import re
import secrets
import shutil
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from msgspec import Meta, structs

from agent.structs import ConfigError, Section, convert

TARGETS = ("debian", "openwrt", "rutos", "mikrotik")
ETC = "/etc/clinicwatch"
STATE_DIRS = {"debian": "/var/lib/clinicwatch", "mikrotik": "/var/lib/clinicwatch",
              # On OpenWrt /var is RAM: the outbox must outlive a power cut, so it sits on the flash overlay.
              "openwrt": "/etc/clinicwatch/state", "rutos": "/etc/clinicwatch/state"}


class RenderError(ValueError):
    pass


class SiteBroker(Section, kw_only=True):
    host: Annotated[str, Meta(min_length=1)]  # the broker's name or address, as its TLS certificate names it
    port: Annotated[int, Meta(ge=1, le=65535)] = 8883
    ca_file: Path  # the CA that signed the broker's certificate (copied as ca.pem)


class Site(Section, kw_only=True):
    """What every clinic of a health service shares (firmware_configs/site.sample.yaml)."""
    broker: SiteBroker
    # the credentials/ directory `clinicwatch-collector broker-config --out DIR` wrote (DIR/credentials)
    credentials: Path
    # the agent's probes, the same in every clinic (default: the broker's host by ICMP and TCP)
    probes: list[dict[str, Any]] | None = None
    # devices every clinic has besides its router, e.g. the UPS card (firmware_configs/ups/README.md)
    devices: list[dict[str, Any]] = []
    data_budget_mb: Annotated[float, Meta(gt=0)] | None = None
    snmp_contact: str = ""  # sysContact of the clinics' devices


def load_site(path: Path) -> Site:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RenderError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RenderError(f"{path}: not YAML: {exc}") from None
    try:
        site = convert(document, Site, str(path), "site file")
    except ConfigError as exc:
        raise RenderError(f"{exc} (see firmware_configs/site.sample.yaml)") from None
    base = path.resolve().parent
    return structs.replace(site, credentials=base / site.credentials,
                           broker=structs.replace(site.broker, ca_file=base / site.broker.ca_file))


def _template(name: str) -> str:
    return resources.files("agent").joinpath("recipes", name).read_text()


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def _key(out: Path, name: str, length: int = 24) -> str:
    """A secret of this clinic's, made once: kept when `out` has it from an earlier rendering."""
    path = out / name
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(length)[:length]
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _v3(name: str, host: str, keys: str) -> dict[str, Any]:
    return {"name": name, "host": host, "version": "3",
            "v3": {"user": "clinicwatch", "level": "authPriv", "auth_protocol": "sha",
                   "auth_key_file": f"{ETC}/{keys}.auth", "priv_protocol": "aes",
                   "priv_key_file": f"{ETC}/{keys}.priv"}}


def render(clinic_id: str, registry_path: Path, site_path: Path, target: str, out: Path,
           router_address: str | None = None, agent_address: str | None = None) -> list[Path]:
    """Write the clinic's files for `target` into `out`; returns them."""
    from collector.registry import RegistryError, load_registry  # the same reading as the collector's

    if target not in TARGETS:
        raise RenderError(f"--target {target}: one of {', '.join(TARGETS)}")
    try:
        registry = load_registry(registry_path)
    except RegistryError as exc:
        raise RenderError(str(exc)) from None
    clinic = next((c for c in registry.clinics if c.id == clinic_id), None)
    if clinic is None:
        near = [c.id for c in registry.clinics if c.id.startswith(clinic_id.split("-")[0])][:5]
        raise RenderError(f"{registry_path}: no clinic {clinic_id!r}" + (f" (some there: {', '.join(near)})"
                                                                             if near else ""))
    site = load_site(site_path)
    password_file = site.credentials / f"{clinic_id}.password"
    if not password_file.exists():
        raise RenderError(f"{password_file}: no MQTT password for {clinic_id}; run `clinicwatch-collector "
                          f"broker-config --registry {registry_path} --out DIR` at the central site and set "
                          f"`credentials: DIR/credentials` in {site_path}")
    if not site.broker.ca_file.exists():
        raise RenderError(f"{site_path}: broker.ca_file {site.broker.ca_file} does not exist")
    if target == "mikrotik" and not agent_address:
        raise RenderError("--target mikrotik: give --agent-address, the edge box's LAN address (the router answers "
                          "SNMP to it only)")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(name: str, text: str, mode: int = 0o644) -> None:
        path = out / name
        path.write_text(text)
        path.chmod(mode)
        written.append(path)

    # Secrets: the MQTT password from broker-config; SNMP keys made here once.
    write("mqtt.password", password_file.read_text(), 0o600)
    shutil.copyfile(site.broker.ca_file, out / "ca.pem")
    written.append(out / "ca.pem")
    secret_files: list[str] = []
    devices: list[dict[str, Any]] = []
    if target in ("debian", "mikrotik"):
        _key(out, "snmp-box.auth"), _key(out, "snmp-box.priv")
        secret_files += ["snmp-box.auth", "snmp-box.priv"]
        devices.append(_v3("edge-box", "127.0.0.1", "snmp-box"))
    if target in ("mikrotik", "rutos"):
        router_auth, router_priv = _key(out, "snmp-router.auth"), _key(out, "snmp-router.priv")
        secret_files += ["snmp-router.auth", "snmp-router.priv"]
        host = "127.0.0.1" if target == "rutos" else (router_address or "192.168.88.1")
        devices.append({**_v3("router", host, "snmp-router"), "interfaces": {"include": ["ether*", "lte*", "wwan*",
                                                                                         "mob*", "bridge*", "br-lan"]}})
    if target == "openwrt":
        community = _key(out, "snmp.community", 20)
        secret_files.append("snmp.community")
        devices.append({"name": "router", "host": "127.0.0.1", "community_file": f"{ETC}/snmp.community",
                        "interfaces": {"include": ["wan*", "wwan*", "eth*", "br-lan", "lan*"]}})
    for device in site.devices:  # a shared device's community, made per clinic: set the same on the device
        community_file = str(device.get("community_file", ""))
        if community_file.startswith(f"{ETC}/"):
            name = community_file.removeprefix(f"{ETC}/")
            _key(out, name, 20)
            secret_files.append(name)
    devices += site.devices
    written += [out / name for name in secret_files]

    gateway = router_address or {"openwrt": None, "rutos": None, "mikrotik": "192.168.88.1"}.get(target)
    probes = site.probes if site.probes is not None else [
        *([{"kind": "icmp", "name": "gateway", "host": gateway}] if gateway else []),
        {"kind": "icmp", "name": "central", "host": site.broker.host},
        {"kind": "tcp", "name": "central", "host": site.broker.host, "port": site.broker.port}]
    config: dict[str, Any] = {
        "clinic_id": clinic_id, "state_dir": STATE_DIRS[target],
        "mqtt": {"host": site.broker.host, "port": site.broker.port, "password_file": f"{ETC}/mqtt.password",
                 "tls": {"ca_file": f"{ETC}/ca.pem"}},
        "outbox": {"max_mb": 64 if target in ("debian", "mikrotik") else 8},
        "clock": {"sync_check": "kernel"},
        "probes": probes,
    }
    if devices:
        config["devices"] = devices
    if site.data_budget_mb is not None:
        config["data_budget_mb"] = site.data_budget_mb
    header = (f"# ClinicWatch agent of clinic {clinic_id} ({clinic.name}), rendered by `clinicwatch-agent "
              f"render-config --target {target}`.\n# Render again rather than edit: the registry and the site "
              f"file are the source.\n")
    write("agent.yaml", header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    values = {"clinic_id": clinic_id, "clinic_name": clinic.name.replace("'", " ").replace('"', " "),
              "snmp_contact": site.snmp_contact.replace("'", " ").replace('"', " "),
              "broker": f"{site.broker.host}:{site.broker.port}", "state_dir": STATE_DIRS[target],
              "secret_files": " ".join(secret_files)}
    if target in ("debian", "mikrotik"):
        write("clinicwatch-agent.service", _template("clinicwatch-agent.service"))
        write("snmpd.conf", _fill(_template("snmpd.conf"), values))
        write("install.sh", _fill(_template("install-debian.sh"), values), 0o755)
    else:
        write("clinicwatch-agent.init", _template("clinicwatch-agent.init"), 0o755)
        if target == "openwrt":
            write("snmpd.uci", _fill(_template("snmpd.uci"), {**values, "snmp_community": community,
                                                              "snmp_source": "127.0.0.1",
                                                              "snmp_listen": "UDP:127.0.0.1:161"}))
            step = ('echo "   snmpd: a community of this clinic\'s own, answered on loopback only"\n'
                    "opkg install snmpd >/dev/null\ncp snmpd.uci /etc/config/snmpd\n/etc/init.d/snmpd restart\n")
        else:
            step = ('echo "   SNMP: in the WebUI, Services > SNMP: enable SNMP v3 with user clinicwatch, SHA and AES,"\n'
                    'echo "   authPriv, the keys in snmp-router.auth and snmp-router.priv (firmware_configs/rutos/)"\n')
        write("install.sh", _fill(_template("install-openwrt.sh"), {**values, "snmp_step": step}), 0o755)
    if target == "mikrotik":
        write("clinicwatch-snmp.rsc", _fill(_template("routeros.rsc"), {
            **values, "agent_address": agent_address or "", "router_auth": router_auth, "router_priv": router_priv}))
    for path in written:
        unfilled = re.search(r"@[a-z_]+@", path.read_text()) if path.suffix in ("", ".sh", ".conf", ".uci",
                                                                                 ".rsc", ".yaml") else None
        if unfilled:
            raise RenderError(f"{path.name}: unfilled {unfilled.group()} (a bug in the recipe)")
    return written
