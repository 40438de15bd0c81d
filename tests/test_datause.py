"""The agent's account of its own traffic (agent/datause.py): where a target is, what a month costs,
what the kernel says a connection moved, and what each probe charges."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import socket
import threading
import time

import pytest

from agent.datause import PROJECT_AFTER_S, TCP_HEADER_BYTES, DataUse, is_lan, tcp_wire_bytes
from agent.probes import ProbeContext, Traffic, run_one, spec_of

HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def route(iface: str, dest: str, gateway: str, mask: str, metric: int = 0) -> str:
    def hexed(address: str) -> str:
        return socket.inet_aton(address)[::-1].hex().upper()  # /proc/net/route: little-endian on x86
    flags = 0x3 if gateway != "0.0.0.0" else 0x1
    return f"{iface}\t{hexed(dest)}\t{hexed(gateway)}\t{flags:04X}\t0\t0\t{metric}\t{hexed(mask)}\t0\t0\t0\n"


# A Raspberry Pi beside the clinic's router; the agent on an LTE router itself; the lab's emulated clinic.
BESIDE = HEADER + route("eth0", "0.0.0.0", "192.168.1.1", "0.0.0.0", 100) + \
    route("eth0", "192.168.1.0", "0.0.0.0", "255.255.255.0", 100)
ON_ROUTER = HEADER + route("wwan0", "0.0.0.0", "10.64.12.1", "0.0.0.0") + \
    route("wwan0", "10.64.12.0", "0.0.0.0", "255.255.255.252") + \
    route("br-lan", "192.168.1.0", "0.0.0.0", "255.255.255.0") + \
    route("wg0", "172.16.0.0", "172.16.9.1", "255.255.0.0")
LAB = HEADER + route("cwk", "0.0.0.0", "0.0.0.0", "0.0.0.0") + route("cwk", "198.18.0.1", "0.0.0.0", "255.255.255.255")


@pytest.mark.parametrize("routes,address,lan", [
    (BESIDE, "192.168.1.1", True),  # the gateway itself: its echoes never leave the clinic
    (BESIDE, "192.168.1.50", False),  # on the default route's segment: counted as WAN (the safe side)
    (BESIDE, "8.8.8.8", False),
    (ON_ROUTER, "192.168.1.20", True),  # the clinic's LAN, off the default route's interface
    (ON_ROUTER, "10.64.12.1", True),  # the operator's gateway: misjudged, as docs/agent.md says (network: wan)
    (ON_ROUTER, "10.64.12.2", False),
    (ON_ROUTER, "172.16.4.4", False),  # through a gateway: beyond the clinic
    (ON_ROUTER, "203.0.113.9", False),
    (LAB, "198.18.0.1", False),  # the emulated WAN's far end, on the default route's interface
    (LAB, "not an address", False),
])
def test_where_a_target_is(routes: str, address: str, lan: bool) -> None:
    assert is_lan(address, routes) is lan


T0 = calendar.timegm((2026, 11, 1, 0, 0, 0))
HOUR = 3600.0


def test_a_month_of_data_use_is_kept_projected_and_warned_of_once(tmp_path) -> None:
    path = tmp_path / "data-use.json"
    use = DataUse(path, now=T0)
    use.add("probes", 1_000_000, T0 + HOUR)
    use.add("reporting", 500_000, T0 + 2 * HOUR)
    use.add("lan", 7_000, T0 + 2 * HOUR)
    assert use.projected(T0 + 2 * HOUR) is None  # 2 h of counting: too early to say
    assert use.warnings(10_000_000, T0 + 2 * HOUR) == []
    use.save(T0 + 3 * HOUR)
    assert json.loads(path.read_text()) == {"month": "2026-11", "bytes": {"probes": 1_000_000, "reporting": 500_000,
                                                                           "throughput": 0, "lan": 7_000},
                                            "counted_s": 3 * HOUR, "warned": []}
    # A restart three hours later goes on counting from what was saved; the time it was down is not
    # part of its pace.
    use = DataUse(path, now=T0 + 6 * HOUR)
    use.add("throughput", 1_500_000, T0 + 9 * HOUR)
    assert use.wan() == 3_000_000 and use.bytes["lan"] == 7_000
    assert use.counted_s == 6 * HOUR == PROJECT_AFTER_S
    month_s = 30 * 24 * HOUR
    expected = int(3_000_000 + 3_000_000 / (6 * HOUR) * (month_s - 9 * HOUR))  # 359.5 MB at this pace
    assert use.projected(T0 + 9 * HOUR) == expected
    warned = use.warnings(200_000_000, T0 + 9 * HOUR)
    assert warned == [("data_budget_at_risk", {"budget_bytes": 200_000_000, "spent_bytes": 3_000_000,
                                               "probes_bytes": 1_000_000, "reporting_bytes": 500_000,
                                               "throughput_bytes": 1_500_000, "projected_bytes": expected})]
    assert use.warnings(200_000_000, T0 + 10 * HOUR) == []  # once a month
    use.add("probes", 200_000_000, T0 + 11 * HOUR)
    assert [kind for kind, _ in use.warnings(200_000_000, T0 + 11 * HOUR)] == ["data_budget_exceeded"]
    assert use.warnings(200_000_000, T0 + 12 * HOUR) == []
    assert use.warnings(None, T0 + 12 * HOUR) == []
    # December starts from zero, and may warn again.
    december = T0 + month_s + HOUR
    use.add("probes", 10, december)
    assert (use.month, use.wan(), use.warned, use.projected(december)) == ("2026-12", 10, [], None)


def test_an_unreadable_ledger_starts_the_month_from_zero(tmp_path, caplog) -> None:
    path = tmp_path / "data-use.json"
    path.write_text("{not json")
    use = DataUse(path, now=T0)
    assert use.wan() == 0 and "ignoring unreadable" in caplog.text
    path.write_text(json.dumps({"month": "2026-10", "bytes": {"probes": 9}}))  # last month's
    assert DataUse(path, now=T0).wan() == 0


def test_the_kernel_counts_what_a_connection_moved() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        got = 0
        while got < 5000:
            got += len(conn.recv(65536))
        conn.sendall(b"y" * 777)
        done.wait(5)
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = socket.create_connection(server.getsockname())
    client.sendall(b"x" * 5000)
    got = 0
    while got < 777:
        got += len(client.recv(4096))
    moved = tcp_wire_bytes(client)
    done.set()
    client.close()
    thread.join()
    server.close()
    # 5,777 bytes of data, plus 52 bytes of headers for each of at least the SYN, the data and its ACKs
    # and at most a few dozen segments.
    assert moved is not None and 5777 + 4 * TCP_HEADER_BYTES <= moved <= 5777 + 40 * TCP_HEADER_BYTES
    assert tcp_wire_bytes(client) is None  # closed: nothing to say


def test_each_probe_charges_its_own_packets(tmp_path) -> None:
    """Echoes and TCP connections to this machine, counted as they go: exact for ICMP (an echo of 16
    bytes is 44 bytes of IP each way), from the kernel for TCP."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()

    def run(spec: dict) -> tuple[object, Traffic]:
        traffic = Traffic()
        return asyncio.run(run_one(spec_of(spec), ProbeContext(state_dir=tmp_path), traffic)), traffic

    echoes, echo_traffic = run({"kind": "icmp", "name": "here", "host": "127.0.0.1", "count": 3, "interval_ms": 10,
                  "payload_bytes": 16})
    assert echoes.success and echoes.fields["received"] == 3
    assert (echo_traffic.bytes, echo_traffic.address) == (3 * 2 * (20 + 8 + 16), "127.0.0.1")
    opened, opened_traffic = run({"kind": "tcp", "name": "here", "host": "127.0.0.1", "port": port})
    assert opened.success and 3 * TCP_HEADER_BYTES <= opened_traffic.bytes <= 10 * TCP_HEADER_BYTES
    refused, refused_traffic = run({"kind": "tcp", "name": "here", "host": "127.0.0.1", "port": closed_port})
    assert (refused.reason, refused_traffic.bytes) == ("refused", 60 + 40)  # a SYN and its RST
    server.close()


