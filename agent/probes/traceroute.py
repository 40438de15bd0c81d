"""Traceroute with UDP probes: hop count and a path fingerprint, so that a route change is an event.

TTLs are probed in a sliding window of `window` hops from one UDP socket, and no TTL
past the destination's is sent once it has answered. A hop is asked once; if it has
not answered within `hop_wait_ms` it is asked again, up to `probes_per_hop` queries
(real traceroute asks three times), and only a hop that answered none is `*`. The
queries are spaced rather than sent together because routers and hosts rate-limit
their ICMP errors (Linux: a burst of six, then one a second per peer): queries fired
at once spend that allowance together, and a hop that was only rate-limited would
look silent. The ICMP time-exceeded and port-unreachable answers are read from a raw
socket (needs CAP_NET_RAW) and matched, parsed with struct, through the UDP header they quote.
Paths are compared only where both have answers, and the path remembered for the
next run keeps the last known address of a hop that was silent this time, so a hop
that is silent once is never a route change, then or at the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
from typing import Annotated

from msgspec import Meta

from agent.probes.base import (
    Host,
    Interval,
    Measured,
    ProbeContext,
    ProbeFailure,
    ProbeSpec,
    Timeout,
    count_wire,
)
from agent.probes.packets import parse_ip, quoted_udp

NO_ANSWER = "*"
PAYLOAD = b"clinicwatch"  # each query's UDP data
HOP, DESTINATION, REFUSED = "hop", "destination", "refused"  # what an answer says about the path


RESULT_FIELDS = {
    "hops": "int: hops to the destination (or to where the path stops)", "reached": "bool",
    "path": "str: hop addresses joined by >, * for a hop that did not answer",
    "fingerprint": "str: 12 hex digits of the path's hash", "route_changed": "bool: against the last run",
}
REASONS = {
    "route_changed": "the path differs from the last run's where both have answers (success)",
    "unreachable": "a router answered that the destination is unreachable",
    "not_reached": "the destination did not answer within `max_hops` (or 90 % of `timeout_s`)",
    "no_route": "no route from this box", "no_permission": "needs CAP_NET_RAW",
}


class TracerouteSpec(ProbeSpec, kw_only=True, tag="traceroute"):
    host: Host
    max_hops: Annotated[int, Meta(ge=1, le=64, description="give up past this many hops")] = 20
    probes_per_hop: Annotated[int, Meta(ge=1, le=5, description=(
        "queries per hop, the next one `hop_wait_ms` after a silent one; * only if all go unanswered"))] = 3
    base_port: Annotated[int, Meta(ge=1024, le=65000, description="first UDP destination port")] = 33434
    window: Annotated[int, Meta(ge=1, le=64, description="hops probed at the same time")] = 3
    hop_wait_ms: Annotated[float, Meta(gt=0, description="how long a hop has to answer each query")] = 1000
    interval_s: Interval = 900
    timeout_s: Timeout = 30  # a silent tail of 20 hops takes 20 s (max_hops / window * probes_per_hop * hop_wait)


def fingerprint(path: list[str]) -> str:
    return hashlib.sha1(">".join(path).encode()).hexdigest()[:12]


def path_changed(old: list[str], new: list[str], old_reached: bool, new_reached: bool) -> bool:
    """A route change: a hop that answered both times answered from another address, or the
    destination was reached both times at a different distance."""
    if old_reached and new_reached and len(old) != len(new):
        return True
    return any(a != b for a, b in zip(old, new) if NO_ANSWER not in (a, b))


def remembered_path(old: list[str] | None, new: list[str]) -> list[str]:
    """The path to compare the next run with: this run's, a silent hop keeping its last known address."""
    if not old:
        return new
    return [hop if hop != NO_ANSWER or i >= len(old) else old[i] for i, hop in enumerate(new)]


def _end_of_path(answers: dict[int, tuple[str, str]]) -> int | None:
    """The first TTL answered by the destination or by a router refusing to go on."""
    return min((t for t, (_, verdict) in answers.items() if verdict != HOP), default=None)


def _read_answers(raw: socket.socket, address: str, sport: int, probes: dict[int, int],
                  answers: dict[int, tuple[str, bool]], heard: dict[int, int], arrived: asyncio.Event) -> None:
    while True:
        try:
            data = raw.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        packet = parse_ip(data)
        if packet is None or packet[2] is None or packet[2].type not in (3, 11):
            continue
        source, _, icmp = packet
        quoted = quoted_udp(icmp.rest)
        if quoted is None or quoted[0] != address or quoted[1] != sport or quoted[2] not in probes:
            continue
        ttl = probes[quoted[2]]
        count_wire(len(data))
        heard[ttl] = heard.get(ttl, 0) + 1
        if icmp.type == 11:
            verdict = HOP
        else:  # destination unreachable: from the target itself (port closed: we got there) or from a router
            verdict = DESTINATION if source == address else REFUSED
        answers.setdefault(ttl, (source, verdict))
        arrived.set()


