"""User-space link relay between two TUN devices (the kernel here has no netem).

Run as its own process (`python -m lab.relay ...`) so that the test process's
work does not add latency. It creates two TUN devices, `--central` (stays in the
root namespace) and `--clinic` (moved into the clinic's namespace by
lab/links.py), and copies IPv4 packets between them through a `LinkModel`.

Control: a Unix stream socket taking one JSON object per line:
  {"op": "set", "profile": {...}}   change link parameters while running
  {"op": "reseed", "seed": N}       restart the random draws (same link for two runs)
  {"op": "cut"} / {"op": "restore"} cut the link / bring it back
  {"op": "stats"}                   per-direction packet counters
  {"op": "echoes"}                  the round trips of ICMP echoes since the last ask (see below)
Each request gets one JSON line back: {"ok": true, ...} or {"ok": false, "error": ...}.

The relay is also the link's witness: for every ICMP echo request it reads from
the clinic and whose reply it writes back to the clinic, it keeps the time
between the two, the round trip the link really gave that echo (delays, queueing
and its own lateness included). A probe or ping in the clinic reads each echo
later than the relay by the clinic's own stack and scheduling, nothing more; so
this is the truth its readings are held to, whatever the order in which the
link's random draws fell on the echoes.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from lab.linkmodel import Direction, LinkModel, LinkProfile

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def in_lab(address: bytes) -> bool:
    """198.18.0.0/15, the only addresses emulated links carry."""
    return address[0] == 198 and address[1] in (18, 19)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Relay:
    def __init__(self, central_fd: int, clinic_fd: int, model: LinkModel, control: socket.socket) -> None:
        self.model = model
        self.control = control
        # packets read from the central side travel down to the clinic, and back
        self.routes: dict[int, tuple[Direction, int]] = {
            central_fd: ("down", clinic_fd),
            clinic_fd: ("up", central_fd),
        }
        self.queue: list[tuple[float, int, int, int, Direction, bytes]] = []
        self.counter = 0
        self.clients: dict[socket.socket, bytes] = {}
        self.offlab_drops = 0
        self.echo_requests: dict[tuple[bytes, int, int], float] = {}  # (clinic address, id, seq) -> read at
        self.echo_rtts: list[tuple[int, int, float]] = []  # (id, seq, round trip in ms), in reply order

    def serve(self) -> None:
        while True:
            timeout = None
            if self.queue:
                timeout = max(0.0, self.queue[0][0] - time.monotonic())
            readable, _, _ = select.select([*self.routes, self.control, *self.clients], [], [], timeout)
            for source in readable:
                if isinstance(source, int):
                    self._forward_from(source)
                elif source is self.control:
                    conn, _ = self.control.accept()
                    self.clients[conn] = b""
                else:
                    self._control_input(source)
            self._release_due()

    def _forward_from(self, fd: int) -> None:
        direction, out_fd = self.routes[fd]
        for _ in range(64):  # bounded, so one busy side cannot starve the other
            try:
                packet = os.read(fd, 65535)
            except BlockingIOError:
                return
            if not packet or packet[0] >> 4 != 4:
                continue  # IPv4 only; IPv6 is disabled on the devices anyway
            if not (in_lab(packet[12:16]) and in_lab(packet[16:20])):
                self.offlab_drops += 1  # never let an emulated clinic reach beyond the lab's range
                continue
            now = time.monotonic()
            if direction == "up":
                self._witness(packet, 8, now)
            release = self.model.admit(direction, len(packet), now)
            if release is None:
                continue
            self.counter += 1
            heapq.heappush(self.queue, (release, self.counter, out_fd, self.model.cut_generation, direction, packet))

    def _release_due(self) -> None:
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            due, _, out_fd, generation, direction, packet = heapq.heappop(self.queue)
            if generation != self.model.cut_generation:
                self.model.dropped_in_flight(direction)
                continue
            self.model.released(direction, time.monotonic() - due)
            try:
                os.write(out_fd, packet)
            except OSError:
                continue  # device down or full: the packet is lost, as on a real link
            if direction == "down":
                self._witness(packet, 0, time.monotonic())

    def _witness(self, packet: bytes, icmp_type: int, now: float) -> None:
        """Note an echo request leaving the clinic (type 8) or its reply reaching it (type 0)."""
        header = (packet[0] & 0x0F) * 4
        if packet[9] != socket.IPPROTO_ICMP or len(packet) < header + 8 or packet[header] != icmp_type:
            return
        ident, seq = struct.unpack_from("!HH", packet, header + 4)
        if icmp_type == 8:
            if len(self.echo_requests) >= 100_000:  # requests never answered: forget the oldest
                del self.echo_requests[next(iter(self.echo_requests))]
            self.echo_requests[(packet[12:16], ident, seq)] = now
            return
        sent = self.echo_requests.pop((packet[16:20], ident, seq), None)
        if sent is not None:
            self.echo_rtts.append((ident, seq, round((now - sent) * 1000, 4)))

    def _control_input(self, conn: socket.socket) -> None:
        data = conn.recv(65536)
        if not data:
            del self.clients[conn]
            conn.close()
            return
        buffered = self.clients[conn] + data
        *lines, rest = buffered.split(b"\n")
        self.clients[conn] = rest
        for line in lines:
            conn.sendall(json.dumps(self._handle(line)).encode() + b"\n")

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op = request["op"]
            if op == "set":
                self.model.set_profile(self.model.profile.with_changes(**request["profile"]))
            elif op == "reseed":
                self.model.reseed(int(request["seed"]))
            elif op == "cut":
                self.model.set_cut(True)
            elif op == "restore":
                self.model.set_cut(False)
            elif op == "stats":
                pass
            elif op == "echoes":
                echoes, self.echo_rtts = self.echo_rtts, []
                return {"ok": True, "echoes": echoes}
            else:
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "cut": self.model.cut, "profile": self.model.profile.to_dict(), "stats": self.model.stats(),
                "offlab_drops": self.offlab_drops}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--central", required=True, help="TUN device name on the central side")
    parser.add_argument("--clinic", required=True, help="TUN device name on the clinic side")
    parser.add_argument("--control", required=True, help="path of the control Unix socket")
    parser.add_argument("--profile", default="{}", help="link parameters as JSON (see LinkProfile)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (jitter and loss placement)")
    args = parser.parse_args(argv)

    model = LinkModel(LinkProfile(**json.loads(args.profile)), random.Random(args.seed))
    central_fd = open_tun(args.central)
    clinic_fd = open_tun(args.clinic)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(args.control)
    control.listen(8)
    relay = Relay(central_fd, clinic_fd, model, control)

    def stop(*_: object) -> None:
        raise SystemExit(0)  # select() is retried after a handler that returns

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("READY", flush=True)
    relay.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