@pytest.mark.privileged
def test_the_agents_account_matches_what_crossed_the_link(emulated_link, tmp_path) -> None:
    """The sample clinic's probes (ICMP, TCP, HTTPS, DNS, traceroute) and its reporting over an emulated
    link: the agent's own account of its WAN bytes against the relay's count of every IP byte that
    crossed the link, both ways, over the agent's life. (The throughput test is left out: it is
    charged by its own ledger's estimate, and its megabytes would hide the others' account.)"""
    import yaml

    from bench.site import sample_site
    from lab.servers import Mosquitto
    from tests.agent_harness import Watcher, start_agent, stop_agent

    link = emulated_link("dsl", loss_pct=0)
    with Mosquitto(host=link.central_ip) as broker, sample_site(tmp_path, link, speed=20) as site:
        watcher = Watcher(broker.host, broker.port)
        probes = [p for p in site["probes"] if p["kind"] != "throughput"]
        config = {**site, "probes": probes, "clock": {"sync_check": "assume"}, "self_metrics_interval_s": 5,
                  "mqtt": {"host": broker.host, "port": broker.port, "flush_interval_s": 1}, "data_budget_mb": 0.03}
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        before = link.stats()
        agent = start_agent(path, netns=link.netns)
        try:
            watcher.wait_for(lambda: any(r.kind == "data_budget_exceeded" for _, r, _ in watcher.records("event")),
                             timeout=90, what="the budget's event")
        finally:
            stop_agent(agent)
            watcher.close()
        after = link.stats()
    crossed = sum(after[d]["bytes"] - before[d]["bytes"] for d in ("up", "down"))
    saved = json.loads((tmp_path / "state" / "data-use.json").read_text())["bytes"]
    counted = saved["probes"] + saved["reporting"] + saved["throughput"]
    assert saved["lan"] == 0  # every target of this clinic is across the link
    assert saved["throughput"] == 0 and saved["probes"] > 0 and saved["reporting"] > 0, saved
    print(f"\nagent counted {counted} bytes ({saved}), the link carried {crossed}: {counted / crossed:.4f}")
    # Measured: 1.1 % under the link's count, steadily (closing exchanges after the last counter reading).
    assert counted == pytest.approx(crossed, rel=0.02), (saved, crossed)
    events = [r for _, r, _ in watcher.records("event") if r.kind == "data_budget_exceeded"]
    assert len(events) == 1 and events[0].detail["budget_bytes"] == 30_000
    assert events[0].detail["spent_bytes"] > 30_000


