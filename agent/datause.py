"""The agent's own traffic: what it puts on the clinic's links, per calendar month (UTC) and category.

Clinics pay for their WAN by the megabyte, so the agent keeps account of every byte it sends or
receives there, in IP bytes both ways (what a mobile operator bills):

    probes      the probes' packets to WAN targets, counted by each probe as it sends and reads them
                (ICMP and traceroute packets, DNS datagrams, TCP connections from the kernel's own
                counters or, for a connection that failed, its SYN and answer)
    reporting   the MQTT connection to the collector, from the kernel's counters of its socket
                (TCP_INFO: bytes sent, retransmissions included, and received, plus 52 bytes of
                IP and TCP header per segment)
    throughput  the throughput tests, as their own ledger charges them
    lan         the probes' packets to targets on the clinic's own network (not on the WAN; shown
                apart): the default gateway itself, or an address reached directly through an
                interface that does not carry the default route. `network: lan|wan` on a probe
                overrides the guess (an agent on the router itself, pinging its ISP's gateway on
                the WAN interface, should say `network: wan`).

Not counted: name lookups through the system resolver, SNMP polls (the devices are in the clinic),
and a connection's last bytes when the agent is killed (the ledger is saved at each
self-metrics report and at a clean stop).

With `data_budget_mb` set, the agent projects the month from its pace so far and says so once a
month with a `data_budget_at_risk` event, and once with `data_budget_exceeded` when it is spent.
"""

from __future__ import annotations

import calendar
import json
import logging
import socket
import struct
import time
from pathlib import Path

from agent.jsonfile import write_json

log = logging.getLogger(__name__)

CATEGORIES = ("probes", "reporting", "throughput", "lan")
WAN = ("probes", "reporting", "throughput")
TCP_HEADER_BYTES = 52  # IPv4 (20) + TCP (20) + the timestamp option Linux sends (12)
SYN_BYTES = 60  # a SYN with its options
ANSWER_BYTES = 40  # a RST, or an ICMP error to a SYN (its quote of the SYN's header)
FIN_BYTES = 4 * TCP_HEADER_BYTES  # FIN, ACK each way: after the last TCP_INFO reading
PROJECT_AFTER_S = 6 * 3600  # a projection needs this much counted time in the month
_TCP_INFO = getattr(socket, "TCP_INFO", 11)


def tcp_wire_bytes(sock: socket.socket) -> int | None:
    """IP bytes a TCP connection has moved so far, both ways, from the kernel's counters; None when the
    kernel does not say (not TCP, closed, or too old a kernel for tcpi_bytes_received)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 256)
    except (OSError, ValueError):
        return None
    if len(info) < 144:  # tcpi_bytes_received and tcpi_segs_in: Linux 4.2+
        return None
    acked, received = struct.unpack_from("=QQ", info, 120)
    segs_out, segs_in = struct.unpack_from("=II", info, 136)
    sent = struct.unpack_from("=Q", info, 200)[0] if len(info) >= 208 else max(acked - 1, 0)  # 4.19+: retransmits too
    # Each segment's headers, and the SYN's and SYN-ACK's longer options (counted among the segments).
    return sent + received + TCP_HEADER_BYTES * (segs_out + segs_in) + 2 * (SYN_BYTES - TCP_HEADER_BYTES)


def _routes(text: str) -> list[tuple[int, int, int, str, int]]:
    """/proc/net/route as (destination, mask, gateway, interface, metric), addresses as host-order ints."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        try:
            dest, gateway, flags, metric, mask = (int(parts[1], 16), int(parts[2], 16), int(parts[3], 16),
                                                  int(parts[6]), int(parts[7], 16))
        except ValueError:
            continue
        if flags & 0x1:  # RTF_UP
            out.append((socket.ntohl(dest), socket.ntohl(mask), socket.ntohl(gateway), parts[0], metric))
    return out


