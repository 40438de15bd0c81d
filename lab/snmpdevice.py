"""A simulated clinic device behind a real net-snmp snmpd, with values the test controls.

snmpd answers the SNMP (v2c and v3, its own engine, its own encoding); the values
under the simulated subtrees come from this module run as snmpd's `pass_persist`
program, which reads them from a JSON file the test rewrites at will. Values can
move with time (a counter with a rate, an uptime that ticks), so a poller sees a
live device: counters wrap at their modulus on their own, an uptime can be reset.

    device = SimulatedDevice(tmp_path / "rtr.json")
    device.set("1.3.6.1.2.1.1.3.0", "timeticks", 12_345, rate=100)   # ticks 100/s
    snmpd = start_server(Snmpd(device.snmpd_config("public"), exclude_modules=SIMULATED_MODULES))

`python lab/snmpdevice.py FILE ROOT` is the pass_persist program (protocol: PING/PONG,
then `get`/`getnext`/`set` followed by an OID; answer OID, type, value or NONE).
A value with `"stall_s"` makes the program sleep before answering: a device that
goes silent halfway through a walk.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# net-snmp modules that would otherwise answer the subtrees a simulated device serves.
SIMULATED_MODULES = ("system_mib", "sysORTable", "interfaces", "ifTable", "ifXTable", "hr_system", "hr_storage",
                     "hrh_storage", "hrh_filesys", "hr_device", "hr_other", "hr_proc", "hr_network", "hr_disk",
                     "hr_partition", "hr_filesys", "hr_swinst", "hr_swrun", "hr_print")
ROOTS = (".1.3.6.1.2.1", ".1.3.6.1.4.1")


def _key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.strip(".").split("."))


class SimulatedDevice:
    """The values of one simulated device, kept in a JSON file that the pass_persist program reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, dict[str, Any]] = {}
        self.save()

    def set(self, oid: str, kind: str, value: int | str, rate: float = 0.0, modulus: int | None = None,
            stall_s: float = 0.0) -> None:
        """Serve `value` at `oid` (types as pass_persist spells them: integer, gauge, counter, counter64,
        timeticks, string, objectid, ipaddress); with `rate`, an integer value grows by `rate` per second
        from now, wrapping at `modulus` (2**32 for counter/timeticks, 2**64 for counter64 by default)."""
        self.update({oid: (kind, value, rate, modulus, stall_s)})

    def update(self, entries: dict[str, tuple]) -> None:
        """Several values (each as `set`'s arguments after the OID) written at once: one file write,
        so the program never sees half of them."""
        for oid, args in entries.items():
            self.values[oid.strip(".")] = _entry(*args)
        self.save()

    def remove(self, *oids: str) -> None:
        for oid in oids:
            self.values.pop(oid.strip("."), None)
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values))
        os.replace(tmp, self.path)

    def snmpd_config(self, community: str | None = "public", extra: str = "") -> str:
        """An snmpd.conf serving this device (v2c `community`, plus whatever `extra` adds: v3 users)."""
        program = f"{sys.executable} {Path(__file__).resolve()} {self.path}"
        lines = [f"rocommunity {community} 127.0.0.1"] if community else []
        lines += [f"pass_persist {root} {program} {root}" for root in ROOTS]
        return "\n".join(lines) + "\n" + extra


@dataclass
class Port:
    """One simulated interface: bytes per second each way, status, speed."""

    name: str
    in_rate: float = 0.0  # bytes/s
    out_rate: float = 0.0
    oper: int = 1  # 1 up, 2 down
    admin: int = 1
    speed_bps: int = 100_000_000
    in_octets: int = 0  # where the counters start
    out_octets: int = 0
    in_errors_rate: float = 0.0  # frames/s


IF = "1.3.6.1.2.1.2.2.1."
IFX = "1.3.6.1.2.1.31.1.1.1."


def router(device: SimulatedDevice, ports: list[Port], uptime_s: float = 3600.0, hc: bool = True,
           sys_object_id: str = "1.3.6.1.4.1.8072.3.2.10", descr: str = "Linux clinic-router 5.15 armv7l",
           host_uptime_s: float | None = None) -> None:
    """Fill `device` with a router's system group and IF-MIB (ifXTable HC counters if `hc`)."""
    entries: dict[str, tuple] = {
        "1.3.6.1.2.1.1.1.0": ("string", descr), "1.3.6.1.2.1.1.2.0": ("objectid", sys_object_id),
        "1.3.6.1.2.1.1.3.0": ("timeticks", int(uptime_s * 100), 100), "1.3.6.1.2.1.1.5.0": ("string", "rtr"),
    }
    if host_uptime_s is not None:
        entries["1.3.6.1.2.1.25.1.1.0"] = ("timeticks", int(host_uptime_s * 100), 100)
    for number, port in enumerate(ports, start=1):
        entries.update(port_entries(number, port, hc))
    device.update(entries)