@contextlib.contextmanager
def _records_server(tmp_path, tls_options: int = 0):
    """The lab's HTTPS server with a certificate for 127.0.0.1 from a CA of its own: (ca, server)."""
    from lab.certs import CertificateAuthority
    from lab.webserver import WebServer

    ca = CertificateAuthority(tmp_path)
    with WebServer(cert=ca.issue("records", ["127.0.0.1"], days_valid=90), tls_options=tls_options) as web:
        yield ca, web


def test_an_https_check_resumes_the_last_tls_session_and_saves_the_certificates_bytes(tmp_path) -> None:
    """Two checks of a local HTTPS server (TLS 1.3, tickets on, as Python's server has them by default):
    the second resumes the first's session, the server sends no certificate, and the check costs that
    much less; the certificate's expiry is still known."""
    with _records_server(tmp_path) as (ca, web):
        ctx = ProbeContext(state_dir=tmp_path)
        spec = spec_of({"kind": "http", "name": "records", "url": web.url("/status/200"), "ca_file": str(ca.ca_file)})
        traffic = [Traffic() for _ in range(3)]
        first, second = (asyncio.run(run_one(spec, ctx, traffic[i])) for i in range(2))
        other = asyncio.run(run_one(spec, ProbeContext(state_dir=tmp_path), traffic[2]))  # a fresh agent: nothing to offer
    assert (first.success, second.success, other.success) == (True, True, True)
    assert (first.fields["tls_resumed"], second.fields["tls_resumed"], other.fields["tls_resumed"]) == (
        False, True, False)
    assert second.fields["cert_days_left"] == pytest.approx(first.fields["cert_days_left"], abs=0.01)
    assert 88 < second.fields["cert_days_left"] <= 90
    certificate = len(ca.ca_file.read_bytes()) // 2  # a DER certificate is a bit over half its PEM's size
    spent = [t.bytes for t in traffic]
    assert spent[0] - spent[1] > certificate, spent
    assert spent[2] - spent[1] > certificate, spent  # a fresh agent's check pays for the certificate again


