"""SNMP facts sent on change (agent/snmp/facts.py), with a scripted clock."""

from __future__ import annotations

from agent.snmp.facts import FactsOnChange


def poll(speed: float = 1e9, oper: bool = True, in_bps: float = 100.0, size: int | None = 8_000_000) -> list:
    samples = [("snmp_device", {"device": "rtr"}, {"status": "ok", "reachable": True, "requests": 3, "poll_ms": 21.5}),
               ("snmp_system", {"device": "rtr"}, {"host_uptime_s": 10.0, "name": "rtr"}),
               ("snmp_if", {"device": "rtr", "interface": "wan"},
                {"oper_up": oper, "oper_status": "up" if oper else "down", "admin_up": True, "speed_bps": speed,
                 "counter_bits": 64, "in_bps": in_bps}),
               ("snmp_if", {"device": "rtr", "interface": "lan"},
                {"oper_up": True, "oper_status": "up", "admin_up": True, "speed_bps": 1e8, "counter_bits": 64})]
    if size is not None:
        samples.append(("snmp_storage", {"device": "rtr", "storage": "/"}, {"size_bytes": size}))
    return samples


def test_facts_go_out_on_change_and_every_hour_and_measurements_always() -> None:
    now = [0.0]
    facts = FactsOnChange(refresh_s=3600, clock=lambda: now[0])
    assert facts(poll()) == poll()  # the first poll: everything
    now[0] = 60
    # Unchanged facts left out; measurements (rates, uptime, the poll's time) kept; a sample of facts only, gone.
    assert facts(poll(in_bps=250.0)) == [
        ("snmp_device", {"device": "rtr"}, {"poll_ms": 21.5}),
        ("snmp_system", {"device": "rtr"}, {"host_uptime_s": 10.0}),
        ("snmp_if", {"device": "rtr", "interface": "wan"}, {"in_bps": 250.0})]
    now[0] = 120
    # A change goes out at once, and only what changed.
    assert facts(poll(speed=1e8, oper=False))[2] == (
        "snmp_if", {"device": "rtr", "interface": "wan"},
        {"oper_up": False, "oper_status": "down", "speed_bps": 1e8, "in_bps": 100.0})
    now[0] = 180
    # A fact the device stopped giving, then gives again: sent again when it returns.
    assert [s[0] for s in facts(poll(speed=1e8, oper=False, size=None))] == ["snmp_device", "snmp_system", "snmp_if"]
    now[0] = 240
    assert facts(poll(speed=1e8, oper=False))[-1] == ("snmp_storage", {"device": "rtr", "storage": "/"},
                                                      {"size_bytes": 8_000_000})
    now[0] = 3599
    assert len(facts(poll(speed=1e8, oper=False))) == 3
    now[0] = 3600  # the hourly refresh: everything again
    assert facts(poll(speed=1e8, oper=False)) == poll(speed=1e8, oper=False)


def test_a_fact_that_changes_type_is_a_change() -> None:
    facts = FactsOnChange(clock=lambda: 0.0)
    facts([("snmp_host", {"device": "box"}, {"cpus": 4, "mem_total_bytes": 1})])
    assert facts([("snmp_host", {"device": "box"}, {"cpus": 4, "mem_total_bytes": True})]) == [
        ("snmp_host", {"device": "box"}, {"mem_total_bytes": True})]


def test_a_ups_power_source_goes_out_when_it_changes_with_its_readings_every_poll() -> None:
    now = [0.0]
    facts = FactsOnChange(refresh_s=3600, clock=lambda: now[0])

    def ups(source: str, charge: int, status: str = "ok") -> list:
        return [("snmp_device", {"device": "ups"}, {"status": status, "reachable": status != "unreachable",
                                                   "requests": 2, "poll_ms": 8.0}),
                ("snmp_ups", {"device": "ups"}, {"on_battery": source == "battery", "output_source": source,
                                                 "battery_status": "normal", "alarms": 0, "charge_pct": charge,
                                                 "input_voltage_v": 0 if source == "battery" else 230})]

    facts(ups("normal", 100))
    now[0] = 60
    assert facts(ups("normal", 100)) == [("snmp_device", {"device": "ups"}, {"poll_ms": 8.0}),
                                         ("snmp_ups", {"device": "ups"}, {"charge_pct": 100, "input_voltage_v": 230})]
    now[0] = 120  # mains lost: the new source at the poll that saw it
    assert facts(ups("battery", 98))[1] == ("snmp_ups", {"device": "ups"}, {
        "on_battery": True, "output_source": "battery", "charge_pct": 98, "input_voltage_v": 0})
    now[0] = 180  # the card stops answering, then answers again
    assert facts(ups("battery", 97, status="unreachable"))[0] == (
        "snmp_device", {"device": "ups"}, {"status": "unreachable", "reachable": False, "poll_ms": 8.0})
    now[0] = 240
    assert facts(ups("battery", 96))[0] == ("snmp_device", {"device": "ups"}, {
        "status": "ok", "reachable": True, "poll_ms": 8.0})
