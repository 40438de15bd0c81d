"""Probe logic with scripted inputs: echo bookkeeping, path comparison, the data ledger, the runner."""

from __future__ import annotations

import asyncio
import os

import pytest

from agent.probes import packets
from agent.probes.base import Measured, ProbeContext, ProbeFailure, run_probe
from agent.probes.icmp import Burst
from agent.probes.tcp import TcpSpec
from agent.probes.throughput import Ledger
from agent.probes.traceroute import path_changed, remembered_path

MS = 1_000_000  # ns


def burst_with(replies: dict[int, float], count: int = 10, timeout_ms: float = 1000) -> Burst:
    burst = Burst(count, int(timeout_ms * MS))
    for seq in range(count):
        burst.sent_ns[seq] = seq * 100 * MS
    for seq, rtt in replies.items():
        burst.reply(seq, burst.sent_ns[seq] + int(rtt * MS))
    return burst


def test_burst_figures_follow_ping_definitions() -> None:
    burst = burst_with({0: 10, 1: 14, 2: 12, 3: 20}, count=5)
    measured = burst.summary("raw")
    f = measured.fields
    assert (f["sent"], f["received"], f["loss_pct"]) == (5, 4, 20.0)
    assert (f["rtt_min_ms"], f["rtt_avg_ms"], f["rtt_max_ms"]) == (10, 14, 20)
    assert f["rtt_stddev_ms"] == pytest.approx(3.742, abs=0.001)  # population sd, as ping's mdev
    assert f["jitter_ms"] == pytest.approx((4 + 2 + 8) / 3, abs=0.001)  # mean |difference| of consecutive RTTs
    assert measured.reason == "partial_loss" and measured.tags == {"method": "raw"}


def test_duplicate_late_and_foreign_replies_are_not_counted_as_received() -> None:
    burst = burst_with({0: 10, 1: 10}, count=3, timeout_ms=100)
    burst.reply(1, burst.sent_ns[1] + 11 * MS)  # duplicate
    burst.reply(2, burst.sent_ns[2] + 150 * MS)  # after its timeout
    burst.reply(99, 0)  # a sequence number this burst never sent
    f = burst.summary("raw").fields
    assert (f["received"], f["duplicates"], f["late"]) == (2, 1, 1)
    assert f["rtt_max_ms"] == 10