async def probe(spec: TracerouteSpec, ctx: ProbeContext) -> Measured:
    address = await ctx.resolve(spec.host)
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        raise ProbeFailure("no_permission", "traceroute needs CAP_NET_RAW (run the agent with it)") from None
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    udp.setblocking(False)
    loop = asyncio.get_running_loop()
    answers: dict[int, tuple[str, str]] = {}  # ttl -> (who answered, HOP / DESTINATION / REFUSED)
    try:
        udp.bind(("0.0.0.0", 0))
        sport = udp.getsockname()[1]
        probes: dict[int, int] = {}  # destination port -> ttl
        heard: dict[int, int] = {}  # ttl -> answers read
        arrived = asyncio.Event()  # an answer came: look again at once
        loop.add_reader(raw.fileno(), _read_answers, raw, address, sport, probes, answers, heard, arrived)
        asked_at: dict[int, float] = {}  # ttl -> when it was last asked
        queries: dict[int, int] = {}  # ttl -> queries sent
        hop_wait = spec.hop_wait_ms / 1000

        def ask(ttl: int, now: float) -> None:
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            port = spec.base_port + len(probes)  # a port per query: an answer names the query it answers
            probes[port] = ttl
            try:
                udp.sendto(PAYLOAD, (address, port))
                count_wire(28 + len(PAYLOAD))
            except OSError as exc:
                raise ProbeFailure("no_route", f"sending to {address}: {exc.strerror}") from None
            asked_at[ttl], queries[ttl] = now, queries.get(ttl, 0) + 1

        next_ttl, out_of_time = 1, False
        give_up = time.monotonic() + spec.timeout_s * 0.9  # report the path found so far, not a bare timeout
        while True:
            now = time.monotonic()
            if now >= give_up:
                out_of_time = True
                break
            last_needed = _end_of_path(answers) or spec.max_hops
            waiting = []  # hops asked, not answered, not yet given up
            for ttl in sorted(asked_at):
                if ttl > last_needed or ttl in answers:
                    continue
                if now - asked_at[ttl] < hop_wait:
                    waiting.append(ttl)
                elif queries[ttl] < spec.probes_per_hop:
                    ask(ttl, now)
                    waiting.append(ttl)
            if next_ttl > last_needed and not waiting:
                break
            while next_ttl <= last_needed and len(waiting) < spec.window:
                ask(next_ttl, now)
                waiting.append(next_ttl)
                next_ttl += 1
            # Sleep until an answer comes or the first hop waited for is due again, not in short polls: a
            # hop that never answers (common) would otherwise cost a wake-up every few milliseconds.
            due = min((asked_at[ttl] + hop_wait for ttl in waiting), default=now)
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), max(0.0, min(due, give_up) - time.monotonic()))
    finally:
        loop.remove_reader(raw.fileno())
        raw.close()
        udp.close()
    end = _end_of_path(answers)
    reached_at = end if end and answers[end][1] == DESTINATION else None
    if reached_at is not None:  # the destination answers every query that reached it, some after we stopped reading
        late = sum(queries[t] - heard.get(t, 0) for t in queries if t >= reached_at)
        count_wire(late * (20 + 8 + 20 + 8 + len(PAYLOAD)))  # an ICMP error quoting the whole query
    last = end or max(answers, default=0)
    path = [answers[t][0] if t in answers else NO_ANSWER for t in range(1, last + 1)]
    fields = {"hops": last, "reached": reached_at is not None, "path": ">".join(path) or NO_ANSWER,
              "fingerprint": fingerprint(path)}
    previous = ctx.recall(f"traceroute:{spec.name}")
    ctx.remember(f"traceroute:{spec.name}", [remembered_path(previous[0] if previous else None, path),
                                             reached_at is not None])
    changed = previous is not None and path_changed(previous[0], path, previous[1], reached_at is not None)
    fields["route_changed"] = changed
    if end and answers[end][1] == REFUSED:
        raise ProbeFailure("unreachable", f"hop {end} ({answers[end][0]}) says {address} is unreachable", fields)
    if reached_at is None:
        where = f"after hop {last} ({path[-1]})" if path else "at the first hop"
        within = f"{spec.timeout_s * 0.9:g} s" if out_of_time else f"{spec.max_hops} hops"
        raise ProbeFailure("not_reached", f"{address} not reached within {within}; path stops {where}", fields)
    if changed:
        return Measured(fields, "route_changed", f"path to {address} was {'>'.join(previous[0])}, "
                                                 f"now {fields['path']}")
    return Measured(fields)