def is_lan(address: str, routes: str | None = None) -> bool:
    """Whether IPv4 `address` is on the clinic's own network rather than across the WAN: the default
    gateway itself, or reached directly (no gateway) through an interface that does not carry the
    default route. `routes`: /proc/net/route's text (read when None)."""
    try:
        target = struct.unpack("!I", socket.inet_aton(address))[0]
    except OSError:
        return False
    if routes is None:
        try:
            routes = Path("/proc/net/route").read_text()
        except OSError:
            return False
    table = _routes(routes)
    defaults = sorted((r for r in table if r[1] == 0), key=lambda r: r[4])
    if defaults and defaults[0][2] == target:
        return True
    matching = sorted((r for r in table if r[1] and target & r[1] == r[0]), key=lambda r: (-r[1], r[4]))
    if not matching:
        return False
    _, _, gateway, interface, _ = matching[0]
    return gateway == 0 and not any(d[3] == interface for d in defaults)


class LanGuess:
    """`is_lan` for the agent's run loop: each address judged once per `ttl_s` seconds, not at every probe
    run (routes change rarely: a link that comes back, a modem that is swapped)."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._judged_at = -ttl_s
        self._answers: dict[str, bool] = {}

    def __call__(self, address: str) -> bool:
        now = time.monotonic()
        if now - self._judged_at >= self.ttl_s:
            self._answers.clear()
            self._judged_at = now
        if address not in self._answers:
            self._answers[address] = is_lan(address)
        return self._answers[address]


def month_of(now: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(now))


def _month_bounds(now: float) -> tuple[float, float]:
    t = time.gmtime(now)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    days = calendar.monthrange(t.tm_year, t.tm_mon)[1]
    return start, start + days * 86400


class DataUse:
    """This month's bytes per category, kept in `path` (JSON) across restarts; older months are dropped."""

    def __init__(self, path: Path | None, now: float | None = None) -> None:
        self.path = path
        now = time.time() if now is None else now
        self.month, self.bytes, self.since, self.warned = month_of(now), dict.fromkeys(CATEGORIES, 0), now, []
        self.counted_s = 0.0  # time the agent has been counting this month (its pace is over this time)
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text())
                if saved.get("month") == self.month:
                    self.bytes.update({k: int(v) for k, v in saved["bytes"].items() if k in CATEGORIES})
                    self.counted_s = float(saved.get("counted_s", 0.0))
                    self.warned = [str(w) for w in saved.get("warned", [])]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("ignoring unreadable %s: this month's data use starts from zero", path)

    def _roll(self, now: float) -> None:
        self.counted_s += max(0.0, now - self.since)
        self.since = now
        if month_of(now) != self.month:
            self.month, self.bytes, self.warned, self.counted_s = month_of(now), dict.fromkeys(CATEGORIES, 0), [], 0.0

    def add(self, category: str, amount: int, now: float | None = None) -> None:
        self._roll(time.time() if now is None else now)
        self.bytes[category] += max(0, int(amount))

    def wan(self) -> int:
        return sum(self.bytes[c] for c in WAN)

    def projected(self, now: float | None = None) -> int | None:
        """The month's WAN bytes at the pace counted so far; None before PROJECT_AFTER_S of counting."""
        now = time.time() if now is None else now
        self._roll(now)
        if self.counted_s < PROJECT_AFTER_S:
            return None
        _, end = _month_bounds(now)
        return int(self.wan() + self.wan() / self.counted_s * max(0.0, end - now))

    def warnings(self, budget: int | None, now: float | None = None) -> list[tuple[str, dict[str, int]]]:
        """Events to send now about `budget` (bytes a month), each kind at most once a month."""
        if budget is None:
            return []
        projected = self.projected(now)
        spent = self.wan()
        due = []
        if spent > budget:
            due.append("data_budget_exceeded")
        elif projected is not None and projected > budget:
            due.append("data_budget_at_risk")
        out = []
        for kind in due:
            if kind in self.warned:
                continue
            self.warned.append(kind)
            detail = {"budget_bytes": budget, "spent_bytes": spent,
                      **{f"{c}_bytes": self.bytes[c] for c in WAN}}
            if projected is not None:
                detail["projected_bytes"] = projected
            out.append((kind, detail))
        return out

    def save(self, now: float | None = None) -> None:
        self._roll(time.time() if now is None else now)
        if self.path is None:
            return
        try:
            write_json(self.path, {"month": self.month, "bytes": self.bytes, "counted_s": round(self.counted_s, 1),
                                   "warned": self.warned})
        except OSError as exc:
            log.warning("cannot save the data use to %s: %s", self.path, exc.strerror)
