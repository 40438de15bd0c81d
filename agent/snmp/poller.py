"""Polling one device: read its sections, turn counters into rates, notice what changed.

A poll never raises. It returns a `Poll`: samples (measurement, tags, fields) for
the outbox, events (device_reboot, interface_down, on_battery, ...) and the device's
status, one of:

    ok           every section that the device has was read
    partial      some sections or values could not be read (the detail says which)
    unreachable  no answer at all (timeout), or the address does not resolve
    auth_failed  SNMPv3 credentials refused (the detail says which part)
    unknown_user SNMPv3 user unknown to the device
    error        the device answered with an error

Values the device did not give are absent, never zero. Rates need two readings of
the same counter on the same uptime: the first poll, the poll after a restart and
a counter that jumped back give no rate, and the next poll gives one again.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agent.snmp.client import Client, Engines, Oid, Reading, SnmpError, format_oid, parse_oid
from agent.snmp.config import DeviceSpec
from agent.snmp.counters import TICKS_PER_S, rate, uptime_verdict
from agent.snmp.profiles import Collect, Profile, Profiles

log = logging.getLogger("clinicwatch.agent.snmp")

SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME = (parse_oid(f"1.3.6.1.2.1.1.{n}.0") for n in (1, 2, 3, 5))
HR_UPTIME = parse_oid("1.3.6.1.2.1.25.1.1.0")
IF_ENTRY = parse_oid("1.3.6.1.2.1.2.2.1")
IFX_ENTRY = parse_oid("1.3.6.1.2.1.31.1.1.1")
IF_COLUMNS = {"descr": IF_ENTRY + (2,), "type": IF_ENTRY + (3,), "speed": IF_ENTRY + (5,),
              "admin": IF_ENTRY + (7,), "oper": IF_ENTRY + (8,), "in_octets": IF_ENTRY + (10,),
              "in_discards": IF_ENTRY + (13,), "in_errors": IF_ENTRY + (14,), "out_octets": IF_ENTRY + (16,),
              "out_discards": IF_ENTRY + (19,), "out_errors": IF_ENTRY + (20,),
              "name": IFX_ENTRY + (1,), "hc_in_octets": IFX_ENTRY + (6,), "hc_out_octets": IFX_ENTRY + (10,),
              "high_speed": IFX_ENTRY + (15,), "alias": IFX_ENTRY + (18,), "discontinuity": IFX_ENTRY + (19,)}
OPER_STATUS = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "not_present",
               7: "lower_layer_down"}
HR_PROCESSOR = {"firmware": parse_oid("1.3.6.1.2.1.25.3.3.1.1"), "load": parse_oid("1.3.6.1.2.1.25.3.3.1.2")}
HR_STORAGE = {"type": parse_oid("1.3.6.1.2.1.25.2.3.1.2"), "descr": parse_oid("1.3.6.1.2.1.25.2.3.1.3"),
              "units": parse_oid("1.3.6.1.2.1.25.2.3.1.4"), "size": parse_oid("1.3.6.1.2.1.25.2.3.1.5"),
              "used": parse_oid("1.3.6.1.2.1.25.2.3.1.6")}
HR_STORAGE_RAM, HR_STORAGE_DISK, HR_STORAGE_FLASH = (parse_oid(f"1.3.6.1.2.1.25.2.1.{n}") for n in (2, 4, 9))
UPS = "1.3.6.1.2.1.33.1."
UPS_SCALARS = {"battery_status": parse_oid(UPS + "2.1.0"), "seconds_on_battery": parse_oid(UPS + "2.2.0"),
               "minutes_remaining": parse_oid(UPS + "2.3.0"), "charge_pct": parse_oid(UPS + "2.4.0"),
               "battery_voltage": parse_oid(UPS + "2.5.0"), "output_source": parse_oid(UPS + "4.1.0"),
               "alarms": parse_oid(UPS + "6.1.0")}
UPS_INPUT_VOLTAGE = parse_oid(UPS + "3.3.1.3")
UPS_OUTPUT_LOAD = parse_oid(UPS + "4.4.1.5")
UPS_OUTPUT_SOURCE = {1: "other", 2: "none", 3: "normal", 4: "bypass", 5: "battery", 6: "booster", 7: "reducer"}
UPS_BATTERY_STATUS = {1: "unknown", 2: "normal", 3: "low", 4: "depleted"}
ABSENT_RECHECK_S = 3600.0
SAVE_EVERY_S = 600.0
_TICKING = ("uptime_ticks", "uptime_wall", "host_uptime_ticks")
NUMERIC = ("integer", "counter32", "counter64", "gauge32", "timeticks")


@dataclass
class Poll:
    device: str
    status: str = "ok"
    detail: str = ""
    profile: str = ""
    samples: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    readings: dict[str, dict[str, int | str]] = field(default_factory=dict)  # raw values, for checks and CLI
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    duration_ms: float = 0.0

    def sample(self, measurement: str, tags: dict[str, str], fields: dict[str, Any]) -> None:
        if fields:
            self.samples.append((measurement, {"device": self.device, **tags}, fields))

    def event(self, kind: str, **detail: Any) -> None:
        self.events.append((kind, {"device": self.device, **detail}))


class Problem(Exception):
    """A section could not be read completely; what was read is still reported."""


@dataclass
class _Counter:
    value: int
    at: float
    bits: int


class DevicePoller:
    """Polls one device again and again, remembering what rates and events need.

    `memory` keeps what must survive an agent restart (the device's last uptime, the
    interfaces' last status, whether it was on battery): an `agent.probes.ProbeContext`.
    """

    def __init__(self, spec: DeviceSpec, engines: Engines, profiles: Profiles, memory: Any = None) -> None:
        self.spec, self.profiles, self.memory = spec, profiles, memory
        self.client = Client(engines, spec)
        self.profile: Profile | None = None if spec.profile == "auto" else profiles.get(spec.profile)
        self.counters: dict[tuple[str, str], _Counter] = {}
        # Per counter, its increase and the seconds that covers, summed over the polls since the last
        # report: a report's rate is the average over the whole report interval, each poll's delta taken
        # between consecutive readings (so a 32-bit counter that would wrap within the interval does not).
        self.accrued: dict[tuple[str, str], tuple[float, float]] = {}
        self.reporting = True
        self.last_uptime: tuple[int, float] | None = None  # (ticks, monotonic s) from this process
        self.last_host_uptime: tuple[int, float] | None = None
        self.rows: dict[str, int] = {}  # rows seen per table last time: sizes the next GETBULK
        self.absent: dict[str, float] = {}  # section -> monotonic time to look again
        self.key = f"snmp:{spec.name}"
        self._storage_rows: list[dict[str, Any]] | None = None
        self.state: dict[str, Any] | None = None  # what `memory` keeps, loaded at the first poll
        self._saved: dict[str, Any] | None = None
        self._saved_at = 0.0

    # -- persisted state ------------------------------------------------------------------
    def _recall(self) -> dict[str, Any]:
        if self.state is None:
            self.state = dict(self.memory.recall(self.key) or {}) if self.memory is not None else {}
        return self.state

    def _remember(self, state: dict[str, Any]) -> None:
        """Save when something other than the ticking uptimes changed, or every 10 minutes: a
        router's flash should not be written every poll, and a 10-minute-old uptime still tells a
        reboot from a long agent stop (both were saved together)."""
        if self.memory is None:
            return
        changes = {k: v for k, v in state.items() if k not in _TICKING}
        if changes != self._saved or time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.memory.remember(self.key, dict(state))
            self._saved, self._saved_at = json.loads(json.dumps(changes)), time.monotonic()

    # -- the poll -----------------------------------------------------------------------
    async def poll(self, report: bool = True) -> Poll:
        """One poll. With `report` false the counters are read and their increase kept, but no rate is
        given: the next reporting poll gives the rate averaged since the last one."""
        started = time.perf_counter()
        self.reporting = report
        result = Poll(self.spec.name)
        state = self._recall()
        requests_before = self.client.requests
        self._storage_rows = None
        try:
            await self._poll(result, state)
        except SnmpError as exc:
            result.status, result.detail = exc.status, exc.detail
            if exc.status == "timeout":
                result.status = "unreachable"
        except Exception as exc:  # a bug: report it, keep polling
            log.exception("SNMP poll of %s failed", self.spec.name)
            result.status, result.detail = "error", f"{type(exc).__name__}: {exc}"
        if result.status == "ok" and result.problems:
            result.status, result.detail = "partial", "; ".join(result.problems)[:256]
        reachable = result.status in ("ok", "partial")
        if state.get("reachable", True) != reachable:
            if reachable:
                result.event("device_reachable", status=result.status)
            else:
                result.event("device_unreachable", status=result.status, error=result.detail[:256])
        state["reachable"] = reachable
        self._remember(state)
        result.requests = self.client.requests - requests_before
        result.duration_ms = (time.perf_counter() - started) * 1000
        fields: dict[str, Any] = {"status": result.status, "reachable": reachable, "requests": result.requests,
                                  "poll_ms": round(result.duration_ms, 1)}
        if result.detail:
            fields["detail"] = result.detail[:256]
        uptime = result.readings.get("system", {}).get("uptime_ticks")
        if isinstance(uptime, int):
            fields["uptime_s"] = round(uptime / TICKS_PER_S, 2)
        tags = {"device": self.spec.name, **({"profile": result.profile} if result.profile else {})}
        result.samples.insert(0, ("snmp_device", tags, fields))
        return result

    async def _poll(self, result: Poll, state: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        got = await self.client.get([SYS_UPTIME, SYS_OBJECT_ID, SYS_DESCR, SYS_NAME, HR_UPTIME])
        response_ms = (time.perf_counter() - t0) * 1000
        uptime = got.get(SYS_UPTIME)
        if uptime is None or uptime.kind != "timeticks":
            raise SnmpError("error", "the device gives no sysUpTime (SNMPv2-MIB), which every agent must")
        system: dict[str, int | str] = {"uptime_ticks": uptime.value, "response_ms": round(response_ms, 2)}
        for key, oid in (("object_id", SYS_OBJECT_ID), ("descr", SYS_DESCR), ("name", SYS_NAME)):
            reading = got.get(oid)
            if reading is not None:
                system[key] = reading.value
        host_uptime = got.get(HR_UPTIME)
        if host_uptime is not None and host_uptime.kind == "timeticks":
            system["host_uptime_ticks"] = host_uptime.value
        result.readings["system"] = system
        restarted = self._check_restart(result, state, uptime, host_uptime)
        if self.profile is None or (restarted and self.spec.profile == "auto"):
            self.profile = self.profiles.pick(str(system.get("object_id", "")), str(system.get("descr", "")))
        result.profile = self.profile.name
        sections = self.spec.sections or self.profile.sections
        if "system" in sections:
            # sysUpTime is snmp_device's `uptime_s`, in every report whatever the sections: not sent twice.
            result.sample("snmp_system", {}, {k: v for k, v in {
                "host_uptime_s": round(int(host_uptime.value) / TICKS_PER_S, 2)
                if host_uptime is not None and host_uptime.kind == "timeticks" else None,
                "response_ms": round(response_ms, 2), "name": str(system.get("name", ""))[:64] or None,
            }.items() if v is not None})
        readers = {"interfaces": self._interfaces, "host": self._host, "storage": self._storage, "ups": self._ups}
        for section in sections:
            if section == "system":
                continue
            if self.absent.get(section, 0.0) > time.monotonic():
                continue
            try:
                if section in readers:
                    present = await readers[section](result, state)
                else:
                    present = await self._collect(result, self.profile, section)
            except SnmpError as exc:
                result.problems.append(f"{section}: {exc.detail if exc.status == 'error' else exc}")
                continue
            except Problem as exc:
                result.problems.append(f"{section}: {exc}")
                continue
            if not present:
                self.absent[section] = time.monotonic() + ABSENT_RECHECK_S
            else:
                self.absent.pop(section, None)

    # -- restarts -----------------------------------------------------------------------
    def _check_restart(self, result: Poll, state: dict[str, Any], uptime: Reading,
                       host_uptime: Reading | None) -> bool:
        """Device reboot or SNMP agent restart since the last poll? Forget counter baselines if so."""
        now_wall = time.time()
        ticks = int(uptime.value)
        if self.last_uptime is not None:
            previous, elapsed = self.last_uptime[0], uptime.at - self.last_uptime[1]
        elif "uptime_ticks" in state:  # from before the agent restarted: the wall clock is all we have
            previous, elapsed = int(state["uptime_ticks"]), now_wall - float(state["uptime_wall"])
        else:
            previous, elapsed = None, None
        verdict = uptime_verdict(previous, ticks, elapsed)
        host_restarted = False
        if host_uptime is not None and host_uptime.kind == "timeticks":
            host_previous = self.last_host_uptime or (
                (int(state["host_uptime_ticks"]), uptime.at - (now_wall - float(state["uptime_wall"])))
                if "host_uptime_ticks" in state else None)
            if host_previous is not None:
                host_restarted = uptime_verdict(host_previous[0], int(host_uptime.value),
                                                host_uptime.at - host_previous[1]).state == "restarted"
            self.last_host_uptime = (int(host_uptime.value), host_uptime.at)
        self.last_uptime = (ticks, uptime.at)
        state.update(uptime_ticks=ticks, uptime_wall=now_wall)
        if host_uptime is not None and host_uptime.kind == "timeticks":
            state["host_uptime_ticks"] = int(host_uptime.value)
        if verdict.state != "restarted" and not host_restarted:
            return False
        self.counters.clear()  # the next poll has fresh baselines and gives rates again
        down_for = None
        if previous is not None and elapsed is not None:
            down_for = round(max(elapsed - ticks / TICKS_PER_S, 0.0), 1)
        if host_uptime is not None and not host_restarted:
            result.event("snmp_agent_restart", uptime_s=round(ticks / TICKS_PER_S, 2),
                         host_uptime_s=round(int(host_uptime.value) / TICKS_PER_S, 2))
        else:
            known = {"previous_uptime_s": round(previous / TICKS_PER_S, 2)} if previous is not None else {}
            if down_for is not None:
                known["down_s_at_most"] = down_for
            result.event("device_reboot", uptime_s=round(ticks / TICKS_PER_S, 2), **known)
        return True

    # -- rates --------------------------------------------------------------------------
    def _rate(self, key: tuple[str, str], reading: Reading, bits: int, ceiling: float | None,
              result: Poll) -> float | None:
        previous = self.counters.get(key)
        self.counters[key] = _Counter(int(reading.value), reading.at, bits)
        value, why = None, ""
        if previous is not None and previous.bits == bits:
            value, why = rate((previous.value, previous.at), (int(reading.value), reading.at), bits, ceiling)
        if why and "reset" in why:
            result.problems.append(f"{key[0]} {key[1]}: {why}; no rate this time")
        if value is not None:
            seconds = reading.at - previous.at  # type: ignore[union-attr]
            increase, covered = self.accrued.get(key, (0.0, 0.0))
            self.accrued[key] = (increase + value * seconds, covered + seconds)
        if not self.reporting or key not in self.accrued:
            return None
        increase, covered = self.accrued.pop(key)  # what the interval covered, a reset's gap left out
        return increase / covered

    # -- sections -----------------------------------------------------------------------
    async def _walk(self, table: str, columns: dict[str, Oid]) -> tuple[dict[str, dict[Oid, Reading]], str]:
        """Walk columns sized by the rows seen last time (one GETBULK for a stable table)."""
        expect = self.rows.get(table)
        repetitions = min(self.spec.max_repetitions, expect + 1) if expect else None
        rows, stopped = await self.client.walk(list(columns.values()), repetitions)
        by_name = {name: rows[oid] for name, oid in columns.items()}
        self.rows[table] = max((len(r) for r in by_name.values()), default=0)
        return by_name, stopped

    async def _interfaces(self, result: Poll, state: dict[str, Any]) -> bool:
        table, stopped = await self._walk("if", IF_COLUMNS)
        indexes = sorted(set().union(*(set(rows) for rows in table.values())))
        if not indexes:
            if stopped:
                raise Problem(stopped)
            return False
        problems: list[str] = []

        def number(column: str, index: Oid, kinds: tuple[str, ...]) -> Reading | None:
            reading = table[column].get(index)
            if reading is None:
                return None
            if reading.kind not in kinds:
                problems.append(f"{column}.{format_oid(index)} is {reading.kind} {str(reading.value)[:20]!r}, "
                                f"expected {'/'.join(kinds)}")
                return None
            return reading

        def text(column: str, index: Oid) -> str:
            reading = table[column].get(index)
            return str(reading.value) if reading is not None else ""

        known_status: dict[str, int] = dict(state.get("oper", {}))
        seen_names: set[str] = set()
        for index in indexes:
            label = format_oid(index)
            name = text("name", index) or text("descr", index) or f"if{label}"
            if name in seen_names:
                name = f"{name}#{label}"
            seen_names.add(name)
            if not self._wanted(name, text("descr", index)):
                continue
            oper = number("oper", index, ("integer",))
            admin = number("admin", index, ("integer",))
            # Events first: a status change is news even for an interface not reported.
            if oper is not None:
                before = known_status.get(name)
                now = int(oper.value)
                if before is not None and (before == 1) != (now == 1):
                    known = {"admin_up": int(admin.value) == 1} if admin is not None else {}
                    result.event("interface_up" if now == 1 else "interface_down", interface=name,
                                 status=OPER_STATUS.get(now, str(now)), previous=OPER_STATUS.get(before, str(before)),
                                 **known)
                known_status[name] = now
            if self.spec.interfaces.skip_admin_down and admin is not None and int(admin.value) == 2:
                continue
            fields: dict[str, Any] = {}
            raw: dict[str, int | str] = {"index": label}
            if oper is not None:
                fields["oper_up"] = int(oper.value) == 1
                fields["oper_status"] = OPER_STATUS.get(int(oper.value), str(oper.value))
            if admin is not None:
                fields["admin_up"] = int(admin.value) == 1
            speed_bps: float | None = None
            high = number("high_speed", index, ("gauge32",))
            low = number("speed", index, ("gauge32",))
            if high is not None and int(high.value) > 0:
                speed_bps = int(high.value) * 1_000_000.0
            elif low is not None and int(low.value) > 0:
                speed_bps = float(low.value)
            if speed_bps:
                fields["speed_bps"] = speed_bps
            ceiling = speed_bps * 1.5 / 8 if speed_bps else None  # bytes/s, with room for a wrong ifSpeed
            discontinuity = number("discontinuity", index, ("timeticks",))
            if discontinuity is not None:
                key = ("discontinuity", name)
                previous = self.counters.get(key)
                if previous is not None and previous.value != int(discontinuity.value):
                    self.counters = {k: v for k, v in self.counters.items() if k[1] != name}
                self.counters[key] = _Counter(int(discontinuity.value), discontinuity.at, 0)
            for direction in ("in", "out"):
                hc = number(f"hc_{direction}_octets", index, ("counter64",))
                low_counter = number(f"{direction}_octets", index, ("counter32",))
                counter, bits = (hc, 64) if hc is not None else (low_counter, 32)
                if counter is None:
                    continue
                raw[f"{direction}_octets"] = int(counter.value)
                fields["counter_bits"] = bits
                per_s = self._rate((f"{direction}_octets", name), counter, bits, ceiling, result)
                if per_s is not None:
                    fields[f"{direction}_bps"] = round(per_s * 8, 1)
                for kind in ("errors", "discards"):
                    reading = number(f"{direction}_{kind}", index, ("counter32",))
                    if reading is None:
                        continue
                    raw[f"{direction}_{kind}"] = int(reading.value)
                    per_s = self._rate((f"{direction}_{kind}", name), reading, 32, None, result)
                    if per_s is not None:
                        fields[f"{direction}_{kind}_ps"] = round(per_s, 3)
            result.readings[f"if:{name}"] = raw
            result.sample("snmp_if", {"interface": name[:64]}, fields)
        state["oper"] = known_status
        if problems:
            result.problems.append("interfaces: " + "; ".join(problems[:3]) +
                                   (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
        if stopped:
            raise Problem(stopped)
        return True

    def _wanted(self, name: str, descr: str) -> bool:
        rules = self.spec.interfaces
        names = (name, descr)
        if not any(fnmatch.fnmatchcase(n, pattern) for pattern in rules.include for n in names if n):
            return False
        return not any(fnmatch.fnmatchcase(n, pattern) for pattern in rules.exclude for n in names if n)

    async def _host(self, result: Poll, state: dict[str, Any]) -> bool:
        processors, stopped = await self._walk("cpu", HR_PROCESSOR)
        # net-snmp lists processors at once but their load only after a minute of averaging.
        values = [int(r.value) for r in processors["load"].values() if r.kind == "integer"]
        memory = await self._storage_table()
        fields: dict[str, Any] = {}
        cpus = len(set(processors["firmware"]) | set(processors["load"]))
        if cpus:
            fields["cpus"] = cpus
        if values:
            fields["cpu_load_pct"] = round(sum(values) / len(values), 1)
        ram = [row for row in memory if row["type"] == HR_STORAGE_RAM]
        if ram:
            total, used = ram[0]["size"], ram[0]["used"]
            # net-snmp counts buffers and page cache as used; take them off as `free` would.
            for row in memory:
                if row["descr"] in ("Memory buffers", "Cached memory"):
                    used -= row["used"]
            if total > 0:
                fields.update(mem_total_bytes=total, mem_used_bytes=max(used, 0),
                              mem_used_pct=round(100.0 * max(used, 0) / total, 1))
        if stopped:
            raise Problem(stopped)
        result.sample("snmp_host", {}, fields)
        return bool(fields)

    async def _storage_table(self) -> list[dict[str, Any]]:
        if self._storage_rows is not None:  # host and storage sections share one walk per poll
            return self._storage_rows
        columns, _stopped = await self._walk("storage", HR_STORAGE)
        rows = []
        for index, units in columns["units"].items():
            parts = {name: columns[name].get(index) for name in HR_STORAGE}
            if any(parts[n] is None or parts[n].kind not in NUMERIC for n in ("units", "size", "used")):
                continue
            kind = parts["type"]
            rows.append({"type": parse_oid(str(kind.value)) if kind is not None and kind.kind == "oid" else (),
                         "descr": str(parts["descr"].value) if parts["descr"] is not None else format_oid(index),
                         "size": int(parts["size"].value) * int(units.value),
                         "used": int(parts["used"].value) * int(units.value)})
        self._storage_rows = rows
        return rows

    async def _storage(self, result: Poll, state: dict[str, Any]) -> bool:
        rows = [row for row in await self._storage_table() if row["type"] in (HR_STORAGE_DISK, HR_STORAGE_FLASH)]
        for row in rows[:16]:
            if row["size"] <= 0:
                continue
            result.sample("snmp_storage", {"storage": row["descr"][:64]},
                          {"size_bytes": row["size"], "used_bytes": row["used"],
                           "used_pct": round(100.0 * row["used"] / row["size"], 1)})
        return bool(rows)

    async def _ups(self, result: Poll, state: dict[str, Any]) -> bool:
        got = await self.client.get(list(UPS_SCALARS.values()))
        scalars = {name: got.get(oid) for name, oid in UPS_SCALARS.items()}
        if all(r is None for r in scalars.values()):
            return False
        fields: dict[str, Any] = {}
        for name, reading in scalars.items():
            if reading is None:
                continue
            if reading.kind not in NUMERIC:
                result.problems.append(f"ups: {name} is {reading.kind} {str(reading.value)[:20]!r}, expected a number")
                continue
            value = int(reading.value)
            if name == "output_source":
                fields[name] = UPS_OUTPUT_SOURCE.get(value, str(value))
            elif name == "battery_status":
                fields[name] = UPS_BATTERY_STATUS.get(value, str(value))
            elif name == "battery_voltage":
                fields["battery_voltage_v"] = round(value / 10, 1)
            else:
                fields[name] = value
        voltages, _ = await self._walk("ups_in", {"v": UPS_INPUT_VOLTAGE, "load": UPS_OUTPUT_LOAD})
        lines = [int(r.value) for r in voltages["v"].values() if r.kind in NUMERIC]
        if lines:
            fields["input_voltage_v"] = min(lines)  # the weakest phase decides
        loads = [int(r.value) for r in voltages["load"].values() if r.kind in NUMERIC]
        if loads:
            fields["output_load_pct"] = max(loads)
        source = fields.get("output_source")
        if source is not None:
            on_battery = source == "battery"
        elif "seconds_on_battery" in fields:
            on_battery = fields["seconds_on_battery"] > 0
        else:
            on_battery = None
        if on_battery is not None:
            fields["on_battery"] = on_battery
            was = state.get("on_battery")
            detail = {k: fields[k] for k in ("charge_pct", "minutes_remaining", "input_voltage_v") if k in fields}
            if on_battery and was is not True:
                result.event("on_battery", **detail)
            elif not on_battery and was is True:
                result.event("power_restored", **detail)
            state["on_battery"] = on_battery
        low = fields.get("battery_status") in ("low", "depleted")
        if low and not state.get("battery_low"):
            result.event("battery_low", **{k: fields[k] for k in ("charge_pct", "minutes_remaining") if k in fields})
        state["battery_low"] = low
        result.readings["ups"] = {k: v for k, v in fields.items() if isinstance(v, (int, str))}
        result.sample("snmp_ups", {}, fields)
        return True

    async def _collect(self, result: Poll, profile: Profile, section: str) -> bool:
        present = False
        for entry in (c for c in profile.collect if c.section == section):
            present |= await self._collect_entry(result, entry)
        return present

    async def _collect_entry(self, result: Poll, entry: Collect) -> bool:
        measurement = f"snmp_{entry.section}"
        problems: list[str] = []

        def fields_of(readings: dict[str, Reading | None]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, spec in entry.fields.items():
                reading = readings.get(name)
                if reading is None:
                    continue
                value, why = spec.value(reading)
                if why:
                    problems.append(f"{name}: {why}")
                elif value is not None:
                    out[name] = value
            return out

        if entry.table is None:
            got = await self.client.get([parse_oid(spec.oid) for spec in entry.fields.values()])  # type: ignore
            readings = {name: got.get(parse_oid(spec.oid)) for name, spec in entry.fields.items()}  # type: ignore
            fields = fields_of(readings)
            result.sample(measurement, {}, fields)
            present = any(r is not None for r in readings.values())
        else:
            columns, stopped = await self._walk(f"collect:{entry.section}:{entry.table}", entry.columns())
            indexes = sorted(set().union(*(set(rows) for rows in columns.values())))
            for index in indexes:
                label_reading = columns.get("__label", {}).get(index)
                label = str(label_reading.value)[:64] if label_reading is not None else format_oid(index)
                fields = fields_of({name: columns[name].get(index) for name in entry.fields})
                result.sample(measurement, {entry.index_tag: label}, fields)
            present = bool(indexes)
            if stopped:
                problems.append(stopped)
        if problems:
            raise Problem("; ".join(problems[:3]))
        return present
