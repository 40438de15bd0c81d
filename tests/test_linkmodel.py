"""The link model alone: scripted clock and seeded randomness, no sockets."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from lab.linkmodel import LOSS_FRAME, PROFILES, LinkModel, LinkProfile, StratifiedLoss


@pytest.mark.parametrize("rate", [0.005, 0.02, 0.1633, 0.5])
def test_stratified_loss_drops_exactly_its_share_per_frame(rate: float) -> None:
    loss = StratifiedLoss(rate, mean_burst=4, rng=random.Random(7))
    decisions = [loss.drop() for _ in range(LOSS_FRAME * 20)]
    # Rounding is carried from frame to frame, so over 20 frames the count is exact to one packet.
    assert abs(sum(decisions) - rate * len(decisions)) <= 1


def test_bursty_loss_has_the_configured_mean_burst_length() -> None:
    loss = StratifiedLoss(0.2, mean_burst=4, rng=random.Random(3))
    decisions = [loss.drop() for _ in range(100_000)]
    bursts, run = [], 0
    for dropped in decisions:
        if dropped:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    # Adjacent bursts can merge inside a frame, so the mean is a little above 4.
    assert 3.5 <= statistics.mean(bursts) <= 5.5
    independent = StratifiedLoss(0.2, mean_burst=1, rng=random.Random(3))
    assert sum(independent.drop() for _ in range(10_000)) == 2000


def test_delay_is_half_the_rtt_each_way_and_jitter_reads_as_configured() -> None:
    model = LinkModel(LinkProfile(rtt_ms=60, jitter_ms=25), random.Random(1))
    rtts = []
    for i in range(20_000):
        now = i * 0.1
        there = model.admit("up", 84, now)
        back = model.admit("down", 84, there)
        rtts.append((back - now) * 1000)
    assert statistics.mean(rtts) == pytest.approx(60, abs=0.5)
    rfc3550_jitter = statistics.mean(abs(a - b) for a, b in zip(rtts, rtts[1:]))
    assert rfc3550_jitter == pytest.approx(25, rel=0.05)


def test_rate_limit_serialises_packets_and_tail_drops_past_the_queue() -> None:
    model = LinkModel(LinkProfile(rate_kbit_up=1000, queue_ms=50), random.Random(1))
    # 1250-byte packets take 10 ms each at 1 Mbit/s; a burst of 10 arrives at once.
    leaves = [model.admit("up", 1250, 0.0) for _ in range(10)]
    assert leaves[:6] == pytest.approx([0.01 * (i + 1) for i in range(6)])
    assert leaves[6:] == [None] * 4, "past 50 ms of backlog the queue drops"
    assert model.stats()["up"]["dropped_queue"] == 4
    assert model.admit("down", 1250, 0.0) == 0.0, "the other direction is not limited"


def test_cut_drops_everything_and_restore_resumes() -> None:
    model = LinkModel(LinkProfile(rtt_ms=10), random.Random(1))
    assert model.admit("up", 100, 0.0) == pytest.approx(0.005)
    generation = model.cut_generation
    model.set_cut(True)
    assert model.cut_generation == generation + 1
    assert model.admit("up", 100, 1.0) is None and model.admit("down", 100, 1.0) is None
    model.set_cut(False)
    assert model.admit("down", 100, 2.0) == pytest.approx(2.005)
    stats = model.stats()
    assert stats["up"]["dropped_cut"] == 1 and stats["down"]["dropped_cut"] == 1
    assert stats["up"]["delivered"] == 1 and stats["down"]["delivered"] == 1


def test_changing_the_profile_keeps_counters() -> None:
    model = LinkModel(PROFILES["fibre"], random.Random(1))
    model.admit("up", 100, 0.0)
    model.set_profile(model.profile.with_changes(rtt_ms=600))
    assert model.admit("up", 100, 10.0) == pytest.approx(10.3, abs=0.001)
    assert model.stats()["up"]["packets"] == 2


@pytest.mark.parametrize("changes,message", [
    ({"loss_pct": 100}, "loss_pct must be in [0, 100)"),
    ({"rtt_ms": -1}, "rtt_ms and jitter_ms must be >= 0"),
    ({"loss_burst": 0.5}, "loss_burst"),
    ({"rate_kbit_up": 0}, "rate_kbit_* must be > 0"),
    ({"delay": 5}, "unknown link parameter(s) ['delay']"),
])
def test_bad_link_parameters_are_refused_with_the_reason(changes: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        PROFILES["lte"].with_changes(**changes)
    assert message in str(caught.value)


def test_named_profiles_are_the_designed_ones() -> None:
    assert set(PROFILES) == {"fibre", "dsl", "lte", "geo_satellite", "dying"}
    assert (PROFILES["lte"].rtt_ms, PROFILES["lte"].jitter_ms, PROFILES["lte"].loss_pct) == (60, 25, 2)
    assert (PROFILES["geo_satellite"].rtt_ms, PROFILES["geo_satellite"].loss_pct) == (600, 1)
    assert PROFILES["dying"].loss_pct == 30 and PROFILES["dying"].loss_burst > 1
    # Round-trip loss splits evenly: two directions at p each lose 1 - (1 - p)^2 of the round trips.
    p = PROFILES["dying"].one_way_loss()
    assert 1 - (1 - p) ** 2 == pytest.approx(0.30)
    assert math.isclose(PROFILES["fibre"].one_way_loss(), 0.0)


def test_reseeding_replays_the_same_delays_and_drops() -> None:
    model = LinkModel(PROFILES["dying"], random.Random())

    def run(start: float) -> list[float | None]:
        model.reseed(42)
        leaving = [model.admit("up", 84, start + i * 0.01) for i in range(300)]
        return [None if t is None else round(t - start, 9) for t in leaving]

    first, second = run(0.0), run(100.0)
    assert first == second
    assert 30 <= first.count(None) <= 70  # ~16 % one way
