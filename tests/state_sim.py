"""A simulated fleet for the state engine's scenario tests, on a scripted clock.

Each simulated agent behaves as agent/runtime.py and agent/transport.py do, in what reaches the
collector: ICMP rounds every `probe_s` to two central targets and the clinic's gateway, held in an
outbox and sent in batches every `flush_s` while the link is up (all at once when it comes back);
an MQTT keepalive after which the broker publishes the Last Will; on reconnect a birth message, the
agent's own `outage` record of the cut it lived through, then its outbox. A power cut puts the UPS
on battery (an `on_battery` event) and, when the battery is empty, switches the box off; it comes
back as a new boot on a box just started. Facts are built from real wire messages by
collector.state.facts, as ingest builds them.
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import wire
from collector.state.engine import Changes, ClinicInfo, Engine
from collector.state.facts import facts_of

S = 1000
MIN = 60 * S
T0 = 1_790_000_000_000  # 2026-09-21 14:13:20 UTC


@dataclass
class Link:
    """What the link does at time t: cut, or up with some loss and RTT."""
    cuts: list[tuple[int, int]] = field(default_factory=list)  # [start, end)
    loss_pct: float = 0.0
    rtt_ms: float = 20.0
    jitter_ms: float = 2.0

    def up(self, t: int) -> bool:
        return not any(a <= t < b for a, b in self.cuts)


class SimAgent:
    def __init__(self, clinic: str, link: Link, rng: random.Random, probe_s: float = 10, flush_s: float = 30,
                 keepalive_s: float = 60, start: int = T0, box_up_since: int | None = None,
                 route: str | None = None) -> None:
        self.clinic, self.link, self.rng = clinic, link, rng
        self.route = route  # a traceroute path to the records service, reported every 15 minutes
        self.next_route = start
        self.probe_ms, self.flush_ms, self.ka_ms = int(probe_s * S), int(flush_s * S), int(keepalive_s * S)
        self.boot_n = 0
        self.outbox_samples: list[wire.Sample] = []
        self.outbox_events: list[wire.Event] = []
        self.seq = 0
        self.box_up_since = box_up_since if box_up_since is not None else start - 86_400_000
        self.running = False
        self.connected = False
        self.last_packet = start
        self.will_at: int | None = None
        self.outage_began: tuple[int, str] | None = None  # (t, cause) the agent noticed
        self.on_battery = False
        self.next_probe = start + rng.randrange(self.probe_ms)
        self.next_flush = start + self.flush_ms
        self.off_until: int | None = None
        self.start_after: int | None = None
        self.sent: list[tuple[int, wire.Message]] = []  # what reached the broker, with the broker's time
        self.start_run(start)

    # -- agent runs ---------------------------------------------------------------------------------
    def start_run(self, t: int) -> None:
        self.boot_n += 1
        self.boot = f"{zlib.crc32(f'{self.clinic}/{self.boot_n}'.encode()):08x}"
        self.running = True
        self.outage_began = (t, "agent started, not yet connected")
        self.try_connect(t)

    def mono(self, t: int) -> int:
        return t - self.box_up_since

    def try_connect(self, t: int) -> None:
        if self.running and not self.connected and self.link.up(t):
            self.connected = True
            self.will_at = None
            self.last_packet = t
            self.publish(t, wire.Status(v=1, clinic=self.clinic, state="online", boot=self.boot, agent="sim"))
            if self.outage_began is not None:
                down_t, cause = self.outage_began
                self.outage_began = None
                self.event(t, "outage", {"down_t": down_t, "down_mono": self.mono(down_t), "up_mono": self.mono(t),
                                         "duration_s": (t - down_t) / 1000, "cause": cause, "power_cycled": False,
                                         "down_sync": "ntp"})
            self.flush(t)

    def publish(self, t: int, message: wire.Message) -> None:
        self.sent.append((t, message))
        self.last_packet = t

    def event(self, t: int, kind: str, detail: dict) -> None:
        self.seq += 1
        self.outbox_events.append(wire.Event(seq=self.seq, t=t, mono=self.mono(t), sync="ntp", kind=kind,
                                             detail=detail))
        if self.connected:
            self.flush(t, samples=False)

    def flush(self, t: int, samples: bool = True) -> None:
        if self.outbox_events:
            self.publish(t, wire.Events(v=1, clinic=self.clinic, boot=self.boot, mono_now=self.mono(t),
                                        events=self.outbox_events))
            self.outbox_events = []
        if samples and self.outbox_samples:
            for i in range(0, len(self.outbox_samples), 500):
                self.publish(t, wire.Telemetry(v=1, clinic=self.clinic, boot=self.boot, mono_now=self.mono(t),
                                               samples=self.outbox_samples[i:i + 500]))
            self.outbox_samples = []

    def clean_stop(self, t: int) -> None:
        self.flush(t)
        if self.connected:
            self.publish(t, wire.Status(v=1, clinic=self.clinic, state="offline", boot=self.boot, agent="sim",
                                        reason="shutdown"))
        self.running = self.connected = False

    def power_cut(self, t: int, battery_min: float, off_min: float) -> None:
        """Mains fail at t; the UPS holds the box for battery_min, then it is off for off_min."""
        self.on_battery = True
        self.event(t, "on_battery", {"charge_pct": 100})
        self.box_off_at = t + int(battery_min * MIN)
        self.off_until = self.box_off_at + int(off_min * MIN)

    # -- the simulated seconds ------------------------------------------------------------------------
    def step(self, t: int) -> None:
        if self.off_until is not None and getattr(self, "box_off_at", None) is not None and t >= self.box_off_at:
            if self.running:
                self.running = False
                self.connected_until_off = self.connected
                self.connected = False
                if self.will_at is None:
                    self.will_at = self.last_packet + int(1.5 * self.ka_ms)
            if t >= self.off_until:  # mains back: the box boots, the agent starts 30 s later
                self.box_up_since, self.box_off_at, self.off_until = t, None, None
                self.on_battery = False
                self.outbox_samples, self.outbox_events = [], []
                self.start_after = t + 30 * S
            return
        if self.start_after is not None:
            if t < self.start_after:
                return
            self.start_after = None
            self.start_run(t)
        if not self.running:
            return
        if self.connected and not self.link.up(t):
            # Nothing gets through; the broker notices 1.5 keepalives after the last packet, the agent
            # (its keepalive unanswered) at about the same time.
            if t - self.last_packet >= 1.5 * self.ka_ms:
                self.connected = False
                self.will_at = self.last_packet + int(1.5 * self.ka_ms)
                self.outage_began = (t, "keepalive timeout or link lost")
        elif not self.connected:
            self.try_connect(t)
        if t >= self.next_probe:
            self.next_probe += self.probe_ms
            self.probe(t)
        if self.connected and t >= self.next_flush:
            self.next_flush = t + self.flush_ms
            if self.link.up(t):
                self.flush(t)
        if self.connected and self.link.up(t) and t - self.last_packet >= self.ka_ms:
            self.last_packet = t  # PINGREQ

    def probe(self, t: int) -> None:
        if self.route is not None and t >= self.next_route and self.link.up(t):
            self.next_route = t + 15 * MIN
            self.seq += 1
            self.outbox_samples.append(wire.Sample(seq=self.seq, t=t, mono=self.mono(t), sync="ntp", m="traceroute",
                                                   tags={"target": "records"},
                                                   f={"success": True, "path": self.route, "reached": True,
                                                      "hops": self.route.count(">") + 1}))
        for target in ("records", "hub", "gateway"):
            up = self.link.up(t) or target == "gateway"
            loss = 100.0 if not up else (0.0 if target == "gateway" else self._loss())
            fields: dict = {"success": loss < 100, "loss_pct": loss, "sent": 5}
            if loss < 100:
                rtt = 1.0 if target == "gateway" else self.link.rtt_ms * (1 + self.rng.random() * 0.1)
                fields.update(rtt_avg_ms=rtt, jitter_ms=0.2 if target == "gateway" else self.link.jitter_ms)
            else:
                fields["reason"] = "timeout"
            self.seq += 1
            self.outbox_samples.append(wire.Sample(seq=self.seq, t=t, mono=self.mono(t), sync="ntp", m="icmp",
                                                   tags={"target": target}, f=fields))

    def _loss(self) -> float:
        lost = sum(self.rng.random() * 100 < self.link.loss_pct for _ in range(5))
        return lost * 20.0


class Sim:
    """Agents, the broker between them and the engine, and the engine ticking every `tick_s`."""

    def __init__(self, clinics: dict[str, ClinicInfo], seed: int = 7, engine: Engine | None = None) -> None:
        self.rng = random.Random(seed)
        self.engine = engine or Engine(clinics)
        self.agents: dict[str, SimAgent] = {}
        self.changes = Changes()
        self.now = T0
        self.actions: list[tuple[int, int, Callable[[int], None]]] = []
        self._n = 0

    def add(self, clinic: str, link: Link | None = None, **kw: object) -> SimAgent:
        agent = SimAgent(clinic, link or Link(), self.rng, start=self.now, **kw)  # type: ignore[arg-type]
        self.agents[clinic] = agent
        return agent

    def at(self, t: int, action: Callable[[int], None]) -> None:
        self._n += 1
        heapq.heappush(self.actions, (t, self._n, action))

    def run_until(self, end: int, tick_s: float = 1) -> Changes:
        step = int(tick_s * S)
        while self.now < end:
            self.now += step
            while self.actions and self.actions[0][0] <= self.now:
                heapq.heappop(self.actions)[2](self.now)
            for agent in self.agents.values():
                agent.step(self.now)
                if agent.will_at is not None and agent.will_at <= self.now:
                    agent.sent.append((agent.will_at, wire.Status(v=1, clinic=agent.clinic, state="offline",
                                                                  boot=agent.boot, agent="sim", reason="lost")))
                    agent.will_at = None
                for at, message in agent.sent:
                    for fact in facts_of(message, at, at):
                        self.engine.apply(fact)
                agent.sent = []
            changes = self.engine.tick(self.now)
            self.changes.transitions += changes.transitions
            self.changes.incidents += changes.incidents
            self.changes.intents += changes.intents
            self.changes.outages += changes.outages
        return self.changes

    def states(self, clinic: str) -> list[tuple[str, str, str | None, str | None]]:
        return [(t.old, t.new, t.cause, t.reason) for t in self.changes.transitions if t.clinic == clinic]