def test_a_step_of_the_wall_clock_mid_echo_neither_loses_it_nor_gives_a_negative_round_trip() -> None:
    # The kernel stamps a reply on the wall clock; the agent also reads the monotonic clock at send and
    # on reading the reply (0.2 ms later here). NTP stepped the wall clock between send and reply:
    # 36 s forward for echo 1, 2 s back for echo 2.
    burst = Burst(3, 1000 * MS)
    for seq in range(3):
        burst.sent_ns[seq], burst.sent_mono_ns[seq] = 1_796_000_000_000 * MS + seq * 100 * MS, seq * 100 * MS
    for seq, step_ms in ((0, 0), (1, 36_000), (2, -2_000)):
        burst.reply(seq, burst.sent_ns[seq] + 20 * MS + step_ms * MS, burst.sent_mono_ns[seq] + 20 * MS + MS // 5)
    assert burst.rtt_ms == {0: 20.0, 1: 20.2, 2: 20.2}  # the kernel's stamp where it can be right
    assert burst.late == 0


def test_a_trailing_run_of_losses_reads_as_lost_mid_burst() -> None:
    measured = burst_with({seq: 10 for seq in range(4)}, count=10).summary("raw")
    assert measured.reason == "lost_mid_burst"
    assert measured.fields["loss_max_burst"] == 6
    assert "last 6 of 10" in measured.detail


@pytest.mark.parametrize("setup,reason", [
    ({}, "no_reply"),
    ({"unreachable": 3}, "unreachable"),
    ({"send_errno": 101, "send_error": "sending to 198.19.0.1: Network is unreachable"}, "no_route"),
])
def test_a_burst_with_no_reply_fails_with_its_cause(setup: dict, reason: str) -> None:
    burst = burst_with({}, count=3)
    for key, value in setup.items():
        setattr(burst, key, value)
    with pytest.raises(ProbeFailure) as caught:
        burst.summary("raw")
    assert caught.value.reason == reason
    assert caught.value.fields["loss_pct"] == 100.0


@pytest.mark.parametrize("old,new,old_reached,new_reached,changed", [
    (["a", "b", "c"], ["a", "b", "c"], True, True, False),
    (["a", "*", "c"], ["a", "b", "c"], True, True, False),  # a hop that did not answer is not a change
    (["a", "b", "c"], ["a", "x", "c"], True, True, True),
    (["a", "b", "c"], ["a", "b", "x", "c"], True, True, True),  # one hop longer
    (["a", "b"], ["a", "b", "*"], False, False, False),
])
def test_path_comparison(old, new, old_reached, new_reached, changed) -> None:
    assert path_changed(old, new, old_reached, new_reached) is changed


def test_ledger_charges_per_month_and_survives_a_restart(tmp_path) -> None:
    november, december = 1_795_000_000, 1_796_700_000  # 2026-11-18, 2026-12-07 UTC
    ledger = Ledger(tmp_path / "ledger.json")
    assert ledger.charge(1000, november) == 1000
    assert ledger.charge(500, november) == 1500
    assert Ledger(tmp_path / "ledger.json").spent(november) == 1500
    assert ledger.spent(december) == 0
    assert ledger.charge(10, december) == 10


def test_runner_turns_timeouts_and_bugs_into_results() -> None:
    spec = TcpSpec(name="x", host="198.18.0.1", port=1, timeout_s=0.05)

    async def slow(_spec, _ctx) -> Measured:
        await asyncio.sleep(5)
        return Measured({})

    async def buggy(_spec, _ctx) -> Measured:
        raise KeyError("oops")

    timed_out = asyncio.run(run_probe("tcp", slow, spec, ProbeContext()))
    assert (timed_out.success, timed_out.reason) == (False, "timeout")
    assert 40 <= timed_out.duration_ms < 1000
    crashed = asyncio.run(run_probe("tcp", buggy, spec, ProbeContext()))
    assert (crashed.success, crashed.reason) == (False, "probe_error")
    assert "KeyError" in crashed.detail



@pytest.mark.parametrize("old,new,remembered", [
    (None, ["a", "*", "c"], ["a", "*", "c"]),  # nothing known yet
    (["a", "b", "c"], ["a", "*", "c"], ["a", "b", "c"]),  # silent once: the hop keeps its last address
    (["a", "b", "c"], ["a", "x", "c"], ["a", "x", "c"]),  # a real change is what the next run compares with
    (["a", "b"], ["a", "*", "*", "d"], ["a", "b", "*", "d"]),  # a longer path: unknown hops stay *
    (["a", "b", "c"], ["a"], ["a"]),  # a shorter path: only its own hops
])
def test_a_silent_hop_is_remembered_at_its_last_known_address(old, new, remembered) -> None:
    assert remembered_path(old, new) == remembered


# -- ICMP packets, built and parsed with struct (agent/probes/packets.py); scapy is the reference here --
@pytest.mark.parametrize("payload", [b"", b"\x01", bytes(range(16)), os.urandom(57), b"\xff" * 1472])
def test_an_echo_request_is_what_scapy_builds(payload: bytes) -> None:
    from scapy.layers.inet import ICMP

    ours = packets.echo_request(0xBEEF, 65_000, payload)
    assert ours == bytes(ICMP(type=8, code=0, id=0xBEEF, seq=65_000) / payload)
    assert packets.checksum(ours) == 0  # a packet with its checksum sums to zero


def test_replies_and_errors_are_read_as_scapy_reads_them() -> None:
    from scapy.layers.inet import ICMP, IP

    tag = os.urandom(8)
    reply = bytes(IP(src="198.18.0.9", dst="198.18.0.1") / ICMP(type=0, id=7, seq=3) / (tag + b"pad"))
    source, destination, icmp = packets.parse_ip(reply)
    assert (source, destination, icmp.type, icmp.code, icmp.ident, icmp.seq, icmp.rest[:8]) == (
        "198.18.0.9", "198.18.0.1", 0, 0, 7, 3, tag)
    with_options = bytes(IP(src="198.18.0.9", dst="198.18.0.1", options=b"\x01\x01\x01\x00") / ICMP(type=0, id=7))
    assert packets.parse_ip(with_options)[2].ident == 7  # a longer IP header is skipped by its length
    echo = IP(src="198.18.0.1", dst="198.18.1.20") / ICMP(type=8, id=7, seq=4) / tag
    unreachable = bytes(IP(src="198.18.0.2", dst="198.18.0.1") / ICMP(type=3, code=1) / bytes(echo)[:28])
    _, _, error = packets.parse_ip(unreachable)
    quoted = packets.parse_ip(error.rest)
    assert (error.type, error.code, quoted[1], quoted[2].ident, quoted[2].seq) == (3, 1, "198.18.1.20", 7, 4)
    assert packets.parse_ip(b"\x45" + bytes(10)) is None  # cut short
    assert packets.parse_ip(bytes(IP(proto=17) / b"12345678")) is None  # not ICMP
    assert packets.parse_icmp(b"\x00\x00") is None


def test_what_an_icmp_error_quotes_of_a_udp_probe_is_read_as_scapy_reads_it() -> None:
    from scapy.layers.inet import ICMP, IP, UDP

    sent = bytes(IP(src="198.18.0.1", dst="198.18.1.20", ttl=3) / UDP(sport=40_000, dport=33_437) / b"clinicwatch")
    for kind, code in ((11, 0), (3, 3)):
        error = bytes(IP(src="198.18.0.2", dst="198.18.0.1") / ICMP(type=kind, code=code) / sent[:28])
        _, _, icmp = packets.parse_ip(error)
        assert (icmp.type, packets.quoted_udp(icmp.rest)) == (kind, ("198.18.1.20", 40_000, 33_437))
    tcp = bytes(IP(src="198.18.0.1", dst="198.18.1.20", proto=6) / b"12345678")
    assert packets.quoted_udp(tcp) is None
    assert packets.quoted_udp(sent[:22]) is None  # the ports cut off


def test_the_agent_loads_a_probes_library_only_with_the_probe() -> None:
    """scapy and dnspython are not the agent's any more (paho's own import of dnspython's resolver, where it is
    installed, is kept out); httpx comes with the first HTTP check or throughput test, the SNMP client with the first device,
    urllib.request (and http.client) when paho reads a proxy from the environment or with httpx;
    pydantic is the collector's, not the agent's."""
    import subprocess
    import sys

    code = ("import sys, agent.cli, agent.runtime, agent.probes; "
            "print(sorted(m for m in ('httpx', 'scapy', 'dns.message', 'dns.resolver', 'agent.snmp.client', "
            "'pydantic', 'urllib.request', 'http.client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_paho_reads_urllib_request_only_when_it_looks_for_a_proxy(mosquitto) -> None:
    """paho imports urllib.request (1.8 MiB with http.client and email) for one thing: an `mqtt_proxy` in the
    environment, looked for only when PySocks is installed. The agent's install does not bring PySocks (this
    test environment does, through selenium): without it, a session to a real broker never loads it; with
    it, paho reads the proxy settings through the real module."""
    import subprocess
    import sys

    pytest.importorskip("socks", reason="the half with a proxy library needs PySocks (the test extras bring it, "
                                        "through selenium's urllib3[socks])")
    code = ("import sys, time; {keep}import agent.transport as t; "
            "c = t.mqtt.Client(t.mqtt.CallbackAPIVersion.VERSION2, protocol=t.mqtt.MQTTv5); "
            f"c.connect('{mosquitto.host}', {mosquitto.port}); c.loop_start(); "
            "deadline = time.monotonic() + 10\nwhile not c.is_connected() and time.monotonic() < deadline: time.sleep(0.05)\n"
            "print(c.is_connected(), 'http.client' in sys.modules); c.disconnect(); c.loop_stop()")
    without = subprocess.run([sys.executable, "-c", code.format(keep="sys.modules['socks'] = None; ")],
                             capture_output=True, text=True, check=True)
    with_socks = subprocess.run([sys.executable, "-c", code.format(keep="")], capture_output=True, text=True, check=True)
    assert without.stdout.split() == ["True", "False"]
    assert with_socks.stdout.split() == ["True", "True"]


def test_an_http_check_does_not_load_trio() -> None:
    """httpcore loads trio, when installed (here it is: selenium's), to run under it; the agent runs on asyncio
    and keeps it out (about 4.5 MiB). A plain HTTP check against a local server, in a fresh interpreter."""
    import subprocess
    import sys

    from lab.webserver import WebServer

    with WebServer() as web:
        code = ("import asyncio, sys, importlib.util; from agent.probes import ProbeContext, run_one, spec_of; "
                f"r = asyncio.run(run_one(spec_of({{'kind': 'http', 'name': 'w', 'url': '{web.url('/status/200')}'}}), "
                "ProbeContext())); "
                "print(r.success, importlib.util.find_spec('trio') is not None, 'trio' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]  # checked, trio installed, trio not loaded
