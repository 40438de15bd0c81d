"""Where an agent's monotonic clock stands against UTC, for samples taken with an unsynchronised clock.

A `sync: none` record is placed by the agent's monotonic clock: its time is
`sent − (mono_now − mono)`, where `sent` is when the agent read `mono_now` (it
builds and sends the message at once), on the collector's clock. What the collector
sees is the message's receipt at the intake, R, which is later than `sent` by the
transit and by however long the broker held the message (a collector restarting, a
backlog draining). MQTT v5's Message Expiry Interval measures that hold: the agent
publishes with `wire.HOLD_CLOCK_S`, and the broker must forward the message with
the interval less the time it held it, in whole seconds (H'). The true hold H lies
in (H' − 1, H' + 1) seconds.

Per message, the offset `O = sent − mono_now` therefore has an upper bound
`u = R − mono_now − max(0, H' − 1 s)` (the message cannot be received before it was
sent, and was held at least H' − 1 s) and a lower bound `l = R − mono_now − H' − 1 s`
(transit, milliseconds, left out). Per (clinic, boot) the collector keeps the
tightest bounds it has seen, U (least upper) and L (greatest lower), and places a
record:
- at U when one of the messages behind them was held under a second (H' = 0): U is
  then within that message's hold and transit of the truth, as NTP trusts the
  sample with the least delay: one live message places a whole later backlog to
  milliseconds;
- at the middle of [L, U] when every message was held (a collector that met this
  agent only through a backlog): within (U − L) / 2, under a second.
Records carry `time_bound_ms`: the true time is within that much of the stored one
either way (U − L, or half of it). The monotonic clock of a box without NTP drifts
against UTC (a Raspberry Pi's crystal: tens of ppm), so a bound observed at
mono_now m widens by `DRIFT` per ms of distance from m. A message that the agent
sent late (paho resends an unacknowledged publish after a reconnect with the
`mono_now` it was built with) only raises its own bounds: U ignores it.

The state is small (a few observations per agent boot) and saved in the data dir,
so a collector killed and restarted places the broker's backlog with what it knew.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

DRIFT = 1e-4  # 100 ppm: twice a cheap crystal's tolerance
KEEP = 8  # observations kept per (clinic, boot): the newest that tightened a bound
MAX_AGENTS = 100_000  # (clinic, boot) pairs remembered; the least recently seen go first
SAVE_EVERY_S = 5.0


@dataclass(frozen=True)
class Observation:
    mono_now: int  # agent's monotonic ms when it sent the message
    upper: int  # O <= upper (ms)
    lower: int | None  # O >= lower, when the hold is known
    live: bool  # held under a second: `upper` is within that second (and the transit) of O


@dataclass(frozen=True)
class Placement:
    sent_ms: int  # when the agent read mono_now, on the collector's clock (UTC ms)
    bound_ms: int | None  # the true time is within this much either way; None: hold unknown


def observe(mono_now: int, received_ms: int, held_s: int | None) -> Observation:
    reach = received_ms - mono_now
    if held_s is None:  # no hold information (an agent before MQTT v5 expiry, or a v3.1.1 broker)
        return Observation(mono_now, reach, None, False)
    return Observation(mono_now, reach - max(0, held_s - 1) * 1000, reach - (held_s + 1) * 1000, held_s == 0)


def _widened(observation: Observation, at_mono: int) -> tuple[int, int | None]:
    slack = int(DRIFT * abs(at_mono - observation.mono_now)) + 1
    lower = observation.lower - slack if observation.lower is not None else None
    return observation.upper + slack, lower


class AgentClocks:
    def __init__(self, path: Path | None = None, clock=time.monotonic) -> None:
        self.path, self.clock = path, clock
        self.agents: dict[tuple[str, str], list[Observation]] = {}
        self._dirty, self._saved_at = False, clock()
        if path is not None and path.exists():
            self._load(path)

    def place(self, clinic: str, boot: str, mono_now: int, received_ms: int, held_s: int | None) -> Placement:
        """Learn from this message, then say when it was sent."""
        key = (clinic, boot)
        seen = self.agents.pop(key, [])
        self.agents[key] = seen  # most recently seen last
        new = observe(mono_now, received_ms, held_s)
        if self._useful(new, seen):
            seen.append(new)
            del seen[:-KEEP]  # the newest useful ones: an old bound loses worth as the clock drifts
            self._dirty = True
        while len(self.agents) > MAX_AGENTS:
            del self.agents[next(iter(self.agents))]
        return self.placement(seen, mono_now)

    @staticmethod
    def placement(seen: list[Observation], at_mono: int) -> Placement:
        uppers, lowers = [], []
        for observation in seen:
            upper, lower = _widened(observation, at_mono)
            uppers.append(upper)
            if lower is not None:
                lowers.append(lower)
        upper = min(uppers)
        if not lowers:
            return Placement(upper + at_mono, None)
        lower = min(max(lowers), upper)  # bounds that cross: a clock stepped; trust the upper one
        if any(o.live for o in seen):
            return Placement(upper + at_mono, upper - lower)
        middle = (upper + lower) // 2
        return Placement(middle + at_mono, upper - middle)

    @staticmethod
    def _useful(new: Observation, seen: list[Observation]) -> bool:
        """Tighter, at its own moment, than what the kept observations say there."""
        if not seen:
            return True
        upper = min(_widened(o, new.mono_now)[0] for o in seen)
        if new.upper < upper or (new.live and not any(o.live for o in seen)):
            return True
        lowers = [lower for o in seen if (lower := _widened(o, new.mono_now)[1]) is not None]
        return new.lower is not None and (not lowers or new.lower > max(lowers))

    def save_if_due(self) -> None:
        """Write the state when it changed, at most every few seconds (an atomic replace)."""
        if self.path is None or not self._dirty or self.clock() - self._saved_at < SAVE_EVERY_S:
            return
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        document = [[clinic, boot, [[o.mono_now, o.upper, o.lower, o.live] for o in seen]]
                    for (clinic, boot), seen in self.agents.items()]
        tmp.write_text(json.dumps(document))
        os.replace(tmp, self.path)
        self._dirty, self._saved_at = False, self.clock()

    def _load(self, path: Path) -> None:
        try:
            for clinic, boot, seen in json.loads(path.read_text()):
                self.agents[(clinic, boot)] = [Observation(int(m), int(u), None if lo is None else int(lo),
                                                           bool(live)) for m, u, lo, live in seen]
        except (OSError, ValueError, TypeError):
            self.agents.clear()  # a damaged file costs precision until the next live message, nothing else
