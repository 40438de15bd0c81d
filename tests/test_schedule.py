"""The agent's scheduler (agent/schedule.py) on a virtual clock: exact run times, no overlap, no burst.

The event loop below keeps its own time: when it would wait for its next timer it moves the clock to it
instead of sleeping, so an hour of schedule runs in milliseconds and every time is exact.
"""

from __future__ import annotations

import asyncio
import logging
import random
import selectors

import pytest

from agent.schedule import Scheduler, next_slot


class _Clock:
    t = 1000.0


class _Selector(selectors.DefaultSelector):
    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None):  # type: ignore[override]
        assert timeout is not None, "nothing left to wait for: the test would hang"
        self.clock.t += max(0.0, timeout)
        return super().select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = _Clock()
        super().__init__(_Selector(self.clock))

    def time(self) -> float:
        return self.clock.t


def play(jobs: list[tuple[str, float, float, float, float]], until_s: float, seed: int = 1,
         change: tuple[float, callable] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Run jobs (id, interval, duration of each run, jitter, first run in) for `until_s` of virtual time;
    return each job's (start, end) times relative to the start."""
    loop = VirtualLoop()
    runs: dict[str, list[tuple[float, float]]] = {job[0]: [] for job in jobs}

    async def main() -> None:
        zero = loop.time()
        scheduler = Scheduler(random.Random(seed))

        def work(name: str, duration: float):
            async def run() -> None:
                start = loop.time() - zero
                await asyncio.sleep(duration)
                runs[name].append((round(start, 6), round(loop.time() - zero, 6)))
            return run

        for name, interval, duration, jitter, first in jobs:
            scheduler.add(name, work(name, duration), interval, jitter_s=jitter, first_in_s=first)
        scheduler.start()
        if change is not None:
            await asyncio.sleep(change[0])
            change[1](scheduler)
            await asyncio.sleep(until_s - change[0])
        else:
            await asyncio.sleep(until_s)
        scheduler.shutdown()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return runs


def test_next_slot_is_the_first_grid_time_not_before_now() -> None:
    assert [next_slot(10.0, 5.0, now) for now in (3.0, 10.0, 10.1, 15.0, 15.0001, 29.9, 30.0)] == [
        10.0, 10.0, 15.0, 15.0, 20.0, 30.0, 30.0]


def test_jobs_run_on_their_own_grid() -> None:
    runs = play([("a", 60.0, 0.5, 0.0, 3.0), ("b", 300.0, 2.0, 0.0, 7.0)], until_s=900)
    assert [start for start, _ in runs["a"]] == [3.0 + 60 * k for k in range(15)]
    assert [start for start, _ in runs["b"]] == [7.0, 307.0, 607.0]


def test_a_run_longer_than_its_interval_is_never_overlapped_and_missed_slots_are_not_replayed() -> None:
    runs = play([("slow", 1.0, 2.5, 0.0, 0.5), ("fast", 1.0, 0.1, 0.0, 0.0)], until_s=10)
    # 0.5 -> ends 3.0 -> the next slot not before 3.0 is 3.5 (1.5 and 2.5 are skipped, not made up)
    assert runs["slow"] == [(0.5, 3.0), (3.5, 6.0), (6.5, 9.0)]
    assert [start for start, _ in runs["fast"]] == [float(k) for k in range(10)], "the slow job holds up no other"


def test_jitter_delays_each_later_run_within_its_bound_and_the_grid_does_not_drift() -> None:
    runs = play([("j", 60.0, 1.0, 6.0, 4.0)], until_s=3600 * 5)
    starts = [start for start, _ in runs["j"]]
    assert len(starts) == 300
    assert starts[0] == 4.0, "the first run comes when asked: the caller spread it already"
    lateness = [start - 4.0 - 60.0 * k for k, start in enumerate(starts)][1:]
    assert all(0.0 <= late <= 6.0 for late in lateness)
    assert len({round(late, 3) for late in lateness}) > 250, "each run its own delay"
    assert 2.0 < sum(lateness) / len(lateness) < 4.0


def test_a_removed_job_finishes_the_run_under_way_and_runs_no_more() -> None:
    runs = play([("gone", 10.0, 4.0, 0.0, 0.0), ("kept", 10.0, 1.0, 0.0, 5.0)], until_s=60,
                change=(22.0, lambda scheduler: scheduler.remove("gone")))
    assert runs["gone"] == [(0.0, 4.0), (10.0, 14.0), (20.0, 24.0)], "the run at 20 s ends at 24 s, the last"
    assert len(runs["kept"]) == 6


def test_a_job_replaced_under_the_same_id_runs_at_its_new_interval() -> None:
    def replace(scheduler: Scheduler) -> None:
        scheduler.add("p", lambda: None, 30.0, first_in_s=0.0)  # the old job's runs stop being recorded

    runs = play([("p", 10.0, 1.0, 0.0, 0.0)], until_s=60, change=(25.0, replace))
    assert [start for start, _ in runs["p"]] == [0.0, 10.0, 20.0]


def test_a_failing_job_is_logged_and_runs_again_at_its_next_slot(caplog: pytest.LogCaptureFixture) -> None:
    loop = VirtualLoop()
    calls: list[float] = []

    def flaky() -> None:
        calls.append(loop.time())
        if len(calls) == 2:
            raise RuntimeError("probe exploded")

    async def main() -> None:
        scheduler = Scheduler(random.Random(1))
        scheduler.add("flaky", flaky, 5.0)
        scheduler.start()
        await asyncio.sleep(22)
        scheduler.shutdown()

    with caplog.at_level(logging.ERROR, logger="agent.schedule"):
        loop.run_until_complete(main())
    loop.close()
    assert [t - 1000.0 for t in calls] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert [r.getMessage() for r in caplog.records] == ["job flaky failed; it runs again at its next slot"]


def test_a_job_needs_a_positive_interval() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="job x: interval_s must be positive, not 0"):
            Scheduler().add("x", lambda: None, 0)

    asyncio.run(main())
