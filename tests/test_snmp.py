"""SNMP polling against a real net-snmp snmpd.

Most devices here are simulated: snmpd answers SNMP itself (v2c and v3, its own
encoding and USM) while the values under the device's subtrees come from
lab/snmpdevice.py as its pass_persist program, so the test controls them: counters
with a rate that wrap on their own, an uptime that resets, an interface that goes
down, a UPS that goes on battery. One test polls snmpd's own view of this machine.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agent.snmp import DevicePoller, DeviceSpec, Engines, Poll, Profiles
from agent.structs import convert
from lab.servers import Snmpd, free_port
from lab.snmpdevice import IF, IFX, SIMULATED_MODULES, UPS, Port, SimulatedDevice, router, ups_entries

V3_USERS = """\
createUser alice SHA "alice-auth-2026" AES "alice-priv-2026"
createUser bob SHA "bob-auth-2026"
createUser carol
rouser alice priv
rouser bob auth
rouser carol noauth
"""
# Between two polls that a rate is checked over. A reading is timed at the middle of its request, so a
# rate may be off by half a round trip at each end over this interval: a busy 2-core CI machine has
# made round trips of 50-100 ms through snmpd and its pass_persist program, several % over 1-2 s.
RATE_INTERVAL_S = 5.0
# The first poll of a device walks its tables unsized (25 rows a request), a request many times longer
# than the sized ones after it: a rate is timed between two sized polls, after a poll that sizes them.


@pytest.fixture
def device(start_server, tmp_path: Path):
    """make(ports, **router options) -> (SimulatedDevice, Snmpd) serving it over v2c `public` and v3 users."""

    def make(ports: list[Port] | None = None, v3_users: str = V3_USERS, **options: Any) -> tuple[SimulatedDevice, Snmpd]:
        simulated = SimulatedDevice(tmp_path / f"device-{len(list(tmp_path.glob('device-*.json')))}.json")
        router(simulated, ports if ports is not None else [Port("wan", 125_000, 12_500), Port("lan", 1000, 2000)],
               **options)
        snmpd = start_server(Snmpd(simulated.snmpd_config("public", extra=v3_users),
                                   exclude_modules=SIMULATED_MODULES))
        return simulated, snmpd
    return make


class Polling:
    """A poller on its own engine, driven from synchronous test code."""

    def __init__(self, snmpd: Snmpd, profiles: Profiles | None = None, memory: Any = None, **spec: Any) -> None:
        spec = {"name": "rtr", "host": snmpd.host, "port": snmpd.port, "community": "public", **spec}
        if spec.get("version") == "3":
            spec.pop("community")
        self.loop = asyncio.new_event_loop()
        self.engines = Engines()
        self.poller = self.loop.run_until_complete(self._poller(convert(spec, DeviceSpec, "test"), profiles or Profiles(), memory))

    async def _poller(self, spec: DeviceSpec, profiles: Profiles, memory: Any) -> DevicePoller:
        return DevicePoller(spec, self.engines, profiles, memory)  # its engine belongs to this loop

    def poll(self, report: bool = True) -> Poll:
        return self.loop.run_until_complete(self.poller.poll(report))

    def close(self) -> None:
        self.engines.close()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.wait(pending))
        self.loop.close()


@pytest.fixture
def polling():
    made: list[Polling] = []

    def make(snmpd: Snmpd, **kw: Any) -> Polling:
        made.append(Polling(snmpd, **kw))
        return made[-1]
    yield make
    for p in made:
        p.close()


def samples(poll: Poll, measurement: str) -> dict[str, dict[str, Any]]:
    """{label: fields} for one measurement (label: the tag that is not `device`)."""
    out = {}
    for m, tags, fields in poll.samples:
        if m == measurement:
            label = next((v for k, v in tags.items() if k not in ("device", "profile")), "")
            out[label] = fields
    return out


def events(poll: Poll, kind: str) -> list[dict[str, Any]]:
    return [detail for k, detail in poll.events if k == kind]


def snmpget(snmpd: Snmpd, *oids: str, args: tuple[str, ...] = ("-v2c", "-c", "public")) -> list[int]:
    out = subprocess.run(["snmpget", *args, "-Oqv", f"{snmpd.host}:{snmpd.port}", *oids],
                         capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()]


def test_32bit_counter_wrap_gives_the_right_rate(device, polling) -> None:
    # 10 Mbit/s into a counter 2 MB short of 2^32: it wraps 1.6 s after the first poll.
    simulated, snmpd = device([Port("wan", in_rate=1_250_000, out_rate=50_000, in_octets=2**32 - 2_000_000,
                                    in_errors_rate=20)],
                              hc=False)
    p = polling(snmpd)
    sizing = p.poll()
    first = p.poll()
    time.sleep(RATE_INTERVAL_S)
    second = p.poll()
    assert first.status == second.status == "ok", (first.detail, second.detail)
    assert "in_bps" not in samples(sizing, "snmp_if")["wan"]  # one reading is not a rate
    assert second.readings["if:wan"]["in_octets"] < first.readings["if:wan"]["in_octets"]  # it did wrap
    wan = samples(second, "snmp_if")["wan"]
    assert wan["counter_bits"] == 32
    assert wan["in_bps"] == pytest.approx(10_000_000, rel=0.02)
    assert wan["out_bps"] == pytest.approx(400_000, rel=0.02)
    assert wan["in_errors_ps"] == pytest.approx(20, rel=0.05)


@pytest.mark.parametrize("hc", [True, False], ids=["hc-64bit", "32bit-only"])
def test_counters_agree_with_net_snmp_snmpget(device, polling, hc: bool) -> None:
    start = 2**62 if hc else 3_000_000_000  # an HC counter far past what 32 bits can hold
    simulated, snmpd = device([Port("wan", in_rate=600_000, out_rate=70_000, in_octets=start, out_octets=start // 3)],
                              hc=hc)
    in_oid, out_oid = (IFX + "6.1", IFX + "10.1") if hc else (IF + "10.1", IF + "16.1")
    p = polling(snmpd)
    p.poll()  # sizes the walk
    before = snmpget(snmpd, in_oid, out_oid)
    first = p.poll()
    after = snmpget(snmpd, in_oid, out_oid)
    raw = first.readings["if:wan"]
    # What the agent read lies between what net-snmp's own client read just before and just after.
    assert before[0] <= raw["in_octets"] <= after[0]
    assert before[1] <= raw["out_octets"] <= after[1]
    t0 = time.monotonic()
    time.sleep(RATE_INTERVAL_S)
    second = p.poll()
    reference = snmpget(snmpd, in_oid)
    t1 = time.monotonic()
    reference_bps = (reference[0] - after[0]) * 8 / (t1 - t0)
    wan = samples(second, "snmp_if")["wan"]
    assert wan["counter_bits"] == (64 if hc else 32)
    assert wan["in_bps"] == pytest.approx(reference_bps, rel=0.03)
    assert wan["in_bps"] == pytest.approx(4_800_000, rel=0.02)
    assert wan["speed_bps"] == 100_000_000


def test_between_reports_a_rate_is_the_average_over_the_whole_interval(device, polling) -> None:
    from lab.snmpdevice import current

    simulated, snmpd = device([Port("wan", in_rate=100_000)])
    p = polling(snmpd)
    p.poll()  # sizes the walk
    began = p.poll()
    t0 = time.monotonic()
    time.sleep(2)
    between = p.poll(report=False)  # read, kept, not given
    assert "in_bps" not in samples(between, "snmp_if")["wan"]
    assert samples(between, "snmp_if")["wan"]["oper_up"] is True  # the rest of the poll as always
    oid = IFX + "6.1"  # the wan's HC in-octets: 400 kB/s from now, the count going on from where it is
    simulated.set(oid, "counter64", int(current(simulated.values[oid], time.time())), rate=400_000)
    time.sleep(2)
    reported = p.poll()
    t1 = time.monotonic()
    start, end = began.readings["if:wan"]["in_octets"], reported.readings["if:wan"]["in_octets"]
    reference_bps = (int(end) - int(start)) * 8 / (t1 - t0)
    wan = samples(reported, "snmp_if")["wan"]
    # 2 s at 0.8 Mbit/s and 2 s at 3.2: 2.0 on average, where the last poll alone would say 3.2.
    assert wan["in_bps"] == pytest.approx(reference_bps, rel=0.03)
    assert wan["in_bps"] == pytest.approx(2_000_000, rel=0.05)


def test_device_reboot_gives_an_event_no_bogus_rate_and_rates_resume(device, polling, tmp_path: Path) -> None:
    simulated, snmpd = device([Port("wan", in_rate=250_000, in_octets=3_000_000_000)], hc=False)
    p = polling(snmpd)
    p.poll()  # sizes the walk
    p.poll()
    time.sleep(RATE_INTERVAL_S)
    steady = p.poll()
    assert samples(steady, "snmp_if")["wan"]["in_bps"] == pytest.approx(2_000_000, rel=0.03)
    # The router reboots: uptime back to 4 s, counters back to near zero (which is "backwards" for 32 bits).
    router(simulated, [Port("wan", in_rate=250_000, in_octets=1000)], uptime_s=4, hc=False)
    rebooted = p.poll()
    reboot = events(rebooted, "device_reboot")
    assert len(reboot) == 1 and reboot[0]["uptime_s"] < 10 and reboot[0]["previous_uptime_s"] > 3600
    assert "in_bps" not in samples(rebooted, "snmp_if")["wan"]  # neither negative nor a fake wrap of ~4 GB
    assert rebooted.status == "ok"
    time.sleep(RATE_INTERVAL_S)
    resumed = p.poll()
    assert not resumed.events
    assert samples(resumed, "snmp_if")["wan"]["in_bps"] == pytest.approx(2_000_000, rel=0.03)


def test_uptime_rolling_over_after_497_days_is_not_a_reboot(device, polling) -> None:
    # sysUpTime is 32-bit TimeTicks: it goes back to 0 after 497 days of uptime. 3 s before that:
    simulated, snmpd = device([Port("wan", in_rate=100_000)], uptime_s=(2**32 - 300) / 100)
    p = polling(snmpd)
    p.poll()  # sizes the walk
    p.poll()
    time.sleep(RATE_INTERVAL_S)
    after = p.poll()
    assert after.readings["system"]["uptime_ticks"] < 1000  # it did roll over
    assert not events(after, "device_reboot")
    assert samples(after, "snmp_if")["wan"]["in_bps"] == pytest.approx(800_000, rel=0.03)


def test_snmp_agent_restart_is_told_from_a_reboot_by_host_uptime(device, polling) -> None:
    simulated, snmpd = device(uptime_s=7200, host_uptime_s=86_400)
    p = polling(snmpd)
    p.poll()
    simulated.set("1.3.6.1.2.1.1.3.0", "timeticks", 300, rate=100)  # snmpd restarted; the host did not
    restarted = p.poll()
    assert [k for k, _ in restarted.events] == ["snmp_agent_restart"]
    simulated.update({"1.3.6.1.2.1.1.3.0": ("timeticks", 200, 100),  # now the host itself reboots
                      "1.3.6.1.2.1.25.1.1.0": ("timeticks", 250, 100)})
    rebooted = p.poll()
    assert [k for k, _ in rebooted.events] == ["device_reboot"]


def test_interface_going_down_and_up_gives_events(device, polling) -> None:
    simulated, snmpd = device([Port("wan", 1000), Port("lan", 1000)])
    p = polling(snmpd)
    assert not p.poll().events
    simulated.set(IF + "8.1", "integer", 2)  # wan: oper down (cable pulled, modem lost carrier)
    down = p.poll()
    assert [(k, d["interface"], d["status"], d["previous"]) for k, d in down.events] == [
        ("interface_down", "wan", "down", "up")]
    assert samples(down, "snmp_if")["wan"]["oper_up"] is False
    assert samples(down, "snmp_if")["lan"]["oper_up"] is True
    assert not p.poll().events  # still down: no repeat
    simulated.set(IF + "8.1", "integer", 1)
    up = p.poll()
    assert [(k, d["interface"]) for k, d in up.events] == [("interface_up", "wan")]


def test_an_object_the_device_does_not_serve_is_absent_from_samples_and_events(device, polling) -> None:
    simulated, snmpd = device([Port("wan", 1000), Port("lan", 1000)])
    simulated.remove(IF + "7.1")  # the wan port has no ifAdminStatus (some modems' agents)
    p = polling(snmpd)
    first = p.poll()
    assert "admin_up" not in samples(first, "snmp_if")["wan"]
    assert samples(first, "snmp_if")["lan"]["admin_up"] is True
    simulated.set(IF + "8.1", "integer", 2)
    simulated.set(IF + "8.2", "integer", 2)
    down = {d["interface"]: d for k, d in p.poll().events if k == "interface_down"}
    assert set(down) == {"wan", "lan"}
    assert "admin_up" not in down["wan"]  # not served: not reported, never `False`
    assert down["lan"]["admin_up"] is True


def test_interface_that_went_down_while_the_agent_was_stopped_is_reported(device, polling, tmp_path) -> None:
    from agent.probes import ProbeContext

    simulated, snmpd = device([Port("wan", 1000)])
    polling(snmpd, memory=ProbeContext(state_dir=tmp_path)).poll()
    simulated.set(IF + "8.1", "integer", 7)  # lowerLayerDown
    restarted_agent = polling(snmpd, memory=ProbeContext(state_dir=tmp_path))
    assert [(k, d["status"]) for k, d in restarted_agent.poll().events] == [("interface_down", "lower_layer_down")]


def test_ups_on_battery_gives_the_power_event(device, polling) -> None:
    simulated, snmpd = device([Port("wan", 1000)])
    simulated.update(ups_entries(source=3, seconds_on_battery=0, charge=100, minutes=95))
    p = polling(snmpd)
    mains = p.poll()
    ups = samples(mains, "snmp_ups")[""]
    assert ups["on_battery"] is False and ups["output_source"] == "normal" and ups["input_voltage_v"] == 230
    assert not mains.events
    simulated.update(ups_entries(source=5, seconds_on_battery=42, charge=97, minutes=88, voltage=0))
    cut = p.poll()
    assert [(k, d["charge_pct"], d["minutes_remaining"]) for k, d in cut.events] == [("on_battery", 97, 88)]
    ups = samples(cut, "snmp_ups")[""]
    assert ups["on_battery"] is True and ups["seconds_on_battery"] == 42 and ups["input_voltage_v"] == 0
    simulated.update(ups_entries(source=5, seconds_on_battery=900, charge=18, minutes=6, status=3, voltage=0))
    assert [k for k, _ in p.poll().events] == ["battery_low"]
    simulated.update(ups_entries(source=3, seconds_on_battery=0, charge=20, minutes=9))
    assert [k for k, _ in p.poll().events] == ["power_restored"]


def test_v3_authpriv_works_with_the_right_keys_and_fails_clearly_with_wrong_ones(device, polling) -> None:
    simulated, snmpd = device([Port("wan", in_rate=50_000)])
    v3 = {"user": "alice", "level": "authPriv", "auth_protocol": "sha", "auth_key": "alice-auth-2026",
          "priv_protocol": "aes", "priv_key": "alice-priv-2026"}
    good = polling(snmpd, version="3", v3=v3)
    good.poll()  # the first request also discovers the engine: its reading is not the one timed
    first = good.poll()
    time.sleep(RATE_INTERVAL_S)
    polled = good.poll()
    assert first.status == polled.status == "ok", polled.detail
    assert samples(polled, "snmp_if")["wan"]["in_bps"] == pytest.approx(400_000, rel=0.05)

    wrong_auth = polling(snmpd, version="3", v3={**v3, "auth_key": "not-alices-key"}, timeout_s=1, retries=0).poll()
    assert wrong_auth.status == "auth_failed"
    assert "auth_key" in wrong_auth.detail
    assert [k for k, _ in wrong_auth.events] == ["device_unreachable"]

    wrong_priv = polling(snmpd, version="3", v3={**v3, "priv_key": "not-alices-priv"}, timeout_s=1, retries=0).poll()
    assert wrong_priv.status == "unreachable"  # the device cannot decrypt: it drops the request
    assert "privacy key" in wrong_priv.detail

    stranger = polling(snmpd, version="3", v3={**v3, "user": "mallory"}, timeout_s=1, retries=0).poll()
    assert (stranger.status, stranger.detail) == ("unknown_user", "the device does not know this SNMPv3 user: 'mallory'")
    assert samples(stranger, "snmp_device")[""]["reachable"] is False
    assert len(stranger.samples) == 1  # the device's status and nothing made up


@pytest.mark.parametrize("auth,priv", [("sha", "aes"), ("sha256", "aes")])
def test_two_devices_with_one_user_name_and_their_own_keys_are_both_read(device, tmp_path: Path, auth: str,
                                                                         priv: str) -> None:
    """Installers reuse a user name (`clinicwatch`) with a key per device: one agent polls both at once."""
    import json

    import yaml

    keys = {"rtr": ("rtr-auth-2026-x", "rtr-priv-2026-x"), "ups": ("ups-auth-2026-y", "ups-priv-2026-y"),
            "modem": ("modem-auth-2026-z", "modem-priv-2026-z")}
    devices = []
    for name, (auth_key, priv_key) in keys.items():
        _, snmpd = device([Port("wan", in_rate=10_000)], v3_users=f"createUser clinicwatch {auth.upper()} "
                          f'"{auth_key}" AES "{priv_key}"\nrouser clinicwatch priv\n')
        devices.append({"name": name, "host": snmpd.host, "port": snmpd.port, "version": "3", "timeout_s": 1,
                        "retries": 1, "v3": {"user": "clinicwatch", "auth_protocol": auth, "auth_key": auth_key,
                                             "priv_protocol": priv, "priv_key": priv_key}})
    # A fourth device has the router's credentials (keys are localized per device engine all the same).
    _, twin = device(v3_users=f'createUser clinicwatch {auth.upper()} "{keys["rtr"][0]}" AES "{keys["rtr"][1]}"'
                              '\nrouser clinicwatch priv\n')
    devices.append({**devices[0], "name": "switch", "port": twin.port})
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"clinic_id": "es-ib-0001", "devices": devices}))
    out = subprocess.run([sys.executable, "-m", "agent.cli", "snmp-once", "--config", str(config), "--json",
                          "--interval", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    polls = {p["device"]: p for p in map(json.loads, out.stdout.splitlines())}
    assert {name: p["status"] for name, p in polls.items()} == {"rtr": "ok", "ups": "ok", "modem": "ok",
                                                                "switch": "ok"}, out.stdout
    assert all(p["samples"][0]["f"]["reachable"] for p in polls.values())


# net-snmp's createUser names for the agent's priv_protocol values.
NET_SNMP_PRIV = {"aes": "AES", "aes192": "AES192", "aes256": "AES256", "aes192c": "AES192C", "aes256c": "AES256C",
                 "des": "DES"}
_PRIVACY_PROBE = """
import asyncio, json, sys
from agent.snmp import DeviceSpec, Engines
from agent.snmp.client import Client, SnmpError
from agent.structs import convert
spec = convert(json.loads(sys.argv[1]), DeviceSpec, "test")
async def main():
    engines = Engines()
    try:
        client = Client(engines, spec)
        try:
            values = await client.get([(1, 3, 6, 1, 2, 1, 1, 3, 0)])
            reading = values[(1, 3, 6, 1, 2, 1, 1, 3, 0)]
            answer = {"kind": reading.kind}
        except SnmpError as exc:
            answer = {"status": exc.status}
    finally:
        engines.close()
    answer["cryptography"] = "cryptography" in sys.modules
    print(json.dumps(answer))
