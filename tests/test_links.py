"""Emulated clinic links, end to end: iputils ping through a namespace and the relay.

These need root (namespaces, TUN); under CLINICWATCH_REQUIRE_PRIVILEGED=1 they fail
instead of skipping. Ping runs inside the clinic namespace towards the central side.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time

import pytest

from lab.links import NETNS_PREFIX, EmulatedLink
from lab.linkmodel import PROFILES

pytestmark = pytest.mark.privileged

PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
PING_RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def ping(link: EmulatedLink, count: int, interval: float = 0.01) -> tuple[int, int, float]:
    done = link.exec("ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "3", link.central_ip)
    summary = PING_SUMMARY.search(done.stdout)
    assert summary, done.stdout + done.stderr
    rtt = PING_RTT.search(done.stdout)
    return int(summary[1]), int(summary[2]), float(rtt[2]) if rtt else float("nan")


def expected_rtt_ms(profile_name: str, packet_bytes: int = 84) -> float:
    """Configured delay plus the time an echo and its reply spend being serialised at the link's rates."""
    p = PROFILES[profile_name]
    serialisation = sum(packet_bytes * 8 / rate for rate in (p.rate_kbit_up, p.rate_kbit_down) if rate)
    return p.rtt_ms + serialisation


@pytest.mark.parametrize("profile", list(PROFILES))
def test_ping_reads_the_configured_delay_and_loss(emulated_link, profile: str) -> None:
    link = emulated_link(profile)
    sent, received, avg_rtt = ping(link, 500)
    configured = PROFILES[profile]
    assert sent == 500
    expected = expected_rtt_ms(profile)
    assert abs(avg_rtt - expected) <= 0.10 * expected + 2, f"{profile}: ping avg {avg_rtt} ms, configured {expected}"
    loss_pct = 100 * (sent - received) / sent
    assert abs(loss_pct - configured.loss_pct) <= 3, f"{profile}: ping loss {loss_pct} %, configured {configured.loss_pct}"
    # Ground truth: every echo ping lost was dropped by the relay on the way out or back.
    stats = link.stats()
    assert stats["up"]["packets"] == 500
    assert stats["up"]["dropped_loss"] + stats["down"]["dropped_loss"] == sent - received


def test_a_cut_stops_traffic_and_a_restore_brings_it_back(emulated_link) -> None:
    link = emulated_link("dsl", loss_pct=0)
    assert ping(link, 20)[1] == 20
    link.cut()
    sent, received, _ = ping(link, 20)
    assert (sent, received) == (20, 0)
    assert link.stats()["up"]["dropped_cut"] == 20
    link.restore()
    assert ping(link, 20)[1] == 20


def test_a_cut_drops_packets_already_in_flight(emulated_link) -> None:
    link = emulated_link("geo_satellite", loss_pct=0, rtt_ms=3000)  # a long flight, whatever the machine's load
    pinger = link.popen("ping", "-n", "-q", "-c", "1", "-W", "5", link.central_ip, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while link.stats()["up"]["packets"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert link.stats()["down"]["delivered"] == 0, "the echo (or its reply) is in flight"
    link.cut()
    out, _ = pinger.communicate(timeout=10)
    assert "1 packets transmitted, 0 received" in out
    assert link.stats()["up"]["dropped_cut"] + link.stats()["down"]["dropped_cut"] == 1


def test_link_parameters_change_while_it_runs(emulated_link) -> None:
    link = emulated_link("fibre")
    assert ping(link, 20)[2] < 10
    link.set(rtt_ms=200)
    assert abs(ping(link, 20)[2] - 200) < 22
    with pytest.raises(ValueError, match="unknown link parameter"):
        link.set(latency=3)


def test_rate_limit_caps_a_tcp_transfer(emulated_link) -> None:
    link = emulated_link("fibre", rate_kbit_up=2000, queue_ms=200)
    server = socket.create_server((link.central_ip, 0))
    port = server.getsockname()[1]
    received = bytearray()

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=accept)
    thread.start()
    payload_bytes = 500_000
    sender = (f"import socket,time;s=socket.create_connection(('{link.central_ip}',{port}));"
              f"t=time.monotonic();s.sendall(b'x'*{payload_bytes});s.shutdown(socket.SHUT_WR);s.recv(1);"
              f"print(time.monotonic()-t)")
    done = link.exec("python3", "-c", sender, timeout=60)
    thread.join(10)
    server.close()
    assert len(received) == payload_bytes, done.stderr
    elapsed = float(done.stdout)
    goodput_kbit = payload_bytes * 8 / elapsed / 1000
    # TCP/IP headers take ~3.5 % of a 1500-byte packet; slow start costs a little more.
    assert 1600 <= goodput_kbit <= 2000, f"{goodput_kbit:.0f} kbit/s through a 2000 kbit/s link"


def test_everything_a_link_created_is_gone_after_it_closes_even_on_error() -> None:
    from tests.conftest import need_privileges

    need_privileges()
    with pytest.raises(RuntimeError, match="boom"):
        with EmulatedLink("lte") as link:
            netns, devices = link.netns, (link.central_dev, link.clinic_dev)
            assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            raise RuntimeError("boom")
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not any(device in links for device in devices)


def test_links_use_only_the_benchmarking_range(emulated_link) -> None:
    import ipaddress

    link = emulated_link("fibre")
    for address in (link.central_ip, link.clinic_ip):
        assert ipaddress.ip_address(address) in ipaddress.ip_network("198.18.0.0/15")
    assert link.netns.startswith(NETNS_PREFIX)
    routes = link.exec("ip", "route").stdout
    assert routes.startswith(f"default dev {link.clinic_dev}")


def test_the_relay_never_carries_traffic_beyond_the_lab_range(emulated_link) -> None:
    link = emulated_link("fibre")
    # 192.0.2.1 (TEST-NET-1) is outside 198.18.0.0/15: the relay must drop it, whatever the host forwards.
    done = link.exec("ping", "-n", "-q", "-c", "3", "-i", "0.05", "-W", "1", "192.0.2.1")
    assert "0 received" in done.stdout
    assert link.offlab_drops() == 3
    assert link.stats()["up"]["packets"] == 0