def port_entries(number: int, port: Port, hc: bool = True) -> dict[str, tuple]:
    i = str(number)
    entries: dict[str, tuple] = {
        IF + "1." + i: ("integer", number), IF + "2." + i: ("string", port.name), IF + "3." + i: ("integer", 6),
        IF + "5." + i: ("gauge", min(port.speed_bps, 2**32 - 1)), IF + "7." + i: ("integer", port.admin),
        IF + "8." + i: ("integer", port.oper),
        IF + "10." + i: ("counter", port.in_octets % 2**32, port.in_rate),
        IF + "13." + i: ("counter", 0), IF + "14." + i: ("counter", 0, port.in_errors_rate),
        IF + "16." + i: ("counter", port.out_octets % 2**32, port.out_rate),
        IF + "19." + i: ("counter", 0), IF + "20." + i: ("counter", 0),
    }
    if hc:
        entries.update({
            IFX + "1." + i: ("string", port.name), IFX + "6." + i: ("counter64", port.in_octets, port.in_rate),
            IFX + "10." + i: ("counter64", port.out_octets, port.out_rate),
            IFX + "15." + i: ("gauge", port.speed_bps // 1_000_000), IFX + "18." + i: ("string", ""),
        })
    return entries


UPS = "1.3.6.1.2.1.33.1."  # UPS-MIB (RFC 1628)


def ups_entries(source: int = 3, seconds_on_battery: int = 0, charge: int = 100, minutes: int = 95,
                status: int = 2, voltage: int = 230) -> dict[str, tuple]:
    """A UPS card's UPS-MIB values; the defaults are a healthy UPS on mains (output source 3, normal)."""
    return {UPS + "2.1.0": ("integer", status), UPS + "2.2.0": ("integer", seconds_on_battery),
            UPS + "2.3.0": ("integer", minutes), UPS + "2.4.0": ("integer", charge),
            UPS + "4.1.0": ("integer", source), UPS + "3.3.1.3.1": ("integer", voltage),
            UPS + "4.4.1.5.1": ("integer", 35)}


ON_BATTERY = {"source": 5, "seconds_on_battery": 5, "charge": 96, "minutes": 40, "voltage": 0}


def ups_card(device: SimulatedDevice) -> None:
    """Fill `device` with a UPS network card's system group and UPS-MIB, on mains."""
    device.update({"1.3.6.1.2.1.1.1.0": ("string", "UPS network management card"),
                   "1.3.6.1.2.1.1.2.0": ("objectid", "1.3.6.1.4.1.318.1.3.27"),
                   "1.3.6.1.2.1.1.3.0": ("timeticks", 360_000, 100), "1.3.6.1.2.1.1.5.0": ("string", "ups"),
                   **ups_entries()})


def _entry(kind: str, value: int | str, rate: float = 0.0, modulus: int | None = None,
           stall_s: float = 0.0) -> dict[str, Any]:
    if modulus is None:
        modulus = {"counter": 2**32, "timeticks": 2**32, "counter64": 2**64}.get(kind, 2**63)
    return {"type": kind, "value": value, "rate": rate, "at": time.time(), "modulus": modulus, "stall_s": stall_s}


def current(entry: dict[str, Any], now: float) -> int | str:
    value = entry["value"]
    if entry.get("rate") and isinstance(value, int):
        return int(value + entry["rate"] * (now - entry["at"])) % entry["modulus"]
    return value


def _serve(path: Path, root: str) -> None:  # pragma: no cover - runs inside snmpd
    top = _key(root)
    loaded: tuple[float, list[tuple[tuple[int, ...], str]], dict[str, Any]] = (-1.0, [], {})

    def table() -> tuple[list[tuple[tuple[int, ...], str]], dict[str, Any]]:
        nonlocal loaded
        try:
            mtime = path.stat().st_mtime_ns
            if mtime != loaded[0]:
                values = json.loads(path.read_text())
                loaded = (mtime, sorted((_key(oid), oid) for oid in values), values)
        except (OSError, ValueError):
            pass
        return loaded[1], loaded[2]

    def answer(oid: str, entry: dict[str, Any]) -> str:
        if entry.get("stall_s"):
            time.sleep(entry["stall_s"])
        value = current(entry, time.time())
        return f".{oid}\n{entry['type']}\n{value}\n"

    out = sys.stdout
    for line in sys.stdin:
        command = line.strip()
        if command == "PING":
            out.write("PONG\n")
            out.flush()
            continue
        requested = sys.stdin.readline().strip()
        if command == "set":
            sys.stdin.readline()
            out.write("not-writable\n")
            out.flush()
            continue
        ordered, values = table()
        reply = "NONE\n"
        try:
            key = _key(requested)
        except ValueError:
            key = ()
        if command == "get":
            entry = values.get(requested.strip("."))
            if entry is not None:
                reply = answer(requested.strip("."), entry)
        elif command == "getnext":
            for candidate, oid in ordered:
                if candidate > key and candidate[:len(top)] == top:
                    reply = answer(oid, values[oid])
                    break
        out.write(reply)
        out.flush()


if __name__ == "__main__":  # pragma: no cover
    _serve(Path(sys.argv[1]), sys.argv[2])
