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

Per message, the agent's offset `O = sent − mono_now` therefore has an upper bound
`u = R − mono_now − max(0, H' − 1 s)` (the message cannot be received before it was
sent, and was held at least H' − 1 s) and a lower bound `l = R − mono_now − H' − 1 s`
(transit, milliseconds, left out). Per (clinic, boot) the collector keeps the
tightest bounds it has seen, U (least upper) and L (greatest lower), and estimates O:
- as U when one of the messages behind them was held under a second (H' = 0): U is
  then within that message's hold and transit of the truth, as NTP trusts the
  sample with the least delay: one live message places a whole later backlog to
  milliseconds ("live" estimate);
- as the middle of [L, U] when every message was held (a collector that met this
  agent only through a backlog): within (U − L) / 2, under a second, plus the transit
  that L leaves out ("held"; the samples of a first held message whose hold sits at the
  edge of its second are a second and that transit off).
The monotonic clock of a box without NTP drifts against UTC (a Raspberry Pi's
crystal: tens of ppm), so a bound observed at mono_now m widens by `DRIFT` per ms of
distance from m. A message the agent sent late (paho resends an unacknowledged
publish after a reconnect with the `mono_now` it was built with) only raises its own
upper bound, which U ignores.

Records are placed with a *committed* offset, not the estimate of the moment, so that
a message delivered again (a collector killed after writing, before acknowledging)
lands on exactly the same points. The commit changes only for a better estimate (a
first live one), for drift (a live estimate `RECOMMIT_MS` away), or when the bounds
rule it out; each commit is appended to `agent-clocks.log` in the data dir before any
record placed by it goes to the database, and read back at start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

DRIFT = 1e-4  # 100 ppm: twice a cheap crystal's tolerance
KEEP = 8  # observations kept per (clinic, boot): the newest that tightened a bound
MAX_AGENTS = 100_000  # (clinic, boot) pairs remembered; the least recently seen go first
RECOMMIT_MS = 50  # a live estimate this far from the commit moves it (drift: every 500 s at 100 ppm)
COMPACT_AT = 4 * MAX_AGENTS  # log lines; at start a longer log is rewritten with the last commit of each


@dataclass(frozen=True)
class Observation:
    mono_now: int  # agent's monotonic ms when it sent the message
    upper: int  # O <= upper (ms)
    lower: int | None  # O >= lower, when the hold is known
    live: bool  # held under a second: `upper` is within that second (and the transit) of O


@dataclass(frozen=True)
class Estimate:
    offset: int  # O, ms
    bound: int | None  # |O_true − offset| <= bound; None: the hold was never known
    live: bool  # from a message held under a second, recent enough that drift has not blurred it


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


def estimate(seen: list[Observation], at_mono: int) -> Estimate:
    uppers, lowers = [], []
    for observation in seen:
        upper, lower = _widened(observation, at_mono)
        uppers.append(upper)
        if lower is not None:
            lowers.append(lower)
    upper = min(uppers)
    if not lowers:
        return Estimate(upper, None, False)
    lower = min(max(lowers), upper)  # bounds that cross: a clock stepped; trust the upper one
    if any(o.live for o in seen):
        # `live` (worth moving a commit for) only while the live bound has not drifted far
        recent = any(o.live and DRIFT * abs(at_mono - o.mono_now) < RECOMMIT_MS / 2 for o in seen)
        return Estimate(upper, upper - lower, recent)
    middle = (upper + lower) // 2
    return Estimate(middle, upper - middle, False)


def _useful(new: Observation, seen: list[Observation]) -> bool:
    """Tighter, at its own moment, than what the kept observations say there."""
    if not seen:
        return True
    upper = min(_widened(o, new.mono_now)[0] for o in seen)
    if new.upper < upper or (new.live and not any(o.live for o in seen)):
        return True
    lowers = [lower for o in seen if (lower := _widened(o, new.mono_now)[1]) is not None]
    return new.lower is not None and (not lowers or new.lower > max(lowers))


def _recommit(committed: Estimate | None, best: Estimate) -> bool:
    if committed is None:
        return True
    if best.live:
        return not committed.live or abs(best.offset - committed.offset) > RECOMMIT_MS
    if best.bound is None:
        return not committed.live and abs(best.offset - committed.offset) > RECOMMIT_MS
    if abs(best.offset - committed.offset) > best.bound:
        return True  # the bounds rule the commit out (a clock that jumped, or drift past them)
    return not committed.live and committed.bound is not None and best.bound < committed.bound - RECOMMIT_MS


class AgentClocks:
    def __init__(self, log_path: Path | None = None) -> None:
        self.seen: dict[tuple[str, str], list[Observation]] = {}
        self.committed: dict[tuple[str, str], Estimate] = {}
        self.log: TextIO | None = None
        if log_path is not None:
            if log_path.exists():
                self._load(log_path)
            self.log = open(log_path, "a", buffering=1)  # a line reaches the OS before it is used

    def place(self, clinic: str, boot: str, mono_now: int, received_ms: int, held_s: int | None) -> Placement:
        """Learn from this message, then say when it was sent."""
        key = (clinic, boot)
        seen = self.seen.pop(key, [])
        self.seen[key] = seen  # most recently seen last
        new = observe(mono_now, received_ms, held_s)
        if _useful(new, seen):
            seen.append(new)
            del seen[:-KEEP]  # the newest useful ones: an old bound loses worth as the clock drifts
        while len(self.seen) > MAX_AGENTS:
            self.committed.pop(next(iter(self.seen)), None)
            del self.seen[next(iter(self.seen))]
        best = estimate(seen, mono_now)
        committed = self.committed.get(key)
        if _recommit(committed, best):
            committed = self.committed[key] = best
            if self.log is not None:
                self.log.write(json.dumps([clinic, boot, best.offset, best.bound, best.live]) + "\n")
        if committed.bound is None or best.bound is None:
            return Placement(committed.offset + mono_now, None)
        return Placement(committed.offset + mono_now, best.bound + abs(committed.offset - best.offset))

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def _load(self, path: Path) -> None:
        lines = 0
        try:
            with open(path) as log:
                for line in log:
                    lines += 1
                    try:
                        clinic, boot, offset, bound, live = json.loads(line)
                        self.committed[(clinic, boot)] = Estimate(int(offset), None if bound is None else int(bound),
                                                                  bool(live))
                    except (ValueError, TypeError):
                        continue  # a line cut short by a crash: the commits before it stand
        except OSError:
            return
        if lines > COMPACT_AT or lines > 2 * len(self.committed) + 1000:
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w") as out:
                for (clinic, boot), e in list(self.committed.items())[-MAX_AGENTS:]:
                    out.write(json.dumps([clinic, boot, e.offset, e.bound, e.live]) + "\n")
            os.replace(tmp, path)