def _count_session_reads(monkeypatch) -> list[int]:
    """Reads of `SSLObject.session` from here on (each leaks a copy in CPython 3.11 and 3.12)."""
    import ssl

    reads = [0]
    real = ssl.SSLObject.session

    def read(self):
        reads[0] += 1
        return real.fget(self)

    monkeypatch.setattr(ssl.SSLObject, "session", property(read, real.fset))
    return reads


def test_an_https_check_reads_the_connections_session_only_when_it_needs_a_new_one(tmp_path, monkeypatch) -> None:
    """Five checks of a server whose tickets resume more than once: the session is read from the first
    check's connection only (the others resume it). Once the held session is past half its life, each
    check takes the new one, and still resumes."""
    from agent.probes import http

    reads = _count_session_reads(monkeypatch)
    with _records_server(tmp_path) as (ca, web):
        ctx = ProbeContext(state_dir=tmp_path)
        spec = spec_of({"kind": "http", "name": "records", "url": web.url("/status/200"), "ca_file": str(ca.ca_file)})
        resumed = [asyncio.run(run_one(spec, ctx, Traffic())).fields["tls_resumed"] for _ in range(5)]
        assert (resumed, reads[0]) == ([False, True, True, True, True], 1)
        monkeypatch.setattr(http, "past_half_life", lambda session, now: True)
        resumed = [asyncio.run(run_one(spec, ctx, Traffic())).fields["tls_resumed"] for _ in range(2)]
        assert (resumed, reads[0]) == ([True, True], 3)


@pytest.mark.parametrize("tls_options, maximum, hint", [(0, None, True), (0, "TLSv1_2", True),
                                                        ("OP_NO_TICKET", "TLSv1_2", False)])
def test_a_session_is_past_half_its_life_by_the_servers_ticket_hint_or_its_timeout(
        tmp_path, tls_options, maximum, hint) -> None:
    """TLS 1.3 and 1.2 tickets carry the server's lifetime hint; a 1.2 session id has its timeout only."""
    import ssl

    from agent.probes.http import past_half_life

    options = getattr(ssl, tls_options) if tls_options else 0
    with _records_server(tmp_path, options) as (ca, web):
        client = ssl.create_default_context(cafile=str(ca.ca_file))
        if maximum:
            client.maximum_version = getattr(ssl.TLSVersion, maximum)
        with socket.create_connection((web.host, web.port)) as raw, \
                client.wrap_socket(raw, server_hostname=web.host) as tls:
            tls.sendall(b"GET /status/200 HTTP/1.0\r\n\r\n")
            tls.recv(100)
            session = tls.session
    assert bool(session.ticket_lifetime_hint) == hint
    lifetime = session.ticket_lifetime_hint or session.timeout
    assert lifetime > 0
    assert not past_half_life(session, session.time + lifetime / 2 - 1)
    assert past_half_life(session, session.time + lifetime / 2)