asyncio.run(main())
"""


@pytest.mark.parametrize("priv", list(NET_SNMP_PRIV))
def test_every_v3_privacy_protocol_reads_a_real_snmpd_and_only_des_loads_cryptography(start_server, priv: str) -> None:
    """AES (all key sizes, both ways of extending the key) goes through the OpenSSL the ssl module links
    (agent/snmp/aescfb.py): the agent's process never loads `cryptography` for it. A wrong priv key is still
    refused, so the cipher is really in use."""
    import json

    snmpd = start_server(Snmpd(f'createUser clinicwatch SHA "clinic-auth-2026" {NET_SNMP_PRIV[priv]} '
                               '"clinic-priv-2026"\nrouser clinicwatch priv\n'))

    def read(priv_key: str) -> dict[str, Any]:
        spec = {"name": "rtr", "host": snmpd.host, "port": snmpd.port, "version": "3", "timeout_s": 1, "retries": 0,
                "v3": {"user": "clinicwatch", "auth_protocol": "sha", "auth_key": "clinic-auth-2026",
                       "priv_protocol": priv, "priv_key": priv_key}}
        out = subprocess.run([sys.executable, "-c", _PRIVACY_PROBE, json.dumps(spec)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert read("clinic-priv-2026") == {"kind": "timeticks", "cryptography": priv == "des"}
    assert read("not-the-priv-key")["status"] == "timeout"  # snmpd cannot decrypt it, and drops it


# net-snmp's createUser names for the agent's auth_protocol values.
NET_SNMP_AUTH = {"md5": "MD5", "sha": "SHA", "sha224": "SHA-224", "sha256": "SHA-256", "sha384": "SHA-384",
                 "sha512": "SHA-512"}
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def read_uptime(spec: dict[str, Any], then: Any = None) -> dict[str, Any]:
    """One GET of sysUpTime by a fresh client: {"kind": ...} or {"status": ..., "detail": ...}; `then(client)`
    (a coroutine function) runs after it on the same client, its result under "then"."""
    from agent.snmp.client import Client, SnmpError

    async def main() -> dict[str, Any]:
        engines = Engines()
        try:
            client = Client(engines, convert(spec, DeviceSpec, "test"))
            try:
                answer: dict[str, Any] = {"kind": (await client.get([SYS_UPTIME]))[SYS_UPTIME].kind}
            except SnmpError as exc:
                answer = {"status": exc.status, "detail": exc.detail}
            if then is not None:
                answer["then"] = await then(client)
            return answer
        finally:
            engines.close()
    return asyncio.run(main())


@pytest.mark.parametrize("auth", list(NET_SNMP_AUTH))
def test_every_v3_auth_protocol_reads_a_real_snmpd_and_a_wrong_key_is_refused(start_server, auth: str) -> None:
    snmpd = start_server(Snmpd(f'createUser clinicwatch {NET_SNMP_AUTH[auth]} "clinic-auth-2026" AES '
                               '"clinic-priv-2026"\nrouser clinicwatch priv\n'))
    spec = {"name": "rtr", "host": snmpd.host, "port": snmpd.port, "version": "3", "timeout_s": 1, "retries": 0,
            "v3": {"user": "clinicwatch", "auth_protocol": auth, "auth_key": "clinic-auth-2026",
                   "priv_protocol": "aes", "priv_key": "clinic-priv-2026"}}
    assert read_uptime(spec) == {"kind": "timeticks"}
    wrong = read_uptime({**spec, "v3": {**spec["v3"], "auth_key": "not-the-auth-key"}})
    assert wrong == {"status": "auth_failed", "detail": "the device refused our SNMPv3 authentication (wrong "
                                                        "auth_key or auth_protocol)"}


def test_a_v3_device_that_restarts_or_is_replaced_is_read_at_the_next_poll(start_server, polling,
                                                                          tmp_path: Path) -> None:
    """A restart raises the device's engine boots (RFC 3414's time window: it answers our next request with a
    notInTimeWindow report, carrying its new boots and time); a replaced device has another engine id
    (an unknownEngineID report): either way the agent learns it and asks again within the same poll."""
    simulated = SimulatedDevice(tmp_path / "device.json")
    router(simulated, [Port("wan", 125_000, 12_500)])
    config = simulated.snmpd_config("public", extra=V3_USERS)
    snmpd = start_server(Snmpd(config, exclude_modules=SIMULATED_MODULES, persistent=True))
    alice = {"user": "alice", "level": "authPriv", "auth_protocol": "sha", "auth_key": "alice-auth-2026",
             "priv_protocol": "aes", "priv_key": "alice-priv-2026"}
    p = polling(snmpd, version="3", v3=alice, timeout_s=1, retries=0)
    assert p.poll().status == "ok"
    client = p.poller.client
    assert client.security is not None
    boots, engine_id = client._clock[0], client.security.engine_id
    snmpd.restart()
    restarted = p.poll()
    assert (restarted.status, restarted.detail) == ("ok", "")
    assert (client._clock[0], client.security.engine_id) == (boots + 1, engine_id)
    snmpd.stop()
    other = Snmpd(config, exclude_modules=SIMULATED_MODULES, persistent=True)  # a state of its own: another engine
    other.port = snmpd.port
    start_server(other)
    replaced = p.poll()
    assert (replaced.status, replaced.detail) == ("ok", "")
    assert client.security.engine_id != engine_id and client._clock[0] == 1


def test_stray_datagrams_are_ignored_and_a_malformed_reply_is_an_error_not_a_crash() -> None:
    """A device (here a UDP socket of the test's) that sends junk, then a reply to another request, then the
    answer: the client takes the answer. One whose answer is malformed: an error that says so."""
    import threading

    from agent.snmp import ber

    def answer(request: bytes, request_id_shift: int, broken: bool) -> bytes:
        top = ber.children(request, *ber.expect(ber.header(request, 0), ber.SEQUENCE, "message"))
        request_id = ber.read_pdu(request, top[2])[1]
        bind = ber.sequence(ber.oid(SYS_UPTIME), ber.tlv(ber.TIMETICKS, (4242).to_bytes(2, "big")))
        binds = ber.tlv(0x31 if broken else ber.SEQUENCE, bind)  # 0x31: a SET where the bindings' SEQUENCE is due
        pdu = ber.tlv(ber.RESPONSE, ber.integer(request_id + request_id_shift) + ber.integer(0) + ber.integer(0) + binds)
        return ber.sequence(ber.integer(1), ber.octets(b"public"), pdu)

    def serve(sock: socket.socket, broken: bool) -> None:
        while True:
            try:
                request, peer = sock.recvfrom(2048)
            except OSError:
                return
            sock.sendto(b"\x30\x03junk", peer)
            sock.sendto(answer(request, 1, False), peer)
            sock.sendto(answer(request, 0, broken), peer)

    results = []
    for broken in (False, True):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        threading.Thread(target=serve, args=(sock, broken), daemon=True).start()
        spec = {"name": "rtr", "host": "127.0.0.1", "port": sock.getsockname()[1], "community": "public",
                "timeout_s": 2, "retries": 0}

        async def requests(client: Any) -> int:
            return client.requests
        results.append(read_uptime(spec, then=requests))
        sock.close()
    assert results[0] == {"kind": "timeticks", "then": 1}
    assert results[1] == {"status": "error", "detail": "malformed reply: variable bindings: tag 0x31, expected 0x30",
                          "then": 1}


def test_the_aes_cfb128_cipher_gives_what_cryptography_gives() -> None:
    """The reference is the `cryptography` package (pysnmp's own choice), installed for the tests only."""
    import random

    from agent.snmp import aescfb
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    rng = random.Random(14)
    for key_size in (16, 24, 32):
        for length in (0, 1, 15, 16, 17, 484, 1472):
            key, iv, data = rng.randbytes(key_size), rng.randbytes(16), rng.randbytes(length)
            encryptor = Cipher(algorithms.AES(key), CFB(iv)).encryptor()
            expected = encryptor.update(data) + encryptor.finalize()
            assert aescfb.cfb128(key, iv, data, encrypt=True) == expected
            assert aescfb.cfb128(key, iv, expected, encrypt=False) == data
    with pytest.raises(ValueError, match="^an AES key is 16, 24 or 32 bytes, not 8$"):
        aescfb.cfb128(bytes(8), bytes(16), b"x", encrypt=True)
    with pytest.raises(ValueError, match=r"^AES-CFB128's IV is 16 bytes, not 8$"):
        aescfb.cfb128(bytes(16), bytes(8), b"x", encrypt=True)


def test_des_privacy_without_cryptography_is_a_config_error_that_says_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("clinic_id: es-ib-0001\ndevices:\n  - name: rtr\n    host: 192.0.2.1\n    version: '3'\n"
                      "    v3: {user: clinicwatch, auth_key: clinic-auth-2026, priv_protocol: des, "
                      "priv_key: clinic-priv-2026}\n")
    # `cryptography` made unimportable in this process only, as on a router's install without it.
    script = ("import sys; sys.modules['cryptography'] = None\n"
              "from pathlib import Path\nfrom agent.config import ConfigError, load_config\n"
              "try:\n    load_config(Path(sys.argv[1]))\nexcept ConfigError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"{config}: invalid configuration:\n  {config}: devices[0].v3: priv_protocol des needs the Python package `cryptography`, which the agent's "
        "install leaves out: install it beside the agent (pip install cryptography), or use aes, which net-snmp "
        "and most devices offer")


@pytest.mark.parametrize("level,user,keys", [("authNoPriv", "bob", {"auth_key": "bob-auth-2026"}),
                                             ("noAuthNoPriv", "carol", {})])
def test_v3_lower_security_levels_are_accepted(device, polling, level: str, user: str, keys: dict) -> None:
    simulated, snmpd = device()
    polled = polling(snmpd, version="3", v3={"user": user, "level": level, **keys}).poll()
    assert polled.status == "ok", polled.detail
    assert set(samples(polled, "snmp_if")) == {"wan", "lan"}


def test_a_silent_device_is_unreachable_once_then_reachable_again(device, polling) -> None:
    simulated, snmpd = device()
    p = polling(snmpd, timeout_s=0.5, retries=1)
    assert p.poll().status == "ok"
    os.kill(snmpd.proc.pid, signal.SIGSTOP)  # hung: no answer, no ICMP error either
    try:
        silent = p.poll()
        again = p.poll()
    finally:
        os.kill(snmpd.proc.pid, signal.SIGCONT)
    assert silent.status == again.status == "unreachable"
    assert "no response" in silent.detail
    assert [k for k, _ in silent.events] == ["device_unreachable"] and not again.events
    assert [m for m, _, _ in silent.samples] == ["snmp_device"]
    back = p.poll()
    assert back.status == "ok" and [k for k, _ in back.events] == ["device_reachable"]


def test_nothing_listening_is_unreachable(polling) -> None:
    nobody = SimpleNamespace(host="127.0.0.1", port=free_port(socket.SOCK_DGRAM))
    polled = polling(nobody, timeout_s=0.3, retries=0).poll()
    assert polled.status == "unreachable"
    assert [k for k, _ in polled.events] == ["device_unreachable"]


def test_a_device_that_answers_only_part_of_a_walk_gives_partial_status_and_no_made_up_values(device,
                                                                                               polling) -> None:
    ports = [Port(f"eth{i}", 1000 * i) for i in range(1, 5)]
    simulated, snmpd = device(ports)
    # Two rows per GETBULK; the device hangs when asked for eth3's counters (second page).
    simulated.set(IF + "10.3", "counter", 5, stall_s=2.0)
    polled = polling(snmpd, timeout_s=0.5, retries=0, max_repetitions=2).poll()
    assert polled.status == "partial"
    assert "interfaces: walk stopped after" in polled.detail and "timeout" in polled.detail
    got = samples(polled, "snmp_if")
    assert set(got) <= {"eth1", "eth2"} and "eth1" in got
    assert all(name not in got for name in ("eth3", "eth4"))


def test_wrong_types_and_missing_objects_are_named_not_guessed(device, polling) -> None:
    simulated, snmpd = device([Port("wan", 1000), Port("lan", 1000)], hc=False)
    simulated.set(IF + "10.2", "string", "garbage")  # lan's ifInOctets as text
    p = polling(snmpd)
    p.poll()
    time.sleep(1)
    polled = p.poll()
    assert polled.status == "partial"
    assert "in_octets.2 is string 'garbage', expected counter32" in polled.detail
    lan = samples(polled, "snmp_if")["lan"]
    assert "in_bps" not in lan and "out_bps" in lan
    assert "in_bps" in samples(polled, "snmp_if")["wan"]
    assert "snmp_ups" not in {m for m, _, _ in polled.samples}  # no UPS-MIB here: absent, not an error


def test_cellular_signal_through_the_teltonika_and_mikrotik_profiles(device, polling) -> None:
    teltonika, snmpd = device(sys_object_id="1.3.6.1.4.1.48690", descr="RUTX11")
    row = "1.3.6.1.4.1.48690.2.2.1."
    teltonika.update({row + "12.1": ("integer", -71), row + "13.1": ("string", "Movistar"),
                      row + "16.1": ("string", "LTE"), row + "19.1": ("integer", 12),
                      row + "20.1": ("integer", -98), row + "21.1": ("integer", -11),
                      row + "11.1": ("string", "Registered, home")})
    polled = polling(snmpd).poll()
    assert polled.profile == "teltonika-rutos" and polled.status == "ok", polled.detail
    assert samples(polled, "snmp_cellular") == {"1": {
        "rssi_dbm": -71.0, "operator": "Movistar", "technology": "LTE", "sinr_db": 12.0, "rsrp_dbm": -98.0,
        "rsrq_db": -11.0, "registration": "Registered, home"}}

    mikrotik, snmpd = device(sys_object_id="1.3.6.1.4.1.14988.1", descr="RouterOS LtAP")
    lte = "1.3.6.1.4.1.14988.1.1.16.1.1."
    mikrotik.update({lte + "2.5": ("integer", -65), lte + "3.5": ("integer", -9), lte + "4.5": ("integer", -95),
                     lte + "6.5": ("integer", 7), lte + "7.5": ("integer", 0)})
    polled = polling(snmpd).poll()
    assert polled.profile == "mikrotik-routeros"
    assert samples(polled, "snmp_cellular")["5"] == {"rssi_dbm": -65.0, "rsrq_db": -9.0, "rsrp_dbm": -95.0,
                                                     "technology": "lte", "sinr_db": 0.0}


def test_an_operator_profile_is_plain_yaml(device, polling, tmp_path: Path) -> None:
    profiles_dir = tmp_path / "profiles"
    profiles_dir.mkdir()
    (profiles_dir / "acme.yaml").write_text("""\
name: acme-4g
match: {sys_object_id: ["1.3.6.1.4.1.99999"]}
sections: [system, interfaces, cellular]
collect:
  - section: cellular
    fields:
      rssi_dbm: {oid: 1.3.6.1.4.1.99999.1.1.0, scale: 0.1, valid: [-130, -1]}
      technology: {oid: 1.3.6.1.4.1.99999.1.2.0, map: {4: lte, 5: nr5g}}
""")
    simulated, snmpd = device(sys_object_id="1.3.6.1.4.1.99999.3")
    simulated.update({"1.3.6.1.4.1.99999.1.1.0": ("integer", -734), "1.3.6.1.4.1.99999.1.2.0": ("integer", 5)})
    polled = polling(snmpd, profiles=Profiles([profiles_dir])).poll()
    assert polled.profile == "acme-4g"
    assert samples(polled, "snmp_cellular") == {"": {"rssi_dbm": -73.4, "technology": "nr5g"}}
    assert "snmp_host" not in {m for m, _, _ in polled.samples}  # the profile did not ask for it


def test_a_broken_profile_names_its_file_key_and_fix(tmp_path: Path) -> None:
    from agent.snmp.profiles import ProfileError

    (tmp_path / "bad.yaml").write_text("name: bad\nsections: [system, celular]\ncollect:\n  - section: cellular\n"
                                       "    table: 1.3.6.1.4.1.1.1\n    fields:\n      rssi_dbm: {colum: 3}\n")
    with pytest.raises(ProfileError) as caught:
        Profiles([tmp_path])
    text = str(caught.value)
    assert str(tmp_path / "bad.yaml") in text
    assert "collect[0].fields.rssi_dbm.colum" in text and "remove it or check its spelling" in text


def test_a_real_snmpd_reports_this_machine(start_server, polling) -> None:
    """net-snmp's own MIB modules, not a simulation: this machine's interfaces, CPUs and memory."""
    snmpd = start_server(Snmpd("rocommunity public 127.0.0.1\n"))
    polled = polling(snmpd, profile="auto").poll()
    assert polled.status == "ok", polled.detail
    assert polled.profile == "generic"
    interfaces = samples(polled, "snmp_if")
    assert "lo" not in interfaces and interfaces  # lo is excluded by default
    host = samples(polled, "snmp_host")[""]
    assert host["cpus"] == os.cpu_count()
    assert 0 <= host.get("cpu_load_pct", 0) <= 100  # net-snmp gives a load after a minute of averaging
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert host["mem_total_bytes"] == pytest.approx(int(meminfo["MemTotal"].split()[0]) * 1024, rel=0.01)
    assert 0 < host["mem_used_pct"] < 100
    name = next(iter(interfaces))
    index = polled.readings[f"if:{name}"]["index"]
    before = snmpget(snmpd, f"{IFX}6.{index}")[0]
    assert polled.readings[f"if:{name}"]["in_octets"] <= before


def test_device_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    from agent.config import ConfigError, parse_config

    base = {"clinic_id": "es-ib-0042"}
    with pytest.raises(ConfigError, match=r"agent.yaml: devices\[0\]: version 2c needs community_file \(or community\)$"):
        parse_config({**base, "devices": [{"name": "rtr", "host": "192.168.1.1"}]}, "agent.yaml")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.v3: level authPriv needs priv_key_file \(or priv_key\)$"):
        parse_config({**base, "devices": [{"name": "rtr", "host": "h", "version": "3",
                                           "v3": {"user": "u", "auth_key": "12345678"}}]}, "agent.yaml")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.v3\.priv_protocol: invalid enum value 'blowfish' \(use one of: aes, aes192, "):
        parse_config({**base, "devices": [{"name": "rtr", "host": "h", "version": "3", "v3": {
            "user": "u", "auth_key": "12345678", "priv_key": "12345678", "priv_protocol": "blowfish"}}]}, "a.yaml")
    config = parse_config({**base, "devices": [{"name": "rtr", "host": "h", "community": "c", "profile": "cisco"}]},
                          "agent.yaml")
    with pytest.raises(ConfigError, match=r"agent.yaml: devices\[0\]\.profile: no SNMP profile named 'cisco' "
                                          r"\(use `auto` or one of: generic, mikrotik-routeros"):
        config.profiles("agent.yaml")


def test_counter_and_uptime_arithmetic() -> None:
    from agent.snmp.counters import counter_delta, rate, uptime_verdict

    assert counter_delta(2**32 - 10, 5, 32) == 15  # one wrap
    assert counter_delta(2**40, 7, 64) is None  # a 64-bit counter going back was reset
    assert rate((100, 0.0), (1100, 2.0), 64) == (500.0, "")
    assert rate((2**32 - 1000, 0.0), (2**31, 1.0), 32, ceiling_per_s=12_500_000)[0] is None  # "wrap" too fast
    assert uptime_verdict(None, 500, None).state == "first"
    assert uptime_verdict(100_000, 106_000, 60).state == "ok"
    assert uptime_verdict(2**32 - 3000, 3000, 60).state == "wrapped"
    assert uptime_verdict(100_000, 500, 60).state == "restarted"
    # The agent was off for a day; the device now shows 2 h of uptime, more than before but not
    # a day more: it restarted while nobody watched.
    assert uptime_verdict(3600 * 100, 7200 * 100, 86_400).state == "restarted"


def test_the_agent_reports_snmp_samples_and_events_to_the_broker(device, mosquitto, tmp_path: Path) -> None:
    from tests.agent_harness import Watcher, agent_config, start_agent, stop_agent

    simulated, snmpd = device([Port("wan", in_rate=100_000), Port("lan", 2_000)])
    clinic = "es-ib-0077"
    watcher = Watcher(mosquitto.host, mosquitto.port, topic=f"clinicwatch/v1/{clinic}/#")
    config = agent_config(tmp_path, mosquitto.host, mosquitto.port, [], clinic_id=clinic, devices=[
        {"name": "rtr", "host": snmpd.host, "port": snmpd.port, "community": "public", "interval_s": 5,
         "report_interval_s": 10}])
    agent = start_agent(config)
    try:
        def wan(field: str) -> list:
            return [r for _, r, _ in watcher.records()
                    if r.m == "snmp_if" and r.tags.get("interface") == "wan" and field in r.f]

        def wan_rates() -> list[float]:
            return [r.f["in_bps"] for r in wan("in_bps")]
        watcher.wait_for(lambda: len(wan_rates()) >= 2, timeout=45, what="two wan rates from the agent")
        simulated.set(IF + "8.1", "integer", 2)
        watcher.wait_for(lambda: any(r.kind == "interface_down" for _, r, _ in watcher.records("event")),
                         timeout=30, what="the interface_down event")
    finally:
        stop_agent(agent)
        watcher.close()
    assert wan_rates()[0] == pytest.approx(800_000, rel=0.03)
    # Polled every 5 s, measured every 10: the rates go out at every other poll, each the average since the last.
    times = [r.t for r in wan("in_bps")]
    assert all(b - a >= 7_500 for a, b in itertools.pairwise(times)), times
    assert wan_rates()[1] == pytest.approx(800_000, rel=0.03)
    down = [r for _, r, _ in watcher.records("event") if r.kind == "interface_down"]
    assert down[0].detail["interface"] == "wan" and down[0].detail["device"] == "rtr"
    # Facts go out on change (agent/snmp/facts.py): the poll's status once (it stayed ok), its time with the
    # measurements; the lan port's status once, the wan's when it changed.
    device = [r.f for _, r, _ in watcher.records() if r.m == "snmp_device"]
    assert device[0]["status"] == "ok" and device[0]["reachable"] is True, device
    assert all("status" not in f for f in device[1:]) and sum("poll_ms" in f for f in device) >= 2, device
    def interface(name: str) -> list[dict]:
        return [r.f for _, r, _ in watcher.records() if r.m == "snmp_if" and r.tags.get("interface") == name]
    lan = interface("lan")
    assert len(lan) >= 2 and lan[0]["oper_status"] == "up" and all("oper_status" not in f for f in lan[1:]), lan
    assert [f["oper_status"] for f in interface("wan") if "oper_status" in f] == ["up", "down"]


EDGE_BOX_V3 = {"user": "clinicwatch", "auth_key": "box-auth-2026", "priv_key": "box-priv-2026"}


def _edge_box_snmpd(start_server) -> Snmpd:
    """snmpd with the shipped edge-box config, as installed, less the listening address (the test's own
    port is given on the command line) plus the user that net-snmp-create-v3-user would have made."""
    shipped = (Path(__file__).resolve().parent.parent / "agent" / "recipes" / "snmpd.conf")
    body = "\n".join(line for line in shipped.read_text().splitlines() if not line.startswith("agentAddress"))
    return start_server(Snmpd(body + '\ncreateUser clinicwatch SHA "box-auth-2026" AES "box-priv-2026"\n'))


def test_the_edge_box_snmpd_config_serves_the_agent_over_v3_and_nothing_else(start_server, polling) -> None:
    snmpd = _edge_box_snmpd(start_server)
    polled = polling(snmpd, version="3", v3=EDGE_BOX_V3).poll()
    assert polled.status == "ok", polled.detail
    measured = {m for m, _, _ in polled.samples}
    assert {"snmp_device", "snmp_system", "snmp_if", "snmp_host", "snmp_storage"} <= measured
    assert "/" in samples(polled, "snmp_storage")
    auth = ["-v3", "-l", "authPriv", "-u", "clinicwatch", "-a", "SHA", "-A", "box-auth-2026", "-x", "AES",
            "-X", "box-priv-2026"]
    outside = subprocess.run(["snmpget", *auth, "-Oqv", f"{snmpd.host}:{snmpd.port}", "1.3.6.1.2.1.4.1.0"],
                             capture_output=True, text=True)
    assert "No Such Object" in outside.stdout  # the IP MIB is outside the agent's view
    v2c = subprocess.run(["snmpget", "-v2c", "-c", "public", "-t", "0.5", "-r", "0", f"{snmpd.host}:{snmpd.port}",
                          "1.3.6.1.2.1.1.3.0"], capture_output=True, text=True)
    assert v2c.returncode != 0  # no community at all


@pytest.mark.privileged
def test_a_tunnel_interface_does_not_stop_the_interface_walk(emulated_link, start_server, polling) -> None:
    # A router with a VPN has a TUN interface; net-snmp answered genErr to the walk's GETBULK of every
    # interface column at its row, and the poll stopped there (partial, later interfaces missing). An
    # emulated link's TUN device sits in this namespace as a VPN's would on the router.
    link = emulated_link("fibre")
    polled = polling(_edge_box_snmpd(start_server), version="3", v3=EDGE_BOX_V3).poll()
    assert polled.status == "ok", polled.detail
    interfaces = samples(polled, "snmp_if")
    assert link.central_dev in interfaces and "eth0" in interfaces, sorted(interfaces)  # with the others


def test_snmpv1_devices_are_walked_with_getnext_and_missing_objects_do_not_fail_the_poll(device, polling) -> None:
    # Old UPS network cards speak only SNMPv1: no GETBULK, no 64-bit counters, and a GET that names
    # one missing object fails whole (noSuchName).
    simulated, snmpd = device([Port("wan", in_rate=20_000), Port("lan", 1000)], hc=False)
    simulated.update(ups_entries(source=5, seconds_on_battery=30, charge=90, minutes=40))
    simulated.remove(UPS + "2.3.0")  # this card does not estimate minutes remaining
    p = polling(snmpd, version="1")
    p.poll()
    time.sleep(RATE_INTERVAL_S)
    polled = p.poll()
    assert polled.status == "ok", polled.detail
    assert samples(polled, "snmp_if")["wan"]["in_bps"] == pytest.approx(160_000, rel=0.05)
    ups = samples(polled, "snmp_ups")[""]
    assert ups["on_battery"] is True and ups["charge_pct"] == 90 and "minutes_remaining" not in ups
    assert polled.requests > 3  # one GETNEXT per row


def test_an_agent_without_devices_does_not_load_the_snmp_client() -> None:
    import sys

    probe = ("import sys; from agent.config import parse_config; "
             "parse_config({'clinic_id': 'es-ib-0042', 'probes': [{'kind': 'tcp', 'name': 'x', 'host': 'h', "
             "'port': 1}]}, 'x'); print(sorted(m for m in sys.modules if m in ('agent.snmp.client', "
             "'agent.snmp.usm', 'agent.snmp.ber', 'ctypes')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"
