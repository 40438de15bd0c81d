"""What an emulated clinic link does to each packet: delay, jitter, loss, rate, cut.

Pure logic with an injected clock and random source, so it is tested without
sockets. The relay (lab/relay.py) asks `LinkModel.admit()` for every packet and
writes it out at the time returned, or drops it.

Semantics (documented in docs/link-emulation.md):
- `rtt_ms` is the round-trip delay the link adds; each direction gets half.
- `jitter_ms` is the jitter a probe should read: the mean absolute difference of
  consecutive RTTs (RFC 3550 style). With jitter, each one-way delay is drawn
  from a gamma distribution (never negative, right-skewed like real latency)
  whose shape is solved so that the RTT's mean is exactly `rtt_ms` and
  E|RTT_i - RTT_i-1| is exactly `jitter_ms`.
- `loss_pct` is the round-trip loss that ping reads. Each direction drops
  1 - sqrt(1 - loss) of its packets. Loss is stratified: every frame of
  `LOSS_FRAME` packets per direction loses exactly its share (rounding carried
  over), at random places, in bursts of mean length `loss_burst`. The long-run
  rate is therefore exact and a few hundred packets read it within a point,
  which a Bernoulli process cannot give (at 30 % over 300 packets its own
  spread is 2.6 points), so accuracy tests measure the probe, not luck.
- `rate_kbit_down/up` serialise packets at that rate behind a FIFO of at most
  `queue_ms` of backlog (tail drop beyond), like a modem's buffer.
- `cut` drops everything, including packets already in flight.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal

Direction = Literal["up", "down"]  # up: clinic -> central, down: central -> clinic
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
LOSS_FRAME = 100


@dataclass(frozen=True)
class LinkProfile:
    name: str = "custom"
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    loss_burst: float = 1.0
    rate_kbit_down: float | None = None
    rate_kbit_up: float | None = None
    queue_ms: float = 500.0

    def __post_init__(self) -> None:
        problems = []
        if self.rtt_ms < 0 or self.jitter_ms < 0:
            problems.append("rtt_ms and jitter_ms must be >= 0")
        if not 0 <= self.loss_pct < 100:
            problems.append("loss_pct must be in [0, 100)")
        if self.jitter_ms > 0 and self.rtt_ms <= 0:
            problems.append("jitter_ms needs rtt_ms > 0 (jitter varies the delay around its mean)")
        if self.jitter_ms > 0 and self.jitter_ms >= self.rtt_ms * 1.99:
            problems.append("jitter_ms must stay below 2 * rtt_ms (no never-negative delay varies more)")
        if self.loss_burst < 1:
            problems.append("loss_burst is a mean burst length in packets, >= 1")
        for rate in (self.rate_kbit_down, self.rate_kbit_up):
            if rate is not None and rate <= 0:
                problems.append("rate_kbit_* must be > 0 or None (unlimited)")
        if problems:
            raise ValueError(f"link profile {self.name!r}: " + "; ".join(problems))

    def with_changes(self, **changes: object) -> "LinkProfile":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown link parameter(s) {unknown}; known: {sorted(known)}")
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def one_way_loss(self) -> float:
        return 1.0 - math.sqrt(1.0 - self.loss_pct / 100.0)

    def one_way_gamma(self) -> tuple[float, float] | None:
        """(shape, scale in s) of each one-way delay, or None for a constant delay.

        The RTT is the sum of two such delays, Gamma(2k, theta). For Gamma(K, theta)
        the mean is K*theta and E|X - Y| = 2 theta Gamma(2K+1) / (K Gamma(K)^2 4^K);
        the ratio jitter/rtt fixes K, found by bisection (the ratio falls as K grows).
        """
        if self.jitter_ms <= 0:
            return None
        target = self.jitter_ms / self.rtt_ms

        def ratio(shape: float) -> float:
            return 2.0 * math.exp(math.lgamma(2 * shape + 1) - 2 * math.log(shape) - 2 * math.lgamma(shape)
                                  - shape * math.log(4.0))

        low, high = 1e-3, 1e9
        for _ in range(200):
            mid = math.sqrt(low * high)
            low, high = (mid, high) if ratio(mid) > target else (low, mid)
        rtt_shape = math.sqrt(low * high)
        return rtt_shape / 2.0, self.rtt_ms / 1000.0 / rtt_shape


# The named profiles from DESIGN.md; rates are typical, not contractual.
PROFILES: dict[str, LinkProfile] = {
    p.name: p
    for p in (
        LinkProfile("fibre", rtt_ms=5, rate_kbit_down=100_000, rate_kbit_up=50_000),
        LinkProfile("dsl", rtt_ms=30, loss_pct=0.5, rate_kbit_down=8_000, rate_kbit_up=1_000),
        LinkProfile("lte", rtt_ms=60, jitter_ms=25, loss_pct=2, rate_kbit_down=20_000, rate_kbit_up=5_000),
        LinkProfile("geo_satellite", rtt_ms=600, loss_pct=1, rate_kbit_down=10_000, rate_kbit_up=2_000, queue_ms=1500),
        LinkProfile("dying", rtt_ms=120, jitter_ms=40, loss_pct=30, loss_burst=4, rate_kbit_down=256, rate_kbit_up=128),
    )
}


class StratifiedLoss:
    """Drops exactly `rate` of the packets of each frame, in random bursts."""

    def __init__(self, rate: float, mean_burst: float, rng: random.Random) -> None:
        self.rate = rate
        self.mean_burst = mean_burst
        self.rng = rng
        self._carry = 0.0
        self._frame: list[bool] = []

    def drop(self) -> bool:
        if self.rate <= 0:
            return False
        if not self._frame:
            self._frame = self._next_frame()
        return self._frame.pop()

    def _next_frame(self) -> list[bool]:
        wanted = self.rate * LOSS_FRAME + self._carry
        drops = min(LOSS_FRAME, int(wanted))
        self._carry = wanted - drops
        bursts: list[int] = []
        left = drops
        while left > 0:
            length = min(left, self._burst_length())
            bursts.append(length)
            left -= length
        # Spread the good packets over the len(bursts) + 1 gaps at random.
        cuts = sorted(self.rng.randint(0, LOSS_FRAME - drops) for _ in bursts)
        gaps = [b - a for a, b in zip([0, *cuts], [*cuts, LOSS_FRAME - drops])]
        frame: list[bool] = []
        for gap, burst in zip(gaps, [*bursts, 0]):
            frame += [False] * gap + [True] * burst
        frame.reverse()  # consumed with pop() from the end
        return frame

    def _burst_length(self) -> int:
        if self.mean_burst <= 1:
            return 1
        # Geometric with mean `mean_burst`.
        p = 1.0 / self.mean_burst
        return 1 + int(math.log(1.0 - self.rng.random()) / math.log(1.0 - p))


@dataclass
class DirectionStats:
    packets: int = 0
    bytes: int = 0
    delivered: int = 0
    dropped_loss: int = 0
    dropped_cut: int = 0
    dropped_queue: int = 0
    late_us_max: int = 0  # how late the relay wrote a packet against its release time
    late_us_total: int = 0


@dataclass
class _DirectionState:
    loss: StratifiedLoss
    delays: random.Random  # its own stream: the k-th packet each way gets the same draw, however they interleave
    busy_until: float = 0.0
    stats: DirectionStats = field(default_factory=DirectionStats)


class LinkModel:
    """Decides, packet by packet, when (or whether) it leaves the link."""

    def __init__(self, profile: LinkProfile, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.cut = False
        self.cut_generation = 0  # bumped on cut: packets queued before are dropped
        self.profile = profile
        self._dirs: dict[Direction, _DirectionState] = {}
        self.set_profile(profile)

    def set_profile(self, profile: LinkProfile) -> None:
        old = self._dirs
        self.profile = profile
        self._gamma = profile.one_way_gamma()
        self._dirs = {
            d: _DirectionState(
                loss=StratifiedLoss(profile.one_way_loss(), profile.loss_burst, random.Random(self.rng.random())),
                delays=random.Random(self.rng.random()),
                busy_until=old[d].busy_until if d in old else 0.0,
                stats=old[d].stats if d in old else DirectionStats(),
            )
            for d in DIRECTIONS
        }

    def reseed(self, seed: int) -> None:
        """Start the random draws (delays, loss places) afresh, so two runs face the same link."""
        for index, state in enumerate(self._dirs.values()):
            state.delays = random.Random(f"{seed}-delay-{index}")
            state.loss = StratifiedLoss(self.profile.one_way_loss(), self.profile.loss_burst,
                                        random.Random(f"{seed}-loss-{index}"))

    def set_cut(self, cut: bool) -> None:
        if cut and not self.cut:
            self.cut_generation += 1
        self.cut = cut

    def admit(self, direction: Direction, size: int, now: float) -> float | None:
        """Return the time at which the packet leaves the link, or None if dropped."""
        state = self._dirs[direction]
        stats = state.stats
        stats.packets += 1
        stats.bytes += size
        if self.cut:
            stats.dropped_cut += 1
            return None
        if state.loss.drop():
            stats.dropped_loss += 1
            return None
        rate = self.profile.rate_kbit_down if direction == "down" else self.profile.rate_kbit_up
        start = now
        if rate is not None:
            start = max(now, state.busy_until)
            if start - now > self.profile.queue_ms / 1000.0:
                stats.dropped_queue += 1
                return None
            state.busy_until = start + size * 8 / (rate * 1000.0)
            start = state.busy_until
        if self._gamma is None:
            delay = self.profile.rtt_ms / 2000.0
        else:
            delay = state.delays.gammavariate(*self._gamma)
        stats.delivered += 1
        return start + delay

    def released(self, direction: Direction, late_s: float) -> None:
        stats = self._dirs[direction].stats
        late_us = int(late_s * 1e6)
        stats.late_us_total += late_us
        stats.late_us_max = max(stats.late_us_max, late_us)

    def dropped_in_flight(self, direction: Direction) -> None:
        """A packet admitted before a cut never arrives: move it to the cut count."""
        stats = self._dirs[direction].stats
        stats.delivered -= 1
        stats.dropped_cut += 1

    def stats(self) -> dict[str, dict[str, int]]:
        return {d: asdict(self._dirs[d].stats) for d in DIRECTIONS}