def test_a_server_that_resumes_a_session_once_has_the_new_session_taken_at_every_check(tmp_path) -> None:
    """The rule of `_Resumption.keep`, with stand-ins for the connection and its sessions (no server that
    the lab can start was found whose sessions resume once only): a session that
    resumed once, offered again well within its life and refused, means single-use sessions, and from then
    on each check's session is taken; a refusal of a session past half its life means nothing of the kind."""
    from agent.probes.http import _Resumption

    class Session:
        def __init__(self, age: float) -> None:
            self.ticket_lifetime_hint, self.timeout, self.time = 7200, 7200, int(time.time() - age)

    class Connection:
        def __init__(self, resumed: bool, session: Session) -> None:
            self.session_reused, self._session, self.reads = resumed, session, 0

        @property
        def session(self) -> Session:
            self.reads += 1
            return self._session

    def check(holder: _Resumption, resumed: bool, session: Session) -> tuple[bool, int]:
        holder.offer()
        connection = Connection(resumed, session)
        holder.keep(connection)  # type: ignore[arg-type]
        return holder.session is session, connection.reads

    spec = spec_of({"kind": "http", "name": "records", "url": "https://records.example/"})
    holder = _Resumption(spec)  # type: ignore[arg-type]
    first, second, third = Session(0), Session(0), Session(0)
    assert check(holder, False, first) == (True, 1)  # nothing held: taken
    assert check(holder, True, second) == (False, 0)  # resumed, young: the held one serves
    assert check(holder, False, second) == (True, 1)  # the once-resumed, young session refused
    assert holder.single_use
    assert check(holder, True, third) == (True, 1)  # from now on, every check's

    holder = _Resumption(spec)  # type: ignore[arg-type]
    old = Session(4000)  # past half of 7200 s
    assert check(holder, False, old) == (True, 1)
    assert check(holder, True, first) == (True, 1)  # resumed, but the held one was old: the new one taken
    assert check(holder, True, second) == (False, 0)
    holder.session = old  # as if an hour had passed
    assert check(holder, False, third) == (True, 1)  # refused, past half its life: expected
    assert not holder.single_use


def test_a_probe_cut_short_still_charges_what_it_sent(tmp_path) -> None:
    """The agent stopping mid-burst cancels the probe; the echoes already sent were on the wire."""

    async def cut_short() -> Traffic:
        traffic = Traffic()
        spec = spec_of({"kind": "icmp", "name": "here", "host": "127.0.0.1", "count": 100, "interval_ms": 20,
                        "payload_bytes": 16})
        task = asyncio.ensure_future(run_one(spec, ProbeContext(state_dir=tmp_path), traffic))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return traffic

    traffic = asyncio.run(cut_short())
    assert traffic.address == "127.0.0.1"
    assert 0 < traffic.bytes < 100 * 88 and traffic.bytes % 44 == 0  # whole echoes and replies of 44 bytes


def test_a_probe_running_when_the_agent_stops_is_in_the_saved_account(tmp_path) -> None:
    """The agent stopped in the middle of a twenty-second burst: its echoes so far are in data-use.json.
    The burst starts within 10 s of the agent's start (the first run's spread) plus its imports, so at
    14 s it is under way and not over."""
    import os

    from lab.servers import Mosquitto
    from tests.agent_harness import agent_config, start_agent, stop_agent

    with Mosquitto() as broker:
        config = agent_config(tmp_path, broker.host, broker.port,
                              [{"kind": "icmp", "name": "here", "host": "127.0.0.1", "count": 1000,
                                "interval_ms": 20, "payload_bytes": 16, "method": "raw" if os.geteuid() == 0
                                else "auto", "interval_s": 3600, "timeout_s": 60}],
                              self_metrics_interval_s=3600)
        agent = start_agent(config)
        account = tmp_path / "state" / "data-use.json"
        time.sleep(14)
        stop_agent(agent)
    assert agent.returncode == 0
    charged = json.loads(account.read_text())["bytes"]["probes"]
    assert charged > 0
    if os.geteuid() == 0:
        assert charged % 44 == 0 and charged < 1000 * 88  # whole echoes and replies, not the whole burst
