"""ICMP echo bursts: loss, RTT min/avg/max/stddev and jitter per target.

Packets are built and parsed with struct (an echo is 8 bytes of header: importing
scapy for it cost the agent ~64 MiB); the sockets are plain, driven by the event
loop, and replies are timed by the kernel (SO_TIMESTAMPNS), as iputils ping times
them. Socket kind, best first: raw ICMP (needs CAP_NET_RAW), the
kernel's unprivileged ICMP datagram socket (needs net.ipv4.ping_group_range),
then TCP connect time to `tcp_port` (a refused connection is an answer too).
The result says which one was used (`method`).
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

from msgspec import Meta

from agent.probes.base import (
    Fields,
    Host,
    Interval,
    Measured,
    Port,
    ProbeContext,
    ProbeFailure,
    ProbeSpec,
    Timeout,
    count_failed_connect,
    count_tcp,
    count_wire,
)
from agent.probes.packets import echo_request, parse_icmp, parse_ip

Method = Literal["auto", "raw", "dgram", "tcp"]
# Kernel receive timestamps. Python's socket module lacks the constants (asm-generic values).
# SO_TIMESTAMPNS_NEW (Linux 5.1+) gives a 64-bit timespec on every architecture, including
# the 32-bit ARM of many routers; older kernels get the native `struct timespec`.
SO_TIMESTAMPNS_NEW, SO_TIMESTAMPNS_OLD = 64, 35
_TIMESPEC = {SO_TIMESTAMPNS_NEW: "qq", SO_TIMESTAMPNS_OLD: "ll"}
_NO_ROUTE = {errno.ENETUNREACH: "no_route", errno.EHOSTUNREACH: "unreachable", errno.EHOSTDOWN: "unreachable"}


RESULT_FIELDS = {
    "sent": "int: echoes sent",
    "received": "int: echoes answered in time (duplicates and late replies not counted)",
    "loss_pct": "float: 100 * (sent - received) / sent",
    "duplicates": "int: extra replies to an echo already answered",
    "late": "int: replies after `reply_timeout_ms` (counted as lost)",
    "loss_max_burst": "int: longest run of consecutive lost echoes",
    "rtt_min_ms": "float", "rtt_avg_ms": "float", "rtt_max_ms": "float",
    "rtt_stddev_ms": "float: population standard deviation (ping's mdev)",
    "jitter_ms": "float: mean absolute difference of consecutive RTTs (RFC 3550)",
}
REASONS = {
    "partial_loss": "some echoes went unanswered (success)",
    "lost_mid_burst": "the burst's last echoes all went unanswered: the link went down during it (success)",
    "no_reply": "no echo answered",
    "unreachable": "destination unreachable: ICMP errors, or the kernel has no way there",
    "no_route": "no route to the target from this box",
    "send_error": "sending failed for another reason",
    "no_permission": "the method asked for is not permitted to this process",
}
TAGS = {"method": "raw, dgram (unprivileged ICMP socket) or tcp (connect time)"}


class IcmpSpec(ProbeSpec, kw_only=True, tag="icmp"):
    host: Host
    # Defaults sized for a paid LTE link: 5 echoes of 36 bytes a minute, and their replies, is ~15.6 MB
    # a month per target (measured by bench.probe_round; 19 MB with 16 data bytes, 34.6 with ping's 56).
    # The data is the 8-byte random tag that tells this burst's replies from any other's, and no more.
    # Smokeping's default is 20 pings per 5 minutes.
    count: Annotated[int, Meta(ge=1, le=10_000, description="echoes per round")] = 5
    interval_ms: Annotated[float, Meta(ge=1, description="between echoes")] = 200
    reply_timeout_ms: Annotated[float, Meta(gt=0, description="an echo answered later counts as lost")] = 2000
    payload_bytes: Annotated[int, Meta(ge=8, le=1472, description="ICMP data bytes, the first 8 a random tag (ping's default is 56)")] = 8
    method: Annotated[Method, Meta(description="auto tries raw, then dgram, then tcp")] = "auto"
    tcp_port: Annotated[Port, Meta(description="for the TCP fallback")] = 443
    interval_s: Interval = 60
    timeout_s: Timeout = 60


STEP_SLACK_NS = 1_000_000  # the two clocks are read microseconds apart, and NTP slews at most 0.05 %


@dataclass
class Burst:
    """Echo bookkeeping for one burst: what was sent when, what came back."""

    count: int
    reply_timeout_ns: int
    sent_ns: dict[int, int] = field(default_factory=dict)  # wall clock, as the kernel stamps replies
    sent_mono_ns: dict[int, int] = field(default_factory=dict)  # monotonic clock, read just after
    rtt_ms: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0
    unreachable: int = 0
    send_error: str = ""
    send_errno: int = 0

    def reply(self, seq: int, received_ns: int, received_mono_ns: int | None = None) -> None:
        """An echo's reply: `received_ns` as the kernel stamped it (wall clock), `received_mono_ns` when
        the agent read it (monotonic clock)."""
        sent = self.sent_ns.get(seq)
        if sent is None:
            return  # not ours (an earlier burst's straggler)
        rtt_ns = received_ns - sent
        sent_mono = self.sent_mono_ns.get(seq)
        if received_mono_ns is not None and sent_mono is not None:
            # Read after the kernel stamped the reply, the monotonic time is never the shorter, unless the
            # wall clock was stepped meanwhile (an NTP step): then the kernel's stamp is off by the step
            # (a negative round trip, or a lost echo), and the monotonic time, the longer by the agent's
            # own latency, is taken instead (ping too warns and takes countermeasures).
            bound = received_mono_ns - sent_mono
            if not 0 <= rtt_ns <= bound + STEP_SLACK_NS:
                rtt_ns = bound
        if seq in self.rtt_ms:
            self.duplicates += 1
        elif rtt_ns > self.reply_timeout_ns:
            self.late += 1
        else:
            self.rtt_ms[seq] = rtt_ns / 1e6

    def complete(self) -> bool:
        return len(self.rtt_ms) == self.count

    def summary(self, method: str) -> Measured:
        sent = len(self.sent_ns)
        order = sorted(self.sent_ns)
        rtts = [self.rtt_ms[s] for s in order if s in self.rtt_ms]
        lost_runs, run = [], 0
        for seq in order:
            run = 0 if seq in self.rtt_ms else run + 1
            lost_runs.append(run)
        fields: Fields = {"sent": sent, "received": len(rtts), "loss_pct": round(100.0 * (sent - len(rtts)) / sent, 3),
                          "duplicates": self.duplicates, "late": self.late, "loss_max_burst": max(lost_runs)}
        if rtts:
            # math rather than the statistics module: the same figures (fsum, as its fmean), without the
            # half a MiB statistics and fractions take on a router
            mean = math.fsum(rtts) / len(rtts)
            spread = math.sqrt(math.fsum((rtt - mean) ** 2 for rtt in rtts) / len(rtts))
            fields |= {"rtt_min_ms": round(min(rtts), 3), "rtt_avg_ms": round(mean, 3),
                       "rtt_max_ms": round(max(rtts), 3), "rtt_stddev_ms": round(spread, 3)}
        if len(rtts) > 1:
            fields["jitter_ms"] = round(math.fsum(abs(a - b) for a, b in zip(rtts, rtts[1:])) / (len(rtts) - 1), 3)
        tags = {"method": method}
        if not rtts:
            if self.send_error:
                raise ProbeFailure(_NO_ROUTE.get(self.send_errno, "send_error"), self.send_error, fields, tags)
            if self.unreachable:
                raise ProbeFailure("unreachable", f"{self.unreachable} destination-unreachable replies", fields, tags)
            raise ProbeFailure("no_reply", f"none of {sent} echoes answered", fields, tags)
        if len(rtts) == sent:
            return Measured(fields, tags=tags)
        trailing = lost_runs[-1]
        if trailing >= 3 and trailing == max(lost_runs) and trailing >= sent // 5:
            return Measured(fields, "lost_mid_burst", f"the last {trailing} of {sent} echoes went unanswered", tags)
        return Measured(fields, "partial_loss", f"{sent - len(rtts)} of {sent} echoes unanswered", tags)


def _open_socket(method: Method) -> tuple[str, socket.socket | None]:
    order = ["raw", "dgram", "tcp"] if method == "auto" else [method]
    for kind in order:
        if kind == "tcp":
            return "tcp", None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW if kind == "raw" else socket.SOCK_DGRAM,
                                 socket.IPPROTO_ICMP)
        except PermissionError:
            continue
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return kind, sock
    raise ProbeFailure("no_permission", f"method {method!r} is not permitted for this process")


def _kernel_time_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind in _TIMESPEC:
            layout = _TIMESPEC[kind]
            seconds, nanos = struct.unpack(layout, data[:struct.calcsize(layout)])
            return seconds * 1_000_000_000 + nanos
    return time.time_ns()


def _on_readable(sock: socket.socket, method: str, address: str, ident: int, tag: bytes, burst: Burst) -> None:
    while True:
        try:
            data, ancillary, _, source = sock.recvmsg(4096, 256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue  # an ICMP error queued on the socket; replies still count
        received_ns, received_mono_ns = _kernel_time_ns(ancillary), time.monotonic_ns()
        if method == "dgram":  # no IP header; the kernel owns the id and only hands us our own replies
            icmp = parse_icmp(data)
            if icmp is not None and icmp.type == 0 and icmp.rest[:8] == tag:
                count_wire(20 + len(data))  # its IP header, which this socket does not show
                burst.reply(icmp.seq, received_ns, received_mono_ns)
            continue
        packet = parse_ip(data)
        if packet is None or packet[2] is None:
            continue
        source, _, icmp = packet
        if icmp.type == 0 and source == address and icmp.ident == ident and icmp.rest[:8] == tag:
            count_wire(len(data))
            burst.reply(icmp.seq, received_ns, received_mono_ns)
        elif icmp.type in (3, 11):  # unreachable / time exceeded, quoting the echo it answers
            quoted = parse_ip(icmp.rest)
            if quoted is not None and quoted[2] is not None and quoted[2].ident == ident and quoted[1] == address:
                count_wire(len(data))
                burst.unreachable += 1


async def _icmp_burst(spec: IcmpSpec, method: str, sock: socket.socket, address: str) -> Measured:
    loop = asyncio.get_running_loop()
    ident = int.from_bytes(os.urandom(2), "big")
    tag = os.urandom(8)
    payload = tag + bytes(max(0, spec.payload_bytes - 8))
    burst = Burst(spec.count, int(spec.reply_timeout_ms * 1e6))
    loop.add_reader(sock.fileno(), _on_readable, sock, method, address, ident, tag, burst)
    interval = spec.interval_ms / 1000
    due = loop.time()
    try:
        for seq in range(spec.count):
            packet = echo_request(ident, seq, payload)
            burst.sent_ns[seq], burst.sent_mono_ns[seq] = time.time_ns(), time.monotonic_ns()
            try:
                sock.sendto(packet, (address, 0))
                count_wire(20 + len(packet))
            except OSError as exc:
                burst.send_errno = exc.errno or 0
                burst.send_error = f"sending to {address}: {exc.strerror}"
            if seq < spec.count - 1:
                # On a fixed schedule, as ping keeps it: sleeping a whole interval after each send
                # stretched 10 ms to 10.6 on average. After a stall the schedule restarts from now,
                # rather than catching up with a burst that would queue on the link.
                due = max(due + interval, loop.time())
                await asyncio.sleep(due - loop.time())
        deadline = time.monotonic() + spec.reply_timeout_ms / 1000
        while not burst.complete() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return burst.summary(method)


async def _tcp_burst(spec: IcmpSpec, address: str) -> Measured:
    """Without ICMP rights: the time to a SYN-ACK or a RST is a round trip too."""
    burst = Burst(spec.count, int(spec.reply_timeout_ms * 1e6))
    for seq in range(spec.count):
        burst.sent_ns[seq] = start = time.monotonic_ns()  # no kernel stamps here: the monotonic clock throughout
        try:
            async with asyncio.timeout(spec.reply_timeout_ms / 1000):
                _, writer = await asyncio.open_connection(address, spec.tcp_port)
            burst.reply(seq, time.monotonic_ns())
            count_tcp(writer.get_extra_info("socket"))
            writer.close()
        except ConnectionRefusedError:
            burst.reply(seq, time.monotonic_ns())
            count_failed_connect(answered=True)
        except TimeoutError:
            count_failed_connect(answered=False)
        except OSError as exc:
            count_failed_connect(answered=True)
            burst.send_errno, burst.send_error = exc.errno or 0, f"connecting to {address}: {exc.strerror}"
        if seq < spec.count - 1:
            await asyncio.sleep(max(0.0, spec.interval_ms / 1000 - (time.monotonic_ns() - start) / 1e9))
    return burst.summary("tcp")


async def probe(spec: IcmpSpec, ctx: ProbeContext) -> Measured:
    address = await ctx.resolve(spec.host)
    method, sock = _open_socket(spec.method)
    if sock is None:
        return await _tcp_burst(spec, address)
    return await _icmp_burst(spec, method, sock, address)
